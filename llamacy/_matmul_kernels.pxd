# Declarations of csrc/dispatch.h: the per-ISA kernel table for weight x activation products.
from libc.stdint cimport int64_t


cdef extern from "csrc/dispatch.h" nogil:
    ctypedef float (*lm_dot_fn)(int64_t n, const void *w, const float *a)
    ctypedef void (*lm_quantize_fn)(const float *x, void *out, int64_t n)
    ctypedef void (*lm_dot4_fn)(int64_t n, const void *w, const void *a, int64_t astride, float *out)
    ctypedef struct lm_tile8_q8_0:
        pass
    ctypedef void (*lm_dot8_fn)(int64_t n, const void *w, const lm_tile8_q8_0 *tiles, float *out)
    ctypedef void (*lm_dot8x2_fn)(int64_t n, const void *w0, const void *w1, const lm_tile8_q8_0 *tiles,
                                  float *out)
    void lm_tile8_build(const void *act, int64_t T, int64_t nb, lm_tile8_q8_0 *tiles)
    ctypedef struct lm_group4_q8_0:
        pass
    ctypedef void (*lm_rows_fn)(int64_t n, const void *w, int64_t wstride, int64_t rows, int T,
                                const lm_group4_q8_0 *groups, const void *act, float *out, int64_t ostride)
    ctypedef void (*lm_tile8_rows_fn)(int64_t n, const void *w, int64_t wstride, int64_t rows,
                                      const lm_tile8_q8_0 *tiles, int ntok, float *out, int64_t ostride)
    void lm_group4_build(const void *act, int64_t T, int64_t nb, lm_group4_q8_0 *groups)

    ctypedef enum lm_wtype:
        LM_W_F32
        LM_W_F16
        LM_W_BF16
        LM_W_Q8_0
        LM_W_Q4_0
        LM_W_Q4_1
        LM_W_Q5_0
        LM_W_Q5_1
        LM_W_Q4_K
        LM_W_Q5_K
        LM_W_Q6_K
        LM_W_COUNT

    ctypedef enum lm_atype:
        LM_A_F32
        LM_A_Q8_0
        LM_A_Q8_1
        LM_A_Q8_K
        LM_A_COUNT

    ctypedef struct lm_kernels:
        lm_dot_fn dot[11]
        lm_dot4_fn dot4[11]
        lm_dot8_fn dot8[11]
        lm_dot8x2_fn dot8x2[11]
        lm_rows_fn rows[11]
        lm_tile8_rows_fn tile8_rows[11]
        lm_quantize_fn quantize[4]
        const char *name

    const lm_kernels *lm_k
    lm_atype lm_act_of[11]
    const char *lm_select(const char *want)
    int lm_available(const char **names, int cap)
