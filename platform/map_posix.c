/* map_posix.c -- llamacy_map.h for Linux, macOS and other POSIX systems. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* MAP_POPULATE, MADV_POPULATE_READ on Linux */
#endif
#include "llamacy_map.h"
#include "map_common.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#if defined(__linux__) && defined(__aarch64__)
#include <sys/auxv.h>
#endif
#if defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#if defined(__linux__)
#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#endif

#if !defined(MAP_ANONYMOUS) && defined(MAP_ANON)
#define MAP_ANONYMOUS MAP_ANON
#endif

static lm_status fail_os(lm_error *err, int code, const char *what) {
    if (err) {
        err->code = code;
        err->winerror = 0;
        snprintf(err->message, sizeof err->message, "%s: %s", what, strerror(code));
    }
    return LM_ERR_OS;
}


size_t lm_page_size(void) {
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096u;
}

const char *lm_implementation(void) { return "posix"; }

static int64_t os_read_at(intptr_t file, uint8_t *dst, size_t want, uint64_t offset, lm_error *err) {
    ssize_t n;
    do n = pread((int)file, dst, want, (off_t)offset);
    while (n < 0 && errno == EINTR);
    if (n < 0) fail_os(err, errno, "read");
    return (int64_t)n;
}

static lm_status os_make_readonly(lm_map *m, lm_error *err) {
    return mprotect((void *)m->addr, (size_t)m->size, PROT_READ) == 0 ? LM_OK : fail_os(err, errno, "mprotect");
}


lm_status lm_alloc(uint64_t size, lm_map *m, lm_error *err) {
    memset(m, 0, sizeof *m);
    m->file = -1;
    if (size > (uint64_t)SIZE_MAX) return fail(err, LM_ERR_TOO_LARGE, "larger than the address space");
    size_t n = size ? (size_t)size : 1;
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return fail_os(err, errno, "mmap(anonymous)");
#ifdef MADV_NOHUGEPAGE
    (void)madvise(p, n, MADV_NOHUGEPAGE); /* a hint: kernels without THP refuse it harmlessly */
#endif
    m->addr = (const uint8_t *)p;
    m->size = n;
    m->kind = LM_MAP_ANON;
    return LM_OK;
}

/* ---- the SIGBUS guard: a fault inside a mapped file gets a sentence before the process dies ---- */
#define GUARD_SLOTS 64
static struct {
    const uint8_t *volatile addr; /* NULL: a free slot */
    volatile uint64_t size;
    char text[600];               /* the path, already in the message's words */
    size_t len;
} guard[GUARD_SLOTS];
static struct sigaction guard_previous;
static volatile sig_atomic_t guard_installed;

static size_t put(char *dst, size_t at, size_t cap, const char *s) {
    while (*s && at + 1 < cap) dst[at++] = *s++;
    return at;
}

static void guard_handler(int sig, siginfo_t *si, void *ctx) {
    (void)ctx;
    const uint8_t *a = (const uint8_t *)si->si_addr;
    for (int i = 0; i < GUARD_SLOTS; i++) {
        const uint8_t *base = guard[i].addr;
        if (base && a >= base && (uint64_t)(a - base) < guard[i].size) {
            /* write(2) and this hand-made number are all a signal handler may use */
            char msg[760], num[24];
            uint64_t off = (uint64_t)(a - base);
            int n = 0;
            do num[n++] = (char)('0' + off % 10), off /= 10;
            while (off && n < 23);
            size_t at = put(msg, 0, sizeof msg, "llamacy: SIGBUS reading byte ");
            while (n && at + 1 < sizeof msg) msg[at++] = num[--n];
            at = put(msg, at, sizeof msg, guard[i].text);
            ssize_t ignored = write(2, msg, at);
            (void)ignored;
            break;
        }
    }
    /* Put the previous handler back and let it take the fault: returning re-runs the faulting
     * access (a signal sent with kill() is re-raised instead). */
    sigaction(SIGBUS, &guard_previous, NULL);
    if (si->si_code <= 0) raise(sig);
}

static void guard_add(const lm_map *m, const char *path) {
    if (!guard_installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = guard_handler;
        sa.sa_flags = SA_SIGINFO | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGBUS, &sa, &guard_previous) != 0) return; /* no guard: nothing else changes */
        guard_installed = 1;
    }
    for (int i = 0; i < GUARD_SLOTS; i++) {
        if (guard[i].addr == NULL) {
            size_t at = put(guard[i].text, 0, sizeof guard[i].text, " of ");
            at = put(guard[i].text, at, sizeof guard[i].text, path);
            at = put(guard[i].text, at, sizeof guard[i].text,
                     ": the model file was truncated or overwritten while mapped. Replace a model by writing "
                     "a new file and renaming it over the old one.\n");
            guard[i].len = at;
            guard[i].size = m->size;
            guard[i].addr = m->addr; /* last: the slot is complete before the handler can see it */
            return;
        }
    }
}

