# Declarations of csrc/dispatch.h: the per-ISA kernel table for weight x activation products.
from libc.stdint cimport int64_t


cdef extern from "csrc/dispatch.h" nogil:
    ctypedef float (*lm_dot_fn)(int64_t n, const void *w, const float *a)
    ctypedef void (*lm_quantize_fn)(const float *x, void *out, int64_t n)
    ctypedef void (*lm_dot4_fn)(int64_t n, const void *w, const void *a, int64_t astride, float *out)
    ctypedef void (*lm_dotn_fn)(int64_t n, const void *w, const void *a, int64_t astride, int64_t T, float *out,
                                int64_t ostride)
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
    ctypedef struct lm_tile16_q8_K:
        pass
    ctypedef void (*lm_tile16_rows_fn)(int64_t n, const void *w, int64_t wstride, int64_t rows,
                                       const lm_tile16_q8_K *tiles, int64_t ntiles, int64_t T, float *out,
                                       int64_t ostride)
    void lm_tile16_build(const void *act, int64_t T, int64_t nb, lm_tile16_q8_K *tiles)

    ctypedef enum lm_wtype:
        LM_W_COUNT

    ctypedef enum lm_atype:
        LM_A_F32
        LM_A_COUNT

    const int64_t lm_act_block_bytes[]
    const int64_t lm_act_block_elems[]
    const int lm_wtype_ggml[]
    const lm_atype lm_act_of[]

    ctypedef struct lm_kernels:
        lm_dot_fn dot[LM_W_COUNT]
        lm_dot4_fn dot4[LM_W_COUNT]
        lm_dotn_fn dotn[LM_W_COUNT]
        lm_tile16_rows_fn tile16_rows[LM_W_COUNT]
        lm_dot8_fn dot8[LM_W_COUNT]
        lm_dot8x2_fn dot8x2[LM_W_COUNT]
        lm_rows_fn rows[LM_W_COUNT]
        lm_tile8_rows_fn tile8_rows[LM_W_COUNT]
        lm_quantize_fn quantize[LM_A_COUNT]
        const char *name

    const lm_kernels *lm_k
    const char *lm_select(const char *want)
    int lm_available(const lm_kernels **sets, int cap)
    const char *lm_simd_requested()
