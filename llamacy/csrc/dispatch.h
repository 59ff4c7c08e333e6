/* dispatch.h -- one build, several instruction sets, chosen at run time.
 *
 * Wheels are built with portable flags (no -march=native). The kernels of dot_impl.h are
 * compiled here once per ISA using per-function target attributes, and lm_select() picks the
 * best one the CPU supports (or the one named by LLAMACY_SIMD / LLAMACY_FORCE_SCALAR=1).
 * Callers use the kernel table `lm_k`, indexed by operand types, never bare numbers.
 */
#ifndef LLAMACY_DISPATCH_H
#define LLAMACY_DISPATCH_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quants.h"

#if defined(_MSC_VER) && !defined(__clang__)
#define restrict __restrict
#endif

#define LM_ISA_SCALAR 0
#define LM_ISA_AVX2 1
#define LM_ISA_AVX512 2

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define LM_HAVE_X86_VARIANTS 1
#include <immintrin.h>
#else
#define LM_HAVE_X86_VARIANTS 0
#endif

typedef float (*lm_dot_fn)(int64_t n, const void *restrict w, const float *restrict a);
typedef void (*lm_quantize_fn)(const float *restrict x, void *restrict out, int64_t n);
/* one weight row against 4 activation rows `astride` bytes apart: out[0..3] */
typedef void (*lm_dot4_fn)(int64_t n, const void *restrict w, const void *restrict a, int64_t astride,
                           float *restrict out);

/* Weight types with a kernel, named as GGML names them. */
typedef enum {
    LM_W_F32, LM_W_F16, LM_W_BF16, LM_W_Q8_0, LM_W_Q4_0, LM_W_Q4_1, LM_W_Q5_0, LM_W_Q5_1,
    LM_W_Q4_K, LM_W_Q5_K, LM_W_Q6_K, LM_W_COUNT
} lm_wtype;

/* Activation formats the weights pair with. */
typedef enum { LM_A_F32, LM_A_Q8_0, LM_A_Q8_1, LM_A_Q8_K, LM_A_COUNT } lm_atype;

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

typedef struct {
    lm_dot_fn dot[LM_W_COUNT];
    lm_dot4_fn dot4[LM_W_COUNT];
    /* 8-token tiles: tile8_rows where it exists (Q4_0), else dot8 + dot8x2 (Q8_0 on AVX-512);
     * all NULL where the ISA has no exact tiled kernel for the type */
    lm_dot8_fn dot8[LM_W_COUNT];
    lm_dot8x2_fn dot8x2[LM_W_COUNT]; /* NULL exactly where dot8 is */
    lm_tile8_rows_fn tile8_rows[LM_W_COUNT];
    lm_rows_fn rows[LM_W_COUNT];     /* NULL where the ISA has no multi-row kernel for the type */
    lm_quantize_fn quantize[LM_A_COUNT]; /* LM_A_F32: NULL (no quantization) */
    const char *name;
} lm_kernels;

/* The kernels only some ISAs have: dot_impl.h names each one (or NULL) as LM_DOT8_Q8_0,
 * LM_DOT8X2_Q8_0, LM_ROWS_Q4_0, LM_TILE8_ROWS_Q4_0; after each include they are kept here under
 * the ISA's suffix (lm_fill_dot8 puts them in the tables); dot_impl.h releases the names when it
 * is included again. */
#define LM_KEEP_OPTIONAL(sfx)                                                                      \
    static const lm_dot8_fn lm_dot8_q8_0_##sfx = LM_DOT8_Q8_0;                                     \
    static const lm_dot8x2_fn lm_dot8x2_q8_0_##sfx = LM_DOT8X2_Q8_0;                               \
    static const lm_rows_fn lm_rows_q4_0_##sfx = LM_ROWS_Q4_0;                                     \
    static const lm_tile8_rows_fn lm_tile8_rows_q4_0_##sfx = LM_TILE8_ROWS_Q4_0;

/* ---- the scalar build: portable C, vectorized only as far as the baseline allows ---------- */
#define LM_ISA LM_ISA_SCALAR
#define LM_TARGET
#define LM_FN(name) name##_scalar
#include "dot_impl.h"
LM_KEEP_OPTIONAL(scalar)
#undef LM_ISA
#undef LM_TARGET
#undef LM_FN

