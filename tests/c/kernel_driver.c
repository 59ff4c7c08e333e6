/* kernel_driver.c -- every kernel set this CPU runs against the scalar set, in C, for every weight
 * type: the activation quantizers byte for byte, and dot, dot4, dotn, the tiles of 8 tokens (dot8 /
 * dot8x2, tile8_rows), the multi-row decode kernel (rows) and the tiles of 16 (tile16_rows) where a
 * set has them, on random blocks at awkward sizes. ci/test_kernels.sh builds it natively, runs it as
 * other x86 CPUs and as arm64 CPUs (with and without dotprod) under qemu, and as a Windows program
 * under Wine (with target attributes, and with instruction sets by unit as MSVC builds them).
 *
 *   kernel_driver         prints one line per (set, type, kernel) and "N passed, M failed"
 *
 * Tolerance: the products are integer-exact per block for quantized types and differ only in the
 * float accumulation order across blocks (and, for float weights, within them), so a result may
 * differ from scalar by float32 rounding of the sum: |x - ref| <= 1e-5 * sum_i |w_i a_i| (the same
 * bound as tests/test_kernels.py's numpy twins), with sum |w a| computed from the scalar dot of
 * |w| and |a| where the type allows, else bounded by 1e-4 * max |ref| of the matrix.
 *
 * And the float helpers of ops.h (attention over an f32 and an f16 cache, SiLU x up): the SIMD
 * versions lm_ops_select(1) chooses (AVX2, NEON) against the generic loops, relative error
 * <= 1e-5 as in tests/test_kernels.py (OPS_TOL): the same arithmetic, summed in another order. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "ops.h"

static int passed = 0, failed = 0;
static uint64_t rng_state = 88172645463325252ull;

static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}
static float frand(void) { return (float)((rnd() & 0xffffff) / 8388608.0 - 1.0); } /* [-1, 1) */

static void report(int ok, const char *set, const char *type, const char *what, double err) {
    printf("%s %-11s %-5s %-12s max error %.3g\n", ok ? "ok  " : "FAIL", set, type, what, err);
    ok ? passed++ : failed++;
}

static int64_t type_block(int wt) {
    static const int64_t elems[LM_W_COUNT] = {
#define LM_ELEMS(name, kname, id, act, aname) LM_A_##act == LM_A_F32 ? 1 : lm_act_block_elems[LM_A_##act],
        LM_WEIGHT_TYPES(LM_ELEMS)
#undef LM_ELEMS
    };
    return elems[wt];
}