static void guard_remove(const lm_map *m) {
    for (int i = 0; i < GUARD_SLOTS; i++)
        if (guard[i].addr == m->addr) guard[i].addr = NULL;
}

static uint64_t mtime_ns(const struct stat *st) {
#if defined(__APPLE__)
    return (uint64_t)st->st_mtimespec.tv_sec * 1000000000u + (uint64_t)st->st_mtimespec.tv_nsec;
#else
    return (uint64_t)st->st_mtim.tv_sec * 1000000000u + (uint64_t)st->st_mtim.tv_nsec;
#endif
}

lm_status lm_file_changed(const lm_map *m, int *changed, lm_error *err) {
    *changed = 0;
    if (!m || m->kind != LM_MAP_FILE || m->file < 0) return LM_OK;
    struct stat st;
    if (fstat((int)m->file, &st) != 0) return fail_os(err, errno, "fstat");
    *changed = (uint64_t)st.st_size != m->size || mtime_ns(&st) != m->stamp;
    return LM_OK;
}

lm_status lm_lock_file(int fd, lm_error *err) {
    int rc;
    do rc = flock(fd, LOCK_EX | LOCK_NB);
    while (rc != 0 && errno == EINTR);
    if (rc == 0) return LM_OK;
    if (errno == EWOULDBLOCK) return fail(err, LM_ERR_BUSY, "locked by another process");
    return fail_os(err, errno, "flock");
}

lm_status lm_open(const char *path, unsigned flags, lm_map *m, lm_error *err) {
    memset(m, 0, sizeof *m);
    m->file = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail_os(err, errno, "open");
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fail_os(err, e, "fstat");
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return fail(err, LM_ERR_ISDIR, "is a directory");
    }
    if (st.st_size <= 0) {
        close(fd);
        return fail(err, LM_ERR_EMPTY, "the file is empty (0 bytes)");
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return fail(err, LM_ERR_TOO_LARGE, "the file is larger than the address space");
    }
    if (flags & LM_OPEN_PRIVATE) {
        lm_status cs = read_copy(fd, (uint64_t)st.st_size, m, err);
        close(fd);
        return cs;
    }
    int mflags = MAP_SHARED;
#if defined(MAP_POPULATE) && !defined(MADV_HUGEPAGE)
    if (flags & LM_OPEN_POPULATE) mflags |= MAP_POPULATE;
#endif
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, mflags, fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        close(fd);
        return fail_os(err, e, "mmap");
    }
    m->addr = (const uint8_t *)p;
    m->size = (uint64_t)st.st_size;
    m->file = fd;
    m->stamp = mtime_ns(&st);
    guard_add(m, path);
#ifdef MADV_HUGEPAGE
    /* A hint, before any page is read: Linux then reads the file into 2 MiB page-cache folios
     * where the filesystem allows (ext4, xfs, tmpfs...) and maps them with one TLB entry each.
     * Still the shared page cache, not a copy; decode is faster with 2 MiB folios (benchmarks/
     * RESULTS.md). Kernels without THP refuse it (EINVAL): nothing is lost, so it is not checked. */
    if (m->size >= (2u << 20)) (void)madvise(p, (size_t)st.st_size, MADV_HUGEPAGE);
#endif
#if !defined(MAP_POPULATE) || defined(MADV_HUGEPAGE)
    if (flags & LM_OPEN_POPULATE) {
        lm_status st = lm_populate(m, 0, m->size, err);
        if (st != LM_OK) {
            lm_error ignored;
            lm_close(m, &ignored);
            return st;
        }
    }
#endif
    return LM_OK;
}

lm_status lm_close(lm_map *m, lm_error *err) {
    lm_status st = LM_OK;
    if (!m) return LM_OK;
    if (m->addr && m->kind == LM_MAP_FILE) guard_remove(m);
    if (m->addr && munmap((void *)m->addr, (size_t)m->size) != 0) st = fail_os(err, errno, "munmap");
    if (m->file >= 0 && close((int)m->file) != 0 && st == LM_OK) st = fail_os(err, errno, "close");
    m->addr = NULL;
    m->size = 0;
    m->file = -1;
    m->kind = LM_MAP_FILE;
    return st;
}

