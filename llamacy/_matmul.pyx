"""Weight x activation products over zero-copy weights: out[t, r] = dot(W[r], x[t]).

For quantized weights the activation rows are quantized once per call to 8-bit blocks (Q8_0,
Q8_1 or Q8_K, as ggml pairs them) and every weight row is dotted with integer arithmetic.
Rows are shared out over OpenMP threads; the weight memory is only read.
"""
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc

cdef extern from *:
    """
    #ifdef _OPENMP
    #define LM_OPENMP 1
    #else
    #define LM_OPENMP 0
    #endif
    """
    int LM_OPENMP


def openmp():
    """True when this build shares rows out with OpenMP."""
    return bool(LM_OPENMP)


# bytes of one activation block and elements it covers, by activation format
cdef int64_t ACT_BLOCK_BYTES[4]
cdef int64_t ACT_BLOCK_ELEMS[4]
ACT_BLOCK_BYTES[:] = [4, 34, 36, 292]
ACT_BLOCK_ELEMS[:] = [1, 32, 32, 256]


def select(str want="auto"):
    """Choose the kernel set ("auto", "scalar", "avx2", "avx512vnni"); returns its name."""
    cdef bytes b = want.encode()
    cdef const char *got = lm_select(b)
    if got == NULL:
        raise ValueError(f"kernel set {want!r} is not supported on this CPU (have: {available()})")
    return got.decode()


def current():
    return lm_k.name.decode()


def available():
    cdef const char *names[8]
    cdef int n = lm_available(names, 8)
    return [names[i].decode() for i in range(n)]


def activation_bytes(int wtype, int64_t n):
    """Bytes of one quantized activation row of n elements for weight type wtype."""
    cdef int at = <int>lm_act_of[wtype]
    return n // ACT_BLOCK_ELEMS[at] * ACT_BLOCK_BYTES[at]


def matmul(const unsigned char[:, ::1] w, int wtype, const float[:, ::1] x, float[:, ::1] out,
           int n_threads=1):
    """out[t, r] = W[r] . x[t] for every token t and weight row r.

    w: (rows, row bytes) raw weight rows; x: (T, n) float32; out: (T, rows) float32.
    The caller (llamacy.matmul) checks types and shapes.
    """
    cdef int64_t rows = w.shape[0], T = x.shape[0], n = x.shape[1], r, t
    cdef int64_t wstride = w.shape[1]
    cdef int at = <int>lm_act_of[wtype]
    cdef lm_dot_fn dot = lm_k.dot[wtype]
    cdef lm_quantize_fn quant = lm_k.quantize[at]
    cdef int64_t astride = n // ACT_BLOCK_ELEMS[at] * ACT_BLOCK_BYTES[at]
    cdef const unsigned char *wp = &w[0, 0]
    cdef float *op = &out[0, 0]
    cdef const float *xp = &x[0, 0]
    cdef unsigned char *act = NULL
    cdef const unsigned char *ap
    if rows == 0 or T == 0:
        return
    if at == <int>LM_A_F32:
        ap = <const unsigned char *>xp
    else:
        act = <unsigned char *>malloc(T * astride)
        if act == NULL:
            raise MemoryError()
        with nogil:
            if T > 1 and n_threads > 1:
                for t in prange(T, num_threads=n_threads, schedule="static"):
                    quant(xp + t * n, act + t * astride, n)
            else:
                for t in range(T):
                    quant(xp + t * n, act + t * astride, n)
        ap = act
    try:
        with nogil:
            if n_threads > 1:
                for r in prange(rows, num_threads=n_threads, schedule="static"):
                    for t in range(T):
                        op[t * rows + r] = dot(n, wp + r * wstride, <const float *>(ap + t * astride))
            else:
                for r in range(rows):
                    for t in range(T):
                        op[t * rows + r] = dot(n, wp + r * wstride, <const float *>(ap + t * astride))
    finally:
        free(act)


def quantize_activations(int wtype, const float[::1] x):
    """The activation row as the kernels quantize it for weight type wtype (bytes)."""
    cdef int64_t n = x.shape[0]
    cdef int at = <int>lm_act_of[wtype]
    if at == <int>LM_A_F32:
        raise ValueError("float weights take float activations")
    cdef bytearray buf = bytearray(n // ACT_BLOCK_ELEMS[at] * ACT_BLOCK_BYTES[at])
    cdef unsigned char[::1] view = buf
    lm_k.quantize[at](&x[0], &view[0], n)
    return bytes(buf)
