"""MappedFile: a whole file mapped read-only and shared (or read into a private copy), and
AnonymousMemory: zeroed read-write memory of our own; both over platform/llamacy_map.h.

Lifetime rule: ``close()`` never pulls memory from under a live view. If numpy arrays or
memoryviews still export the mapping, ``close()`` marks the file closed (no new views, the
methods raise) and the unmap happens when the last view is released. This is where the C
layer's status codes become Python exceptions -- the one place.
"""
import errno as _errno
import os
import warnings

from cpython.buffer cimport PyBuffer_FillInfo
from libc.stdint cimport uint64_t

from llamacy._errors import MappingError, ModelFileChangedError, ResourceError

_PREFETCH = ("none", "willneed", "populate")
_ADVICE = {"normal": LM_ADVICE_NORMAL, "random": LM_ADVICE_RANDOM,
           "sequential": LM_ADVICE_SEQUENTIAL}

PAGE_SIZE = lm_page_size()
IMPLEMENTATION = lm_implementation().decode()


cdef object _raise(lm_status st, lm_error *err, object path):
    """Turn a C status into the matching Python exception (always raises)."""
    cdef str text = err.message.decode("utf-8", "replace")
    if st == LM_ERR_OS:
        if err.winerror:  # Python maps a Windows error code to errno and the OSError subclass
            raise OSError(None, text, path, err.code)
        raise OSError(err.code or None, text, path)
    if st == LM_ERR_ISDIR:
        raise IsADirectoryError(_errno.EISDIR, "Is a directory (cannot map it)", path)
    if st == LM_ERR_EMPTY:
        raise MappingError(f"cannot map {path!s}: the file is empty (0 bytes)")
    if st == LM_ERR_TOO_LARGE:
        raise MappingError(f"cannot map {path!s}: {text}")
    if st == LM_ERR_RANGE:
        raise ValueError(text)
    raise MappingError(f"{path!s}: {text}")


def try_lock_file(int fd, path=None):
    """Lock an open file exclusively until it is closed: True, or False when another process
    holds the lock (platform/llamacy_map.h: lm_lock_file). OSError when the OS fails."""
    cdef lm_error err
    cdef lm_status st = lm_lock_file(fd, &err)
    if st == LM_ERR_BUSY:
        return False
    if st != LM_OK:
        _raise(st, &err, path)
    return True


