/* quants.h -- GGML block layouts, one struct per type, each with its size assertion.
 *
 * These are the bytes of a GGUF file's quantized tensors (and of the 8-bit activation blocks
 * the kernels quantize the input vector into). The numpy twins of these layouts live in
 * llamacy/quants.py (BLOCKS) and assert the same sizes.
 */
#ifndef LLAMACY_QUANTS_H
#define LLAMACY_QUANTS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(_MSC_VER) && !defined(__clang__)
#include <assert.h>
#define LM_STATIC_ASSERT(c, m) static_assert(c, m)
#else
#define LM_STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif

typedef uint16_t lm_half; /* IEEE binary16, stored as bits */

#define QK 32    /* elements per legacy block   */
#define QK_K 256 /* elements per k-quant block  */

/* -- legacy quants: 32 weights per block ------------------------------------------------ */
typedef struct { lm_half d; uint8_t qs[QK / 2]; } block_q4_0;                  /* w = (q - 8) d        */
typedef struct { lm_half d, m; uint8_t qs[QK / 2]; } block_q4_1;               /* w = q d + m          */
typedef struct { lm_half d; uint8_t qh[4]; uint8_t qs[QK / 2]; } block_q5_0;   /* w = (q - 16) d, 5 bits */
typedef struct { lm_half d, m; uint8_t qh[4]; uint8_t qs[QK / 2]; } block_q5_1; /* w = q d + m, 5 bits  */
typedef struct { lm_half d; int8_t qs[QK]; } block_q8_0;                       /* w = q d              */
typedef struct { lm_half d, s; int8_t qs[QK]; } block_q8_1;                    /* s = d * sum(q)       */
LM_STATIC_ASSERT(sizeof(block_q4_0) == 18, "block_q4_0 is 18 bytes");
LM_STATIC_ASSERT(sizeof(block_q4_1) == 20, "block_q4_1 is 20 bytes");
LM_STATIC_ASSERT(sizeof(block_q5_0) == 22, "block_q5_0 is 22 bytes");
LM_STATIC_ASSERT(sizeof(block_q5_1) == 24, "block_q5_1 is 24 bytes");
LM_STATIC_ASSERT(sizeof(block_q8_0) == 34, "block_q8_0 is 34 bytes");
LM_STATIC_ASSERT(sizeof(block_q8_1) == 36, "block_q8_1 is 36 bytes");

/* -- k-quants: 256 weights per super-block ----------------------------------------------- */
/* Q2_K: 16 sub-blocks of 16, 2-bit weights; a 4-bit scale and a 4-bit min per sub-block. */
typedef struct { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; lm_half d, dmin; } block_q2_K;
/* Q3_K: 16 sub-blocks of 16, 2 low bits in qs and the third in hmask; 6-bit signed scales in 12 bytes. */
typedef struct { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; lm_half d; } block_q3_K;
/* Q4_K/Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins packed in 12 bytes. */
typedef struct { lm_half d, dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; } block_q4_K;
typedef struct { lm_half d, dmin; uint8_t scales[12]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_K;
/* Q6_K: 16 sub-blocks of 16 with int8 scales; 4 low bits in ql, 2 high bits in qh. */
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; lm_half d; } block_q6_K;
/* Q8_K: the activation side of every k-quant dot product; bsums = sums of 16 quants. */
typedef struct { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } block_q8_K;
LM_STATIC_ASSERT(sizeof(block_q2_K) == 84, "block_q2_K is 84 bytes");
LM_STATIC_ASSERT(sizeof(block_q3_K) == 110, "block_q3_K is 110 bytes");
LM_STATIC_ASSERT(sizeof(block_q4_K) == 144, "block_q4_K is 144 bytes");
LM_STATIC_ASSERT(sizeof(block_q5_K) == 176, "block_q5_K is 176 bytes");
LM_STATIC_ASSERT(sizeof(block_q6_K) == 210, "block_q6_K is 210 bytes");
LM_STATIC_ASSERT(sizeof(block_q8_K) == 292, "block_q8_K is 292 bytes");

