/* map_win32.c -- llamacy_map.h for Windows (8 and newer; PrefetchVirtualMemory is optional). */
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0601 /* Windows 7 API level; newer calls are looked up at run time */
#endif
#include <windows.h>
#include <io.h> /* _get_osfhandle */
#include <psapi.h>
#include <stdio.h>
#include <string.h>

#include "llamacy_map.h"
#include "map_common.h"

static lm_status fail_win(lm_error *err, DWORD code, const char *what) {
    if (err) {
        char text[200] = "";
        DWORD n = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, code,
                                 MAKELANGID(LANG_NEUTRAL, SUBLANG_DEFAULT), text, sizeof text, NULL);
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == '.')) text[--n] = 0;
        err->code = (int)code;
        err->winerror = 1;
        snprintf(err->message, sizeof err->message, "%s: %s", what, n ? text : "unknown error");
    }
    return LM_ERR_OS;
}


size_t lm_page_size(void) {
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    return si.dwPageSize ? (size_t)si.dwPageSize : 4096u;
}

const char *lm_implementation(void) { return "win32"; }

const char *lm_residency_method(const lm_map *m) {
    if (!m || !m->addr || m->kind == LM_MAP_COPY) return NULL; /* a private copy is not the file */
    return "QueryWorkingSetEx";
}

lm_status lm_alloc(uint64_t size, lm_map *m, lm_error *err) {
    memset(m, 0, sizeof *m);
    m->file = (intptr_t)INVALID_HANDLE_VALUE;
    if (size > (uint64_t)SIZE_MAX) return fail(err, LM_ERR_TOO_LARGE, "larger than the address space");
    SIZE_T n = size ? (SIZE_T)size : 1;
    void *p = VirtualAlloc(NULL, n, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE); /* zeroed on first touch */
    if (!p) return fail_win(err, GetLastError(), "VirtualAlloc");
    m->addr = (const uint8_t *)p;
    m->size = n;
    m->kind = LM_MAP_ANON;
    return LM_OK;
}


static int64_t os_read_at(intptr_t file, uint8_t *dst, size_t want, uint64_t offset, lm_error *err) {
    OVERLAPPED at;
    memset(&at, 0, sizeof at);
    at.Offset = (DWORD)offset;
    at.OffsetHigh = (DWORD)(offset >> 32);
    DWORD got = 0;
    if (!ReadFile((HANDLE)file, dst, (DWORD)want, &got, &at)) {
        DWORD e = GetLastError();
        if (e == ERROR_HANDLE_EOF) return 0;
        fail_win(err, e, "ReadFile");
        return -1;
    }
    return (int64_t)got;
}

static lm_status os_make_readonly(lm_map *m, lm_error *err) {
    DWORD old;
    return VirtualProtect((LPVOID)m->addr, (SIZE_T)m->size, PAGE_READONLY, &old) ? LM_OK
                                                                                  : fail_win(err, GetLastError(), "VirtualProtect");
}

void lm_lock_advice(const lm_map *m, char *out, size_t cap) {
    (void)m;
    snprintf(out, cap, "raise the process's minimum working-set size (SetProcessWorkingSetSize)");
}


lm_status lm_open(const char *path, unsigned flags, lm_map *m, lm_error *err) {
    memset(m, 0, sizeof *m);
    m->file = (intptr_t)INVALID_HANDLE_VALUE;
    int wlen = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path, -1, NULL, 0);
    if (wlen <= 0) return fail_win(err, GetLastError(), "MultiByteToWideChar");
    WCHAR *wpath = (WCHAR *)HeapAlloc(GetProcessHeap(), 0, (SIZE_T)wlen * sizeof(WCHAR));
    if (!wpath) return fail_win(err, ERROR_NOT_ENOUGH_MEMORY, "HeapAlloc");
    MultiByteToWideChar(CP_UTF8, 0, path, -1, wpath, wlen);

    DWORD attrs = GetFileAttributesW(wpath);
    if (attrs != INVALID_FILE_ATTRIBUTES && (attrs & FILE_ATTRIBUTE_DIRECTORY)) {
        HeapFree(GetProcessHeap(), 0, wpath);
        return fail(err, LM_ERR_ISDIR, "is a directory");
    }
    HANDLE h = CreateFileW(wpath, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_DELETE, NULL, OPEN_EXISTING,
                           FILE_ATTRIBUTE_NORMAL | FILE_FLAG_RANDOM_ACCESS, NULL);
    HeapFree(GetProcessHeap(), 0, wpath);
    if (h == INVALID_HANDLE_VALUE) return fail_win(err, GetLastError(), "CreateFileW");

    LARGE_INTEGER sz;
    if (!GetFileSizeEx(h, &sz)) {
        DWORD e = GetLastError();
        CloseHandle(h);
        return fail_win(err, e, "GetFileSizeEx");
    }
    if (sz.QuadPart <= 0) {
        CloseHandle(h);
        return fail(err, LM_ERR_EMPTY, "the file is empty (0 bytes)");
    }
    if ((unsigned long long)sz.QuadPart > (unsigned long long)SIZE_MAX) {
        CloseHandle(h);
        return fail(err, LM_ERR_TOO_LARGE, "the file is larger than the address space");
    }
    if (flags & LM_OPEN_PRIVATE) {
        lm_status cs = read_copy((intptr_t)h, (uint64_t)sz.QuadPart, m, err);
        CloseHandle(h);
        return cs;
    }
    HANDLE mh = CreateFileMappingW(h, NULL, PAGE_READONLY, 0, 0, NULL);
    if (!mh) {
        DWORD e = GetLastError();
        CloseHandle(h);
        return fail_win(err, e, "CreateFileMappingW");
    }
    void *p = MapViewOfFile(mh, FILE_MAP_READ, 0, 0, 0);
    if (!p) {
        DWORD e = GetLastError();
        CloseHandle(mh);
        CloseHandle(h);
        return fail_win(err, e, "MapViewOfFile");
    }
    m->addr = (const uint8_t *)p;
    m->size = (uint64_t)sz.QuadPart;
    m->file = (intptr_t)h;
    m->mapping = (intptr_t)mh;
    FILETIME written;
    if (GetFileTime(h, NULL, NULL, &written))
        m->stamp = ((uint64_t)written.dwHighDateTime << 32) | written.dwLowDateTime;
    if (flags & LM_OPEN_POPULATE) return lm_populate(m, 0, m->size, err);
    return LM_OK;
}

