/* k_rows.h -- a run of weight rows x 1..4 tokens (decode, small batches): rows_q4_0_q8_0, and
 * with AVX-512 VNNI rows_iq4_nl_q8_0 (the same body, nibbles looked up as levels + 128).
 * Where an ISA has none, its table says NULL.
 * Compiled once per instruction set through k_all.h (LM_ISA, LM_TARGET, LM_FN). Kernels are named by
 * operand types: <shape>_<weight type>_<activation type>. */

/* ---- a run of Q4_0 weight rows x 1..4 tokens (decode, small batches) ------------------------------
 * Reads the mapped layout as it is, two blocks per 256-bit step: their 16-byte nibble arrays are
 * two loads into one register, low and high nibbles separated by masks, and each token's
 * activations were regrouped once per call to match (lm_group4_q8_0: a group of 4 blocks, whose
 * first 32 bytes of lo/hi, 8 corr and 8 d values belong to blocks 0 and 1). The -8 nibble offset
 * is the sums' starting value (corr); the two blocks' scales fill lanes 0-3 and 4-7. Per 2 blocks
 * and token: 2 dpbusd (AVX-512 VNNI) or 2 maddubs + madd (AVX2: exact, 2 * 15 * 127 < 32768),
 * 1 convert, 1 scale multiply, 1 fma. Blocks after the last whole group go through
 * dot_q4_0_q8_0. out[t * ostride + r] for t < T <= 4, r < rows; NULL for the scalar build.
 * (A 512-bit version was measured no faster: see benchmarks/RESULTS.md.) */
#if LM_X86_SIMD
static LM_TARGET LM_ALWAYS_INLINE void
LM_FN(rows_q4_0_body)(const int T, const int iq4, int64_t n, const uint8_t *restrict w, int64_t wstride, int64_t rows,
                      const lm_group4_q8_0 *restrict g, const block_q8_0 *restrict act, float *restrict out,
                      int64_t ostride) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    /* IQ4_NL: the nibbles index the levels + 128 (unsigned), whose offset is 16 x Q4_0's */
    const __m256i levels = _mm256_xor_si256(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)lm_iq4_values)),
                                            _mm256_set1_epi8((char)0x80));
    const int64_t nb = n / QK, ng = nb / 4;
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *p = w + r * wstride;
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        for (int64_t k = 0; k < ng; k++, p += 4 * sizeof(block_q4_0)) {
            _mm_prefetch((const char *)p + LM_PREFETCH_BYTES, _MM_HINT_T0);
            for (int h = 0; h < 2; h++) {
                const block_q4_0 *b = (const block_q4_0 *)(const void *)p + 2 * h;
                const __m256i q = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)b[1].qs),
                                                   _mm_loadu_si128((const __m128i *)b[0].qs));
                __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                if (iq4) lo = _mm256_shuffle_epi8(levels, lo), hi = _mm256_shuffle_epi8(levels, hi);
                const __m256 dw = _mm256_set_m128(_mm_set1_ps(LM_CVTSH_SS(lm_load_half(&b[1].d))),
                                                  _mm_set1_ps(LM_CVTSH_SS(lm_load_half(&b[0].d))));
                for (int t = 0; t < T; t++) {
                    const lm_group4_q8_0 *a = g + t * ng + k;
                    const __m256i alo = _mm256_loadu_si256((const __m256i *)(a->lo + 32 * h));
                    const __m256i ahi = _mm256_loadu_si256((const __m256i *)(a->hi + 32 * h));
                    __m256i corr = _mm256_loadu_si256((const __m256i *)(a->corr + 8 * h));
                    if (iq4) corr = _mm256_slli_epi32(corr, 4); /* -8 sum -> -128 sum */
#if LM_ISA == LM_ISA_AVX512
                    const __m256i s = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(corr, lo, alo), hi, ahi);
#else
                    const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, alo), _mm256_maddubs_epi16(hi, ahi));
                    const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(s16, ones), corr);
#endif
                    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_loadu_ps(a->d + 8 * h)),
                                             acc[t]);
                }
            }
        }
        for (int t = 0; t < T; t++) {
            float v = lm_hsum256(acc[t]);
            if (nb > 4 * ng)
                v += (iq4 ? LM_FN(dot_iq4_nl_q8_0) : LM_FN(dot_q4_0_q8_0))(
                    n - 4 * QK * ng, w + r * wstride + 4 * ng * sizeof(block_q4_0),
                    (const float *)(const void *)(act + t * nb + 4 * ng));
            out[t * ostride + r] = v;
        }
    }
}
#endif

#if LM_X86_SIMD
#define LM_ROWS(wname, iq4)                                                                                  \
    static LM_TARGET void LM_FN(rows_##wname##_q8_0)(int64_t n, const void *restrict w, int64_t wstride,      \
                                                      int64_t rows, int T, const lm_group4_q8_0 *restrict g,    \
                                                      const void *restrict act, float *restrict out,            \
                                                      int64_t ostride) {                                        \
        const uint8_t *wp = (const uint8_t *)w;                                                              \
        const block_q8_0 *ap = (const block_q8_0 *)act;                                                      \
        switch (T) { /* one specialization per token count: the accumulators stay in registers */            \
        case 1: LM_FN(rows_q4_0_body)(1, iq4, n, wp, wstride, rows, g, ap, out, ostride); break;             \
        case 2: LM_FN(rows_q4_0_body)(2, iq4, n, wp, wstride, rows, g, ap, out, ostride); break;             \
        case 3: LM_FN(rows_q4_0_body)(3, iq4, n, wp, wstride, rows, g, ap, out, ostride); break;             \
        default: LM_FN(rows_q4_0_body)(4, iq4, n, wp, wstride, rows, g, ap, out, ostride); break;            \
        }                                                                                                    \
    }
LM_ROWS(q4_0, 0)
#if LM_ISA == LM_ISA_AVX512 /* levels + 128 reach 241: maddubs would saturate, dpbusd does not */
LM_ROWS(iq4_nl, 1)
#endif
#undef LM_ROWS
#endif
