/* map_common.h -- what both implementations of llamacy_map.h share: error filling and the
 * page-rounding of byte ranges. Included by map_posix.c and map_win32.c only. */
#ifndef LLAMACY_MAP_COMMON_H
#define LLAMACY_MAP_COMMON_H

#include <stdio.h>

#include "llamacy_map.h"

static lm_status fail(lm_error *err, lm_status st, const char *text) {
    if (err) {
        err->code = 0;
        err->winerror = 0;
        snprintf(err->message, sizeof err->message, "%s", text);
    }
    return st;
}

/* Check [offset, offset+length) against the mapping and round its start down to a page. */
static lm_status page_range(const lm_map *m, uint64_t offset, uint64_t length, uint8_t **start, size_t *len,
                            lm_error *err) {
    if (!m || !m->addr) return fail(err, LM_ERR_RANGE, "the file is not mapped");
    if (offset > m->size || length > m->size - offset) return fail(err, LM_ERR_RANGE, "range outside the mapping");
    size_t page = lm_page_size();
    uintptr_t a = (uintptr_t)m->addr + (uintptr_t)offset;
    uintptr_t b = a + (uintptr_t)length;
    uintptr_t a0 = a & ~(uintptr_t)(page - 1);
    *start = (uint8_t *)a0;
    *len = (size_t)(b - a0);
    return LM_OK;
}

/* What each implementation provides for read_copy: one read of up to `want` bytes at `offset`
 * (bytes read, 0 at the end of the file, -1 with *err filled), and making a map read-only. */
static int64_t os_read_at(intptr_t file, uint8_t *dst, size_t want, uint64_t offset, lm_error *err);
static lm_status os_make_readonly(lm_map *m, lm_error *err);

/* The whole file read into fresh anonymous memory (lm_alloc), then made read-only: the private
 * copy of LM_OPEN_PRIVATE, m->kind == LM_MAP_COPY. */
static lm_status read_copy(intptr_t file, uint64_t size, lm_map *m, lm_error *err) {
    lm_status st = lm_alloc(size, m, err);
    if (st != LM_OK) return st;
    uint8_t *p = (uint8_t *)m->addr;
    for (uint64_t done = 0; done < size && st == LM_OK;) {
        size_t want = size - done > (1u << 30) ? (1u << 30) : (size_t)(size - done);
        int64_t n = os_read_at(file, p + done, want, done, err);
        if (n > 0) done += (uint64_t)n;
        else st = n < 0 ? LM_ERR_OS : fail(err, LM_ERR_OS, "read: the file shrank while it was read");
    }
    if (st == LM_OK) st = os_make_readonly(m, err);
    if (st != LM_OK) {
        lm_error ignored;
        lm_close(m, &ignored);
        return st;
    }
    m->kind = LM_MAP_COPY;
    return LM_OK;
}

#endif /* LLAMACY_MAP_COMMON_H */
