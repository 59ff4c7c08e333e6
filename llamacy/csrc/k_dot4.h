/* k_dot4.h -- one weight row x 4 activation rows (prefill): dot4_<w>_<a>(n, w, a, astride, out).
 * Compiled once per instruction set through k_all.h (LM_ISA, LM_TARGET, LM_FN). Kernels are named by
 * operand types: <shape>_<weight type>_<activation type>. */

/* ---- one weight row x 4 activation rows (prefill): unpack each weight block once ----------------- */
/* out[j] = dot(w, a + j*astride) for j < 4. The generic version loops over the single-row kernel;
 * Q4_0 and Q8_0 keep the unpacked block in registers for the 4 tokens. */
#define LM_X4_GENERIC(wname, aname)                                                                      \
    static LM_TARGET void LM_FN(dot4_##wname##_##aname)(int64_t n, const void *restrict w,                \
                                                         const void *restrict a, int64_t astride,          \
                                                         float *restrict out) {                            \
        for (int j = 0; j < 4; j++)                                                                      \
            out[j] = LM_FN(dot_##wname##_##aname)(n, w, (const float *)((const char *)a + j * astride));  \
    }
LM_X4_GENERIC(f32, f32)
LM_X4_GENERIC(f16, f32)
LM_X4_GENERIC(bf16, f32)
LM_X4_GENERIC(q4_1, q8_1)
LM_X4_GENERIC(q5_0, q8_0)
LM_X4_GENERIC(q5_1, q8_1)
LM_X4_GENERIC(q4_K, q8_K)
LM_X4_GENERIC(q5_K, q8_K)
LM_X4_GENERIC(q6_K, q8_K)

#if LM_ISA >= LM_ISA_AVX2
/* |q| and the sign to move onto the activation: q*a == |q| * sign(a, q) */
#define LM_X4_BODY(load_q)                                                                               \
    const int64_t nb = n / QK;                                                                           \
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}; \
    for (int64_t ib = 0; ib < nb; ib++) {                                                                \
        const __m256i q = load_q;                                                                        \
        const __m256i aq = _mm256_sign_epi8(q, q);                                                       \
        const float dw = _cvtsh_ss(w[ib].d);                                                             \
        for (int j = 0; j < 4; j++) {                                                                    \
            const block_q8_0 *aj = (const block_q8_0 *)((const char *)a + j * astride) + ib;             \
            const __m256i sa = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)aj->qs), q);         \
            const __m256i p = LM_X4_DOT(aq, sa);                                                         \
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(dw * _cvtsh_ss(aj->d)), _mm256_cvtepi32_ps(p), acc[j]); \
        }                                                                                                \
    }                                                                                                    \
    for (int j = 0; j < 4; j++) out[j] = lm_hsum256(acc[j]);

#if LM_ISA >= LM_ISA_AVX512
#define LM_X4_DOT(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
#else
#define LM_X4_DOT(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
#endif

static LM_TARGET void LM_FN(dot4_q4_0_q8_0)(int64_t n, const void *restrict wv, const void *restrict a,
                                            int64_t astride, float *restrict out) {
    const block_q4_0 *w = (const block_q4_0 *)wv;
    const __m256i lo = _mm256_set1_epi8(0x0f), eight = _mm256_set1_epi8(8);
    LM_X4_BODY(_mm256_sub_epi8(_mm256_and_si256(_mm256_set_m128i(
                                   _mm_srli_epi16(_mm_loadu_si128((const __m128i *)w[ib].qs), 4),
                                   _mm_loadu_si128((const __m128i *)w[ib].qs)), lo), eight))
}

static LM_TARGET void LM_FN(dot4_q8_0_q8_0)(int64_t n, const void *restrict wv, const void *restrict a,
                                            int64_t astride, float *restrict out) {
    const block_q8_0 *w = (const block_q8_0 *)wv;
    LM_X4_BODY(_mm256_loadu_si256((const __m256i *)w[ib].qs))
}
#undef LM_X4_DOT
#undef LM_X4_BODY
#else
LM_X4_GENERIC(q4_0, q8_0)
LM_X4_GENERIC(q8_0, q8_0)
#endif
#undef LM_X4_GENERIC
