/* icount.c -- one call of one arm64 dot-product kernel, for counting the instructions it executes
 * under qemu (benchmarks/arm64_instruction_counts.sh). Either llamacy's (a kernel set's dot for one
 * token, or its dotn for T tokens) or llama.cpp's ggml_vec_dot_<type> (called once per token, as
 * llama.cpp's matrix product calls it on CPUs without i8mm). Weights and activations are
 * arbitrary bytes: the counts do not depend on the values.
 *
 *   icount llamacy|ggml TYPE SET N [T]      TYPE: q4_0 q8_0 q4_K q5_K q6_K; SET: neon | neon-dotprod
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

static unsigned char w[1 << 16], a[1 << 19];

int main(int argc, char **argv) {
    if (argc < 5) return 2;
    const char *who = argv[1], *type = argv[2], *set = argv[3];
    const int n = atoi(argv[4]), T = argc > 5 ? atoi(argv[5]) : 1;
    static const char *names[] = {"q4_0", "q8_0", "q4_K", "q5_K", "q6_K"};
    static const int wts[] = {LM_W_Q4_0, LM_W_Q8_0, LM_W_Q4_K, LM_W_Q5_K, LM_W_Q6_K};
    static const ggml_vec_dot_fn gg[] = {ggml_vec_dot_q4_0_q8_0, ggml_vec_dot_q8_0_q8_0, ggml_vec_dot_q4_K_q8_K,
                                         ggml_vec_dot_q5_K_q8_K, ggml_vec_dot_q6_K_q8_K};
    int i = 0;
    while (i < 5 && strcmp(type, names[i])) i++;
    if (i == 5 || T < 1 || T > 64) return 2;
    for (size_t j = 0; j < sizeof w; j++) w[j] = (unsigned char)(j * 2654435761u >> 13);
    for (size_t j = 0; j < sizeof a; j++) a[j] = (unsigned char)((j * 40503u >> 7) & 0x7f);
    const int wt = wts[i];
    const lm_atype at = lm_act_of[wt];
    const long astride = n / lm_act_block_elems[at] * lm_act_block_bytes[at];
    if ((long)sizeof w < n || (long)sizeof a < T * astride) return 2;
    float out[64];
    if (!strcmp(who, "ggml")) {
        for (int t = 0; t < T; t++) gg[i](n, out + t, 0, w, 0, a + t * astride, 0, 1);
    } else {
        const lm_kernels *k = !strcmp(set, "neon") ? &lm_kernels_neon : &lm_kernels_dotprod;
        if (T == 1) out[0] = k->dot[wt](n, w, (const float *)(const void *)a);
        else k->dotn[wt](n, w, a, astride, T, out, 1);
    }
    volatile float sink = out[0];
    (void)sink;
    return 0;
}
