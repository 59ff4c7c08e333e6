"""Float kernels of the forward pass (RMSNorm, RoPE, SiLU x up, softmax, attention) over rows.

Each function takes C-contiguous float32 arrays and works in place or into `out`; tokens or
heads are shared out over OpenMP threads where there is enough work. llamacy/_ops.py checks
shapes and holds the numpy twin of each.
"""
from cython.parallel cimport prange, threadid
from libc.stdint cimport int64_t, uint16_t
from libc.math cimport sqrt
from libc.stdlib cimport free, malloc

from libc.string cimport strcmp

lm_ops_init()
# the environment's choice, read by the same function as the matrix kernels' (csrc/simd.h);
# llamacy._matmul.select() switches both later
lm_ops_select(strcmp(lm_simd_requested(), "scalar") != 0)


def select(bint simd):
    """Use the SIMD versions of attention and SiLU where the CPU has them (True), or the generic
    loops (False). llamacy._matmul.select() switches these together with the matrix kernels.
    Returns whether the SIMD versions are in use."""
    return bool(lm_ops_select(simd))


def rmsnorm(const float[:, ::1] x, const float[::1] w, float eps, float[:, ::1] out):
    cdef int64_t T = x.shape[0], n = x.shape[1], t
    with nogil:
        for t in range(T):
            lm_rmsnorm(&x[t, 0], &w[0], eps, &out[t, 0], n)


def rope(float[:, ::1] x, const float[:, ::1] cos, const float[:, ::1] sin, const int64_t[::1] pos,
         int64_t n_heads, int64_t head_dim, int64_t n_rot):
    """x: (T, n_heads*head_dim) in place; cos/sin: (n_ctx, n_rot/2); pos: (T,)."""
    cdef int64_t T = x.shape[0], t
    with nogil:
        for t in range(T):
            lm_rope(&x[t, 0], &cos[pos[t], 0], &sin[pos[t], 0], n_heads, head_dim, n_rot)


def silu_mul(float[:, ::1] g, const float[:, ::1] u):
    cdef int64_t T = g.shape[0], n = g.shape[1], t
    with nogil:
        for t in range(T):
            lm_silu_mul(&g[t, 0], &u[t, 0], n)


def softmax(float[::1] x):
    if x.shape[0]:
        lm_softmax(&x[0], x.shape[0])


# multiply-adds (query rows x heads x positions x head_dim) from which attention uses its threads
cdef int64_t ATTENTION_MIN_PARALLEL_WORK = 1 << 18


ctypedef fused cache_t:
    float
    uint16_t  # float16 bits


cdef inline void _attend(const float *q, const cache_t *kc, const cache_t *vc, int64_t kv_dim, int64_t n_kv,
                         int64_t head_dim, float scale, float *att, float *out) noexcept nogil:
    if cache_t is float:
        lm_attend_f32(q, kc, vc, kv_dim, n_kv, head_dim, scale, att, out)
    else:
        lm_attend_f16(q, kc, vc, kv_dim, n_kv, head_dim, scale, att, out)


def attention(const float[:, ::1] q, const cache_t[:, :, ::1] kc, const cache_t[:, :, ::1] vc,
              const int64_t[::1] slot, const int64_t[::1] pos, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
              float[:, ::1] out, int n_threads=1):
    """Causal grouped-query attention for T query rows, each of its own sequence and position.

    q, out: (T, n_heads*head_dim); kc, vc: (n_seq, n_ctx, n_kv_heads*head_dim), float32 or
    float16 bits, holding positions 0..pos[t] of sequence slot[t]; slot, pos: (T,).
    """
    cdef int64_t T = q.shape[0], kv_dim = kc.shape[2], n_ctx = kc.shape[1], group = n_heads // n_kv_heads, i, t, h
    cdef float scale = 1.0 / sqrt(<double>head_dim)
    cdef int64_t work = 0
    for t in range(T):
        work += (pos[t] + 1) * n_heads * head_dim
    # below ~250k multiply-adds per call (tens of microseconds) waking a second thread costs more
    n_threads = max(1, n_threads) if work >= ATTENTION_MIN_PARALLEL_WORK else 1
    # (n_threads, n_ctx) attention scores: one row per thread, allocated once per call
    cdef float *scores = <float *>malloc(n_threads * n_ctx * sizeof(float))
    if scores == NULL:
        raise MemoryError()
    try:
        with nogil:
            for i in prange(T * n_heads, num_threads=n_threads, schedule="dynamic"):
                t = i // n_heads
                h = i % n_heads
                _attend(&q[t, h * head_dim], &kc[slot[t], 0, (h // group) * head_dim],
                        &vc[slot[t], 0, (h // group) * head_dim], kv_dim, pos[t] + 1, head_dim, scale,
                        scores + threadid() * n_ctx, &out[t, h * head_dim])
    finally:
        free(scores)


def cache_store(const float[:, ::1] x, cache_t[:, :, ::1] cache, const int64_t[::1] slot, const int64_t[::1] pos):
    """cache[slot[t], pos[t], :] = x[t] (rounded to float16 for a float16 cache)."""
    cdef int64_t T = x.shape[0], n = x.shape[1], t, j
    with nogil:
        for t in range(T):
            if cache_t is float:
                for j in range(n):
                    cache[slot[t], pos[t], j] = x[t, j]
            else:  # F16C / NEON where the CPU has them (7B decode: 1.38 -> 1.07 ms per token, 64 stores)
                lm_f2h_row(&x[t, 0], &cache[slot[t], pos[t], 0], n)


def f32_to_f16(const float[::1] x, uint16_t[::1] out):
    cdef int64_t i
    for i in range(x.shape[0]):
        out[i] = lm_f2h(x[i])


def f16_to_f32(const uint16_t[::1] x, float[::1] out):
    cdef int64_t i
    for i in range(x.shape[0]):
        out[i] = lm_h2f(x[i])
