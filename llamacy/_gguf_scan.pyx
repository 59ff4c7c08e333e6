"""The one hot loop of GGUF header parsing: arrays of strings (a LLaMA vocabulary holds
32000 of them). Each length is checked against the end of the buffer before it is used."""
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memcpy


cdef inline unsigned long long _u64(const unsigned char *p) noexcept nogil:
    return (<unsigned long long>p[0] | <unsigned long long>p[1] << 8 |
            <unsigned long long>p[2] << 16 | <unsigned long long>p[3] << 24 |
            <unsigned long long>p[4] << 32 | <unsigned long long>p[5] << 40 |
            <unsigned long long>p[6] << 48 | <unsigned long long>p[7] << 56)


class StringOverrun(Exception):
    """args: (index of the string, offset of its length field, its length or -1, bytes left)."""


def read_strings(const unsigned char[::1] buf, Py_ssize_t pos, Py_ssize_t count):
    """Decode ``count`` GGUF strings (u64 length, UTF-8 bytes) from ``pos``.

    Returns (list of str, offset after the last one). Invalid UTF-8 is kept through
    surrogate escapes. Raises StringOverrun when a length field or string runs past the end.
    """
    cdef Py_ssize_t end = buf.shape[0], i
    cdef unsigned long long n
    cdef list out = [None] * count
    cdef const unsigned char *base = &buf[0] if end > 0 else NULL
    for i in range(count):
        if end - pos < 8:
            raise StringOverrun(i, pos, -1, end - pos)
        n = _u64(base + pos)
        if n > <unsigned long long>(end - pos - 8):
            raise StringOverrun(i, pos, n, end - pos - 8)
        out[i] = PyUnicode_DecodeUTF8(<const char *>(base + pos + 8), <Py_ssize_t>n,
                                      "surrogateescape")
        pos += 8 + <Py_ssize_t>n
    return out, pos


cdef inline unsigned int _u32(const unsigned char *p) noexcept nogil:
    return (<unsigned int>p[0] | <unsigned int>p[1] << 8 | <unsigned int>p[2] << 16 |
            <unsigned int>p[3] << 24)


class TensorInfoOverrun(Exception):
    """args: (tensor index, field name, offset of the field, bytes needed, bytes left)."""


class TensorInfoBadDims(Exception):
    """args: (tensor index, offset of n_dims, n_dims)."""


def read_tensor_infos(const unsigned char[::1] buf, Py_ssize_t pos, Py_ssize_t count, int max_dims):
    """Scan ``count`` tensor-info entries from ``pos``, checking every read against the end.

    Returns ([(entry_offset, name, ne, type, offset, dims_offset, type_offset, offset_offset)],
    offset after the last entry). Semantic checks (types, alignment, sizes) are the caller's.
    """
    cdef Py_ssize_t end = buf.shape[0], i, at, j
    cdef unsigned long long n
    cdef unsigned int nd
    cdef const unsigned char *base = &buf[0] if end > 0 else NULL
    cdef list out = [None] * count
    cdef object name
    cdef tuple ne
    for i in range(count):
        at = pos
        if end - pos < 8:
            raise TensorInfoOverrun(i, "name length", pos, 8, end - pos)
        n = _u64(base + pos)
        if n > <unsigned long long>(end - pos - 8):
            raise TensorInfoOverrun(i, "name", pos, n, end - pos - 8)
        name = PyUnicode_DecodeUTF8(<const char *>(base + pos + 8), <Py_ssize_t>n, "surrogateescape")
        pos += 8 + <Py_ssize_t>n
        if end - pos < 4:
            raise TensorInfoOverrun(i, "dimension count", pos, 4, end - pos)
        nd = _u32(base + pos)
        if nd < 1 or nd > <unsigned int>max_dims:
            raise TensorInfoBadDims(i, pos, nd)
        dims_at = pos
        pos += 4
        if end - pos < 8 * <Py_ssize_t>nd + 12:
            raise TensorInfoOverrun(i, "dimensions, type and offset", pos, 8 * nd + 12, end - pos)
        ne = tuple([_u64(base + pos + 8 * j) for j in range(nd)])
        pos += 8 * nd
        out[i] = (at, name, ne, _u32(base + pos), _u64(base + pos + 4), dims_at, pos, pos + 4)
        pos += 12
    return out, pos


def scan_strings(const unsigned char[::1] buf, Py_ssize_t pos, Py_ssize_t count, long long[::1] offsets):
    """Check ``count`` GGUF strings from ``pos`` without decoding them: offsets[i] (relative to
    pos) is where string i's length field starts, offsets[count] the end. Returns the end offset.
    Raises StringOverrun like read_strings."""
    cdef Py_ssize_t end = buf.shape[0], i, start = pos
    cdef unsigned long long n
    cdef const unsigned char *base = &buf[0] if end > 0 else NULL
    for i in range(count):
        offsets[i] = pos - start
        if end - pos < 8:
            raise StringOverrun(i, pos, -1, end - pos)
        n = _u64(base + pos)
        if n > <unsigned long long>(end - pos - 8):
            raise StringOverrun(i, pos, n, end - pos - 8)
        pos += 8 + <Py_ssize_t>n
    offsets[count] = pos - start
    return pos


cdef inline Py_ssize_t _put_varint(unsigned char *out, unsigned long long v) noexcept nogil:
    cdef Py_ssize_t i = 0
    while v >= 0x80:
        out[i] = <unsigned char>(v & 0x7F) | 0x80
        v >>= 7
        i += 1
    out[i] = <unsigned char>v
    return i + 1


def sentencepiece_pieces(const unsigned char[::1] raw, const long long[::1] offsets, const double[::1] scores,
                         const long long[::1] types):
    """A GGUF string array (as StringArray holds it) with scores and token types, written as the
    `pieces` of a SentencePiece ModelProto in protobuf wire format: for each piece, field 1 (a
    message) holding piece = 1 (bytes), score = 2 (float), type = 3 (enum). No str objects."""
    cdef Py_ssize_t n = offsets.shape[0] - 1, i, total = 0, pos = 0, k
    cdef unsigned long long ln, body
    cdef float f
    for i in range(n):
        total += (offsets[i + 1] - offsets[i] - 8) + 32
    out = bytearray(total)
    cdef unsigned char[::1] o = out
    cdef unsigned char *p = &o[0] if total > 0 else NULL
    for i in range(n):
        ln = offsets[i + 1] - offsets[i] - 8
        body = 1 + (1 if ln < 128 else (2 if ln < 16384 else 3)) + ln + 5 + 2
        p[pos] = 0x0A
        pos += 1
        pos += _put_varint(p + pos, body)
        p[pos] = 0x0A
        pos += 1
        pos += _put_varint(p + pos, ln)
        for k in range(<Py_ssize_t>ln):
            p[pos + k] = raw[offsets[i] + 8 + k]
        pos += ln
        p[pos] = 0x15
        f = <float>scores[i]
        memcpy(p + pos + 1, &f, 4)  # little-endian hosts (x86, arm64)
        pos += 5
        p[pos] = 0x18
        p[pos + 1] = <unsigned char>(types[i] if 1 <= types[i] <= 6 else 1)
        pos += 2
    return bytes(out[:pos])