lm_status lm_prefetch(const lm_map *m, uint64_t offset, uint64_t length, lm_error *err) {
    uint8_t *start;
    size_t len;
    lm_status st = page_range(m, offset, length, &start, &len, err);
    if (st != LM_OK || len == 0) return st;
    int rc = posix_madvise(start, len, POSIX_MADV_WILLNEED);
    if (rc != 0) return fail_os(err, rc, "posix_madvise(WILLNEED)");
    return LM_OK;
}

lm_status lm_populate(const lm_map *m, uint64_t offset, uint64_t length, lm_error *err) {
    uint8_t *start;
    size_t len;
    lm_status st = page_range(m, offset, length, &start, &len, err);
    if (st != LM_OK || len == 0) return st;
#ifdef MADV_POPULATE_READ
    int rc;
    do rc = madvise(start, len, MADV_POPULATE_READ);
    while (rc != 0 && errno == EINTR); /* a signal arrived: what is read stays read, go on */
    if (rc == 0) return LM_OK;
    /* EINVAL before Linux 5.14: fall through to a read pass. Anything else (EFAULT: the file
     * shrank under the mapping; ENOMEM) is an error: touching the pages could SIGBUS. */
    if (errno != EINVAL) return fail_os(err, errno, "madvise(MADV_POPULATE_READ)");
#endif
    size_t page = lm_page_size();
    volatile uint8_t sink = 0;
    const uint8_t *end = (const uint8_t *)m->addr + m->size;
    for (const uint8_t *q = start < m->addr ? m->addr : start; q < start + len && q < end; q += page)
        sink ^= *(volatile const uint8_t *)q;
    (void)sink;
    return LM_OK;
}

lm_status lm_advise(const lm_map *m, lm_advice advice, lm_error *err) {
    if (!m || !m->addr) return fail(err, LM_ERR_RANGE, "the file is not mapped");
    int a = POSIX_MADV_NORMAL;
    if (advice == LM_ADVICE_RANDOM) a = POSIX_MADV_RANDOM;
    else if (advice == LM_ADVICE_SEQUENTIAL) a = POSIX_MADV_SEQUENTIAL;
    int rc = posix_madvise((void *)m->addr, (size_t)m->size, a);
    if (rc != 0) return fail_os(err, rc, "posix_madvise");
    return LM_OK;
}

void lm_lock_advice(const lm_map *m, char *out, size_t cap) {
    struct rlimit rl;
    unsigned long long need = m ? (unsigned long long)m->size : 0;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0) {
        snprintf(out, cap, "grant the process more lockable memory");
    } else if (rl.rlim_cur == RLIM_INFINITY) {
        snprintf(out, cap, "RLIMIT_MEMLOCK is unlimited; the system is short of memory to pin %llu bytes", need);
    } else {
        snprintf(out, cap,
                 "RLIMIT_MEMLOCK is %llu bytes and %llu bytes are needed: raise it (ulimit -l, or memlock in "
                 "/etc/security/limits.conf) or grant CAP_IPC_LOCK",
                 (unsigned long long)rl.rlim_cur, need);
    }
}

lm_status lm_lock(const lm_map *m, lm_error *err) {
    if (!m || !m->addr) return fail(err, LM_ERR_RANGE, "the file is not mapped");
    if (mlock(m->addr, (size_t)m->size) != 0) return fail_os(err, errno, "mlock");
    return LM_OK;
}

lm_status lm_unlock(const lm_map *m, lm_error *err) {
    if (!m || !m->addr) return fail(err, LM_ERR_RANGE, "the file is not mapped");
    if (munlock(m->addr, (size_t)m->size) != 0) return fail_os(err, errno, "munlock");
    return LM_OK;
}

/* ---- residency ----------------------------------------------------------------------------------
 * cachestat(2) (Linux >= 6.5) counts a file's page-cache pages without a mapping and is the
 * truth; mincore(2) counts what the mapping sees. Since Linux 5.2 (a side-channel fix, mm/mincore.c
 * can_do_mincore) mincore reports every page of a file mapping resident unless the caller owns
 * the file, has CAP_FOWNER or may write it; cachestat refuses the same callers. A false 100% is
 * worse than no answer, so such a file's residency is hidden. */
#if defined(__linux__)
#ifndef __NR_cachestat
#define __NR_cachestat 451 /* one number on every architecture: the generic syscall table */
#endif
struct lm_cachestat_range { uint64_t off, len; };
struct lm_cachestat { uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted; };

/* 0 and *cached, or the errno (ENOSYS before Linux 6.5, EPERM for a file the caller may not ask) */
static int cachestat_pages(int fd, uint64_t off, uint64_t len, uint64_t *cached) {
    struct lm_cachestat_range r = {off, len};
    struct lm_cachestat cs;
    memset(&cs, 0, sizeof cs);
    if (syscall(__NR_cachestat, fd, &r, &cs, 0u) != 0) return errno;
    *cached = cs.nr_cache;
    return 0;
}

