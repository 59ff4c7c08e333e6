/*
 * llamacy_map.h -- the one C interface between llamacy and the operating system.
 *
 * A model file is mapped read-only and shared; tensors are views into the mapping. Everything
 * else llamacy asks of the OS is here too: a private copy of a file (llama.cpp's --no-mmap),
 * zeroed anonymous memory (the KV cache and scratch buffers), and page-cache residency with the
 * OS's own rules for when it may be told. Two implementations exist and the build picks exactly
 * one of them:
 *
 *   map_posix.c   Linux, macOS, BSDs: open/fstat, mmap(PROT_READ, MAP_SHARED), madvise,
 *                 mlock, cachestat (Linux >= 6.5) / mincore, posix_fadvise; getauxval /
 *                 sysctlbyname for what the CPU may run.
 *   map_win32.c   Windows: CreateFileW, CreateFileMappingW(PAGE_READONLY),
 *                 MapViewOfFile(FILE_MAP_READ), PrefetchVirtualMemory (looked up at run
 *                 time), VirtualAlloc, VirtualLock, QueryWorkingSetEx,
 *                 IsProcessorFeaturePresent.
 *   map_common.h  what both share (range checks, error filling).
 *
 * Rules: every function returns an lm_status; on failure it fills *err with the OS error
 * code (errno, or GetLastError() on Windows, which err->winerror says) and the OS's own text. Nothing here prints,
 * exits or aborts: Python turns the status into an exception (llamacy/_mmap.pyx, one place).
 */
#ifndef LLAMACY_MAP_H
#define LLAMACY_MAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    LM_OK = 0,
    LM_ERR_OS = 1,          /* the OS refused; err->code and err->message say why        */
    LM_ERR_EMPTY = 2,       /* a file of 0 bytes cannot be mapped                         */
    LM_ERR_ISDIR = 3,       /* the path names a directory                                 */
    LM_ERR_UNSUPPORTED = 4, /* this OS cannot do that (e.g. evict on Windows)             */
    LM_ERR_RANGE = 5,       /* offset/length outside the mapping                          */
    LM_ERR_TOO_LARGE = 6,   /* the file does not fit in this process's address space      */
    LM_ERR_HIDDEN = 7,      /* the OS will not tell (residency: see lm_residency_method)  */
    LM_ERR_BUSY = 8         /* another process holds the lock (lm_lock_file)              */
} lm_status;

/* Access-pattern hints for lm_advise. */
typedef enum {
    LM_ADVICE_NORMAL = 0,
    LM_ADVICE_RANDOM = 1,
    LM_ADVICE_SEQUENTIAL = 2
} lm_advice;

/* Flags for lm_open. */
#define LM_OPEN_POPULATE 1u /* fault every page in at open time (MAP_POPULATE or a read pass) */
#define LM_OPEN_PRIVATE 2u  /* read the file into private memory instead of mapping it        */

typedef struct {
    int code;          /* errno, or GetLastError() when winerror; 0 when not an OS error */
    int winerror;      /* 1: code is a Windows system error code                         */
    char message[256]; /* the OS's text, NUL-terminated                                  */
} lm_error;

/* What an lm_map holds. */
typedef enum {
    LM_MAP_FILE = 0, /* the file, mapped read-only and shared (the page cache itself)          */
    LM_MAP_COPY = 1, /* a private read-only copy of the file in anonymous memory              */
    LM_MAP_ANON = 2  /* zeroed read-write anonymous memory (lm_alloc)                         */
} lm_map_kind;

typedef struct {
    const uint8_t *addr; /* start of the view                                          */
    uint64_t size;       /* bytes mapped == file size at open time                     */
    intptr_t file;       /* fd (POSIX) or HANDLE (Windows) of LM_MAP_FILE; else closed */
    intptr_t mapping;    /* the file-mapping HANDLE on Windows; unused else             */
    int kind;            /* lm_map_kind                                                */
    uint64_t stamp;      /* the file's modification time at open (OS units), for lm_file_changed */
} lm_map;

/* Map a whole file read-only and shared (or, with LM_OPEN_PRIVATE, read it into private
 * memory). `path` is the OS's byte path on POSIX and UTF-8 on Windows. On success
 * m->addr/m->size are set; on failure m is left zeroed. */
lm_status lm_open(const char *path, unsigned flags, lm_map *m, lm_error *err);

