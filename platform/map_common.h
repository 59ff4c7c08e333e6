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

#endif /* LLAMACY_MAP_COMMON_H */