/* -- non-linear 4-bit quants: each nibble picks one of 16 fixed levels (lm_iq4_values) -------- */
/* IQ4_NL: 32 weights per block, w = d * values[q]; nibbles as Q4_0 (elements j and j+16). */
typedef struct { lm_half d; uint8_t qs[QK / 2]; } block_iq4_nl;
/* IQ4_XS: 8 sub-blocks of 32, w = d * (ls - 32) * values[q], ls 6 bits: 4 in scales_l, 2 in scales_h. */
typedef struct { lm_half d; uint16_t scales_h; uint8_t scales_l[QK_K / 64]; uint8_t qs[QK_K / 2]; } block_iq4_xs;
LM_STATIC_ASSERT(sizeof(block_iq4_nl) == 18, "block_iq4_nl is 18 bytes");
LM_STATIC_ASSERT(sizeof(block_iq4_xs) == 136, "block_iq4_xs is 136 bytes");
/* the 16 levels (ggml's kvalues_iq4nl) */
static const int8_t lm_iq4_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
/* sub-block ib's 6-bit scale of an IQ4_XS block, minus its offset 32 */
static inline int lm_iq4_xs_scale(const block_iq4_xs *b, int ib) {
    return (((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf) | (((b->scales_h >> (2 * ib)) & 3) << 4)) - 32;
}

/* How far ahead of the current block the streaming kernels prefetch each weight row they read.
 * The hardware prefetchers alone do not keep a compute-bound loop over several row streams fed;
 * the distances are the best measured (benchmarks/RESULTS.md and the commit that set them).
 * Prefetching past the end of a mapping is harmless: prefetches never fault. */
#define LM_PREFETCH_BYTES 2048
/* the k-quant and IQ4_XS decode dots, whose 256-weight blocks cost more compute per byte: 4096
 * (7B Q4_K_M's Q4_K rows streamed by 2 threads, min of 7 passes in two rounds: 52.1 / 52.9 ms
 * at 4096 against 54.5 / 55.0 at 2048, 52.9 / 52.4 at 6144; Q6_K rows alike at all three) */
#define LM_KPREFETCH_BYTES 4096
/* the same for the kernels that stream 4 rows at once (more streams, more lead) */
#define LM_PREFETCH_ROWS_BYTES 4096

/* -- activations of 8 tokens, transposed for the tiled kernels (ours, not a GGUF layout) ------ */
/* For one Q8_0 block column of 8 tokens: q[k][t] holds elements 4k..4k+3 of token t, so one
 * 256-bit load gives the same 4 elements of all 8 tokens (one int32 lane per token); d[t] is
 * token t's scale, s[t] the sum of its 32 quants (for the weights' offset corrections). */
typedef struct { int8_t q[8][8][4]; float d[8]; int32_t s[8]; } lm_tile8_q8_0;
LM_STATIC_ASSERT(sizeof(lm_tile8_q8_0) == 320, "lm_tile8_q8_0 is 320 bytes");

/* -- activations of 16 tokens for the k-quant tile kernel (ours, not a GGUF layout) -------------- */
/* For one Q8_K block column of 16 tokens: q[g][t] holds elements 4g..4g+3 of token t, so one
 * 512-bit load gives the same 4 elements of all 16 tokens (one int32 lane per token, as dpbusd
 * multiplies them); bs[p][t] holds token t's sums of 16 for sub-blocks 2p and 2p+1 (an int16 pair
 * per lane, for vpmaddwd against the weights' offsets); d[t] is token t's scale. */
typedef struct { int8_t q[QK_K / 4][16][4]; int16_t bs[QK_K / 32][16][2]; float d[16]; } lm_tile16_q8_K;
LM_STATIC_ASSERT(sizeof(lm_tile16_q8_K) == 4672, "lm_tile16_q8_K is 4672 bytes");

/* -- one token's Q8_0 activations regrouped for Q4_0 weights, 4 blocks (128 elements) a group --
 * A Q4_0 block keeps elements 0..15 in the low nibbles of its 16 bytes and 16..31 in the high
 * nibbles. The decode kernel gathers the nibble bytes of 4 consecutive blocks into one 512-bit
 * register, so lo[16X + j] / hi[16X + j] hold elements j / 16 + j of block X; one dpbusd then
 * multiplies 128 weights with no shuffling of activations. The weights' +8 nibble offset is
 * removed by starting the sums at corr (-8 * sum of block X's quants in lane 4X), d holds block
 * X's scale in the four int32 lanes 4X..4X+3 its products land in. */
typedef struct { int8_t lo[64]; int8_t hi[64]; int32_t corr[16]; float d[16]; } lm_group4_q8_0;
LM_STATIC_ASSERT(sizeof(lm_group4_q8_0) == 256, "lm_group4_q8_0 is 256 bytes");

/* -- half precision ------------------------------------------------------------------------ */
static inline float lm_f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t lm_bits_from_f32(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* binary16 -> binary32, exact for every input (subnormals, inf, nan). */
static inline float lm_h2f(lm_half h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
    if (exp == 0x1f) return lm_f32_from_bits(sign | 0x7f800000u | (man << 13));
    if (exp == 0) { /* zero or subnormal: man * 2^-24 */
        float v = (float)man * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    return lm_f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

/* binary32 -> binary16, round to nearest even (as the F16C instruction and numpy do). */
static inline lm_half lm_f2h(float f) {
    uint32_t x = lm_bits_from_f32(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (lm_half)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0)); /* inf/nan */
    if (ax >= 0x477ff000u) return (lm_half)(sign | 0x7c00u); /* rounds to >= 65520: inf */
    if (ax < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        if (ax < 0x33000000u) return (lm_half)sign; /* < 2^-25: rounds to zero */
        uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (lm_half)(sign | r);
    }
    uint32_t r = ax + 0xc8000fffu + ((ax >> 13) & 1); /* rebias exponent, round to even */
    return (lm_half)(sign | (r >> 13));
}

static inline float lm_bf2f(uint16_t b) { return lm_f32_from_bits((uint32_t)b << 16); }

static inline lm_half lm_load_half(const void *p) { lm_half h; memcpy(&h, p, 2); return h; }

#endif /* LLAMACY_QUANTS_H */