/* `size` bytes of zeroed read-write memory, committed page by page as they are first written,
 * in small pages (a touched row of a large buffer costs a page, not a 2 MiB huge page). */
lm_status lm_alloc(uint64_t size, lm_map *m, lm_error *err);

/* Unmap (or free) and close. Safe on a zeroed or already-closed map. */
lm_status lm_close(lm_map *m, lm_error *err);

/* Ask the OS to start reading [offset, offset+length) into memory (WILLNEED). Returns at once. */
lm_status lm_prefetch(const lm_map *m, uint64_t offset, uint64_t length, lm_error *err);

/* Fault in [offset, offset+length) now: after this the pages are resident. */
lm_status lm_populate(const lm_map *m, uint64_t offset, uint64_t length, lm_error *err);

/* Set the access-pattern hint for the whole mapping (no-op where the OS has none). */
lm_status lm_advise(const lm_map *m, lm_advice advice, lm_error *err);

/* Pin / unpin the pages of the mapping in RAM. */
lm_status lm_lock(const lm_map *m, lm_error *err);
lm_status lm_unlock(const lm_map *m, lm_error *err);

/* Count resident pages of [offset, offset+length), by lm_residency_method(m); LM_ERR_HIDDEN
 * when that is NULL. */
lm_status lm_residency(const lm_map *m, uint64_t offset, uint64_t length,
                       uint64_t *resident_pages, uint64_t *total_pages, lm_error *err);

/* How lm_residency counts for this map: "cachestat" (Linux >= 6.5: the file's pages in the page
 * cache, mapped or not), "mincore" (the page cache as the mapping sees it), "QueryWorkingSetEx"
 * (Windows: this process's working set); NULL when the OS will not tell the truth -- Linux >= 5.2
 * reports every page resident through mincore for a file the caller neither owns nor may write
 * (and cachestat refuses it), and a private copy is not the file. */
const char *lm_residency_method(const lm_map *m);

/* Drop the file's pages from the page cache (fdatasync, then posix_fadvise DONTNEED). Pages
 * mapped by a live process may stay. LM_ERR_UNSUPPORTED where the OS has no such call. */
lm_status lm_evict(const lm_map *m, uint64_t offset, uint64_t length, lm_error *err);

/* Whether the mapped file was changed in place since it was opened: *changed = 1 when its size
 * or modification time differ (asked of the open file, not the path: a new file renamed over
 * the path -- the safe way to replace a model -- leaves the mapping and this answer alone).
 * Reading pages a truncation removed raises SIGBUS on POSIX; asked at step boundaries this
 * turns most such accidents into an error. Always 0 for a private copy or anonymous memory.
 *
 * The POSIX implementation also registers every file mapping with a SIGBUS handler (installed
 * on first use, chained to the previous one): a fault inside a mapping writes one line to
 * stderr naming the file, the offset and the cause, then the previous handler (or the default
 * action) runs as it would have. Windows refuses to truncate a mapped file. */
lm_status lm_file_changed(const lm_map *m, int *changed, lm_error *err);

/* Take an exclusive lock on an open file for as long as it stays open, without waiting:
 * LM_ERR_BUSY when another open file description (another process) holds it. `fd` is a C
 * runtime file descriptor on every OS. POSIX: flock(LOCK_EX | LOCK_NB), advisory (llamacy
 * batch runs respect it); Windows: LockFileEx on one byte far past the end of the data, so
 * that reading and writing the contents stay free. Released by closing the file. */
lm_status lm_lock_file(int fd, lm_error *err);

/* The OS page size (allocation granularity for residency purposes). */
size_t lm_page_size(void);

/* "posix" or "win32": which implementation the build chose. */
const char *lm_implementation(void);

/* CPU features only the OS can tell (x86 features are read with cpuid, in llamacy/csrc/simd.h):
 * LM_CPU_ARM_DOTPROD, the ARMv8.2 SDOT/UDOT instructions (Linux: getauxval(AT_HWCAP) HWCAP_ASIMDDP;
 * macOS: sysctl hw.optional.arm.FEAT_DotProd; Windows: IsProcessorFeaturePresent). 1 when the CPU
 * has the feature and the OS lets programs use it; 0 otherwise, and on other architectures. */
#define LM_CPU_ARM_DOTPROD 1
int lm_cpu_feature(int feature);

/* When the pinning of lm_lock is refused: what limits it and how to raise it, as text. */
void lm_lock_advice(const lm_map *m, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif /* LLAMACY_MAP_H */