/* The file is opened without FILE_SHARE_WRITE and Windows refuses to truncate a mapped file, so
 * it cannot change under the mapping through other handles; asked anyway, for the same answer
 * on every OS. */
lm_status lm_file_changed(const lm_map *m, int *changed, lm_error *err) {
    *changed = 0;
    if (!m || m->kind != LM_MAP_FILE || !m->file || (HANDLE)m->file == INVALID_HANDLE_VALUE) return LM_OK;
    LARGE_INTEGER sz;
    FILETIME written;
    if (!GetFileSizeEx((HANDLE)m->file, &sz)) return fail_win(err, GetLastError(), "GetFileSizeEx");
    if (!GetFileTime((HANDLE)m->file, NULL, NULL, &written)) return fail_win(err, GetLastError(), "GetFileTime");
    *changed = (uint64_t)sz.QuadPart != m->size ||
               (((uint64_t)written.dwHighDateTime << 32) | written.dwLowDateTime) != m->stamp;
    return LM_OK;
}

lm_status lm_lock_file(int fd, lm_error *err) {
    HANDLE h = (HANDLE)_get_osfhandle(fd);
    if (h == INVALID_HANDLE_VALUE) return fail_win(err, ERROR_INVALID_HANDLE, "_get_osfhandle");
    /* One byte far past any real data, as SQLite does: the lock excludes other lockers without
     * blocking reads and writes of the file's contents (a whole-file lock would, even through
     * this process's other handles). */
    OVERLAPPED ov;
    memset(&ov, 0, sizeof ov);
    ov.OffsetHigh = 0x40000000u;
    if (LockFileEx(h, LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ov)) return LM_OK;
    DWORD e = GetLastError();
    if (e == ERROR_LOCK_VIOLATION) return fail(err, LM_ERR_BUSY, "locked by another process");
    return fail_win(err, e, "LockFileEx");
}

lm_status lm_close(lm_map *m, lm_error *err) {
    lm_status st = LM_OK;
    if (!m) return LM_OK;
    if (m->addr && m->kind != LM_MAP_FILE) {
        if (!VirtualFree((LPVOID)m->addr, 0, MEM_RELEASE)) st = fail_win(err, GetLastError(), "VirtualFree");
    } else if (m->addr && !UnmapViewOfFile((LPCVOID)m->addr)) {
        st = fail_win(err, GetLastError(), "UnmapViewOfFile");
    }
    if (m->mapping) CloseHandle((HANDLE)m->mapping);
    if ((HANDLE)m->file != INVALID_HANDLE_VALUE && m->file) CloseHandle((HANDLE)m->file);
    m->addr = NULL;
    m->size = 0;
    m->mapping = 0;
    m->file = (intptr_t)INVALID_HANDLE_VALUE;
    m->kind = LM_MAP_FILE;
    return st;
}

/* PrefetchVirtualMemory exists from Windows 8 on: look it up once, skip the hint before that. */
typedef struct {
    PVOID VirtualAddress;
    SIZE_T NumberOfBytes;
} lm_range_entry;
typedef BOOL(WINAPI *prefetch_fn)(HANDLE, ULONG_PTR, lm_range_entry *, ULONG);

