/* k_tile16.h -- k-quant (and IQ4_XS) weight rows x tiles of 16 tokens (prefill): tile16_rows_<w>_q8_K.
 * Compiled once per instruction set through k_all.h; only AVX-512 VNNI has a body.
 *
 * dpbusd multiplies 4 unsigned weight bytes by 4 signed activation bytes and sums them into an
 * int32 lane: with the activations transposed (lm_tile16_q8_K: one lane per token) and the
 * weights' 4 bytes broadcast to every lane, one instruction does 64 multiply-adds for 16 tokens,
 * and the sub-block scales are applied once per 16 weights on int32 for all 16 tokens -- instead
 * of a scale multiply per weight pair and token as in the row kernels. The weights are unpacked
 * once per super-block from the mapped file (k_dot.h's unpack functions) and stay there. */

#if LM_ISA == LM_ISA_AVX512
#define LM_TILE16_CHUNK 32 /* tiles (of 16 tokens) whose sums are kept at once: 512 tokens */

/* the unpacked block as plain bytes and int16 scales/offsets, for broadcasting */
static LM_TARGET inline void LM_FN(kblock_flat)(const LM_KBLOCK *restrict k, uint8_t *restrict qb, int16_t *restrict sc,
                                                int16_t *restrict off) {
    int16_t t[16];
    for (int v = 0; v < 8; v++) {
        _mm256_storeu_si256((__m256i *)(void *)(qb + 32 * v), k->q[v]);
        _mm256_storeu_si256((__m256i *)(void *)t, k->sc[v]);
        sc[2 * v] = t[0];
        sc[2 * v + 1] = t[8];
    }
    _mm256_storeu_si256((__m256i *)(void *)off, k->off);
}

/* LM_TILE16_ROWS weight rows at a time: each tile load serves them all (the tiles stream from L2) */
#define LM_TILE16_ROWS 8
typedef struct {
    uint8_t q[LM_TILE16_ROWS][QK_K];
    int16_t sc[LM_TILE16_ROWS][16], off[LM_TILE16_ROWS][16];
    float dq[LM_TILE16_ROWS], doff[LM_TILE16_ROWS];
} LM_FN(lm_flatrows);

/* acc[r] (16 tokens each) += flat row r's block . one tile, for the first nr rows */
static LM_TARGET inline void LM_FN(kblock_tile16)(const LM_FN(lm_flatrows) *restrict f, int nr,
                                                  const lm_tile16_q8_K *restrict tile, __m512 *restrict acc) {
    __m512i s[LM_TILE16_ROWS], o[LM_TILE16_ROWS];
    for (int r = 0; r < LM_TILE16_ROWS; r++) s[r] = o[r] = _mm512_setzero_si512();
    for (int j = 0; j < 16; j++) { /* sub-block j: weights 16j .. 16j+15, 4 groups of 4 */
        const __m512i a0 = _mm512_loadu_si512((const void *)tile->q[4 * j]);
        const __m512i a1 = _mm512_loadu_si512((const void *)tile->q[4 * j + 1]);
        const __m512i a2 = _mm512_loadu_si512((const void *)tile->q[4 * j + 2]);
        const __m512i a3 = _mm512_loadu_si512((const void *)tile->q[4 * j + 3]);
        for (int r = 0; r < nr; r++) {
            const int32_t *w4 = (const int32_t *)(const void *)(f->q[r] + 16 * j);
            __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi32(w4[0]), a0);
            p = _mm512_dpbusd_epi32(p, _mm512_set1_epi32(w4[1]), a1);
            p = _mm512_dpbusd_epi32(p, _mm512_set1_epi32(w4[2]), a2);
            p = _mm512_dpbusd_epi32(p, _mm512_set1_epi32(w4[3]), a3);
            s[r] = _mm512_add_epi32(s[r], _mm512_mullo_epi32(p, _mm512_set1_epi32(f->sc[r][j])));
        }
    }
    for (int q = 0; q < 8; q++) { /* offsets: sub-blocks 2q, 2q+1 against each token's sums */
        const __m512i b = _mm512_loadu_si512((const void *)tile->bs[q]);
        for (int r = 0; r < nr; r++) {
            const int32_t pair = (int32_t)((uint32_t)(uint16_t)f->off[r][2 * q] |
                                           ((uint32_t)(uint16_t)f->off[r][2 * q + 1] << 16));
            o[r] = _mm512_add_epi32(o[r], _mm512_madd_epi16(b, _mm512_set1_epi32(pair)));
        }
    }
    const __m512 d = _mm512_loadu_ps(tile->d);
    for (int r = 0; r < nr; r++) {
        const __m512 blk = _mm512_fmsub_ps(_mm512_set1_ps(f->dq[r]), _mm512_cvtepi32_ps(s[r]),
                                           _mm512_mul_ps(_mm512_set1_ps(f->doff[r]), _mm512_cvtepi32_ps(o[r])));
        acc[r] = _mm512_fmadd_ps(d, blk, acc[r]);
    }
}