static int has_cap_fowner(void) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) != 0) return geteuid() == 0;
    return (int)((d[0].effective >> CAP_FOWNER) & 1u);
}

static int mincore_truthful(int fd) {
    struct utsname u;
    int major = 0, minor = 0;
    if (uname(&u) == 0 && sscanf(u.release, "%d.%d", &major, &minor) == 2 && (major < 5 || (major == 5 && minor < 2)))
        return 1;
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_uid == geteuid()) return 1;
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
    if (faccessat(AT_FDCWD, self, W_OK, AT_EACCESS) == 0) return 1;
    return has_cap_fowner();
}
#endif

const char *lm_residency_method(const lm_map *m) {
    if (!m || !m->addr || m->kind == LM_MAP_COPY) return NULL;
    if (m->kind == LM_MAP_ANON) return "mincore";
#if defined(__linux__)
    uint64_t cached;
    if (cachestat_pages((int)m->file, 0, 1, &cached) == 0) return "cachestat";
    if (!mincore_truthful((int)m->file)) return NULL;
#endif
    return "mincore";
}

lm_status lm_residency(const lm_map *m, uint64_t offset, uint64_t length, uint64_t *resident,
                       uint64_t *total, lm_error *err) {
    uint8_t *start;
    size_t len;
    *resident = 0;
    *total = 0;
    lm_status st = page_range(m, offset, length, &start, &len, err);
    if (st != LM_OK || len == 0) return st;
    size_t page = lm_page_size();
    const char *method = lm_residency_method(m);
    if (!method) return fail(err, LM_ERR_HIDDEN, "the OS will not tell the page-cache residency of this file");
#if defined(__linux__)
    if (method[0] == 'c') { /* cachestat */
        uint64_t npages = (len + page - 1) / page, cached = 0;
        int e = cachestat_pages((int)m->file, (uint64_t)(start - m->addr), (uint64_t)npages * page, &cached);
        if (e) return fail_os(err, e, "cachestat");
        *resident = cached < npages ? cached : npages;
        *total = npages;
        return LM_OK;
    }
#endif
    enum { CHUNK = 1 << 16 }; /* pages per mincore call: 256 MiB of 4 KiB pages */
#if defined(__APPLE__)
    char vec[CHUNK];
#else
    unsigned char vec[CHUNK];
#endif
    size_t npages = (len + page - 1) / page;
    for (size_t done = 0; done < npages; done += CHUNK) {
        size_t n = npages - done < CHUNK ? npages - done : CHUNK;
        if (mincore(start + done * page, n * page, vec) != 0) return fail_os(err, errno, "mincore");
        for (size_t i = 0; i < n; i++) *resident += (vec[i] & 1);
    }
    *total = npages;
    return LM_OK;
}

lm_status lm_evict(const lm_map *m, uint64_t offset, uint64_t length, lm_error *err) {
    if (!m || !m->addr) return fail(err, LM_ERR_RANGE, "the file is not mapped");
    if (offset > m->size || length > m->size - offset)
        return fail(err, LM_ERR_RANGE, "range outside the mapping");
    if (m->kind != LM_MAP_FILE) return fail(err, LM_ERR_UNSUPPORTED, "not a mapped file");
#if defined(POSIX_FADV_DONTNEED) && !defined(__APPLE__)
    /* Dirty pages (a file just written) cannot be dropped: write them back first. */
    (void)fdatasync((int)m->file);
    int rc = posix_fadvise((int)m->file, (off_t)offset, (off_t)length, POSIX_FADV_DONTNEED);
    if (rc != 0) return fail_os(err, rc, "posix_fadvise(DONTNEED)");
    return LM_OK;
#else
    (void)offset;
    (void)length;
    return fail(err, LM_ERR_UNSUPPORTED, "this OS has no posix_fadvise(POSIX_FADV_DONTNEED)");
#endif
}

int lm_cpu_feature(int feature) {
    if (feature != LM_CPU_ARM_DOTPROD) return 0;
#if defined(__aarch64__) && defined(__linux__)
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__aarch64__) && defined(__APPLE__)
    int has = 0;
    size_t len = sizeof has;
    if (sysctlbyname("hw.optional.arm.FEAT_DotProd", &has, &len, NULL, 0) == 0) return has != 0;
    /* macOS 11 has no FEAT_ names: every Apple CPU it runs on (M1 and later) has dotprod */
    return 1;
#else
    return 0;
#endif
}
