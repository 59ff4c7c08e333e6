/* map_posix.c -- llamacy_map.h for Linux, macOS and other POSIX systems. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* MAP_POPULATE, MADV_POPULATE_READ on Linux */
#endif
#include "llamacy_map.h"
#include "map_common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static lm_status fail_os(lm_error *err, int code, const char *what) {
    if (err) {
        err->code = code;
        snprintf(err->message, sizeof err->message, "%s: %s", what, strerror(code));
    }
    return LM_ERR_OS;
}


size_t lm_page_size(void) {
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096u;
}

const char *lm_implementation(void) { return "posix"; }
const char *lm_residency_method(void) { return "mincore"; }

/* Clamp [offset, offset+length) to the mapping and round out to whole pages. */

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
#ifdef MADV_HUGEPAGE
    /* A hint, before any page is read: Linux then reads the file into 2 MiB page-cache folios
     * where the filesystem allows (ext4, xfs, tmpfs...) and maps them with one TLB entry each.
     * Still the shared page cache, not a copy. Measured on the 1.1B Q4_0 model: decode 36 tok/s
     * with the file cached in small folios (86 of 591 MiB PMD-mapped), 42-45 with 2 MiB ones.
     * Kernels without THP refuse it (EINVAL): nothing is lost, so the result is not checked. */
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
    if (m->addr && munmap((void *)m->addr, (size_t)m->size) != 0) st = fail_os(err, errno, "munmap");
    if (m->file >= 0 && close((int)m->file) != 0 && st == LM_OK) st = fail_os(err, errno, "close");
    m->addr = NULL;
    m->size = 0;
    m->file = -1;
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

lm_status lm_residency(const lm_map *m, uint64_t offset, uint64_t length, uint64_t *resident,
                       uint64_t *total, lm_error *err) {
    uint8_t *start;
    size_t len;
    *resident = 0;
    *total = 0;
    lm_status st = page_range(m, offset, length, &start, &len, err);
    if (st != LM_OK || len == 0) return st;
    size_t page = lm_page_size();
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