cdef class MappedFile:
    """A file mapped read-only and shared; supports the buffer protocol (read-only).

    ``MappedFile(path, *, prefetch="none"|"willneed"|"populate", lock=False, access=None,
    private=False)``; access ("normal", "random", "sequential") sets the access-pattern hint
    right after mapping. ``private=True`` reads the file into this process's own memory instead
    (llama.cpp's --no-mmap, the slow path kept for comparison): same interface, residency unknown.
    """

    def __cinit__(self):
        self._m.addr = NULL
        self._m.size = 0
        self._m.file = -1
        self._m.mapping = 0
        self._exports = 0
        self._closed = True
        self._locked = False

    def __init__(self, path, *, prefetch="none", lock=False, access=None, private=False):
        if access is not None and access not in _ADVICE:
            raise ValueError(f"access must be one of {tuple(_ADVICE)}, not {access!r}")
        if prefetch not in _PREFETCH:
            raise ValueError(f"prefetch must be one of {_PREFETCH}, not {prefetch!r}")
        self.path = os.fspath(path)
        if isinstance(self.path, bytes):
            self.path = os.fsdecode(self.path)
        cdef bytes cpath = os.fsencode(self.path)  # the OS's bytes; UTF-8 on Windows
        if b"\0" in cpath:
            raise ValueError("embedded NUL character in path")
        cdef const char *c = cpath
        cdef unsigned flags = (LM_OPEN_POPULATE if prefetch == "populate" else 0) | (LM_OPEN_PRIVATE if private else 0)
        cdef lm_error err
        cdef lm_status st
        with nogil:
            st = lm_open(c, flags, &self._m, &err)
        if st != LM_OK:
            _raise(st, &err, self.path)
        self._closed = False
        if access is not None:
            self.advise(access)
        if prefetch == "willneed":
            self.prefetch()
        if lock:
            self.lock()

    def __dealloc__(self):
        cdef lm_error err
        if self._m.addr != NULL:
            lm_close(&self._m, &err)

    # -- buffer protocol: read-only bytes of the whole file -------------------------------
    def __getbuffer__(self, Py_buffer *buffer, int flags):
        if self._closed:
            raise ValueError(f"{self.path}: the mapping is closed")
        PyBuffer_FillInfo(buffer, self, <void *>self._m.addr, <Py_ssize_t>self._m.size, 1, flags)
        self._exports += 1

    def __releasebuffer__(self, Py_buffer *buffer):
        cdef lm_error err
        self._exports -= 1
        if self._exports == 0 and self._closed and self._m.addr != NULL:
            lm_close(&self._m, &err)

    cdef int _check_open(self) except -1:
        if self._closed:
            raise ValueError(f"{self.path}: the mapping is closed")
        return 0

    cdef tuple _range(self, object offset, object length):
        self._check_open()
        if length is None:
            length = self._m.size - offset if 0 <= offset <= self._m.size else -1
        if offset < 0 or length < 0 or offset + length > self._m.size:
            raise ValueError(f"range [{offset}, {offset}+{length}) is outside the file "
                             f"({self._m.size} bytes)")
        return offset, length

    # -- properties -------------------------------------------------------------------------
    @property
    def size(self):
        """Bytes mapped (the file's size when it was opened)."""
        return self._m.size

    @property
    def address(self):
        """The mapping's start address (an int), 0 once unmapped."""
        return <size_t>self._m.addr

    @property
    def closed(self):
        return self._closed

    @property
    def private(self):
        """True for a private copy of the file (``private=True``), False for the shared mapping."""
        return self._m.kind == LM_MAP_COPY

    def check_unchanged(self):
        """Raise ModelFileChangedError if the file was truncated or written in place since it
        was mapped (its size or modification time changed). A file renamed over the path is
        not a change: this mapping keeps the old file, whole."""
        self._check_open()
        cdef int changed = 0
        cdef lm_error err
        cdef lm_status st = lm_file_changed(&self._m, &changed, &err)
        if st != LM_OK:
            _raise(st, &err, self.path)
        if changed:
            raise ModelFileChangedError(
                f"{self.path} was truncated or overwritten while mapped; reading it now could kill the process. "
                "Replace a model by writing a new file and renaming it over the old one, then open it again")

    @property
    def residency_method(self):
        """How residency() counts: "cachestat", "mincore" or "QueryWorkingSetEx"; None when the
        OS will not tell for this file (or this is a private copy)."""
        self._check_open()
        cdef const char *m = lm_residency_method(&self._m)
        return None if m == NULL else m.decode()

    @property
    def locked(self):
        return self._locked

    @property
    def exports(self):
        """How many buffer views of the mapping are alive."""
        return self._exports

    def __len__(self):
        return self._m.size

    def __repr__(self):
        state = "closed" if self._closed else f"{self._m.size} bytes at 0x{self.address:x}"
        return f"<MappedFile {self.path!r} {state}>"

    # -- OS hints -----------------------------------------------------------------------------
    def prefetch(self, offset=0, length=None):
        """Ask the OS to read ahead [offset, offset+length) (WILLNEED); returns at once."""
        cdef uint64_t o, n
        o, n = self._range(offset, length)
        cdef lm_error err
        cdef lm_status st
        with nogil:
            st = lm_prefetch(&self._m, o, n, &err)
        if st != LM_OK:
            _raise(st, &err, self.path)

    def populate(self, offset=0, length=None):
        """Fault [offset, offset+length) in now (blocks until the pages are resident)."""
        cdef uint64_t o, n
        o, n = self._range(offset, length)
        cdef lm_error err
        cdef lm_status st
        with nogil:
            st = lm_populate(&self._m, o, n, &err)
        if st != LM_OK:
            _raise(st, &err, self.path)

    def advise(self, pattern):
        """Access-pattern hint for the whole mapping: "normal", "random" or "sequential"."""
        self._check_open()
        if pattern not in _ADVICE:
            raise ValueError(f"pattern must be one of {tuple(_ADVICE)}, not {pattern!r}")
        cdef lm_error err
        cdef lm_status st = lm_advise(&self._m, _ADVICE[pattern], &err)
        if st != LM_OK:
            _raise(st, &err, self.path)

    def lock(self):
        """Pin the mapping in RAM. On refusal, warn (with what to change) and return False."""
        self._check_open()
        cdef lm_error err
        cdef lm_status st
        with nogil:
            st = lm_lock(&self._m, &err)
        cdef char advice[512]
        if st != LM_OK:
            lm_lock_advice(&self._m, advice, sizeof(advice))
            warnings.warn(f"could not lock {self.path} in memory ({err.message.decode('utf-8', 'replace')}); "
                          f"{advice.decode('utf-8', 'replace')}", RuntimeWarning, stacklevel=2)
            return False
        self._locked = True
        return True

    def unlock(self):
        self._check_open()
        cdef lm_error err
        cdef lm_status st = lm_unlock(&self._m, &err)
        if st != LM_OK:
            _raise(st, &err, self.path)
        self._locked = False

    # -- residency and eviction ------------------------------------------------------------
    def residency_counts(self, offset=0, length=None):
        """(resident_pages, total_pages) of a range, or None when the OS will not tell."""
        cdef uint64_t o, n, res = 0, tot = 0
        o, n = self._range(offset, length)
        cdef lm_error err
        cdef lm_status st
        with nogil:
            st = lm_residency(&self._m, o, n, &res, &tot, &err)
        if st == LM_ERR_HIDDEN:
            return None
        if st != LM_OK:
            _raise(st, &err, self.path)
        return res, tot

    def residency(self, offset=0, length=None):
        """Fraction (0..1) of the range's pages resident in memory, or None when unknown.

        By residency_method: the page cache (cachestat, mincore), or on Windows this process's
        working set. None where the OS hides the answer (Linux >= 5.2 for a file the caller
        neither owns nor may write) and for a private copy.
        """
        counts = self.residency_counts(offset, length)
        if counts is None:
            return None
        res, tot = counts
        return 1.0 if tot == 0 else res / tot

    def evict(self, offset=0, length=None):
        """Drop the range's clean pages from the page cache. False where the OS cannot."""
        cdef uint64_t o, n
        o, n = self._range(offset, length)
        cdef lm_error err
        cdef lm_status st
        with nogil:
            st = lm_evict(&self._m, o, n, &err)
        if st == LM_ERR_UNSUPPORTED:
            return False
        if st != LM_OK:
            _raise(st, &err, self.path)
        return True

    # -- lifetime -------------------------------------------------------------------------
    def close(self):
        """Unmap now, or -- while views are alive -- as soon as the last one is released."""
        cdef lm_error err
        cdef lm_status st
        if self._closed:
            return
        self._closed = True
        if self._locked:
            lm_unlock(&self._m, &err)
            self._locked = False
        if self._exports == 0:
            st = lm_close(&self._m, &err)
            if st != LM_OK:
                _raise(st, &err, self.path)

    def __enter__(self):
        self._check_open()
        return self

    def __exit__(self, *exc):
        self.close()
        return False


cdef class AnonymousMemory:
    """``nbytes`` of zeroed read-write memory of this process's own, in small pages, committed as
    they are first written (the KV cache and scratch buffers: rows never used cost nothing).
    Supports the buffer protocol (writable); freed when the object and every view are gone."""

    def __cinit__(self, nbytes):
        self._exports = 0
        cdef lm_error err
        cdef lm_status st = lm_alloc(<uint64_t>nbytes, &self._m, &err)
        if st != LM_OK:
            if st == LM_ERR_OS and not err.winerror and err.code == _errno.ENOMEM:
                raise ResourceError(f"cannot reserve {nbytes} bytes of memory: "
                                    f"{err.message.decode('utf-8', 'replace')}")
            _raise(st, &err, None)

    def __dealloc__(self):
        cdef lm_error err
        lm_close(&self._m, &err)

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        PyBuffer_FillInfo(buffer, self, <void *>self._m.addr, <Py_ssize_t>self._m.size, 0, flags)
        self._exports += 1

    def __releasebuffer__(self, Py_buffer *buffer):
        self._exports -= 1

    def __len__(self):
        return self._m.size
