# Declarations of platform/llamacy_map.h, the C interface to the OS's file mapping.
from libc.stdint cimport uint8_t, uint64_t, intptr_t


cdef extern from "llamacy_map.h" nogil:
    ctypedef enum lm_status:
        LM_OK
        LM_ERR_OS
        LM_ERR_EMPTY
        LM_ERR_ISDIR
        LM_ERR_UNSUPPORTED
        LM_ERR_RANGE
        LM_ERR_TOO_LARGE
        LM_ERR_HIDDEN
        LM_ERR_BUSY

    ctypedef enum lm_advice:
        LM_ADVICE_NORMAL
        LM_ADVICE_RANDOM
        LM_ADVICE_SEQUENTIAL

    unsigned LM_OPEN_POPULATE
    unsigned LM_OPEN_PRIVATE

    ctypedef struct lm_error:
        int code
        int winerror
        char message[256]

    ctypedef enum lm_map_kind:
        LM_MAP_FILE
        LM_MAP_COPY
        LM_MAP_ANON

    ctypedef struct lm_map:
        const uint8_t *addr
        uint64_t size
        intptr_t file
        intptr_t mapping
        int kind
        uint64_t stamp

    lm_status lm_open(const char *path, unsigned flags, lm_map *m, lm_error *err)
    lm_status lm_alloc(uint64_t size, lm_map *m, lm_error *err)
    lm_status lm_close(lm_map *m, lm_error *err)
    lm_status lm_prefetch(const lm_map *m, uint64_t offset, uint64_t length, lm_error *err)
    lm_status lm_populate(const lm_map *m, uint64_t offset, uint64_t length, lm_error *err)
    lm_status lm_advise(const lm_map *m, lm_advice advice, lm_error *err)
    lm_status lm_lock(const lm_map *m, lm_error *err)
    lm_status lm_unlock(const lm_map *m, lm_error *err)
    lm_status lm_residency(const lm_map *m, uint64_t offset, uint64_t length,
                           uint64_t *resident_pages, uint64_t *total_pages, lm_error *err)
    lm_status lm_evict(const lm_map *m, uint64_t offset, uint64_t length, lm_error *err)
    lm_status lm_file_changed(const lm_map *m, int *changed, lm_error *err)
    lm_status lm_lock_file(int fd, lm_error *err)
    size_t lm_page_size()
    const char *lm_implementation()
    const char *lm_residency_method(const lm_map *m)
    void lm_lock_advice(const lm_map *m, char *out, size_t cap)


cdef class MappedFile:
    cdef lm_map _m
    cdef readonly object path
    cdef Py_ssize_t _exports
    cdef bint _closed
    cdef bint _locked
    cdef int _check_open(self) except -1
    cdef tuple _range(self, object offset, object length)


cdef class AnonymousMemory:
    cdef lm_map _m
    cdef Py_ssize_t _exports
