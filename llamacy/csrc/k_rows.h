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
/* A rows kernel (lm_rows_fn) over its body BODY(T, variant, n, w, wstride, rows, g, act, out,
 * ostride): one specialization per token count, so the accumulators stay in registers. */
#define LM_ROWS_KERNEL(wname, BODY, variant)                                                                  \
    static LM_TARGET void LM_FN(rows_##wname##_q8_0)(int64_t n, const void *restrict w, int64_t wstride,      \
                                                      int64_t rows, int T, const lm_group4_q8_0 *restrict g,    \
                                                      const void *restrict act, float *restrict out,            \
                                                      int64_t ostride) {                                        \
        const uint8_t *wp = (const uint8_t *)w;                                                              \
        const block_q8_0 *ap = (const block_q8_0 *)act;                                                      \
        switch (T) {                                                                                         \
        case 1: LM_FN(BODY)(1, variant, n, wp, wstride, rows, g, ap, out, ostride); break;                   \
        case 2: LM_FN(BODY)(2, variant, n, wp, wstride, rows, g, ap, out, ostride); break;                   \
        case 3: LM_FN(BODY)(3, variant, n, wp, wstride, rows, g, ap, out, ostride); break;                   \
        default: LM_FN(BODY)(4, variant, n, wp, wstride, rows, g, ap, out, ostride); break;                  \
        }                                                                                                    \
    }

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
LM_ROWS_KERNEL(q4_0, rows_q4_0_body, 0)
#if LM_ISA == LM_ISA_AVX512 /* levels + 128 reach 241: maddubs would saturate, dpbusd does not */
LM_ROWS_KERNEL(iq4_nl, rows_q4_0_body, 1)
#endif
#endif

/* ---- arm64 with dotprod: 4 weight rows x 1..4 tokens, read in place -------------------------------
 * One sdot by lane (vdotq_laneq_s32) multiplies 4 weights of each of 4 rows by the same 4
 * activations: one instruction, four rows. llama.cpp gets that layout by repacking the matrix into
 * an interleaved copy; here each block of 4 rows is transposed in registers instead (4-byte groups,
 * two trn steps), so the weights are read where they lie in the mapping. Q4_0, Q8_0 and IQ4_NL
 * (whose 18 / 34-byte blocks all start with the scale). Rows past the last 4 and every token go
 * through dot. out[t * ostride + r]; the groups are not read. */
#if LM_ISA == LM_ISA_DOTPROD
/* 4 rows' 16 bytes -> t[g]: bytes 4g .. 4g+3 of rows 0, 1, 2, 3 */
static LM_TARGET LM_ALWAYS_INLINE void LM_FN(transpose4)(const uint8x16_t r[4], int8x16_t t[4]) {
    const uint32x4_t b0 = vtrn1q_u32(vreinterpretq_u32_u8(r[0]), vreinterpretq_u32_u8(r[1]));
    const uint32x4_t b1 = vtrn2q_u32(vreinterpretq_u32_u8(r[0]), vreinterpretq_u32_u8(r[1]));
    const uint32x4_t b2 = vtrn1q_u32(vreinterpretq_u32_u8(r[2]), vreinterpretq_u32_u8(r[3]));
    const uint32x4_t b3 = vtrn2q_u32(vreinterpretq_u32_u8(r[2]), vreinterpretq_u32_u8(r[3]));
    t[0] = vreinterpretq_s8_u64(vtrn1q_u64(vreinterpretq_u64_u32(b0), vreinterpretq_u64_u32(b2)));
    t[1] = vreinterpretq_s8_u64(vtrn1q_u64(vreinterpretq_u64_u32(b1), vreinterpretq_u64_u32(b3)));
    t[2] = vreinterpretq_s8_u64(vtrn2q_u64(vreinterpretq_u64_u32(b0), vreinterpretq_u64_u32(b2)));
    t[3] = vreinterpretq_s8_u64(vtrn2q_u64(vreinterpretq_u64_u32(b1), vreinterpretq_u64_u32(b3)));
}

