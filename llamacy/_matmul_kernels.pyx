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


# token counts from which the 8-token tiles pay for their padding (benchmarks/bench_kernels.py;
# the measurement is in benchmarks/RESULTS.md)
cdef int64_t TILE_MIN_TOKENS = 5
# weight rows per work item of the multi-row kernels (a thread's items are contiguous)
cdef int64_t ROWS_CHUNK = 16
# dotn's tokens per pass over a chunk of rows: their activations (8 x a row's Q8_K blocks, 18 KiB
# for 2048 columns) stay in L1 while the chunk's rows go by; the rows stay in L2 between passes.
# Long rows take fewer tokens per pass, split evenly, at most DOTN_L1_BYTES of activations: 1.1B
# Q4_K_M's ffn_down (5632 columns, 6.3 KiB of Q8_K per token) ran 4 tokens in 7.6 ms a step but 5
# in 12.8 and 8 in 25.8 (51 KiB, past this CPU's 48 KiB L1); with the limit, 5 and 8 take 10.7
# and 15.3 ms, 4 unchanged (benchmarks/RESULTS.md)
cdef int64_t DOTN_TOKENS = 8
cdef int64_t DOTN_L1_BYTES = 26624
# from this many tokens the k-quant tile kernel (16 tokens per tile, zero-padded) takes over
cdef int64_t TILE16_MIN_TOKENS = 12

def weight_types():
    """The kernels' weight types, in kernel-table order: [(GGML type id, activation format)],
    activation 0 = float rows, 1 = Q8_0, 2 = Q8_1, 3 = Q8_K (csrc/kernels.h, LM_WEIGHT_TYPES)."""
    cdef int i
    return [(lm_wtype_ggml[i], <int>lm_act_of[i]) for i in range(<int>LM_W_COUNT)]


def requested():
    """The kernel set the environment asks for (LLAMACY_FORCE_SCALAR=1, LLAMACY_SIMD), or "auto"."""
    return lm_simd_requested().decode()


def select(str want="auto"):
    """Choose the kernel set ("auto", "scalar", "avx2", "avx512vnni", "neon", "neon-dotprod"); returns its name."""
    cdef bytes b = want.encode()
    cdef const char *got = lm_select(b)
    if got == NULL:
        raise ValueError(f"kernel set {want!r} is not supported on this CPU (have: {available()})")
    return got.decode()


def current():
    return lm_k.name.decode()


def available():
    cdef const lm_kernels *sets[8]
    cdef int n = lm_available(sets, 8)
    return [sets[i].name.decode() for i in range(n)]


cdef struct _Act:
    # one call's activations, in every form the chosen kernels read
    int wtype
    int64_t T, n, nb, astride
    const unsigned char *ap  # (T, astride): quantized rows, or the float rows themselves
    unsigned char *act  # owned: the quantized rows (NULL for float weights)
    lm_tile8_q8_0 *tiles  # owned: (ceil(T/8), nb) tiles of 8 tokens, or NULL
    lm_group4_q8_0 *g4  # owned: (T, nb/4) regrouped blocks for the multi-row kernel, or NULL
    lm_tile16_q8_K *t16  # owned: (ceil(T/16), n/256) tiles of 16 tokens for the k-quant tile kernel, or NULL


