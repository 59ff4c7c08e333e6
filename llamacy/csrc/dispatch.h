/* dispatch.h -- one build, several instruction sets, chosen at run time.
 *
 * Wheels are built with portable flags (no -march=native). Each ISA's kernels are compiled from
 * the same kernel files (k_quantize.h, k_dot.h, k_dot4.h, k_tile8.h, k_rows.h, k_tile16.h) in
 * that ISA's own translation unit (isa_scalar.c, isa_avx2.c, isa_avx512.c, isa_neon.c,
 * isa_dotprod.c: see simd.h for how each compiler targets them), and each unit ends with its own
 * complete kernel table, declared below; lm_select() picks
 * the best table the CPU supports, or the one LLAMACY_SIMD / LLAMACY_FORCE_SCALAR=1 name
 * (simd.h's lm_simd_requested, the one reader of the environment). Callers use the kernel table
 * `lm_k`, indexed by the weight types of kernels.h, never bare numbers.
 */
#ifndef LLAMACY_DISPATCH_H
#define LLAMACY_DISPATCH_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

/* the kernel sets, one per translation unit */
extern const lm_kernels lm_kernels_scalar;
#if LM_HAVE_X86_VARIANTS
extern const lm_kernels lm_kernels_avx2, lm_kernels_avx512;
#endif
#if LM_HAVE_ARM_VARIANTS
extern const lm_kernels lm_kernels_neon, lm_kernels_dotprod;
#endif

/* Q8_0 activation rows (T rows of nb blocks) -> ceil(T/8) tiles of nb lm_tile8_q8_0, zero-padded. */
static void lm_tile8_build(const void *act_bytes, int64_t T, int64_t nb, lm_tile8_q8_0 *tiles) {
    const block_q8_0 *act = (const block_q8_0 *)act_bytes;
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
static void lm_group4_build(const void *act_bytes, int64_t T, int64_t nb, lm_group4_q8_0 *groups) {
    const block_q8_0 *act = (const block_q8_0 *)act_bytes;
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

/* Q8_K activation rows (T rows of nb blocks) -> ceil(T/16) x nb lm_tile16_q8_K, zero-padded. */
static void lm_tile16_build(const void *act_bytes, int64_t T, int64_t nb, lm_tile16_q8_K *tiles) {
    const block_q8_K *act = (const block_q8_K *)act_bytes;
    for (int64_t g = 0; g < (T + 15) / 16; g++)
        for (int64_t ib = 0; ib < nb; ib++) {
            lm_tile16_q8_K *t = tiles + g * nb + ib;
            memset(t, 0, sizeof *t);
            for (int j = 0; j < 16 && g * 16 + j < T; j++) {
                const block_q8_K *b = act + (g * 16 + j) * nb + ib;
                for (int k = 0; k < QK_K / 4; k++) memcpy(t->q[k][j], b->qs + 4 * k, 4);
                for (int p = 0; p < QK_K / 32; p++) {
                    t->bs[p][j][0] = b->bsums[2 * p];
                    t->bs[p][j][1] = b->bsums[2 * p + 1];
                }
                t->d[j] = b->d;
            }
        }
}

static const lm_kernels *lm_k = &lm_kernels_scalar;

/* Every kernel set this CPU can run, slowest first; returns how many were written. */
static int lm_available(const lm_kernels **sets, int cap) {
    int n = 0;
    if (n < cap) sets[n++] = &lm_kernels_scalar;
#if LM_HAVE_X86_VARIANTS
    if (n < cap && lm_cpu_has(LM_ISA_AVX2)) sets[n++] = &lm_kernels_avx2;
    if (n < cap && lm_cpu_has(LM_ISA_AVX512)) sets[n++] = &lm_kernels_avx512;
#endif
#if LM_HAVE_ARM_VARIANTS
    if (n < cap && lm_cpu_has(LM_ISA_NEON)) sets[n++] = &lm_kernels_neon;
    if (n < cap && lm_cpu_has(LM_ISA_DOTPROD)) sets[n++] = &lm_kernels_dotprod;
#endif
    return n;
}

/* Select a kernel set by name: "auto" (the best supported) or one of lm_available's. Returns the
 * chosen name, or NULL when the requested one is not supported here (lm_k is then unchanged). */
static const char *lm_select(const char *want) {
    const lm_kernels *sets[4];
    int n = lm_available(sets, 4);
    if (!want || !strcmp(want, "auto")) {
        lm_k = sets[n - 1];
        return lm_k->name;
    }
    for (int i = 0; i < n; i++)
        if (!strcmp(want, sets[i]->name)) {
            lm_k = sets[i];
            return lm_k->name;
        }
    return NULL;
}

#endif /* LLAMACY_DISPATCH_H */
