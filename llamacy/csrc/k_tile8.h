/* k_tile8.h -- weight rows x a tile of 8 tokens (prefill, batched decode): tile8_rows_q4_0_q8_0,
 * and for Q8_0 with VNNI dot8_q8_0_q8_0 / dot8x2_q8_0_q8_0. Where an ISA has none, its table says NULL.
 * Compiled once per instruction set through k_all.h (LM_ISA, LM_TARGET, LM_FN). Kernels are named by
 * operand types: <shape>_<weight type>_<activation type>. With AVX-512 VNNI, IQ4_NL shares Q4_0's
 * body (tile8_rows_iq4_nl_q8_0: nibbles looked up as levels + 128). */

/* ---- one weight row x 8 tokens (prefill, batched decode): lanes are tokens ------------------------
 * Each weight block is unpacked once to unsigned bytes; for each group of 4 elements, the 4 weight
 * bytes are broadcast to all 8 lanes and multiplied with the same 4 elements of the 8 tokens
 * (lm_tile8_q8_0), so one instruction does 32 multiply-adds for 8 different tokens. Unsigned
 * weights carry an offset (Q4_0: q+8 stored as 0..15; Q8_0: shifted by +128), removed with the
 * token's quant sum: sum((w+o)*a) - o*sum(a). Q8_0 (dot8, dot8x2: one or two rows, unpacked
 * through the stack) only with dpbusd; Q4_0 (tile8_rows: up to 4 rows, nibbles masked in
 * registers) with dpbusd or AVX2's maddubs, exact for 0..15. NULL otherwise (the caller falls
 * back to dot4). */
#if LM_X86_SIMD
#if LM_ISA == LM_ISA_AVX512
#define LM_DPBUSD(acc, u, s) _mm256_dpbusd_epi32(acc, u, s)
#else /* exact only while 2*|u|*|s| < 32768: Q4_0's 0..15 weights */
#define LM_DPBUSD(acc, u, s) _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)))
#endif

/* R <= 4 Q4_0 weight rows against one tile of 8 tokens, reading the packed nibbles directly: the
 * raw dword of bytes 4k..4k+3 is broadcast once; & 0x0f gives elements 4k..4k+3, & 0xf0 gives
 * 16 x elements 16+4k..16+4k+3, whose sums are divided by 16 (exactly: >> 4) at the end of the
 * block. 8 dpbusd + 8 ands + 4 broadcasts per row and block, the tile loads shared by the rows.
 * AVX2 has no dpbusd; its maddubs would saturate on 16 x nibble, so there the high nibbles are
 * shifted down instead (one more operation) and nothing is divided at the end.
 * out[j * ostride + r] for the first ntok tokens of the tile. */
static LM_TARGET LM_ALWAYS_INLINE void
LM_FN(tile8_rows_q4_0_body)(const int R, const int iq4, int64_t n, const uint8_t *restrict w, int64_t wstride,
                            const lm_tile8_q8_0 *restrict t, int ntok, float *restrict out, int64_t ostride) {
    const __m256i mlo = _mm256_set1_epi8(0x0f);
    /* IQ4_NL (iq4 = 1, dpbusd only): both nibbles looked up as levels + 128, offset -128 x sum */
    const __m256i levels = _mm256_xor_si256(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)lm_iq4_values)),
                                            _mm256_set1_epi8((char)0x80));
#if LM_ISA == LM_ISA_AVX512
    const __m256i mhi = _mm256_set1_epi8((char)0xf0);
#define LM_LO_NIBBLES(raw) (iq4 ? _mm256_shuffle_epi8(levels, _mm256_and_si256(raw, mlo)) : _mm256_and_si256(raw, mlo))
#define LM_HI_NIBBLES(raw) /* Q4_0: 16 x the high nibbles */                                              \
    (iq4 ? _mm256_shuffle_epi8(levels, _mm256_and_si256(_mm256_srli_epi16(raw, 4), mlo)) : _mm256_and_si256(raw, mhi))