cdef int _prepare(_Act *a, int wtype, const float *xp, int64_t T, int64_t n, int n_threads) noexcept nogil:
    """Quantize x once (and build the tiles or groups its kernel reads); -1 when out of memory."""
    cdef int at = <int>lm_act_of[wtype]
    cdef lm_quantize_fn quant = lm_k.quantize[at]
    cdef int64_t t
    a.wtype, a.T, a.n, a.nb = wtype, T, n, n // 32
    a.astride = n // lm_act_block_elems[at] * lm_act_block_bytes[at]
    a.act, a.tiles, a.g4, a.t16 = NULL, NULL, NULL, NULL
    if at == <int>LM_A_F32:
        a.ap = <const unsigned char *>xp
        return 0
    a.act = <unsigned char *>malloc(T * a.astride)
    if a.act == NULL:
        return -1
    if T > 1 and n_threads > 1:
        for t in prange(T, num_threads=n_threads, schedule="static"):
            quant(xp + t * n, a.act + t * a.astride, n)
    else:
        for t in range(T):
            quant(xp + t * n, a.act + t * a.astride, n)
    a.ap = a.act
    if lm_k.tile16_rows[wtype] != NULL and T >= TILE16_MIN_TOKENS:
        a.t16 = <lm_tile16_q8_K *>malloc(((T + 15) // 16) * (n // 256) * sizeof(lm_tile16_q8_K))
        if a.t16 == NULL:
            return -1
        lm_tile16_build(a.act, T, n // 256, a.t16)
    elif (lm_k.tile8_rows[wtype] != NULL or lm_k.dot8[wtype] != NULL) and T >= TILE_MIN_TOKENS:
        a.tiles = <lm_tile8_q8_0 *>malloc(((T + 7) // 8) * a.nb * sizeof(lm_tile8_q8_0))
        if a.tiles == NULL:
            return -1
        lm_tile8_build(a.act, T, a.nb, a.tiles)
    elif lm_k.rows[wtype] != NULL and a.nb >= 4:
        a.g4 = <lm_group4_q8_0 *>malloc(T * (a.nb // 4) * sizeof(lm_group4_q8_0))
        if a.g4 == NULL:
            return -1
        lm_group4_build(a.act, T, a.nb, a.g4)
    return 0


cdef void _release(_Act *a) noexcept nogil:
    free(a.act)
    free(a.tiles)
    free(a.g4)
    free(a.t16)
    a.act, a.tiles, a.g4, a.t16 = NULL, NULL, NULL, NULL


cdef enum _Path:
    # how one product is split into units of work, and which kernel a unit runs
    P_ROWS4  # chunks of rows, the multi-row decode kernel over regrouped blocks (Q4_0)
    P_TILE8_ROWS  # chunks of rows x 8-token tiles (Q4_0)
    P_TILE8_PAIRS  # pairs of rows x 8-token tiles (Q8_0)
    P_TILE16  # chunks of rows x 16-token tiles (k-quants)
    P_DOTN  # chunks of rows x 8 tokens at a time (k-quants without tiles)
    P_ROW  # single rows, 4 tokens at a time then one by one


cdef void _run(const _Act *a, const unsigned char *wp, int64_t wstride, int64_t rows, float *op,
               int n_threads) noexcept nogil:
    """out (T, rows) = the prepared activations against `rows` weight rows: the path is chosen
    once from what _prepare built, then its units are shared out over the threads."""
    cdef int wtype = a.wtype
    cdef int64_t chunks = (rows + ROWS_CHUNK - 1) // ROWS_CHUNK, units, u
    cdef _Path path
    if a.g4 != NULL:
        path, units = P_ROWS4, chunks
    elif a.tiles != NULL and lm_k.tile8_rows[wtype] != NULL:
        path, units = P_TILE8_ROWS, chunks
    elif a.tiles != NULL:
        path, units = P_TILE8_PAIRS, (rows + 1) // 2
    elif a.t16 != NULL:
        path, units = P_TILE16, chunks
    elif a.T > 1 and lm_k.dotn[wtype] != NULL:
        path, units = P_DOTN, chunks
    else:
        path, units = P_ROW, rows
    if n_threads > 1:
        for u in prange(units, num_threads=n_threads, schedule="static"):
            _run_unit(a, path, u, wp, wstride, rows, op)
    else:
        for u in range(units):
            _run_unit(a, path, u, wp, wstride, rows, op)


cdef inline void _run_unit(const _Act *a, _Path path, int64_t u, const unsigned char *wp, int64_t wstride,
                           int64_t rows, float *op) noexcept nogil:
    """One unit of _run's path: a chunk of ROWS_CHUNK rows (u-th), a pair of rows, or a row."""
    cdef int wtype = a.wtype
    cdef int64_t r = u * ROWS_CHUNK
    if path == P_ROW:  # first: decode runs a unit per row
        _row(lm_k.dot[wtype], lm_k.dot4[wtype], a.n, wp + u * wstride, a.ap, a.astride, a.T, op + u, rows)
    elif path == P_ROWS4:
        _rows(lm_k.rows[wtype], a.n, wp, wstride, r, rows, a.T, a.g4, a.nb, a.act, a.astride, op)
    elif path == P_TILE8_ROWS:
        _tile_rows(lm_k.tile8_rows[wtype], a.n, wp, wstride, r, rows, a.tiles, a.nb, a.T, op)
    elif path == P_TILE8_PAIRS:
        _rows8(lm_k.dot8[wtype], lm_k.dot8x2[wtype], a.n, wp, wstride, 2 * u, rows, a.tiles, a.nb, a.T, op)
    elif path == P_TILE16:
        lm_k.tile16_rows[wtype](a.n, wp + r * wstride, wstride, min(ROWS_CHUNK, rows - r), a.t16, (a.T + 15) // 16,
                                a.T, op + r, rows)
    else:
        _dotn_rows(lm_k.dotn[wtype], a.n, wp, wstride, r, rows, a.ap, a.astride, a.T, op)


def matmul(const unsigned char[:, ::1] w, int wtype, const float[:, ::1] x, float[:, ::1] out,
           int n_threads=1):
    """out[t, r] = W[r] . x[t] for every token t and weight row r.

    w: (rows, row bytes) raw weight rows; x: (T, n) float32; out: (T, rows) float32.
    The caller (llamacy._matmul) checks types and shapes.
    """
    cdef _Act a
    cdef int ok
    if w.shape[0] == 0 or x.shape[0] == 0:
        return
    with nogil:
        ok = _prepare(&a, wtype, &x[0, 0], x.shape[0], x.shape[1], n_threads)
        if ok == 0:
            _run(&a, &w[0, 0], w.shape[1], w.shape[0], &out[0, 0], n_threads)
        _release(&a)
    if ok != 0:
        raise MemoryError()


def matmul_shared(tuple ws, int wtype, const float[:, ::1] x, tuple outs, int n_threads=1):
    """out_i = x @ W_i.T for several weights of one type that read the same input (Q, K and V;
    gate and up): x is quantized, and its tiles built, once for all of them.

    ws: (rows_i, row bytes) raw weight rows each; outs: (T, rows_i) float32 each."""
    cdef _Act a
    cdef const unsigned char[:, ::1] w
    cdef float[:, ::1] out
    cdef int ok
    cdef Py_ssize_t i
    if x.shape[0] == 0:
        return
    with nogil:
        ok = _prepare(&a, wtype, &x[0, 0], x.shape[0], x.shape[1], n_threads)
    try:
        if ok != 0:
            raise MemoryError()
        for i in range(len(ws)):
            w = ws[i]
            out = outs[i]
            if w.shape[0]:
                with nogil:
                    _run(&a, &w[0, 0], w.shape[1], w.shape[0], &out[0, 0], n_threads)
    finally:
        _release(&a)


cdef inline void _rows(lm_rows_fn rowsfn, int64_t n, const unsigned char *w, int64_t wstride, int64_t r,
                       int64_t rows, int64_t T, const lm_group4_q8_0 *g4, int64_t nb, const unsigned char *act,
                       int64_t astride, float *out) noexcept nogil:
    """Weight rows r .. r+ROWS_CHUNK (fewer at the end) against all T tokens, 4 at a time;
    out is (T, rows)."""
    cdef int64_t cnt = min(ROWS_CHUNK, rows - r), t = 0
    while t < T:
        rowsfn(n, w + r * wstride, wstride, cnt, <int>min(4, T - t), g4 + t * (nb // 4), act + t * astride,
               out + t * rows + r, rows)
        t += 4


cdef inline void _dotn_rows(lm_dotn_fn dotn, int64_t n, const unsigned char *w, int64_t wstride, int64_t r,
                            int64_t rows, const unsigned char *act, int64_t astride, int64_t T,
                            float *out) noexcept nogil:
    """Weight rows r .. r+ROWS_CHUNK (fewer at the end) against all T tokens, DOTN_TOKENS at a time;
    out is (T, rows)."""
    cdef int64_t cnt = min(ROWS_CHUNK, rows - r), t = 0, i
    cdef int64_t most = max(1, min(DOTN_TOKENS, DOTN_L1_BYTES // astride))
    cdef int64_t per_pass = (T + (T + most - 1) // most - 1) // ((T + most - 1) // most)  # even passes
    while t < T:
        for i in range(r, r + cnt):
            dotn(n, w + i * wstride, act + t * astride, astride, min(per_pass, T - t), out + t * rows + i, rows)
        t += per_pass


cdef inline void _tile_rows(lm_tile8_rows_fn trows, int64_t n, const unsigned char *w, int64_t wstride, int64_t r,
                            int64_t rows, const lm_tile8_q8_0 *tiles, int64_t nb, int64_t T, float *out) noexcept nogil:
    """Weight rows r .. r+ROWS_CHUNK (fewer at the end) against every tile of 8 tokens: the chunk's
    weights stay in cache from one tile to the next; out is (T, rows)."""
    cdef int64_t cnt = min(ROWS_CHUNK, rows - r), g
    for g in range((T + 7) // 8):
        trows(n, w + r * wstride, wstride, cnt, tiles + g * nb, <int>min(8, T - 8 * g), out + 8 * g * rows + r, rows)


cdef inline void _rows8(lm_dot8_fn dot8, lm_dot8x2_fn dot8x2, int64_t n, const unsigned char *w, int64_t wstride,
                        int64_t r, int64_t rows, const lm_tile8_q8_0 *tiles, int64_t nb, int64_t T,
                        float *out) noexcept nogil:
    """Weight rows r and r+1 (or r alone, the last) against all T tokens, 8 at a time (the last
    tile zero-padded); out is (T, rows)."""
    cdef float res[16]
    cdef int64_t g, j
    for g in range((T + 7) // 8):
        if r + 1 < rows:
            dot8x2(n, w + r * wstride, w + (r + 1) * wstride, tiles + g * nb, res)
            for j in range(min(8, T - 8 * g)):
                out[(8 * g + j) * rows + r] = res[j]
                out[(8 * g + j) * rows + r + 1] = res[8 + j]
        else:
            dot8(n, w + r * wstride, tiles + g * nb, res)
            for j in range(min(8, T - 8 * g)):
                out[(8 * g + j) * rows + r] = res[j]


cdef inline void _row(lm_dot_fn dot, lm_dot4_fn dot4, int64_t n, const unsigned char *w, const unsigned char *a,
                      int64_t astride, int64_t T, float *out, int64_t ostride) noexcept nogil:
    """One weight row against T activation rows: 4 at a time, then the rest one by one."""
    cdef float four[4]
    cdef int64_t t = 0, j
    while t + 4 <= T:
        dot4(n, w, a + t * astride, astride, four)
        for j in range(4):
            out[(t + j) * ostride] = four[j]
        t += 4
    while t < T:
        out[t * ostride] = dot(n, w, <const float *>(a + t * astride))
        t += 1


def quantize_activations(int wtype, const float[::1] x):
    """The activation row as the kernels quantize it for weight type wtype (bytes)."""
    cdef int64_t n = x.shape[0]
    cdef int at = <int>lm_act_of[wtype]
    if at == <int>LM_A_F32:
        raise ValueError("float weights take float activations")
    cdef bytearray buf = bytearray(n // lm_act_block_elems[at] * lm_act_block_bytes[at])
    cdef unsigned char[::1] view = buf
    lm_k.quantize[at](&x[0], &view[0], n)
    return bytes(buf)