enum { LM_ROWS_Q4_0, LM_ROWS_Q8_0, LM_ROWS_IQ4_NL };
/* g: unused (the transposes need no regrouped activations), in the signature all rows bodies share */
static LM_TARGET LM_ALWAYS_INLINE void LM_FN(rows4_body)(const int T, const int kind, int64_t n, const uint8_t *restrict w,
                                                         int64_t wstride, int64_t rows, const lm_group4_q8_0 *restrict g,
                                                         const block_q8_0 *restrict act, float *restrict out,
                                                         int64_t ostride) {
    (void)g;
    const int64_t nb = n / QK, bsize = kind == LM_ROWS_Q8_0 ? (int64_t)sizeof(block_q8_0) : (int64_t)sizeof(block_q4_0);
    const int8x16_t values = vld1q_s8(lm_iq4_values);
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    const int8x16_t eight = vdupq_n_s8(8);
    int64_t r0 = 0;
    for (; r0 + 4 <= rows; r0 += 4) {
        float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
        const uint8_t *p = w + r0 * wstride;
        for (int64_t ib = 0; ib < nb; ib++, p += bsize) {
            int8x16_t lo[4], hi[4]; /* lo[g]: elements 4g..4g+3 of the 4 rows; hi[g]: 16+4g.. */
            uint8x16_t raw[4];
            uint16x4_t dh = vdup_n_u16(0);
            for (int r = 0; r < 4; r++) LM_ARM_PREFETCH(p + r * wstride + LM_PREFETCH_ROWS_BYTES);
            dh = vld1_lane_u16((const uint16_t *)(const void *)p, dh, 0);
            dh = vld1_lane_u16((const uint16_t *)(const void *)(p + wstride), dh, 1);
            dh = vld1_lane_u16((const uint16_t *)(const void *)(p + 2 * wstride), dh, 2);
            dh = vld1_lane_u16((const uint16_t *)(const void *)(p + 3 * wstride), dh, 3);
            const float32x4_t dw = vcvt_f32_f16(vreinterpret_f16_u16(dh));
            for (int r = 0; r < 4; r++) raw[r] = vld1q_u8(p + r * wstride + 2);
            if (kind == LM_ROWS_Q8_0) {
                LM_FN(transpose4)(raw, lo);
                for (int r = 0; r < 4; r++) raw[r] = vld1q_u8(p + r * wstride + 18);
                LM_FN(transpose4)(raw, hi);
            } else {
                int8x16_t t[4];
                LM_FN(transpose4)(raw, t);
                for (int g = 0; g < 4; g++) {
                    const uint8x16_t u = vreinterpretq_u8_s8(t[g]);
                    if (kind == LM_ROWS_Q4_0) {
                        lo[g] = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(u, m4)), eight);
                        hi[g] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(u, 4)), eight);
                    } else {
                        lo[g] = vqtbl1q_s8(values, vandq_u8(u, m4));
                        hi[g] = vqtbl1q_s8(values, vshrq_n_u8(u, 4));
                    }
                }
            }
            for (int t = 0; t < T; t++) {
                const block_q8_0 *a = act + t * nb + ib;
                const int8x16_t a0 = vld1q_s8(a->qs), a1 = vld1q_s8(a->qs + 16);
                int32x4_t s = vdotq_laneq_s32(vdupq_n_s32(0), lo[0], a0, 0);
                s = vdotq_laneq_s32(s, lo[1], a0, 1);
                s = vdotq_laneq_s32(s, lo[2], a0, 2);
                s = vdotq_laneq_s32(s, lo[3], a0, 3);
                s = vdotq_laneq_s32(s, hi[0], a1, 0);
                s = vdotq_laneq_s32(s, hi[1], a1, 1);
                s = vdotq_laneq_s32(s, hi[2], a1, 2);
                s = vdotq_laneq_s32(s, hi[3], a1, 3);
                acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(s), vmulq_n_f32(dw, LM_H2F(a->d)));
            }
        }
        for (int t = 0; t < T; t++) vst1q_f32(out + t * ostride + r0, acc[t]);
    }
    for (; r0 < rows; r0++)
        for (int t = 0; t < T; t++)
            out[t * ostride + r0] = (kind == LM_ROWS_Q4_0   ? LM_FN(dot_q4_0_q8_0)
                                     : kind == LM_ROWS_Q8_0 ? LM_FN(dot_q8_0_q8_0)
                                                            : LM_FN(dot_iq4_nl_q8_0))(
                n, w + r0 * wstride, (const float *)(const void *)(act + t * nb));
}

LM_ROWS_KERNEL(q4_0, rows4_body, LM_ROWS_Q4_0)
LM_ROWS_KERNEL(q8_0, rows4_body, LM_ROWS_Q8_0)
LM_ROWS_KERNEL(iq4_nl, rows4_body, LM_ROWS_IQ4_NL)
#endif
#undef LM_ROWS_KERNEL