#define LM_HI_SUM(x) (iq4 ? (x) : _mm256_srai_epi32(x, 4))
#else
#define LM_LO_NIBBLES(raw) _mm256_and_si256(raw, mlo)
#define LM_HI_NIBBLES(raw) _mm256_and_si256(_mm256_srli_epi16(raw, 4), mlo)
#define LM_HI_SUM(x) (x)
#endif
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const block_q4_0 *b[4];
    for (int r = 0; r < R; r++) b[r] = (const block_q4_0 *)(const void *)(w + r * wstride);
    for (int64_t ib = 0; ib < n / QK; ib++, t++) {
        /* the weights' +8 (IQ4_NL: +128) offset: start every sum at -8 (-128) x the token's quant sum */
        const __m256i c = _mm256_sub_epi32(_mm256_setzero_si256(),
                                           _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)t->s), iq4 ? 7 : 3));
        __m256i lo[4], hi[4];
        for (int r = 0; r < R; r++) {
            _mm_prefetch((const char *)(b[r] + ib) + LM_PREFETCH_ROWS_BYTES, _MM_HINT_T0);
            lo[r] = c;
            hi[r] = _mm256_setzero_si256();
        }
        for (int k = 0; k < 4; k++) {
            const __m256i a_lo = _mm256_loadu_si256((const __m256i *)t->q[k]);
            const __m256i a_hi = _mm256_loadu_si256((const __m256i *)t->q[k + 4]);
            for (int r = 0; r < R; r++) {
                int32_t v;
                memcpy(&v, b[r][ib].qs + 4 * k, 4);
                const __m256i raw = _mm256_set1_epi32(v);
                lo[r] = LM_DPBUSD(lo[r], LM_LO_NIBBLES(raw), a_lo);
                hi[r] = LM_DPBUSD(hi[r], LM_HI_NIBBLES(raw), a_hi);
            }
        }
        const __m256 da = _mm256_loadu_ps(t->d);
        for (int r = 0; r < R; r++) {
            const __m256i sum = _mm256_add_epi32(lo[r], LM_HI_SUM(hi[r]));
            acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(LM_CVTSH_SS(b[r][ib].d)), da), _mm256_cvtepi32_ps(sum),
                                     acc[r]);
        }
    }
#undef LM_LO_NIBBLES
#undef LM_HI_NIBBLES
#undef LM_HI_SUM
    for (int r = 0; r < R; r++) {
        float res[8];
        _mm256_storeu_ps(res, acc[r]);
        for (int j = 0; j < ntok; j++) out[j * ostride + r] = res[j];
    }
}

#define LM_TILE8_ROWS(wname, iq4)                                                                            \
    static LM_TARGET void LM_FN(tile8_rows_##wname##_q8_0)(int64_t n, const void *restrict w, int64_t wstride, \
                                                            int64_t rows, const lm_tile8_q8_0 *restrict t,      \
                                                            int ntok, float *restrict out, int64_t ostride) {   \
        const uint8_t *wp = (const uint8_t *)w;                                                              \
        int64_t r = 0;                                                                                       \
        for (; r + 4 <= rows; r += 4)                                                                        \
            LM_FN(tile8_rows_q4_0_body)(4, iq4, n, wp + r * wstride, wstride, t, ntok, out + r, ostride);    \
        switch (rows - r) {                                                                                  \
        case 3: LM_FN(tile8_rows_q4_0_body)(3, iq4, n, wp + r * wstride, wstride, t, ntok, out + r, ostride); break; \
        case 2: LM_FN(tile8_rows_q4_0_body)(2, iq4, n, wp + r * wstride, wstride, t, ntok, out + r, ostride); break; \
        case 1: LM_FN(tile8_rows_q4_0_body)(1, iq4, n, wp + r * wstride, wstride, t, ntok, out + r, ostride); break; \
        default: break;                                                                                      \
        }                                                                                                    \
    }
LM_TILE8_ROWS(q4_0, 0)
#if LM_ISA == LM_ISA_AVX512 /* levels + 128 reach 241: maddubs would saturate, dpbusd does not */
LM_TILE8_ROWS(iq4_nl, 1)
#endif
#undef LM_TILE8_ROWS

