# Declarations of csrc/ops.h: the float kernels of the forward pass.
from libc.stdint cimport int64_t, uint16_t


cdef extern from "csrc/ops.h" nogil:
    void lm_rmsnorm(const float *x, const float *w, float eps, float *out, int64_t n)
    void lm_rope(float *x, const float *cs, const float *sn, int64_t n_heads, int64_t head_dim, int64_t n_rot)
    void lm_silu_mul(float *g, const float *u, int64_t n)
    void lm_f2h_row(const float *x, uint16_t *out, int64_t n)
    void lm_softmax(float *x, int64_t n)
    void lm_attend_f32(const float *q, const float *k, const float *v, int64_t stride, int64_t n_kv,
                       int64_t head_dim, float scale, float *att, float *out)
    void lm_attend_f16(const float *q, const uint16_t *k, const uint16_t *v, int64_t stride, int64_t n_kv,
                       int64_t head_dim, float scale, float *att, float *out)
    void lm_ops_init()
    int lm_ops_select(int simd)
    const char *lm_simd_requested()
    float lm_h2f(uint16_t h)
    uint16_t lm_f2h(float f)