/* random weights of type wt: rows x n elements, with sane float16 scale fields */
static size_t fill_weights(int wt, uint8_t *w, int64_t rows, int64_t n) {
    size_t bytes = 0;
#define HALF(x) lm_f2h(x)
    switch (wt) {
    case LM_W_F32:
        for (int64_t i = 0; i < rows * n; i++) ((float *)w)[i] = frand();
        return (size_t)(rows * n) * 4;
    case LM_W_F16:
        for (int64_t i = 0; i < rows * n; i++) ((lm_half *)w)[i] = HALF(frand());
        return (size_t)(rows * n) * 2;
    case LM_W_BF16:
        for (int64_t i = 0; i < rows * n; i++) {
            float f = frand();
            uint32_t u;
            memcpy(&u, &f, 4);
            ((uint16_t *)w)[i] = (uint16_t)(u >> 16);
        }
        return (size_t)(rows * n) * 2;
    default:
        break;
    }
    const int64_t nblocks = rows * n / type_block(wt);
#define BLOCKS(T, fix)                                                                                       \
    do {                                                                                                     \
        T *b = (T *)(void *)w;                                                                               \
        for (size_t i = 0; i < sizeof(T) * (size_t)nblocks; i++) w[i] = (uint8_t)rnd();                      \
        for (int64_t i = 0; i < nblocks; i++) { fix; }                                                       \
        bytes = sizeof(T) * (size_t)nblocks;                                                                 \
    } while (0)
    switch (wt) {
    case LM_W_Q8_0: BLOCKS(block_q8_0, b[i].d = HALF(0.01f + 0.01f * frand())); break;
    case LM_W_Q4_0: BLOCKS(block_q4_0, b[i].d = HALF(0.02f * frand())); break;
    case LM_W_Q4_1: BLOCKS(block_q4_1, b[i].d = HALF(0.02f * frand()); b[i].m = HALF(0.1f * frand())); break;
    case LM_W_Q5_0: BLOCKS(block_q5_0, b[i].d = HALF(0.02f * frand())); break;
    case LM_W_Q5_1: BLOCKS(block_q5_1, b[i].d = HALF(0.02f * frand()); b[i].m = HALF(0.1f * frand())); break;
    case LM_W_Q2_K: BLOCKS(block_q2_K, b[i].d = HALF(0.02f * frand()); b[i].dmin = HALF(0.02f * frand())); break;
    case LM_W_Q3_K: BLOCKS(block_q3_K, b[i].d = HALF(0.02f * frand())); break;
    case LM_W_Q4_K: BLOCKS(block_q4_K, b[i].d = HALF(0.02f * frand()); b[i].dmin = HALF(0.02f * frand())); break;
    case LM_W_Q5_K: BLOCKS(block_q5_K, b[i].d = HALF(0.02f * frand()); b[i].dmin = HALF(0.02f * frand())); break;
    case LM_W_Q6_K: BLOCKS(block_q6_K, b[i].d = HALF(0.02f * frand())); break;
    case LM_W_IQ4_NL: BLOCKS(block_iq4_nl, b[i].d = HALF(0.02f * frand())); break;
    case LM_W_IQ4_XS: BLOCKS(block_iq4_xs, b[i].d = HALF(0.02f * frand())); break;
    default: break;
    }
#undef BLOCKS
#undef HALF
    return bytes;
}

static const char *type_name(int wt) {
    static const char *names[LM_W_COUNT] = {
#define LM_NAME(name, kname, id, act, aname) #name,
        LM_WEIGHT_TYPES(LM_NAME)
#undef LM_NAME
    };
    return names[wt];
}

/* max |a - b| / max |b| over n */
static double rel_err(const float *a, const float *b, int64_t n) {
    double e = 0, m = 1e-30;
    for (int64_t i = 0; i < n; i++) e = fmax(e, fabs((double)a[i] - b[i])), m = fmax(m, fabs(b[i]));
    return e / m;
}

static void check_ops(void) {
    lm_ops_init();
    if (!lm_ops_select(1)) {
        printf("float helpers: no SIMD versions in this build or on this CPU\n");
        return;
    }
    enum { HD = 67, NKV = 37, STRIDE = 70, N = 203 }; /* odd: every tail */
    float q[HD], kf[NKV * STRIDE], vf[NKV * STRIDE], att[NKV], got[HD], want[HD];
    lm_half kh[NKV * STRIDE], vh[NKV * STRIDE];
    for (int i = 0; i < HD; i++) q[i] = frand();
    for (int i = 0; i < NKV * STRIDE; i++) {
        kf[i] = frand(), vf[i] = frand();
        kh[i] = lm_f2h(kf[i]), vh[i] = lm_f2h(vf[i]);
    }
    for (int hd = 1; hd <= HD; hd += 11) {
        lm_attend_f32(q, kf, vf, STRIDE, NKV, hd, 0.125f, att, got);
        lm_attend_f32_generic(q, kf, vf, STRIDE, NKV, hd, 0.125f, att, want);
        double e = rel_err(got, want, hd);
        lm_attend_f16(q, kh, vh, STRIDE, NKV, hd, 0.125f, att, got);
        lm_attend_f16_generic(q, kh, vh, STRIDE, NKV, hd, 0.125f, att, want);
        e = fmax(e, rel_err(got, want, hd));
        char what[32];
        snprintf(what, sizeof what, "attend hd=%d", hd);
        report(e <= 1e-5, "ops", "f32/16", what, e);
    }
    float g[N], g2[N], u[N];
    for (int i = 0; i < N; i++) g[i] = 8 * frand(), u[i] = frand();
    g[0] = -100.0f, g[1] = 100.0f, g[2] = 0.0f; /* past the exponential's clamps, and 0 */
    memcpy(g2, g, sizeof g);
    lm_silu_mul(g, u, N);
    lm_silu_mul_generic(g2, u, N);
    report(rel_err(g, g2, N) <= 1e-5, "ops", "f32", "silu_mul", rel_err(g, g2, N));
    /* f32 -> f16 rows (the KV cache store): bit-exact for every finite value and infinity,
     * subnormal, overflowing and halfway ones included */
    float h[N];
    lm_half hs[N], hg[N];
    for (int i = 0; i < N; i++) h[i] = frand() * (i % 3 == 0 ? 70000.0f : i % 3 == 1 ? 1.0f : 1e-6f);
    h[0] = 65519.0f, h[1] = 65520.0f, h[2] = -0.0f, h[3] = 1.0f / 0.0f, h[4] = 5.9604645e-08f * 1.5f;
    lm_f2h_row(h, hs, N);
    lm_f2h_row_generic(h, hg, N);
    report(!memcmp(hs, hg, sizeof hs), "ops", "f32>16", "f2h_row", 0.0);
}