#if LM_ISA == LM_ISA_AVX512
/* Q8_0 weights: one row, or two against the same tile (each activation load serves both). */
static LM_TARGET inline __m256 LM_FN(tile8_block)(const uint8_t *wu, float dw, const lm_tile8_q8_0 *t, int shift,
                                                  __m256 acc) {
    /* four independent accumulators: dpbusd's latency, not its throughput, would bound one chain */
    __m256i p[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int k = 0; k < 8; k++) {
        int32_t w4;
        memcpy(&w4, wu + 4 * k, 4);
        p[k & 3] = LM_DPBUSD(p[k & 3], _mm256_set1_epi32(w4), _mm256_loadu_si256((const __m256i *)t->q[k]));
    }
    __m256i sum = _mm256_add_epi32(_mm256_add_epi32(p[0], p[1]), _mm256_add_epi32(p[2], p[3]));
    sum = _mm256_sub_epi32(sum, _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)t->s), shift));
    const __m256 d = _mm256_mul_ps(_mm256_set1_ps(dw), _mm256_loadu_ps(t->d));
    return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sum), acc);
}

/* Two weight rows against the same tile: each activation load serves both rows. */
static LM_TARGET inline void LM_FN(tile8_block2)(const uint8_t *wu0, const uint8_t *wu1, float dw0, float dw1,
                                                 const lm_tile8_q8_0 *t, int shift, __m256 *acc0, __m256 *acc1) {
    __m256i p0[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    __m256i p1[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int k = 0; k < 8; k++) {
        int32_t w0, w1;
        memcpy(&w0, wu0 + 4 * k, 4);
        memcpy(&w1, wu1 + 4 * k, 4);
        const __m256i a = _mm256_loadu_si256((const __m256i *)t->q[k]);
        p0[k & 1] = LM_DPBUSD(p0[k & 1], _mm256_set1_epi32(w0), a);
        p1[k & 1] = LM_DPBUSD(p1[k & 1], _mm256_set1_epi32(w1), a);
    }
    const __m256i off = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)t->s), shift);
    const __m256 da = _mm256_loadu_ps(t->d);
    const __m256i s0 = _mm256_sub_epi32(_mm256_add_epi32(p0[0], p0[1]), off);
    const __m256i s1 = _mm256_sub_epi32(_mm256_add_epi32(p1[0], p1[1]), off);
    *acc0 = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(dw0), da), _mm256_cvtepi32_ps(s0), *acc0);
    *acc1 = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(dw1), da), _mm256_cvtepi32_ps(s1), *acc1);
}


static LM_TARGET void LM_FN(dot8_q8_0_q8_0)(int64_t n, const void *restrict wv, const lm_tile8_q8_0 *restrict t,
                                            float *restrict out) {
    const block_q8_0 *w = (const block_q8_0 *)wv;
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    __m256 acc = _mm256_setzero_ps();
    uint8_t wu[32];
    for (int64_t ib = 0; ib < n / QK; ib++) {
        _mm256_storeu_si256((__m256i *)wu, _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)w[ib].qs), bias));
        acc = LM_FN(tile8_block)(wu, LM_CVTSH_SS(w[ib].d), t + ib, 7, acc); /* q = u - 128 */
    }
    _mm256_storeu_ps(out, acc);
}
static LM_TARGET void LM_FN(dot8x2_q8_0_q8_0)(int64_t n, const void *restrict wv0, const void *restrict wv1,
                                              const lm_tile8_q8_0 *restrict t, float *restrict out) {
    const block_q8_0 *w0 = (const block_q8_0 *)wv0, *w1 = (const block_q8_0 *)wv1;
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    uint8_t u0[32], u1[32];
    for (int64_t ib = 0; ib < n / QK; ib++) {
        _mm_prefetch((const char *)(w0 + ib) + LM_PREFETCH_BYTES, _MM_HINT_T0);
        _mm_prefetch((const char *)(w1 + ib) + LM_PREFETCH_BYTES, _MM_HINT_T0);
        _mm256_storeu_si256((__m256i *)u0, _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)w0[ib].qs), bias));
        _mm256_storeu_si256((__m256i *)u1, _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)w1[ib].qs), bias));
        LM_FN(tile8_block2)(u0, u1, LM_CVTSH_SS(w0[ib].d), LM_CVTSH_SS(w1[ib].d), t + ib, 7, &acc0, &acc1);
    }
    _mm256_storeu_ps(out, acc0);
    _mm256_storeu_ps(out + 8, acc1);
}
#endif
#undef LM_DPBUSD
#endif
