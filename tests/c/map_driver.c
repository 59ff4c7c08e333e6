/* map_driver.c -- exercises platform/llamacy_map.h on whichever implementation it is linked with:
 * map_posix.c natively, map_win32.c cross-compiled with mingw-w64 and run under Wine.
 *
 *   map_driver FILE MISSING EMPTY DIRECTORY
 *
 * FILE is compared byte for byte through the view; the other three must fail with the right
 * status. Prints one line per check and "N passed, M failed" at the end; exit 1 on failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <unistd.h>
#endif

#include "llamacy_map.h"

static int passed = 0, failed = 0;

static void check(int ok, const char *what, const lm_error *err) {
    if (ok) {
        passed++;
        printf("ok   %s\n", what);
    } else {
        failed++;
        printf("FAIL %s%s%s\n", what, err ? ": " : "", err ? err->message : "");
    }
}

static unsigned char *read_all(const char *path, long *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = (unsigned char *)malloc((size_t)*n + 1);
    if (buf && fread(buf, 1, (size_t)*n, f) != (size_t)*n) { free(buf); buf = NULL; }
    fclose(f);
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s FILE MISSING EMPTY DIRECTORY\n", argv[0]);
        return 2;
    }
    printf("implementation: %s, page size %lu\n", lm_implementation(), (unsigned long)lm_page_size());
    lm_map m;
    lm_error err;
    memset(&err, 0, sizeof err);

    long n = 0;
    unsigned char *expect = read_all(argv[1], &n);
    check(expect != NULL && n > 0, "read the test file with stdio", NULL);
    lm_status st = lm_open(argv[1], 0, &m, &err);
    check(st == LM_OK, "lm_open maps the file", &err);
    if (st != LM_OK) goto done;
    check(m.size == (uint64_t)n, "size equals the file size", NULL);
    check(memcmp(m.addr, expect, (size_t)n) == 0, "bytes through the view equal the file", NULL);
    check(m.kind == LM_MAP_FILE, "a shared file mapping", NULL);
    const char *method = lm_residency_method(&m);
    check(method != NULL, "residency is known for a file we own", NULL);
    printf("     residency by %s\n", method ? method : "(hidden)");

    check(lm_prefetch(&m, 0, m.size, &err) == LM_OK, "prefetch the whole file", &err);
    check(lm_prefetch(&m, 1, 10, &err) == LM_OK, "prefetch an unaligned range", &err);
    check(lm_prefetch(&m, m.size, 1, &err) == LM_ERR_RANGE, "prefetch past the end is a range error", NULL);
    check(lm_populate(&m, 0, m.size, &err) == LM_OK, "populate", &err);
    check(lm_advise(&m, LM_ADVICE_RANDOM, &err) == LM_OK && lm_advise(&m, LM_ADVICE_SEQUENTIAL, &err) == LM_OK &&
              lm_advise(&m, LM_ADVICE_NORMAL, &err) == LM_OK,
          "access-pattern hints", &err);

    uint64_t res = 0, tot = 0;
    st = lm_residency(&m, 0, m.size, &res, &tot, &err);
    uint64_t pages = (m.size + lm_page_size() - 1) / lm_page_size();
    check(st == LM_OK && tot == pages && res <= tot, "residency counts every page of the file", &err);
    check(res == tot, "after populate, every page is resident", NULL);
    printf("     resident %llu of %llu pages\n", (unsigned long long)res, (unsigned long long)tot);

    st = lm_lock(&m, &err);
    if (st == LM_OK) {
        check(1, "lock", NULL);
        check(lm_unlock(&m, &err) == LM_OK, "unlock", &err);
    } else {
        check(st == LM_ERR_OS && err.message[0] != 0, "lock refused with the OS's reason", &err);
        printf("     (lock refused: %s)\n", err.message);
    }
    st = lm_evict(&m, 0, m.size, &err);
    check(st == LM_OK || st == LM_ERR_UNSUPPORTED, "evict succeeds or says it is unsupported", &err);
    printf("     evict: %s\n", st == LM_OK ? "done" : err.message);

    int changed = -1;
    check(lm_file_changed(&m, &changed, &err) == LM_OK && changed == 0, "an untouched file is unchanged", &err);

    check(lm_close(&m, &err) == LM_OK, "close", &err);
    check(m.addr == NULL && lm_close(&m, &err) == LM_OK, "close again is harmless", &err);

    /* a file lock: taken once, refused to a second open file, free again after close */
    {
        FILE *a = fopen(argv[1], "rb"), *b = fopen(argv[1], "rb");
        check(a && b, "open the file twice with stdio", NULL);
        if (a && b) {
            check(lm_lock_file(fileno(a), &err) == LM_OK, "lock a file", &err);
            check(lm_lock_file(fileno(b), &err) == LM_ERR_BUSY, "a second lock is refused (LM_ERR_BUSY)", NULL);
            fclose(a);
            a = NULL;
            check(lm_lock_file(fileno(b), &err) == LM_OK, "closing the first frees the lock", &err);
        }
        if (a) fclose(a);
        if (b) fclose(b);
    }
