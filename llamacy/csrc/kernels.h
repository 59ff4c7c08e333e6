/* kernels.h -- the matrix kernels' one table of weight types and the shape of a kernel set.
 *
 * LM_WEIGHT_TYPES lists every weight type with a kernel, once: its name, GGML's type id and the
 * activation format it pairs with (ggml's vec_dot_type). The enum, the GGML id and activation
 * tables below, and every ISA's dot/dot4 rows are made from it; Cython reads the tables
 * (_matmul_kernels.weight_types()) and Python derives its own from them.
 */
#ifndef LLAMACY_KERNELS_H
#define LLAMACY_KERNELS_H

#include <stdint.h>

#include "quants.h"
#include "simd.h"

/*        name   kernel name  GGML id  activation */
#define LM_WEIGHT_TYPES(X)            \
    X(F32, f32, 0, F32, f32)          \
    X(F16, f16, 1, F32, f32)          \
    X(BF16, bf16, 30, F32, f32)       \
    X(Q8_0, q8_0, 8, Q8_0, q8_0)      \
    X(Q4_0, q4_0, 2, Q8_0, q8_0)      \
    X(Q4_1, q4_1, 3, Q8_1, q8_1)      \
    X(Q5_0, q5_0, 6, Q8_0, q8_0)      \
    X(Q5_1, q5_1, 7, Q8_1, q8_1)      \
    X(Q2_K, q2_K, 10, Q8_K, q8_K)     \
    X(Q3_K, q3_K, 11, Q8_K, q8_K)     \
    X(Q4_K, q4_K, 12, Q8_K, q8_K)     \
    X(Q5_K, q5_K, 13, Q8_K, q8_K)     \
    X(Q6_K, q6_K, 14, Q8_K, q8_K)     \
    X(IQ4_NL, iq4_nl, 20, Q8_0, q8_0) \
    X(IQ4_XS, iq4_xs, 23, Q8_K, q8_K)

#define LM_W_ENUM(name, kname, id, act, aname) LM_W_##name,
typedef enum { LM_WEIGHT_TYPES(LM_W_ENUM) LM_W_COUNT } lm_wtype;
#undef LM_W_ENUM

/* Activation formats the weights pair with: float rows, or 8-bit blocks. */
typedef enum { LM_A_F32, LM_A_Q8_0, LM_A_Q8_1, LM_A_Q8_K, LM_A_COUNT } lm_atype;
static const int64_t lm_act_block_bytes[LM_A_COUNT] = {sizeof(float), sizeof(block_q8_0), sizeof(block_q8_1),
                                                       sizeof(block_q8_K)};
static const int64_t lm_act_block_elems[LM_A_COUNT] = {1, QK, QK, QK_K};

#define LM_W_GGML(name, kname, id, act, aname) id,
static const int lm_wtype_ggml[LM_W_COUNT] = {LM_WEIGHT_TYPES(LM_W_GGML)};
#undef LM_W_GGML
#define LM_W_ACT(name, kname, id, act, aname) LM_A_##act,
static const lm_atype lm_act_of[LM_W_COUNT] = {LM_WEIGHT_TYPES(LM_W_ACT)};
#undef LM_W_ACT

/* ---- kernel shapes -------------------------------------------------------------------------- */
/* one weight row . one activation row (n elements) */
typedef float (*lm_dot_fn)(int64_t n, const void *restrict w, const float *restrict a);
/* float row -> activation blocks */
typedef void (*lm_quantize_fn)(const float *restrict x, void *restrict out, int64_t n);
/* one weight row against T activation rows `astride` bytes apart: out[t * ostride] */
typedef void (*lm_dotn_fn)(int64_t n, const void *restrict w, const void *restrict a, int64_t astride, int64_t T,
                           float *restrict out, int64_t ostride);
/* one weight row against 4 activation rows `astride` bytes apart: out[0..3] */
typedef void (*lm_dot4_fn)(int64_t n, const void *restrict w, const void *restrict a, int64_t astride,
                           float *restrict out);
/* one weight row against a tile of 8 tokens (lm_tile8_q8_0 per block): out[0..7] */
typedef void (*lm_dot8_fn)(int64_t n, const void *restrict w, const lm_tile8_q8_0 *restrict tiles,
                           float *restrict out);
/* two weight rows against a tile of 8 tokens: out[0..7] for w0, out[8..15] for w1 */
typedef void (*lm_dot8x2_fn)(int64_t n, const void *restrict w0, const void *restrict w1,
                             const lm_tile8_q8_0 *restrict tiles, float *restrict out);
/* a run of `rows` weight rows `wstride` bytes apart against T <= 4 tokens, whose activations are
 * given both regrouped (lm_group4_build: T x nb/4 groups) and as plain blocks (T x nb, for the
 * blocks after the last whole group): out[t * ostride + r] */
typedef void (*lm_rows_fn)(int64_t n, const void *restrict w, int64_t wstride, int64_t rows, int T,
                           const lm_group4_q8_0 *restrict groups, const void *restrict act, float *restrict out,
                           int64_t ostride);