#if LM_HAVE_X86_VARIANTS
#define LM_ISA LM_ISA_AVX2
#define LM_TARGET __attribute__((target("avx2,fma,f16c")))
#define LM_FN(name) name##_avx2
#include "dot_impl.h"
LM_KEEP_OPTIONAL(avx2)
#undef LM_ISA
#undef LM_TARGET
#undef LM_FN

#define LM_ISA LM_ISA_AVX512
#define LM_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define LM_FN(name) name##_avx512
#include "dot_impl.h"
LM_KEEP_OPTIONAL(avx512)
#undef LM_ISA
#undef LM_TARGET
#undef LM_FN
#endif

/* The tables are filled at selection time (the dot8 entries are not constant expressions). */
#define LM_TABLE(sfx, label)                                                                      \
    {{dot_f32_f32_##sfx, dot_f16_f32_##sfx, dot_bf16_f32_##sfx, dot_q8_0_q8_0_##sfx,              \
      dot_q4_0_q8_0_##sfx, dot_q4_1_q8_1_##sfx, dot_q5_0_q8_0_##sfx, dot_q5_1_q8_1_##sfx,          \
      dot_q4_K_q8_K_##sfx, dot_q5_K_q8_K_##sfx, dot_q6_K_q8_K_##sfx},                              \
     {dot4_f32_f32_##sfx, dot4_f16_f32_##sfx, dot4_bf16_f32_##sfx, dot4_q8_0_q8_0_##sfx,          \
      dot4_q4_0_q8_0_##sfx, dot4_q4_1_q8_1_##sfx, dot4_q5_0_q8_0_##sfx, dot4_q5_1_q8_1_##sfx,      \
      dot4_q4_K_q8_K_##sfx, dot4_q5_K_q8_K_##sfx, dot4_q6_K_q8_K_##sfx},                           \
     {NULL},                                                                                       \
     {NULL},                                                                                       \
     {NULL},                                                                                       \
     {NULL},                                                                                       \
     {NULL, quantize_row_q8_0_##sfx, quantize_row_q8_1_##sfx, quantize_row_q8_K_##sfx},             \
     label}

static lm_kernels lm_kernels_scalar = LM_TABLE(scalar, "scalar");
#if LM_HAVE_X86_VARIANTS
static lm_kernels lm_kernels_avx2 = LM_TABLE(avx2, "avx2");
static lm_kernels lm_kernels_avx512 = LM_TABLE(avx512, "avx512vnni");
#endif

static void lm_fill_dot8(void) {
#define LM_FILL(k, sfx)                                                                                    \
    do {                                                                                                   \
        k.dot8[LM_W_Q8_0] = lm_dot8_q8_0_##sfx;                                                            \
        k.dot8x2[LM_W_Q8_0] = lm_dot8x2_q8_0_##sfx;                                                        \
        k.rows[LM_W_Q4_0] = lm_rows_q4_0_##sfx;                                                            \
        k.tile8_rows[LM_W_Q4_0] = lm_tile8_rows_q4_0_##sfx;                                                \
    } while (0)
    LM_FILL(lm_kernels_scalar, scalar);
#if LM_HAVE_X86_VARIANTS
    LM_FILL(lm_kernels_avx2, avx2);
    LM_FILL(lm_kernels_avx512, avx512);
#endif
#undef LM_FILL
}

/* Q8_0 activation rows (T rows of nb blocks) -> ceil(T/8) tiles of nb lm_tile8_q8_0, zero-padded. */
static void lm_tile8_build(const block_q8_0 *act, int64_t T, int64_t nb, lm_tile8_q8_0 *tiles) {
    for (int64_t g = 0; g < (T + 7) / 8; g++)
        for (int64_t ib = 0; ib < nb; ib++) {
            lm_tile8_q8_0 *t = tiles + g * nb + ib;
            memset(t, 0, sizeof *t);
            for (int j = 0; j < 8 && g * 8 + j < T; j++) {
                const block_q8_0 *b = act + (g * 8 + j) * nb + ib;
                int32_t s = 0;
                for (int k = 0; k < 8; k++)
                    for (int e = 0; e < 4; e++) {
                        t->q[k][j][e] = b->qs[4 * k + e];
                        s += b->qs[4 * k + e];
                    }
                t->d[j] = lm_h2f(b->d);
                t->s[j] = s;
            }
        }
}

/* Q8_0 activation rows (T rows of nb blocks) -> T x nb/4 lm_group4_q8_0 (see quants.h). */
static void lm_group4_build(const block_q8_0 *act, int64_t T, int64_t nb, lm_group4_q8_0 *groups) {
    const int64_t ng = nb / 4;
    for (int64_t t = 0; t < T; t++)
        for (int64_t k = 0; k < ng; k++) {
            lm_group4_q8_0 *g = groups + t * ng + k;
            memset(g->corr, 0, sizeof g->corr);
            for (int x = 0; x < 4; x++) {
                const block_q8_0 *b = act + t * nb + 4 * k + x;
                int32_t s = 0;
                for (int j = 0; j < QK; j++) s += b->qs[j];
                memcpy(g->lo + 16 * x, b->qs, 16);
                memcpy(g->hi + 16 * x, b->qs + 16, 16);
                g->corr[4 * x] = -8 * s;
                const float d = lm_h2f(b->d);
                for (int j = 0; j < 4; j++) g->d[4 * x + j] = d;
            }
        }
}

/* Which activation format each weight type pairs with (ggml's vec_dot_type). */
static const lm_atype lm_act_of[LM_W_COUNT] = {
    LM_A_F32, LM_A_F32, LM_A_F32, LM_A_Q8_0, LM_A_Q8_0, LM_A_Q8_1, LM_A_Q8_0, LM_A_Q8_1,
    LM_A_Q8_K, LM_A_Q8_K, LM_A_Q8_K};

static const lm_kernels *lm_k = &lm_kernels_scalar;
static int lm_dot8_filled = 0;

static int lm_cpu_has(int isa) {
#if LM_HAVE_X86_VARIANTS
    __builtin_cpu_init();
    if (isa == LM_ISA_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    if (isa == LM_ISA_AVX512)
        return lm_cpu_has(LM_ISA_AVX2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#endif
    return isa == LM_ISA_SCALAR;
}

/* Select a kernel set: "auto" (best supported), "scalar", "avx2" or "avx512vnni".
 * Returns the chosen name, or NULL when the requested one is not supported here. */
static const char *lm_select(const char *want) {
    if (!lm_dot8_filled) {
        lm_fill_dot8();
        lm_dot8_filled = 1;
    }
    if (!want || !strcmp(want, "auto")) {
#if LM_HAVE_X86_VARIANTS
        if (lm_cpu_has(LM_ISA_AVX512)) { lm_k = &lm_kernels_avx512; return lm_k->name; }
        if (lm_cpu_has(LM_ISA_AVX2)) { lm_k = &lm_kernels_avx2; return lm_k->name; }
#endif
        lm_k = &lm_kernels_scalar;
        return lm_k->name;
    }
    if (!strcmp(want, "scalar")) { lm_k = &lm_kernels_scalar; return lm_k->name; }
#if LM_HAVE_X86_VARIANTS
    if (!strcmp(want, "avx2") && lm_cpu_has(LM_ISA_AVX2)) { lm_k = &lm_kernels_avx2; return lm_k->name; }
    if (!strcmp(want, "avx512vnni") && lm_cpu_has(LM_ISA_AVX512)) { lm_k = &lm_kernels_avx512; return lm_k->name; }
#endif
    return NULL;
}

/* Every kernel set this CPU can run, best last: "scalar avx2 avx512vnni". */
static int lm_available(const char **names, int cap) {
    int n = 0;
    if (n < cap) names[n++] = "scalar";
#if LM_HAVE_X86_VARIANTS
    if (n < cap && lm_cpu_has(LM_ISA_AVX2)) names[n++] = "avx2";
    if (n < cap && lm_cpu_has(LM_ISA_AVX512)) names[n++] = "avx512vnni";
#endif
    return n;
}

#endif /* LLAMACY_DISPATCH_H */
