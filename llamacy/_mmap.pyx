"""MappedFile: a whole file mapped read-only and shared, over platform/llamacy_map.h.

Lifetime rule: ``close()`` never pulls memory from under a live view. If numpy arrays or
memoryviews still export the mapping, ``close()`` marks the file closed (no new views, the
methods raise) and the unmap happens when the last view is released. This is where the C
layer's status codes become Python exceptions -- the one place.
"""
import errno as _errno
import os
import sys
import warnings

from cpython.buffer cimport PyBuffer_FillInfo
from libc.stdint cimport uint64_t

from llamacy._errors import MappingError
from llamacy._residency import mincore_is_truthful

_PREFETCH = ("none", "willneed", "populate")
_ADVICE = {"normal": LM_ADVICE_NORMAL, "random": LM_ADVICE_RANDOM,
           "sequential": LM_ADVICE_SEQUENTIAL}

PAGE_SIZE = lm_page_size()
IMPLEMENTATION = lm_implementation().decode()
RESIDENCY_METHOD = lm_residency_method().decode()


cdef object _raise(lm_status st, lm_error *err, object path):
    """Turn a C status into the matching Python exception (always raises)."""
    cdef str text = err.message.decode("utf-8", "replace")
    if st == LM_ERR_OS:
        if sys.platform == "win32":
            raise OSError(None, text, path, err.code)
        raise OSError(err.code, text, path)
    if st == LM_ERR_ISDIR:
        raise IsADirectoryError(_errno.EISDIR, "Is a directory (cannot map it)", path)
    if st == LM_ERR_EMPTY:
        raise MappingError(f"cannot map {path!s}: the file is empty (0 bytes)")
    if st == LM_ERR_TOO_LARGE:
        raise MappingError(f"cannot map {path!s}: {text}")
    if st == LM_ERR_RANGE:
        raise ValueError(text)
    raise MappingError(f"{path!s}: {text}")


cdef class MappedFile:
    """A file mapped read-only and shared; supports the buffer protocol (read-only).

    ``MappedFile(path, *, prefetch="none"|"willneed"|"populate", lock=False, access=None)``;
    access ("normal", "random", "sequential") sets the access-pattern hint right after mapping.
    """

    def __cinit__(self):
        self._m.addr = NULL
        self._m.size = 0
        self._m.file = -1
        self._m.mapping = 0
        self._exports = 0
        self._closed = True
        self._locked = False
        self._truthful = None

    def __init__(self, path, *, prefetch="none", lock=False, access=None):
        if access is not None and access not in _ADVICE:
            raise ValueError(f"access must be one of {tuple(_ADVICE)}, not {access!r}")
        if prefetch not in _PREFETCH:
            raise ValueError(f"prefetch must be one of {_PREFETCH}, not {prefetch!r}")
        self.path = os.fspath(path)
        if isinstance(self.path, bytes):
            self.path = os.fsdecode(self.path)
        cdef bytes cpath = (self.path.encode("utf-8") if sys.platform == "win32"
                            else os.fsencode(self.path))
        if b"\0" in cpath:
            raise ValueError("embedded NUL character in path")
        cdef const char *c = cpath
        cdef unsigned flags = LM_OPEN_POPULATE if prefetch == "populate" else 0
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
        if st != LM_OK:
            text = err.message.decode("utf-8", "replace")
            hint = ""
            if sys.platform != "win32":
                try:
                    import resource
                    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
                    limit = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft} bytes"
                    hint = (f"; RLIMIT_MEMLOCK is {limit} and {self._m.size} bytes are needed: "
                            "raise it (ulimit -l, or memlock in /etc/security/limits.conf) "
                            "or grant CAP_IPC_LOCK")
                except (ImportError, ValueError, OSError):
                    pass
            else:
                hint = "; raise the process's minimum working-set size (SetProcessWorkingSetSize)"
            warnings.warn(f"could not lock {self.path} in memory ({text}){hint}",
                          RuntimeWarning, stacklevel=2)
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
        if self._truthful is None:
            self._truthful = mincore_is_truthful(self.path)
        if not self._truthful:
            return None
        cdef lm_error err
        cdef lm_status st
        with nogil:
            st = lm_residency(&self._m, o, n, &res, &tot, &err)
        if st != LM_OK:
            _raise(st, &err, self.path)
        return res, tot

    def residency(self, offset=0, length=None):
        """Fraction (0..1) of the range's pages resident in memory, or None when unknown.

        POSIX: page-cache residency (mincore). Windows: this process's working set.
        None where the OS hides the answer (Linux >= 5.2 for a file the caller neither
        owns nor may write).
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
