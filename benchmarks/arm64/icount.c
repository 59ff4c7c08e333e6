/* icount.c -- one call of one arm64 dot-product kernel, for counting the instructions it executes
 * under qemu (benchmarks/arm64_instruction_counts.sh). Either llamacy's (a kernel set's dot for one
 * token, or its dotn for T tokens) or llama.cpp's ggml_vec_dot_<type> (called once per token, as
 * llama.cpp's matrix product calls it on CPUs without i8mm). Weights and activations are
 * arbitrary bytes: the counts do not depend on the values. "ggml-repack": llama.cpp's kernels for
 * the interleaved layouts it repacks Q4_0, Q8_0, IQ4_NL (4 rows) and Q4_K, Q5_K, Q6_K (8 rows)
 * into on CPUs with dotprod (ggml_gemv_* for one token, ggml_gemm_* for 4), here on 8 rows.
 *
 * "llamacy-rows": llamacy's 4-row kernel (dotprod: Q4_0, Q8_0, IQ4_NL) on 8 rows, T <= 4 tokens.
 *
 *   icount llamacy|llamacy-rows|ggml|ggml-repack TYPE SET N [T]
 *          TYPE: q4_0 q8_0 q4_K q5_K q6_K iq4_nl iq4_xs; SET: neon | neon-dotprod; T: tokens
 */
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"

typedef void (*ggml_vec_dot_fn)(int n, float *s, size_t bs, const void *vx, size_t bx, const void *vy, size_t by,
                                int nrc);
void ggml_vec_dot_q4_0_q8_0(int, float *, size_t, const void *, size_t, const void *, size_t, int);
void ggml_vec_dot_q8_0_q8_0(int, float *, size_t, const void *, size_t, const void *, size_t, int);
void ggml_vec_dot_q4_K_q8_K(int, float *, size_t, const void *, size_t, const void *, size_t, int);
void ggml_vec_dot_q5_K_q8_K(int, float *, size_t, const void *, size_t, const void *, size_t, int);
void ggml_vec_dot_q6_K_q8_K(int, float *, size_t, const void *, size_t, const void *, size_t, int);
void ggml_vec_dot_iq4_nl_q8_0(int, float *, size_t, const void *, size_t, const void *, size_t, int);
void ggml_vec_dot_iq4_xs_q8_K(int, float *, size_t, const void *, size_t, const void *, size_t, int);
typedef void (*ggml_gem_fn)(int n, float *s, size_t bs, const void *vx, const void *vy, int nr, int nc);
#define GEM(name) \
    void ggml_gemv_##name(int, float *, size_t, const void *, const void *, int, int); \
    void ggml_gemm_##name(int, float *, size_t, const void *, const void *, int, int);
GEM(q4_0_4x4_q8_0)
GEM(q8_0_4x4_q8_0)
GEM(q4_K_8x4_q8_K)
GEM(q5_K_8x4_q8_K)
GEM(q6_K_8x4_q8_K)
GEM(iq4_nl_4x4_q8_0)
#undef GEM

static unsigned char w[1 << 18], a[1 << 19];

int main(int argc, char **argv) {
    if (argc < 5) return 2;
    const char *who = argv[1], *type = argv[2], *set = argv[3];
    const int n = atoi(argv[4]), T = argc > 5 ? atoi(argv[5]) : 1;
    enum { NT = 7, ROWS = 8 };
    static const char *names[NT] = {"q4_0", "q8_0", "q4_K", "q5_K", "q6_K", "iq4_nl", "iq4_xs"};
    static const int wts[NT] = {LM_W_Q4_0, LM_W_Q8_0, LM_W_Q4_K, LM_W_Q5_K, LM_W_Q6_K, LM_W_IQ4_NL, LM_W_IQ4_XS};
    static const ggml_vec_dot_fn gg[NT] = {ggml_vec_dot_q4_0_q8_0, ggml_vec_dot_q8_0_q8_0, ggml_vec_dot_q4_K_q8_K,
                                           ggml_vec_dot_q5_K_q8_K, ggml_vec_dot_q6_K_q8_K, ggml_vec_dot_iq4_nl_q8_0,
                                           ggml_vec_dot_iq4_xs_q8_K};
    static const ggml_gem_fn gemv[NT] = {ggml_gemv_q4_0_4x4_q8_0, ggml_gemv_q8_0_4x4_q8_0, ggml_gemv_q4_K_8x4_q8_K,
                                         ggml_gemv_q5_K_8x4_q8_K, ggml_gemv_q6_K_8x4_q8_K, ggml_gemv_iq4_nl_4x4_q8_0,
                                         NULL};
    static const ggml_gem_fn gemm[NT] = {ggml_gemm_q4_0_4x4_q8_0, ggml_gemm_q8_0_4x4_q8_0, ggml_gemm_q4_K_8x4_q8_K,
                                         ggml_gemm_q5_K_8x4_q8_K, ggml_gemm_q6_K_8x4_q8_K, ggml_gemm_iq4_nl_4x4_q8_0,
                                         NULL};
    int i = 0;
    while (i < NT && strcmp(type, names[i])) i++;
    if (i == NT || T < 1 || T > 64) return 2;
    for (size_t j = 0; j < sizeof w; j++) w[j] = (unsigned char)(j * 2654435761u >> 13);
    for (size_t j = 0; j < sizeof a; j++) a[j] = (unsigned char)((j * 40503u >> 7) & 0x7f);
    const int wt = wts[i];
    const lm_atype at = lm_act_of[wt];
    const long astride = n / lm_act_block_elems[at] * lm_act_block_bytes[at];
    const long wstride = n / lm_act_block_elems[at] * (long)(wt == LM_W_Q4_0 ? sizeof(block_q4_0)
                         : wt == LM_W_Q8_0 ? sizeof(block_q8_0) : wt == LM_W_Q4_K ? sizeof(block_q4_K)
                         : wt == LM_W_Q5_K ? sizeof(block_q5_K) : wt == LM_W_Q6_K ? sizeof(block_q6_K)
                         : wt == LM_W_IQ4_NL ? sizeof(block_iq4_nl) : sizeof(block_iq4_xs));
    if ((long)sizeof w < ROWS * wstride || (long)sizeof a < T * astride) return 2;
    float out[64 * ROWS];
    if (!strcmp(who, "ggml-repack")) { /* ROWS rows; 1 token (gemv) or a multiple of 4 (gemm) */
        if (!gemv[i] || (T > 1 && T % 4)) return 2;
        if (T == 1) gemv[i](n, out, ROWS, w, a, 1, ROWS);
        else gemm[i](n, out, ROWS, w, a, T, ROWS);
    } else if (!strcmp(who, "llamacy-rows")) { /* ROWS rows, T <= 4 tokens: the 4-row kernel */
        const lm_kernels *k = !strcmp(set, "neon") ? &lm_kernels_neon : &lm_kernels_dotprod;
        if (!k->rows[wt] || T > 4) return 2;
        k->rows[wt](n, w, wstride, ROWS, T, NULL, a, out, ROWS);
    } else if (!strcmp(who, "ggml")) { /* one row, T tokens */
        for (int t = 0; t < T; t++) gg[i](n, out + t, 0, w, 0, a + t * astride, 0, 1);
    } else { /* one row, T tokens */
        const lm_kernels *k = !strcmp(set, "neon") ? &lm_kernels_neon : &lm_kernels_dotprod;
        if (T == 1) out[0] = k->dot[wt](n, w, (const float *)(const void *)a);
        else k->dotn[wt](n, w, a, astride, T, out, 1);
    }
    volatile float sink = out[0];
    (void)sink;
    return 0;
}