/* IQ4_XS as a k-quant block, for this kernel only: q = level + 128 (unsigned: dpbusd takes it
 * whole; kblock_acc's maddubs would saturate), each scale of 32 as the scale of both its 16s, and
 * the +128 taken back through the tokens' sums: offset = scale, doff = 128 d. */
static LM_TARGET inline void LM_FN(unpack_iq4_xs)(const block_iq4_xs *b, LM_KBLOCK *k) {
    int16_t sc[16];
    for (int j = 0; j < QK_K / 32; j++) sc[2 * j] = sc[2 * j + 1] = (int16_t)lm_iq4_xs_scale(b, j);
    const __m256i s16 = _mm256_loadu_si256((const __m256i *)(void *)sc);
    LM_FN(k_spread)(s16, k);
    k->off = s16;
    k->dq = LM_CVTSH_SS(b->d);
    k->doff = 128.0f * k->dq;
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    for (int v = 0; v < QK_K / 32; v++) {
        __m256i mag, lv;
        LM_FN(iq4_levels)(b->qs + 16 * v, &mag, &lv);
        k->q[v] = _mm256_xor_si256(lv, bias); /* + 128, as an unsigned byte */
    }
}

#define LM_KQUANT_TILE16(wname, btype)                                                                       \
    static LM_TARGET void LM_FN(tile16_rows_##wname##_q8_K)(int64_t n, const void *restrict w, int64_t wstride,  \
                                                             int64_t rows, const lm_tile16_q8_K *restrict tiles,  \
                                                             int64_t ntiles, int64_t T, float *restrict out,      \
                                                             int64_t ostride) {                                   \
        const int64_t nb = n / QK_K;                                                                         \
        LM_KBLOCK k;                                                                                         \
        LM_FN(lm_flatrows) f;                                                                                   \
        __m512 acc[LM_TILE16_CHUNK][LM_TILE16_ROWS];                                                         \
        for (int64_t r0 = 0; r0 < rows; r0 += LM_TILE16_ROWS) {                                              \
            const int nr = rows - r0 < LM_TILE16_ROWS ? (int)(rows - r0) : LM_TILE16_ROWS;                   \
            for (int64_t g0 = 0; g0 < ntiles; g0 += LM_TILE16_CHUNK) {                                       \
                const int64_t m = ntiles - g0 < LM_TILE16_CHUNK ? ntiles - g0 : LM_TILE16_CHUNK;             \
                for (int64_t g = 0; g < m; g++)                                                              \
                    for (int r = 0; r < LM_TILE16_ROWS; r++) acc[g][r] = _mm512_setzero_ps();                \
                for (int64_t ib = 0; ib < nb; ib++) {                                                        \
                    for (int r = 0; r < nr; r++) {                                                           \
                        LM_FN(unpack_##wname)((const btype *)((const char *)w + (r0 + r) * wstride) + ib, &k); \
                        LM_FN(kblock_flat)(&k, f.q[r], f.sc[r], f.off[r]);                                   \
                        f.dq[r] = k.dq;                                                                      \
                        f.doff[r] = k.doff;                                                                  \
                    }                                                                                        \
                    for (int64_t g = 0; g < m; g++) LM_FN(kblock_tile16)(&f, nr, tiles + (g0 + g) * nb + ib, acc[g]); \
                }                                                                                            \
                for (int64_t g = 0; g < m; g++)                                                              \
                    for (int r = 0; r < nr; r++) {                                                           \
                        float v[16];                                                                         \
                        _mm512_storeu_ps(v, acc[g][r]);                                                      \
                        for (int64_t t = 0; t < 16 && 16 * (g0 + g) + t < T; t++)                            \
                            out[(16 * (g0 + g) + t) * ostride + r0 + r] = v[t];                              \
                    }                                                                                        \
            }                                                                                                \
        }                                                                                                    \
    }
LM_KQUANT_TILE16(q2_K, block_q2_K)
LM_KQUANT_TILE16(q3_K, block_q3_K)
LM_KQUANT_TILE16(q4_K, block_q4_K)
LM_KQUANT_TILE16(q5_K, block_q5_K)
LM_KQUANT_TILE16(q6_K, block_q6_K)
LM_KQUANT_TILE16(iq4_xs, block_iq4_xs)
#undef LM_KQUANT_TILE16
#undef LM_TILE16_ROWS
#endif