static prefetch_fn find_prefetch(void) {
    HMODULE k32 = GetModuleHandleW(L"kernel32.dll");
    return k32 ? (prefetch_fn)(void (*)(void))GetProcAddress(k32, "PrefetchVirtualMemory") : NULL;
}

lm_status lm_prefetch(const lm_map *m, uint64_t offset, uint64_t length, lm_error *err) {
    uint8_t *start;
    size_t len;
    lm_status st = page_range(m, offset, length, &start, &len, err);
    if (st != LM_OK || len == 0) return st;
    prefetch_fn fn = find_prefetch();
    if (!fn) return LM_OK; /* before Windows 8: no hint to give */
    lm_range_entry r = {start, len};
    if (!fn(GetCurrentProcess(), 1, &r, 0)) return fail_win(err, GetLastError(), "PrefetchVirtualMemory");
    return LM_OK;
}

lm_status lm_populate(const lm_map *m, uint64_t offset, uint64_t length, lm_error *err) {
    uint8_t *start;
    size_t len;
    lm_status st = page_range(m, offset, length, &start, &len, err);
    if (st != LM_OK || len == 0) return st;
    lm_prefetch(m, offset, length, NULL); /* a hint only: the read pass below does the work */
    size_t page = lm_page_size();
    volatile uint8_t sink = 0;
    const uint8_t *end = m->addr + m->size;
    for (const uint8_t *q = start < m->addr ? m->addr : start; q < start + len && q < end; q += page)
        sink ^= *(volatile const uint8_t *)q;
    (void)sink;
    return LM_OK;
}

lm_status lm_advise(const lm_map *m, lm_advice advice, lm_error *err) {
    /* Windows takes the access pattern at CreateFileW time only (FILE_FLAG_RANDOM_ACCESS). */
    (void)advice;
    if (!m || !m->addr) return fail(err, LM_ERR_RANGE, "the file is not mapped");
    return LM_OK;
}

lm_status lm_lock(const lm_map *m, lm_error *err) {
    if (!m || !m->addr) return fail(err, LM_ERR_RANGE, "the file is not mapped");
    if (!VirtualLock((LPVOID)m->addr, (SIZE_T)m->size))
        return fail_win(err, GetLastError(), "VirtualLock (the working-set quota may be too small)");
    return LM_OK;
}

lm_status lm_unlock(const lm_map *m, lm_error *err) {
    if (!m || !m->addr) return fail(err, LM_ERR_RANGE, "the file is not mapped");
    if (!VirtualUnlock((LPVOID)m->addr, (SIZE_T)m->size)) {
        DWORD e = GetLastError();
        if (e != ERROR_NOT_LOCKED) return fail_win(err, e, "VirtualUnlock");
    }
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
    if (!lm_residency_method(m)) return fail(err, LM_ERR_HIDDEN, "a private copy is not the file");
    size_t page = lm_page_size();
    size_t npages = (len + page - 1) / page;
    enum { CHUNK = 4096 };
    PSAPI_WORKING_SET_EX_INFORMATION *info = (PSAPI_WORKING_SET_EX_INFORMATION *)HeapAlloc(
        GetProcessHeap(), 0, CHUNK * sizeof(PSAPI_WORKING_SET_EX_INFORMATION));
    if (!info) return fail_win(err, ERROR_NOT_ENOUGH_MEMORY, "HeapAlloc");
    for (size_t done = 0; done < npages; done += CHUNK) {
        size_t n = npages - done < CHUNK ? npages - done : CHUNK;
        for (size_t i = 0; i < n; i++) info[i].VirtualAddress = start + (done + i) * page;
        if (!QueryWorkingSetEx(GetCurrentProcess(), info, (DWORD)(n * sizeof *info))) {
            DWORD e = GetLastError();
            HeapFree(GetProcessHeap(), 0, info);
            return fail_win(err, e, "QueryWorkingSetEx");
        }
        for (size_t i = 0; i < n; i++) *resident += info[i].VirtualAttributes.Valid ? 1u : 0u;
    }
    HeapFree(GetProcessHeap(), 0, info);
    *total = npages;
    return LM_OK;
}

lm_status lm_evict(const lm_map *m, uint64_t offset, uint64_t length, lm_error *err) {
    (void)m;
    (void)offset;
    (void)length;
    return fail(err, LM_ERR_UNSUPPORTED,
                "Windows has no call to drop one file's pages from the standby list");
}

int lm_cpu_feature(int feature) {
#if defined(_M_ARM64) || defined(__aarch64__)
#ifndef PF_ARM_V82_DP_INSTRUCTIONS_AVAILABLE
#define PF_ARM_V82_DP_INSTRUCTIONS_AVAILABLE 43
#endif
    if (feature == LM_CPU_ARM_DOTPROD) return IsProcessorFeaturePresent(PF_ARM_V82_DP_INSTRUCTIONS_AVAILABLE) != 0;
#endif
    (void)feature;
    return 0;
}