/* `rows` weight rows `wstride` bytes apart against one tile of 8 tokens (the first ntok real):
 * out[j * ostride + r] */
typedef void (*lm_tile8_rows_fn)(int64_t n, const void *restrict w, int64_t wstride, int64_t rows,
                                 const lm_tile8_q8_0 *restrict tiles, int ntok, float *restrict out, int64_t ostride);

/* `rows` weight rows `wstride` bytes apart against every tile of 16 tokens (ntiles x nb tiles, the
 * last zero-padded past token T): out[t * ostride + r] */
typedef void (*lm_tile16_rows_fn)(int64_t n, const void *restrict w, int64_t wstride, int64_t rows,
                                  const lm_tile16_q8_K *restrict tiles, int64_t ntiles, int64_t T, float *restrict out,
                                  int64_t ostride);

/* One ISA's kernel set. Every ISA has dot, dot4 and quantize for every type; the 8-token tiles
 * (tile8_rows, or dot8 + dot8x2), the multi-row decode kernel (rows) and the any-token row kernel
 * (dotn) exist only where the ISA has an exact fast version: NULL elsewhere, and the caller falls
 * back to dot4. */
typedef struct {
    lm_dot_fn dot[LM_W_COUNT];
    lm_dot4_fn dot4[LM_W_COUNT];
    lm_dotn_fn dotn[LM_W_COUNT]; /* any number of tokens per weight row; NULL: dot4 and dot */
    lm_tile16_rows_fn tile16_rows[LM_W_COUNT]; /* k-quants x tiles of 16 tokens (prefill) */
    lm_dot8_fn dot8[LM_W_COUNT];
    lm_dot8x2_fn dot8x2[LM_W_COUNT]; /* NULL exactly where dot8 is */
    lm_tile8_rows_fn tile8_rows[LM_W_COUNT];
    lm_rows_fn rows[LM_W_COUNT];
    lm_quantize_fn quantize[LM_A_COUNT]; /* LM_A_F32: NULL (no quantization) */
    const char *name;
} lm_kernels;

/* the rows of a kernel set every ISA has, named by suffix */
#define LM_DOT_ENTRY(name, kname, id, act, aname) LM_FN(dot_##kname##_##aname),
#define LM_DOT4_ENTRY(name, kname, id, act, aname) LM_FN(dot4_##kname##_##aname),
#define LM_ALL_DOTS {LM_WEIGHT_TYPES(LM_DOT_ENTRY)}
#define LM_ALL_DOT4S {LM_WEIGHT_TYPES(LM_DOT4_ENTRY)}
/* the k-quants' any-token row kernels, for the ISAs that have them */
#define LM_KQUANT_DOTNS                                                                                    \
    [LM_W_Q2_K] = LM_FN(dotn_q2_K_q8_K), [LM_W_Q3_K] = LM_FN(dotn_q3_K_q8_K), [LM_W_Q4_K] = LM_FN(dotn_q4_K_q8_K), \
    [LM_W_Q5_K] = LM_FN(dotn_q5_K_q8_K), [LM_W_Q6_K] = LM_FN(dotn_q6_K_q8_K)
#define LM_KQUANT_TILE16S                                                                                  \
    [LM_W_Q2_K] = LM_FN(tile16_rows_q2_K_q8_K), [LM_W_Q3_K] = LM_FN(tile16_rows_q3_K_q8_K),                   \
    [LM_W_Q4_K] = LM_FN(tile16_rows_q4_K_q8_K), [LM_W_Q5_K] = LM_FN(tile16_rows_q5_K_q8_K),                   \
    [LM_W_Q6_K] = LM_FN(tile16_rows_q6_K_q8_K)
/* the IQ4 types' any-token row kernels (every SIMD set) */
#define LM_IQ4_DOTNS [LM_W_IQ4_NL] = LM_FN(dotn_iq4_nl_q8_0), [LM_W_IQ4_XS] = LM_FN(dotn_iq4_xs_q8_K)
/* arm64: the k-quants' row kernels and Q4_0 / Q8_0 / F16 ones (the weight block decoded once for
 * many tokens: prefill and batches) */
#define LM_ARM_DOTNS                                                                                       \
    LM_KQUANT_DOTNS, LM_IQ4_DOTNS, [LM_W_Q4_0] = LM_FN(dotn_q4_0_q8_0),                                   \
                     [LM_W_Q8_0] = LM_FN(dotn_q8_0_q8_0), [LM_W_F16] = LM_FN(dotn_f16_f32)
#define LM_ALL_QUANTIZERS {NULL, LM_FN(quantize_row_q8_0), LM_FN(quantize_row_q8_1), LM_FN(quantize_row_q8_K)}
/* an ISA's table: the rows every ISA has, then its own optional kernels (the rest stay NULL) */
#define LM_KERNEL_SET(label, ...) \
    {.dot = LM_ALL_DOTS, .dot4 = LM_ALL_DOT4S, .quantize = LM_ALL_QUANTIZERS, .name = label, __VA_ARGS__}

#endif /* LLAMACY_KERNELS_H */
