/* block_cost.c -- what one weight block costs each kernel set's decode dot (dot_<w>_<a>: one
 * weight row against one token), in nanoseconds on one core with the rows in cache, so that the
 * number is the kernel's instructions and not the machine's memory (benchmarks/block_cost.sh).
 *
 * 32 rows of 4096 weights (at most 170 KiB: L2-resident) are dotted with one quantized token,
 * 200 times per trial; the minimum of 30 trials is printed, which drops the trials another
 * process or the host interrupted. Weights are arbitrary bytes with every float16 field set to a
 * normal value (1/64), so no NaN, infinity or subnormal slows a float unit. Each result is also
 * checked against the scalar set's, so a timed kernel is a right one.
 *
 * With -t T (T > 1) the row is dotted with T tokens by the set's any-token kernel (dotn), where
 * it has one, and the time is given per block and token.
 *
 *   block_cost [-t T] [TYPE ...]      TYPE: a weight type name as in kernels.h (Q4_K, Q6_K, ...)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dispatch.h"

enum { N = 4096, ROWS = 32, REPS = 200, TRIALS = 30 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* the weight types: name, block bytes and weights, offsets of its float16 fields (-1: none) */
typedef struct { const char *name; int wt; size_t bytes, elems; int half[2]; } wtype_info;
#define HALF2(T, a, b) {(int)offsetof(T, a), (int)offsetof(T, b)}
#define HALF1(T, a) {(int)offsetof(T, a), -1}
static const wtype_info types[] = {
    {"F16", LM_W_F16, 2, 1, {0, -1}},
    {"Q8_0", LM_W_Q8_0, sizeof(block_q8_0), QK, HALF1(block_q8_0, d)},
    {"Q4_0", LM_W_Q4_0, sizeof(block_q4_0), QK, HALF1(block_q4_0, d)},
    {"Q4_1", LM_W_Q4_1, sizeof(block_q4_1), QK, HALF2(block_q4_1, d, m)},
    {"Q5_0", LM_W_Q5_0, sizeof(block_q5_0), QK, HALF1(block_q5_0, d)},
    {"Q5_1", LM_W_Q5_1, sizeof(block_q5_1), QK, HALF2(block_q5_1, d, m)},
    {"Q2_K", LM_W_Q2_K, sizeof(block_q2_K), QK_K, HALF2(block_q2_K, d, dmin)},
    {"Q3_K", LM_W_Q3_K, sizeof(block_q3_K), QK_K, HALF1(block_q3_K, d)},
    {"Q4_K", LM_W_Q4_K, sizeof(block_q4_K), QK_K, HALF2(block_q4_K, d, dmin)},
    {"Q5_K", LM_W_Q5_K, sizeof(block_q5_K), QK_K, HALF2(block_q5_K, d, dmin)},
    {"Q6_K", LM_W_Q6_K, sizeof(block_q6_K), QK_K, HALF1(block_q6_K, d)},
    {"IQ4_NL", LM_W_IQ4_NL, sizeof(block_iq4_nl), QK, HALF1(block_iq4_nl, d)},
    {"IQ4_XS", LM_W_IQ4_XS, sizeof(block_iq4_xs), QK_K, HALF1(block_iq4_xs, d)},
};

int main(int argc, char **argv) {
    int T = 1;
    if (argc > 2 && !strcmp(argv[1], "-t")) {
        T = atoi(argv[2]);
        argv += 2;
        argc -= 2;
    }
    if (T < 1 || T > 16) return 2;
    const lm_kernels *sets[4];
    const int nsets = lm_available(sets, 4);
    static float x[16 * N], out[16 * ROWS];
    static unsigned char act[16 * N * 2]; /* up to 16 rows of the largest activation: Q8_0, 34 bytes per 32 */
    unsigned char *w = malloc(ROWS * N * 2);
    if (!w) return 1;
    srand(1);
    for (int i = 0; i < 16 * N; i++) x[i] = sinf(0.37f * (float)i) * 2.0f;
    if (T == 1)
        printf("ns per weight block, dot (one token), one core, rows in cache, min of %d trials\n\n| type |", TRIALS);
    else
        printf("ns per weight block and token, dotn (%d tokens), one core, rows in cache, min of %d trials\n\n| type |",
               T, TRIALS);
    for (int s = 0; s < nsets; s++) printf(" %s |", sets[s]->name);
    printf("\n|---|");
    for (int s = 0; s < nsets; s++) printf("---|");
    printf("\n");
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        const wtype_info *ti = &types[t];
        int wanted = argc < 2;
        for (int i = 1; i < argc; i++) wanted |= !strcmp(argv[i], ti->name);
        if (!wanted) continue;
        const size_t nblk = N / ti->elems, rb = nblk * ti->bytes;
        for (size_t i = 0; i < ROWS * rb; i++) w[i] = (unsigned char)(rand() >> 7);
        for (size_t b = 0; b < ROWS * nblk; b++)
            for (int h = 0; h < 2; h++)
                if (ti->half[h] >= 0) {
                    const lm_half one_64 = 0x2400; /* 2^-6 */
                    memcpy(w + b * ti->bytes + ti->half[h], &one_64, 2);
                }
        const lm_atype at = lm_act_of[ti->wt];
        const float *a = x;
        int64_t astride = N * (int64_t)sizeof(float);
        if (at != LM_A_F32) {
            astride = N / lm_act_block_elems[at] * lm_act_block_bytes[at];
            for (int j = 0; j < T; j++) lm_kernels_scalar.quantize[at](x + j * N, act + j * astride, N);
            a = (const float *)(const void *)act;
        }
        printf("| %s |", ti->name);
        for (int s = 0; s < nsets; s++) {
            const lm_dot_fn dot = sets[s]->dot[ti->wt];
            const lm_dotn_fn dotn = sets[s]->dotn[ti->wt];
            if (T > 1 && !dotn) {
                printf(" - |");
                continue;
            }
            double best = 1e30, err = 0, big = 0;
            for (int trial = 0; trial < TRIALS; trial++) {
                const double t0 = now();
                for (int k = 0; k < REPS; k++)
                    for (int r = 0; r < ROWS; r++) {
                        if (T == 1)
                            out[r] = dot(N, w + r * rb, a);
                        else
                            dotn(N, w + r * rb, a, astride, T, out + r, ROWS);
                    }
                const double el = now() - t0;
                if (el < best) best = el;
            }
            for (int r = 0; r < ROWS; r++)
                for (int j = 0; j < T; j++) {
                    const float ref =
                        lm_kernels_scalar.dot[ti->wt](N, w + r * rb, (const float *)(const void *)((const char *)a + j * astride));
                    err = fmax(err, fabs((double)out[j * ROWS + r] - ref));
                    big = fmax(big, fabs((double)ref));
                }
            if (err > 1e-4 * big + 1e-6) {
                printf(" WRONG (%.3g of %.3g) |", err, big);
                continue;
            }
            printf(" %.2f |", best / ((double)REPS * ROWS * (double)nblk * T) * 1e9);
        }
        printf("\n");
    }
    free(w);
    return 0;
}