int main(void) {
    const lm_kernels *sets[4];
    const int nsets = lm_available(sets, 4);
    printf("kernel sets: ");
    for (int s = 0; s < nsets; s++) printf("%s ", sets[s]->name);
    printf("\n");
    const lm_kernels *ref = &lm_kernels_scalar;
    enum { ROWS = 19, T = 21 };
    for (int wt = 0; wt < LM_W_COUNT; wt++) {
        /* odd: tails and block counts; 7 blocks of 32 = one group of 4 (the rows kernel) and 3 after it */
        const int64_t bs = type_block(wt), n = bs == 1 ? 77 : bs == QK ? 7 * bs : 3 * bs;
        const lm_atype at = lm_act_of[wt];
        const int64_t astride = at == LM_A_F32 ? n * 4 : n / lm_act_block_elems[at] * lm_act_block_bytes[at];
        uint8_t *w = malloc((size_t)(ROWS * n) * 4 + 64);
        float *x = malloc(sizeof(float) * T * n);
        uint8_t *aref = malloc((size_t)(T * astride)), *aset = malloc((size_t)(T * astride));
        float *want = malloc(sizeof(float) * T * ROWS), *got = malloc(sizeof(float) * T * ROWS);
        const size_t wbytes = fill_weights(wt, w, ROWS, n);
        const int64_t wstride = (int64_t)wbytes / ROWS;
        for (int64_t i = 0; i < T * n; i++) x[i] = frand();
        for (int t = 0; t < T; t++) {
            if (at == LM_A_F32) memcpy(aref + t * astride, x + t * n, (size_t)astride);
            else ref->quantize[at](x + t * n, aref + t * astride, n);
        }
        double scale = 0.0;
        for (int t = 0; t < T; t++)
            for (int r = 0; r < ROWS; r++) {
                want[t * ROWS + r] = ref->dot[wt](n, w + r * wstride, (const float *)(const void *)(aref + t * astride));
                scale = fmax(scale, fabs(want[t * ROWS + r]));
            }
        const double tol = 1e-4 * scale + 1e-30;
        for (int s = 1; s < nsets; s++) {
            const lm_kernels *k = sets[s];
            if (at != LM_A_F32) {
                for (int t = 0; t < T; t++) k->quantize[at](x + t * n, aset + t * astride, n);
                report(!memcmp(aref, aset, (size_t)(T * astride)), k->name, type_name(wt), "quantize", 0.0);
            }
            double e = 0;
            for (int t = 0; t < T; t++)
                for (int r = 0; r < ROWS; r++) {
                    const float v = k->dot[wt](n, w + r * wstride, (const float *)(const void *)(aref + t * astride));
                    e = fmax(e, fabs(v - want[t * ROWS + r]));
                }
            report(e <= tol, k->name, type_name(wt), "dot", e / scale);
            e = 0;
            for (int t = 0; t + 4 <= T; t += 4)
                for (int r = 0; r < ROWS; r++) {
                    float four[4];
                    k->dot4[wt](n, w + r * wstride, aref + t * astride, astride, four);
                    for (int j = 0; j < 4; j++) e = fmax(e, fabs(four[j] - want[(t + j) * ROWS + r]));
                }
            report(e <= tol, k->name, type_name(wt), "dot4", e / scale);
            if (k->dotn[wt]) {
                for (int r = 0; r < ROWS; r++) k->dotn[wt](n, w + r * wstride, aref, astride, T, got + r, ROWS);
                e = 0;
                for (int i = 0; i < T * ROWS; i++) e = fmax(e, fabs(got[i] - want[i]));
                report(e <= tol, k->name, type_name(wt), "dotn", e / scale);
            }
            if (k->dot8[wt] || k->tile8_rows[wt]) { /* tiles of 8 tokens (the last one padded) */
                const int64_t nb = n / QK, ntiles = (T + 7) / 8;
                lm_tile8_q8_0 *tiles = malloc(sizeof *tiles * (size_t)(ntiles * nb));
                lm_tile8_build(aref, T, nb, tiles);
                for (int64_t g = 0; g < ntiles; g++) {
                    const int ntok = T - 8 * g < 8 ? (int)(T - 8 * g) : 8;
                    float eight[16];
                    if (k->tile8_rows[wt]) {
                        k->tile8_rows[wt](n, w, wstride, ROWS, tiles + g * nb, ntok, got + 8 * g * ROWS, ROWS);
                        continue;
                    }
                    for (int r = 0; r < ROWS; r++) {
                        if (r + 1 < ROWS && r % 2 == 0) {
                            k->dot8x2[wt](n, w + r * wstride, w + (r + 1) * wstride, tiles + g * nb, eight);
                            for (int j = 0; j < ntok; j++) got[(8 * g + j) * ROWS + r + 1] = eight[8 + j];
                        } else if (r % 2 == 0) {
                            k->dot8[wt](n, w + r * wstride, tiles + g * nb, eight);
                        } else {
                            continue;
                        }
                        for (int j = 0; j < ntok; j++) got[(8 * g + j) * ROWS + r] = eight[j];
                    }
                }
                e = 0;
                for (int i = 0; i < T * ROWS; i++) e = fmax(e, fabs(got[i] - want[i]));
                report(e <= tol, k->name, type_name(wt), k->dot8[wt] ? "dot8, dot8x2" : "tile8_rows", e / scale);
                free(tiles);
            }
            if (k->rows[wt]) { /* the multi-row decode kernel, 1 to 4 tokens */
                const int64_t nb = n / QK;
                lm_group4_q8_0 *groups = malloc(sizeof *groups * (size_t)(4 * (nb / 4) + 1));
                e = 0;
                for (int tt = 1; tt <= 4; tt++) {
                    lm_group4_build(aref, tt, nb, groups);
                    k->rows[wt](n, w, wstride, ROWS, tt, groups, aref, got, ROWS);
                    for (int i = 0; i < tt * ROWS; i++) e = fmax(e, fabs(got[i] - want[i]));
                }
                report(e <= tol, k->name, type_name(wt), "rows", e / scale);
                free(groups);
            }
            if (k->tile16_rows[wt]) {
                const int64_t nb = n / QK_K, ntiles = (T + 15) / 16;
                lm_tile16_q8_K *tiles = malloc(sizeof *tiles * (size_t)(ntiles * nb));
                lm_tile16_build((const block_q8_K *)(const void *)aref, T, nb, tiles);
                k->tile16_rows[wt](n, w, wstride, ROWS, tiles, ntiles, T, got, ROWS);
                e = 0;
                for (int i = 0; i < T * ROWS; i++) e = fmax(e, fabs(got[i] - want[i]));
                report(e <= tol, k->name, type_name(wt), "tile16_rows", e / scale);
                free(tiles);
            }
        }
        free(w), free(x), free(aref), free(aset), free(want), free(got);
    }
    check_ops();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