#ifndef _WIN32
    /* a file written in place while mapped is seen as changed (Windows refuses writers) */
    {
        char copy[4096];
        snprintf(copy, sizeof copy, "%s.changed", argv[1]);
        FILE *c = fopen(copy, "wb");
        check(c && fwrite(expect, 1, (size_t)n, c) == (size_t)n && fclose(c) == 0, "write a copy", NULL);
        st = lm_open(copy, 0, &m, &err);
        check(st == LM_OK, "map the copy", &err);
        c = fopen(copy, "r+b");
        check(c && fputc('x', c) != EOF && fclose(c) == 0 && truncate(copy, n / 2) == 0, "shrink it in place", NULL);
        changed = -1;
        check(lm_file_changed(&m, &changed, &err) == LM_OK && changed == 1, "a truncated file is changed", &err);
        lm_close(&m, &err);
        remove(copy);
    }
#endif

    st = lm_open(argv[2], 0, &m, &err);
    check(st == LM_ERR_OS && err.code == 2 && m.addr == NULL, "missing file: OS error 2 (not found)", &err);
    printf("     missing: %s\n", err.message);
    st = lm_open(argv[3], 0, &m, &err);
    check(st == LM_ERR_EMPTY, "empty file: LM_ERR_EMPTY", &err);
    st = lm_open(argv[4], 0, &m, &err);
    check(st == LM_ERR_ISDIR, "directory: LM_ERR_ISDIR", &err);
    st = lm_open(argv[1], LM_OPEN_POPULATE, &m, &err);
    check(st == LM_OK && memcmp(m.addr, expect, (size_t)n) == 0, "open with populate", &err);
    lm_close(&m, &err);

    /* a private copy (--no-mmap): the same bytes, read-only memory of our own, not the file */
    st = lm_open(argv[1], LM_OPEN_PRIVATE, &m, &err);
    check(st == LM_OK && m.kind == LM_MAP_COPY && m.size == (uint64_t)n && memcmp(m.addr, expect, (size_t)n) == 0,
          "private copy holds the file's bytes", &err);
    check(lm_residency_method(&m) == NULL && lm_residency(&m, 0, m.size, &res, &tot, &err) == LM_ERR_HIDDEN,
          "a private copy's residency is hidden (it is not the file)", NULL);
    check(lm_evict(&m, 0, m.size, &err) == LM_ERR_UNSUPPORTED, "a private copy cannot be evicted", NULL);
    check(lm_close(&m, &err) == LM_OK, "close the private copy", &err);
    check(lm_open(argv[4], LM_OPEN_PRIVATE, &m, &err) == LM_ERR_ISDIR, "private copy of a directory: LM_ERR_ISDIR",
          &err);

    /* anonymous zeroed memory (KV cache, scratch) */
    st = lm_alloc(3 * lm_page_size() + 5, &m, &err);
    check(st == LM_OK && m.kind == LM_MAP_ANON, "lm_alloc", &err);
    if (st == LM_OK) {
        uint8_t *w = (uint8_t *)m.addr;
        int zero = 1;
        for (uint64_t i = 0; i < m.size; i++) zero &= w[i] == 0;
        check(zero, "anonymous memory starts zeroed", NULL);
        w[0] = 1;
        w[m.size - 1] = 2;
        check(w[0] == 1 && w[m.size - 1] == 2, "anonymous memory is writable", NULL);
        check(lm_close(&m, &err) == LM_OK, "free anonymous memory", &err);
    }
done:
    free(expect);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
