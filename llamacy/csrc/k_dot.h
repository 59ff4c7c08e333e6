/* k_dot.h -- one weight row x one activation row: dot_<w>_<a>(n, w, a) -> float.
 * Plain C loops are written so the compiler vectorizes them for each target; the hottest pairs
 * (Q4_0 x Q8_0, Q8_0 x Q8_0, F16/F32 x F32) have hand-written intrinsics.
 * Compiled once per instruction set through k_all.h (LM_ISA, LM_TARGET, LM_FN). Kernels are named by
 * operand types: <shape>_<weight type>_<activation type>. */

#if LM_X86_SIMD
/* signed int8 x signed int8 -> 8 int32 partial sums */
static LM_TARGET inline __m256i LM_FN(dot_i8)(__m256i a, __m256i b) {
    const __m256i ax = _mm256_sign_epi8(a, a);
    const __m256i sb = _mm256_sign_epi8(b, a);
#if LM_ISA == LM_ISA_AVX512
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sb);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sb), _mm256_set1_epi16(1));
#endif
}
#elif LM_ARM_SIMD
/* acc + the products of 16 signed byte pairs, summed in fours: one sdot with dotprod; without it
 * two widening multiplies and a pairwise add (no int16 overflow: |q| <= 128, |a| <= 127, and two
 * products 2 * 128 * 127 < 2^15) */
static LM_TARGET inline int32x4_t LM_FN(dot16)(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if LM_ISA == LM_ISA_DOTPROD
    return vdotq_s32(acc, a, b);
#else
    return vpadalq_s16(acc, vmlal_s8(vmull_s8(vget_low_s8(a), vget_low_s8(b)), vget_high_s8(a), vget_high_s8(b)));
#endif
}
/* binary16 -> binary32 by the FP unit (exact, as lm_h2f) */
#if LM_MSVC
#define LM_H2F(h) lm_h2f(h)
#else
static inline float LM_FN(h2f)(lm_half h) {
    __fp16 f;
    memcpy(&f, &h, 2);
    return (float)f;
}
#define LM_H2F(h) LM_FN(h2f)(h)
#endif
#if LM_MSVC
#define LM_ARM_PREFETCH(p) __prefetch((const void *)(p))
#else
#define LM_ARM_PREFETCH(p) __builtin_prefetch((const void *)(p))
#endif
#endif

/* ---- float weights ---------------------------------------------------------------------------- */
static LM_TARGET float LM_FN(dot_f32_f32)(int64_t n, const void *restrict wv, const float *restrict x) {
    const float *w = (const float *)wv;
    int64_t i = 0;
#if LM_X86_SIMD
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    float s = lm_hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
#elif LM_ARM_SIMD
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, vld1q_f32(w + i), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, vld1q_f32(w + i + 4), vld1q_f32(x + i + 4));
        a2 = vfmaq_f32(a2, vld1q_f32(w + i + 8), vld1q_f32(x + i + 8));
        a3 = vfmaq_f32(a3, vld1q_f32(w + i + 12), vld1q_f32(x + i + 12));
    }
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
#else
    float acc[8] = {0};
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += w[i + j] * x[i + j];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
#endif
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

#if LM_ARM_SIMD
/* 4 binary16 -> 4 floats (fcvtl) */
static LM_TARGET inline float32x4_t LM_FN(load4_f16)(const lm_half *p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}
#endif

static LM_TARGET float LM_FN(dot_f16_f32)(int64_t n, const void *restrict wv, const float *restrict x) {
    const lm_half *w = (const lm_half *)wv;
    int64_t i = 0;
#if LM_X86_SIMD
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i))), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 8))), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 16))), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 24))), _mm256_loadu_ps(x + i + 24), a3);
    }
    float s = lm_hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += LM_CVTSH_SS(w[i]) * x[i];
#elif LM_ARM_SIMD
    float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, LM_FN(load4_f16)(w + i), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, LM_FN(load4_f16)(w + i + 4), vld1q_f32(x + i + 4));
        a2 = vfmaq_f32(a2, LM_FN(load4_f16)(w + i + 8), vld1q_f32(x + i + 8));
        a3 = vfmaq_f32(a3, LM_FN(load4_f16)(w + i + 12), vld1q_f32(x + i + 12));
    }
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) s += lm_h2f(w[i]) * x[i];
#else
    float acc[8] = {0};
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += lm_h2f(w[i + j]) * x[i + j];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s += lm_h2f(w[i]) * x[i];
#endif
    return s;
}

static LM_TARGET float LM_FN(dot_bf16_f32)(int64_t n, const void *restrict wv, const float *restrict x) {
    const uint16_t *w = (const uint16_t *)wv;
    int64_t i = 0;
    float acc[8] = {0};
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += lm_f32_from_bits((uint32_t)w[i + j] << 16) * x[i + j];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s += lm_bf2f(w[i]) * x[i];
    return s;
}

/* ---- legacy quants x Q8_0 / Q8_1 ---------------------------------------------------------------- */
static LM_TARGET float LM_FN(dot_q8_0_q8_0)(int64_t n, const void *restrict wv, const float *restrict av) {
    const block_q8_0 *w = (const block_q8_0 *)wv;
    const block_q8_0 *a = (const block_q8_0 *)(const void *)av;
    const int64_t nb = n / QK;
#if LM_X86_SIMD
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ib++) {
        const __m256 d = _mm256_set1_ps(LM_CVTSH_SS(w[ib].d) * LM_CVTSH_SS(a[ib].d));
        const __m256i p = LM_FN(dot_i8)(_mm256_loadu_si256((const __m256i *)w[ib].qs),
                                        _mm256_loadu_si256((const __m256i *)a[ib].qs));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
    }
    return lm_hsum256(acc);
#elif LM_ARM_SIMD
    const int32x4_t z = vdupq_n_s32(0);
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0;
    int64_t ib = 0;
    for (; ib + 2 <= nb; ib += 2) {
        LM_ARM_PREFETCH((const char *)(w + ib) + LM_PREFETCH_BYTES);
        const int32x4_t p0 = LM_FN(dot16)(LM_FN(dot16)(z, vld1q_s8(w[ib].qs), vld1q_s8(a[ib].qs)),
                                          vld1q_s8(w[ib].qs + 16), vld1q_s8(a[ib].qs + 16));
        const int32x4_t p1 = LM_FN(dot16)(LM_FN(dot16)(z, vld1q_s8(w[ib + 1].qs), vld1q_s8(a[ib + 1].qs)),
                                          vld1q_s8(w[ib + 1].qs + 16), vld1q_s8(a[ib + 1].qs + 16));
        acc0 = vmlaq_n_f32(acc0, vcvtq_f32_s32(p0), LM_H2F(w[ib].d) * LM_H2F(a[ib].d));
        acc1 = vmlaq_n_f32(acc1, vcvtq_f32_s32(p1), LM_H2F(w[ib + 1].d) * LM_H2F(a[ib + 1].d));
    }
    for (; ib < nb; ib++) {
        const int32x4_t p = LM_FN(dot16)(LM_FN(dot16)(z, vld1q_s8(w[ib].qs), vld1q_s8(a[ib].qs)),
                                         vld1q_s8(w[ib].qs + 16), vld1q_s8(a[ib].qs + 16));
        acc0 = vmlaq_n_f32(acc0, vcvtq_f32_s32(p), LM_H2F(w[ib].d) * LM_H2F(a[ib].d));
    }
    return vaddvq_f32(vaddq_f32(acc0, acc1));
#else
    float s = 0.0f;
    for (int64_t ib = 0; ib < nb; ib++) {
        int sumi = 0;
        for (int j = 0; j < QK; j++) sumi += w[ib].qs[j] * a[ib].qs[j];
        s += (float)sumi * (lm_h2f(w[ib].d) * lm_h2f(a[ib].d));
    }
    return s;
#endif
}

#if LM_ARM_SIMD
/* a Q4_0 block's 32 weights as signed bytes: elements 0..15 (low nibbles) and 16..31 (high) */
static LM_TARGET inline void LM_FN(q4_0_nibbles)(const block_q4_0 *b, int8x16_t *lo, int8x16_t *hi) {
    const uint8x16_t raw = vld1q_u8(b->qs);
    const int8x16_t eight = vdupq_n_s8(8);
    *lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(0x0f))), eight);
    *hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(raw, 4)), eight);
}
#endif

static LM_TARGET float LM_FN(dot_q4_0_q8_0)(int64_t n, const void *restrict wv, const float *restrict av) {
    const block_q4_0 *w = (const block_q4_0 *)wv;
    const block_q8_0 *a = (const block_q8_0 *)(const void *)av;
    const int64_t nb = n / QK;
#if LM_X86_SIMD
    const __m256i lo = _mm256_set1_epi8(0x0f), eight = _mm256_set1_epi8(8);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t ib = 0;
    for (; ib + 2 <= nb; ib += 2) {
        for (int u = 0; u < 2; u++) {
            const __m128i raw = _mm_loadu_si128((const __m128i *)w[ib + u].qs);
            const __m256i q = _mm256_sub_epi8(
                _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), lo), eight);
            const __m256i p = LM_FN(dot_i8)(q, _mm256_loadu_si256((const __m256i *)a[ib + u].qs));
            const __m256 d = _mm256_set1_ps(LM_CVTSH_SS(w[ib + u].d) * LM_CVTSH_SS(a[ib + u].d));
            if (u == 0) acc0 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc0);
            else acc1 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc1);
        }
    }
    for (; ib < nb; ib++) {
        const __m128i raw = _mm_loadu_si128((const __m128i *)w[ib].qs);
        const __m256i q = _mm256_sub_epi8(_mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), lo), eight);
        const __m256i p = LM_FN(dot_i8)(q, _mm256_loadu_si256((const __m256i *)a[ib].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(LM_CVTSH_SS(w[ib].d) * LM_CVTSH_SS(a[ib].d)), _mm256_cvtepi32_ps(p), acc0);
    }
    return lm_hsum256(_mm256_add_ps(acc0, acc1));
#elif LM_ARM_SIMD
    const int32x4_t z = vdupq_n_s32(0);
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0;
    int64_t ib = 0;
    for (; ib + 2 <= nb; ib += 2) {
        LM_ARM_PREFETCH((const char *)(w + ib) + LM_PREFETCH_BYTES);
        int8x16_t lo, hi;
        LM_FN(q4_0_nibbles)(w + ib, &lo, &hi);
        const int32x4_t p0 = LM_FN(dot16)(LM_FN(dot16)(z, lo, vld1q_s8(a[ib].qs)), hi, vld1q_s8(a[ib].qs + 16));
        LM_FN(q4_0_nibbles)(w + ib + 1, &lo, &hi);
        const int32x4_t p1 = LM_FN(dot16)(LM_FN(dot16)(z, lo, vld1q_s8(a[ib + 1].qs)), hi, vld1q_s8(a[ib + 1].qs + 16));
        acc0 = vmlaq_n_f32(acc0, vcvtq_f32_s32(p0), LM_H2F(w[ib].d) * LM_H2F(a[ib].d));
        acc1 = vmlaq_n_f32(acc1, vcvtq_f32_s32(p1), LM_H2F(w[ib + 1].d) * LM_H2F(a[ib + 1].d));
    }
    for (; ib < nb; ib++) {
        int8x16_t lo, hi;
        LM_FN(q4_0_nibbles)(w + ib, &lo, &hi);
        const int32x4_t p = LM_FN(dot16)(LM_FN(dot16)(z, lo, vld1q_s8(a[ib].qs)), hi, vld1q_s8(a[ib].qs + 16));
        acc0 = vmlaq_n_f32(acc0, vcvtq_f32_s32(p), LM_H2F(w[ib].d) * LM_H2F(a[ib].d));
    }
    return vaddvq_f32(vaddq_f32(acc0, acc1));
#else
    float s = 0.0f;
    for (int64_t ib = 0; ib < nb; ib++) {
        int sumi = 0;
        for (int j = 0; j < QK / 2; j++) {
            sumi += ((w[ib].qs[j] & 0x0f) - 8) * a[ib].qs[j];
            sumi += ((w[ib].qs[j] >> 4) - 8) * a[ib].qs[j + QK / 2];
        }
        s += (float)sumi * (lm_h2f(w[ib].d) * lm_h2f(a[ib].d));
    }
    return s;
#endif
}

#if LM_X86_SIMD
/* a block's 32 nibbles as unsigned bytes: elements 0..15 (low nibbles), then 16..31 (high) */
static LM_TARGET inline __m256i LM_FN(nibbles32)(const uint8_t *qs) {
    const __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0f));
}
/* Q5_0/Q5_1's 32 fifth bits (bit j: element j) as 0x10 in byte j */
static LM_TARGET inline __m256i LM_FN(fifth_bits32)(const uint8_t *qh4) {
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    /* byte j takes qh's byte j / 8, then keeps bit j % 8 */
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh),
                                               _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                                                 0x0101010101010101, 0x0000000000000000));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(0x10));
}
/* unsigned q (<= 31) x signed a, summed in 8 int32 lanes */
static LM_TARGET inline __m256i LM_FN(dot_u8)(__m256i q, __m256i a) {
#if LM_ISA == LM_ISA_AVX512
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, a);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q, a), _mm256_set1_epi16(1));
#endif
}
#endif

static LM_TARGET float LM_FN(dot_q4_1_q8_1)(int64_t n, const void *restrict wv, const float *restrict av) {
    const block_q4_1 *w = (const block_q4_1 *)wv;
    const block_q8_1 *a = (const block_q8_1 *)(const void *)av;
#if LM_X86_SIMD
    /* w = q d + m: d_w d_a sum q a + m (d_a sum a), and Q8_1 carries s = d_a sum a */
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t ib = 0; ib < n / QK; ib++) {
        const __m256i p = LM_FN(dot_u8)(LM_FN(nibbles32)(w[ib].qs), _mm256_loadu_si256((const __m256i *)(const void *)a[ib].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(LM_CVTSH_SS(w[ib].d) * LM_CVTSH_SS(a[ib].d)), _mm256_cvtepi32_ps(p), acc);
        mins += LM_CVTSH_SS(w[ib].m) * LM_CVTSH_SS(a[ib].s);
    }
    return lm_hsum256(acc) + mins;
#else
    float s = 0.0f;
    for (int64_t ib = 0; ib < n / QK; ib++) {
        int sumi = 0;
        for (int j = 0; j < QK / 2; j++) {
            sumi += (w[ib].qs[j] & 0x0f) * a[ib].qs[j];
            sumi += (w[ib].qs[j] >> 4) * a[ib].qs[j + QK / 2];
        }
        s += (float)sumi * (lm_h2f(w[ib].d) * lm_h2f(a[ib].d)) + lm_h2f(w[ib].m) * lm_h2f(a[ib].s);
    }
    return s;
#endif
}

/* Q5_0/Q5_1 block: sum over 32 of (5-bit q - offset) * a; bit j of qh is element j's 5th bit. */
static LM_TARGET inline int LM_FN(q5_block_dot)(const uint8_t *qs, const uint8_t *qh4, const int8_t *a, int offset) {
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    int sumi = 0;
    for (int j = 0; j < QK / 2; j++) {
        const int x0 = ((qs[j] & 0x0f) | (((qh >> j) & 1) << 4)) - offset;
        const int x1 = ((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - offset;
        sumi += x0 * a[j] + x1 * a[j + QK / 2];
    }
    return sumi;
}

static LM_TARGET float LM_FN(dot_q5_0_q8_0)(int64_t n, const void *restrict wv, const float *restrict av) {
    const block_q5_0 *w = (const block_q5_0 *)wv;
    const block_q8_0 *a = (const block_q8_0 *)(const void *)av;
#if LM_X86_SIMD
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < n / QK; ib++) {
        const __m256i q = _mm256_sub_epi8(_mm256_or_si256(LM_FN(nibbles32)(w[ib].qs), LM_FN(fifth_bits32)(w[ib].qh)),
                                          _mm256_set1_epi8(16));
        const __m256i p = LM_FN(dot_i8)(q, _mm256_loadu_si256((const __m256i *)(const void *)a[ib].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(LM_CVTSH_SS(w[ib].d) * LM_CVTSH_SS(a[ib].d)), _mm256_cvtepi32_ps(p), acc);
    }
    return lm_hsum256(acc);
#else
    float s = 0.0f;
    for (int64_t ib = 0; ib < n / QK; ib++)
        s += (float)LM_FN(q5_block_dot)(w[ib].qs, w[ib].qh, a[ib].qs, 16) * (lm_h2f(w[ib].d) * lm_h2f(a[ib].d));
    return s;
#endif
}

static LM_TARGET float LM_FN(dot_q5_1_q8_1)(int64_t n, const void *restrict wv, const float *restrict av) {
    const block_q5_1 *w = (const block_q5_1 *)wv;
    const block_q8_1 *a = (const block_q8_1 *)(const void *)av;
#if LM_X86_SIMD
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t ib = 0; ib < n / QK; ib++) {
        const __m256i q = _mm256_or_si256(LM_FN(nibbles32)(w[ib].qs), LM_FN(fifth_bits32)(w[ib].qh));
        const __m256i p = LM_FN(dot_u8)(q, _mm256_loadu_si256((const __m256i *)(const void *)a[ib].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(LM_CVTSH_SS(w[ib].d) * LM_CVTSH_SS(a[ib].d)), _mm256_cvtepi32_ps(p), acc);
        mins += LM_CVTSH_SS(w[ib].m) * LM_CVTSH_SS(a[ib].s);
    }
    return lm_hsum256(acc) + mins;
#else
    float s = 0.0f;
    for (int64_t ib = 0; ib < n / QK; ib++)
        s += (float)LM_FN(q5_block_dot)(w[ib].qs, w[ib].qh, a[ib].qs, 0) * (lm_h2f(w[ib].d) * lm_h2f(a[ib].d)) +
             lm_h2f(w[ib].m) * lm_h2f(a[ib].s);
    return s;
#endif
}

/* ---- non-linear 4-bit quants (IQ4_NL x Q8_0, IQ4_XS x Q8_K) ----------------------------------------
 * Each nibble picks one of 16 signed levels (lm_iq4_values), so a block is first looked up into
 * signed bytes -- one pshufb / tbl per 16 -- then dotted like Q8_0. The levels reach -127, so the
 * x86 bodies move the weights' signs onto the activations (|w| x sign(a, w), maddubs is exact:
 * 2 * 127 * 127 < 2^15). A looked-up block (LM_IQ4_BLOCK) serves one token (dot) or many (dotn:
 * k_dot4.h), as the k-quants' unpacked blocks do. */
#if LM_X86_SIMD
typedef struct {
    __m256i mag[QK_K / 32], sgn[QK_K / 32]; /* per 32 weights: |level|, and the levels (signs) */
    __m256i sc[QK_K / 32];                  /* IQ4_XS: the sub-block's scale in every int16 lane */
    float d;
} LM_FN(lm_iq4_block);
/* 16 nibble bytes -> 32 levels: elements 0..15 from the low nibbles, 16..31 from the high */
static LM_TARGET inline void LM_FN(iq4_levels)(const uint8_t *qs, __m256i *mag, __m256i *sgn) {
    const __m128i values = _mm_loadu_si128((const __m128i *)(const void *)lm_iq4_values), m4 = _mm_set1_epi8(0x0f);
    const __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)qs);
    *sgn = _mm256_set_m128i(_mm_shuffle_epi8(values, _mm_and_si128(_mm_srli_epi16(raw, 4), m4)),
                            _mm_shuffle_epi8(values, _mm_and_si128(raw, m4)));
    *mag = _mm256_sign_epi8(*sgn, *sgn);
}
/* 32 weights . 32 activations, as 16 int16 pair sums (exact) */
#define LM_IQ4_PAIRS(k, s, aq) \
    _mm256_maddubs_epi16((k)->mag[s], _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(const void *)(aq)), (k)->sgn[s]))
#if LM_ISA == LM_ISA_AVX512
#define LM_IQ4_MADD(acc, p, sc) _mm256_dpwssd_epi32(acc, p, sc)
#else
#define LM_IQ4_MADD(acc, p, sc) _mm256_add_epi32(acc, _mm256_madd_epi16(p, sc))
#endif
static LM_TARGET inline __m256 LM_FN(iq4_nl_acc)(const LM_FN(lm_iq4_block) *k, const block_q8_0 *a, __m256 acc) {
    const __m256i s = LM_IQ4_MADD(_mm256_setzero_si256(), LM_IQ4_PAIRS(k, 0, a->qs), _mm256_set1_epi16(1));
    return _mm256_fmadd_ps(_mm256_set1_ps(k->d * LM_CVTSH_SS(a->d)), _mm256_cvtepi32_ps(s), acc);
}
/* the 8 sub-blocks' pair sums times their scales (no overflow: 8 * 32 * 127 * 127 * 32 < 2^31) */
static LM_TARGET inline __m256 LM_FN(iq4_xs_acc)(const LM_FN(lm_iq4_block) *k, const block_q8_K *a, __m256 acc) {
    __m256i s = _mm256_setzero_si256();
    for (int j = 0; j < QK_K / 32; j++) s = LM_IQ4_MADD(s, LM_IQ4_PAIRS(k, j, a->qs + 32 * j), k->sc[j]);
    return _mm256_fmadd_ps(_mm256_set1_ps(k->d * a->d), _mm256_cvtepi32_ps(s), acc);
}
static LM_TARGET inline void LM_FN(iq4_nl_load)(const block_iq4_nl *b, LM_FN(lm_iq4_block) *k) {
    LM_FN(iq4_levels)(b->qs, &k->mag[0], &k->sgn[0]);
    k->d = LM_CVTSH_SS(b->d);
}
static LM_TARGET inline void LM_FN(iq4_xs_load)(const block_iq4_xs *b, LM_FN(lm_iq4_block) *k) {
    for (int j = 0; j < QK_K / 32; j++) {
        LM_FN(iq4_levels)(b->qs + 16 * j, &k->mag[j], &k->sgn[j]);
        k->sc[j] = _mm256_set1_epi16((short)lm_iq4_xs_scale(b, j));
    }
    k->d = LM_CVTSH_SS(b->d);
}
#define LM_IQ4_T __m256
#define LM_IQ4_ZERO _mm256_setzero_ps()
#define LM_IQ4_SUM(x) lm_hsum256(x)
#elif LM_ARM_SIMD
typedef struct {
    int8x16_t lo[QK_K / 32], hi[QK_K / 32]; /* per 32 weights: the levels of elements 0..15, 16..31 */
    int32_t sc[QK_K / 32];                  /* IQ4_XS: the sub-blocks' scales */
    float d;
} LM_FN(lm_iq4_block);
static LM_TARGET inline void LM_FN(iq4_levels)(const uint8_t *qs, int8x16_t *lo, int8x16_t *hi) {
    const int8x16_t values = vld1q_s8(lm_iq4_values);
    const uint8x16_t raw = vld1q_u8(qs);
    *lo = vqtbl1q_s8(values, vandq_u8(raw, vdupq_n_u8(0x0f)));
    *hi = vqtbl1q_s8(values, vshrq_n_u8(raw, 4));
}
static LM_TARGET inline int32x4_t LM_FN(iq4_dot32)(const LM_FN(lm_iq4_block) *k, int j, const int8_t *aq) {
    return LM_FN(dot16)(LM_FN(dot16)(vdupq_n_s32(0), k->lo[j], vld1q_s8(aq)), k->hi[j], vld1q_s8(aq + 16));
}
static LM_TARGET inline float32x4_t LM_FN(iq4_nl_acc)(const LM_FN(lm_iq4_block) *k, const block_q8_0 *a,
                                                      float32x4_t acc) {
    return vmlaq_n_f32(acc, vcvtq_f32_s32(LM_FN(iq4_dot32)(k, 0, a->qs)), k->d * LM_H2F(a->d));
}
static LM_TARGET inline float32x4_t LM_FN(iq4_xs_acc)(const LM_FN(lm_iq4_block) *k, const block_q8_K *a,
                                                      float32x4_t acc) {
    int32x4_t s = vdupq_n_s32(0);
    for (int j = 0; j < QK_K / 32; j++) s = vmlaq_n_s32(s, LM_FN(iq4_dot32)(k, j, a->qs + 32 * j), k->sc[j]);
    return vmlaq_n_f32(acc, vcvtq_f32_s32(s), k->d * a->d);
}
static LM_TARGET inline void LM_FN(iq4_nl_load)(const block_iq4_nl *b, LM_FN(lm_iq4_block) *k) {
    LM_FN(iq4_levels)(b->qs, &k->lo[0], &k->hi[0]);
    k->d = LM_H2F(b->d);
}
static LM_TARGET inline void LM_FN(iq4_xs_load)(const block_iq4_xs *b, LM_FN(lm_iq4_block) *k) {
    for (int j = 0; j < QK_K / 32; j++) {
        LM_FN(iq4_levels)(b->qs + 16 * j, &k->lo[j], &k->hi[j]);
        k->sc[j] = lm_iq4_xs_scale(b, j);
    }
    k->d = LM_H2F(b->d);
}
#define LM_IQ4_T float32x4_t
#define LM_IQ4_ZERO vdupq_n_f32(0.0f)
#define LM_IQ4_SUM(x) vaddvq_f32(x)
#else
typedef struct {
    int8_t v[QK_K]; /* the levels, in element order */
    int32_t sc[QK_K / 32];
    float d;
} LM_FN(lm_iq4_block);
static inline void LM_FN(iq4_levels)(const uint8_t *qs, int8_t *v) {
    for (int l = 0; l < 16; l++) {
        v[l] = lm_iq4_values[qs[l] & 0x0f];
        v[l + 16] = lm_iq4_values[qs[l] >> 4];
    }
}
static inline int LM_FN(iq4_dot32)(const int8_t *v, const int8_t *aq) {
    int t = 0;
    for (int l = 0; l < 32; l++) t += v[l] * aq[l];
    return t;
}
static inline float LM_FN(iq4_nl_acc)(const LM_FN(lm_iq4_block) *k, const block_q8_0 *a, float acc) {
    return acc + (float)LM_FN(iq4_dot32)(k->v, a->qs) * (k->d * lm_h2f(a->d));
}
static inline float LM_FN(iq4_xs_acc)(const LM_FN(lm_iq4_block) *k, const block_q8_K *a, float acc) {
    int sumi = 0;
    for (int j = 0; j < QK_K / 32; j++) sumi += k->sc[j] * LM_FN(iq4_dot32)(k->v + 32 * j, a->qs + 32 * j);
    return acc + (float)sumi * (k->d * a->d);
}
static inline void LM_FN(iq4_nl_load)(const block_iq4_nl *b, LM_FN(lm_iq4_block) *k) {
    LM_FN(iq4_levels)(b->qs, k->v);
    k->d = lm_h2f(b->d);
}
static inline void LM_FN(iq4_xs_load)(const block_iq4_xs *b, LM_FN(lm_iq4_block) *k) {
    for (int j = 0; j < QK_K / 32; j++) {
        LM_FN(iq4_levels)(b->qs + 16 * j, k->v + 32 * j);
        k->sc[j] = lm_iq4_xs_scale(b, j);
    }
    k->d = lm_h2f(b->d);
}
#define LM_IQ4_T float
#define LM_IQ4_ZERO 0.0f
#define LM_IQ4_SUM(x) (x)
#endif

/* decode streams each row once: fetch LM_PREFETCH_BYTES ahead (every line of a block) */
#if LM_X86_SIMD
#define LM_IQ4_PREFETCH(p) _mm_prefetch((const char *)(p) + LM_PREFETCH_BYTES, _MM_HINT_T0)
#elif LM_ARM_SIMD
#define LM_IQ4_PREFETCH(p) LM_ARM_PREFETCH((const char *)(p) + LM_PREFETCH_BYTES)
#else
#define LM_IQ4_PREFETCH(p) ((void)0)
#endif
/* one row: each block looked up, then dotted with the token's block */
#define LM_IQ4_DOT(wname, btype, aname, atype)                                                               \
    static LM_TARGET float LM_FN(dot_##wname##_##aname)(int64_t n, const void *restrict wv,                   \
                                                         const float *restrict av) {                           \
        const btype *w = (const btype *)wv;                                                                  \
        const atype *a = (const atype *)(const void *)av;                                                    \
        LM_FN(lm_iq4_block) k;                                                                               \
        LM_IQ4_T acc = LM_IQ4_ZERO;                                                                          \
        for (int64_t ib = 0; ib < n / (int64_t)(sizeof a->qs); ib++) {                                       \
            for (size_t lm_off = 0; lm_off < sizeof *w; lm_off += 64) LM_IQ4_PREFETCH((const char *)(w + ib) + lm_off); \
            LM_FN(wname##_load)(w + ib, &k);                                                                 \
            acc = LM_FN(wname##_acc)(&k, a + ib, acc);                                                       \
        }                                                                                                    \
        return LM_IQ4_SUM(acc);                                                                              \
    }
LM_IQ4_DOT(iq4_nl, block_iq4_nl, q8_0, block_q8_0)
#if LM_ISA != LM_ISA_AVX512 /* AVX-512 has its own below */
LM_IQ4_DOT(iq4_xs, block_iq4_xs, q8_K, block_q8_K)
#endif
#undef LM_IQ4_DOT

#if LM_ISA == LM_ISA_AVX512
/* IQ4_XS decode, 128 weights per step: one 64-byte load of nibbles holds sub-blocks 4u..4u+3
 * (one per 128-bit lane, 16 low + 16 high nibbles each); the levels are looked up as levels + 128
 * (unsigned bytes for dpbusd), the tokens' matching halves gathered by two 128-bit-lane shuffles,
 * and the +128 taken back through the token's sums of 16 (128 * sum_j scale_j * sums of sub-block
 * j). Integer sums stay exact: per lane 8 products of <= 241 * 127, times |scale| <= 32, twice. */
static LM_TARGET float LM_FN(dot_iq4_xs_q8_K)(int64_t n, const void *restrict wv, const float *restrict av) {
    const block_iq4_xs *w = (const block_iq4_xs *)wv;
    const block_q8_K *a = (const block_q8_K *)(const void *)av;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i levels = _mm512_add_epi8(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)lm_iq4_values)),
                                           _mm512_set1_epi8(-128)); /* levels + 128, as unsigned bytes */
    const __m512i pick0 = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    const __m512i pick1 = _mm512_add_epi32(pick0, _mm512_set1_epi32(4));
    const __m128i hshift = _mm_set_epi16(14, 12, 10, 8, 6, 4, 2, 0);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t ib = 0; ib < n / QK_K; ib++) {
        const block_iq4_xs *b = w + ib;
        const block_q8_K *y = a + ib;
        for (size_t off = 0; off < sizeof *b; off += 64) _mm_prefetch((const char *)b + LM_KPREFETCH_BYTES + off, _MM_HINT_T0);
        /* the 8 scales minus 32 (int16): low 4 bits from scales_l's nibbles, top 2 from scales_h */
        uint32_t sl;
        memcpy(&sl, b->scales_l, 4);
        const __m128i nib = _mm_unpacklo_epi8(_mm_cvtsi32_si128((int)(sl & 0x0f0f0f0fu)),
                                              _mm_cvtsi32_si128((int)((sl >> 4) & 0x0f0f0f0fu)));
        const __m128i top = _mm_and_si128(_mm_srlv_epi16(_mm_set1_epi16((short)b->scales_h), hshift), _mm_set1_epi16(3));
        const __m128i sc16 = _mm_sub_epi16(_mm_or_si128(_mm_cvtepu8_epi16(nib), _mm_slli_epi16(top, 4)), _mm_set1_epi16(32));
        const __m512i sc32 = _mm512_castsi256_si512(_mm256_cvtepi16_epi32(sc16));
        __m512i s = _mm512_setzero_si512();
        for (int u = 0; u < 2; u++) { /* sub-blocks 4u .. 4u+3 */
            const __m512i x = _mm512_loadu_si512(b->qs + 64 * u);
            const __m512i lo = _mm512_shuffle_epi8(levels, _mm512_and_si512(x, m4));
            const __m512i hi = _mm512_shuffle_epi8(levels, _mm512_and_si512(_mm512_srli_epi16(x, 4), m4));
            const __m512i a0 = _mm512_loadu_si512(y->qs + 128 * u), a1 = _mm512_loadu_si512(y->qs + 128 * u + 64);
            __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_shuffle_i64x2(a0, a1, _MM_SHUFFLE(2, 0, 2, 0)));
            p = _mm512_dpbusd_epi32(p, hi, _mm512_shuffle_i64x2(a0, a1, _MM_SHUFFLE(3, 1, 3, 1)));
            s = _mm512_add_epi32(s, _mm512_mullo_epi32(p, _mm512_permutexvar_epi32(u ? pick1 : pick0, sc32)));
        }
        /* the +128: 128 * sum_j scale_j * (bsums 2j + 2j+1) */
        const __m256i sc2 = _mm256_set_m128i(_mm_unpackhi_epi16(sc16, sc16), _mm_unpacklo_epi16(sc16, sc16));
        const __m256i o = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(const void *)y->bsums), sc2);
        s = _mm512_sub_epi32(s, _mm512_zextsi256_si512(_mm256_slli_epi32(o, 7)));
        acc = _mm512_fmadd_ps(_mm512_set1_ps(y->d * LM_CVTSH_SS(b->d)), _mm512_cvtepi32_ps(s), acc);
    }
    return lm_hsum512(acc);
}
#endif
#undef LM_IQ4_PREFETCH

/* ---- k-quants x Q8_K ------------------------------------------------------------------------------
 * Every k-quant super-block (256 weights) reads as the same three things, which its unpack
 * function produces from the block where it lies in the mapped file:
 *   q[256]    unsigned integers (Q2_K 0..3, Q3_K 0..7, Q4_K 0..15, Q5_K 0..31, Q6_K 0..63),
 *   sc[16]    a signed scale per 16 weights, off[16] an integer offset per 16 weights,
 *   dq, doff  the block's float factors,
 * so that  w . a  =  a.d * (dq * sum_j sc[j] * sum_{16 in j} q*a  -  doff * sum_j off[j] * bsums[j])
 * (the offsets -- Q2_K/Q4_K/Q5_K mins, Q3_K's -4, Q6_K's -32 -- go through the activation's sums
 * of 16, bsums). One block-dot per ISA serves every type, for one token (dot) or four (dot4).
 * With AVX2 the block stays in registers: q as 8 vectors of 32 bytes, the scales already spread
 * into the 16-bit lanes that multiply each half of those vectors. */
typedef struct {
    float dq, doff;
#if LM_X86_SIMD
    __m256i q[8];   /* q[v]: weights 32v .. 32v+31, one unsigned byte each */
    __m256i sc[8];  /* sc[v]: 8 lanes of scale 2v, then 8 of scale 2v+1 (int16) */
    __m256i off;    /* the 16 offsets (int16) */
#elif LM_ARM_SIMD
    uint8x16_t q[16]; /* q[j]: weights 16j .. 16j+15 (sub-block j), one unsigned byte each */
    int32x4_t sc[4];  /* sc[g]: the scales of sub-blocks 4g .. 4g+3; with per32, sc[0..1] hold
                         the 8 scales of 32 weights (Q4_K, Q5_K: one sdot chain per scale) */
    int16x8_t off[2]; /* the 16 offsets */
    int per32;        /* a constant once the type's unpack is inlined */
#else
    int16_t sc[16], off[16];
    uint8_t q[QK_K];
#endif
} LM_FN(lm_kblock);
#define LM_KBLOCK LM_FN(lm_kblock)

/* Q4_K/Q5_K: 12 bytes -> 8 six-bit scales and 8 six-bit mins (per 32 weights), as bytes */
static LM_TARGET inline void LM_FN(k4_scales)(const uint8_t *s, uint8_t sc[8], uint8_t mn[8]) {
    uint32_t u[3], v[4];
    memcpy(u, s, 12);
    v[0] = u[0] & 0x3f3f3f3fu;                                      /* scales 0-3: low 6 bits */
    v[1] = (u[2] & 0x0f0f0f0fu) | ((u[0] >> 2) & 0x30303030u);       /* scales 4-7: 4 + top 2 of 0-3 */
    v[2] = u[1] & 0x3f3f3f3fu;                                      /* mins 0-3 */
    v[3] = ((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 2) & 0x30303030u); /* mins 4-7 */
    memcpy(sc, v, 8);
    memcpy(mn, v + 2, 8);
}

#if LM_X86_SIMD
/* Q4_K/Q5_K's 12 scale bytes (k4_scales in SSE, for both x86 sets): bytes 0..7 the scales, 8..15 the mins. Reads 16
 * bytes from `s`: the 4 after the scales are still the block's (qs or qh). */
static LM_TARGET inline __m128i LM_FN(k4_scales_x86)(const uint8_t *s) {
    const __m128i x = _mm_loadu_si128((const __m128i *)(const void *)s); /* dwords u0 u1 u2 - */
    /* [u0 & 3f, u2 & 0f, u1 & 3f, (u2 >> 4) & 0f] | [0, (u0 >> 2) & 30, 0, (u1 >> 2) & 30] */
    const __m128i lo = _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(x, _MM_SHUFFLE(2, 1, 2, 0)),
                                                     _mm_set_epi32(4, 0, 0, 0)),
                                     _mm_set_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f));
    const __m128i hi = _mm_and_si128(_mm_srli_epi32(_mm_shuffle_epi32(x, _MM_SHUFFLE(1, 1, 0, 0)), 2),
                                     _mm_set_epi32(0x30303030, 0, 0x30303030, 0));
    return _mm_or_si128(lo, hi);
}

#define LM_KLOAD(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define LM_SRL8(x, k) _mm256_srli_epi16(x, k) /* per 16-bit lane: masked after, so bytes stay apart */

/* 16 int16 scales (one per 16 weights) -> k->sc[v] for the 8 vectors of 32 weights */
static LM_TARGET inline void LM_FN(k_spread)(__m256i s16, LM_KBLOCK *k) {
    static const int8_t pick[4][32] = {
        {0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3},
        {4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7},
        {8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11},
        {12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14,
         15, 14, 15, 14, 15}};
    const __m256i lo = _mm256_permute2x128_si256(s16, s16, 0x00), hi = _mm256_permute2x128_si256(s16, s16, 0x11);
    for (int v = 0; v < 4; v++) {
        const __m256i m = LM_KLOAD(pick[v]);
        k->sc[v] = _mm256_shuffle_epi8(lo, m);
        k->sc[v + 4] = _mm256_shuffle_epi8(hi, m);
    }
}

/* 8 per-32 values (the low 8 bytes of v8) -> 16 int16, each twice */
static LM_TARGET inline __m256i LM_FN(k_twice16)(__m128i v8) {
    const __m128i w = _mm_cvtepu8_epi16(v8);
    return _mm256_set_m128i(_mm_unpackhi_epi16(w, w), _mm_unpacklo_epi16(w, w));
}
#endif

#if LM_ARM_SIMD
#define LM_SHR8(x, k) vshlq_u8(x, vdupq_n_s8((int8_t)-(k))) /* every byte >> k */
/* 16 int16 per-sub-block scales -> k->sc */
static LM_TARGET inline void LM_FN(k_scales16)(int16x8_t s0, int16x8_t s1, LM_KBLOCK *k) {
    k->per32 = 0;
    k->sc[0] = vmovl_s16(vget_low_s16(s0));
    k->sc[1] = vmovl_s16(vget_high_s16(s0));
    k->sc[2] = vmovl_s16(vget_low_s16(s1));
    k->sc[3] = vmovl_s16(vget_high_s16(s1));
}
/* 16 signed byte scales -> k->sc, and k->off = the same values (Q3_K, Q6_K) */
static LM_TARGET inline void LM_FN(k_signed16)(int8x16_t s, LM_KBLOCK *k) {
    k->off[0] = vmovl_s8(vget_low_s8(s));
    k->off[1] = vmovl_s8(vget_high_s8(s));
    LM_FN(k_scales16)(k->off[0], k->off[1], k);
}
/* 8 per-32 bytes -> 16 int16 (each twice), as two vectors */
static LM_TARGET inline void LM_FN(k_twice16)(const uint8_t v8[8], int16x8_t *lo, int16x8_t *hi) {
    const int16x8_t w = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(v8)));
    *lo = vzip1q_s16(w, w);
    *hi = vzip2q_s16(w, w);
}
#endif

static LM_TARGET inline void LM_FN(unpack_q2_K)(const block_q2_K *b, LM_KBLOCK *k) {
    k->dq = lm_h2f(b->d);
    k->doff = lm_h2f(b->dmin);
#if LM_X86_SIMD
    const __m128i s = _mm_loadu_si128((const __m128i *)(const void *)b->scales), m4 = _mm_set1_epi8(0x0f);
    LM_FN(k_spread)(_mm256_cvtepu8_epi16(_mm_and_si128(s, m4)), k);
    k->off = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), m4));
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int h = 0; h < 2; h++) {
        const __m256i bits = LM_KLOAD(b->qs + 32 * h);
        for (int t = 0; t < 4; t++) k->q[4 * h + t] = _mm256_and_si256(LM_SRL8(bits, 2 * t), m3);
    }
#elif LM_ARM_SIMD
    const uint8x16_t s = vld1q_u8(b->scales), m3 = vdupq_n_u8(3);
    const uint8x16_t sc = vandq_u8(s, vdupq_n_u8(0x0f)), mn = vshrq_n_u8(s, 4);
    LM_FN(k_scales16)(vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(sc))), vreinterpretq_s16_u16(vmovl_high_u8(sc)), k);
    k->off[0] = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(mn)));
    k->off[1] = vreinterpretq_s16_u16(vmovl_high_u8(mn));
    for (int h = 0; h < 2; h++) {
        const uint8x16_t b0 = vld1q_u8(b->qs + 32 * h), b1 = vld1q_u8(b->qs + 32 * h + 16);
        for (int t = 0; t < 4; t++) {
            k->q[8 * h + 2 * t] = vandq_u8(LM_SHR8(b0, 2 * t), m3);
            k->q[8 * h + 2 * t + 1] = vandq_u8(LM_SHR8(b1, 2 * t), m3);
        }
    }
#else
    for (int j = 0; j < 16; j++) {
        k->sc[j] = (int16_t)(b->scales[j] & 0x0f);
        k->off[j] = (int16_t)(b->scales[j] >> 4);
    }
    for (int h = 0; h < 2; h++)
        for (int t = 0; t < 4; t++)
            for (int l = 0; l < 32; l++) k->q[128 * h + 32 * t + l] = (b->qs[32 * h + l] >> (2 * t)) & 3;
#endif
}

static LM_TARGET inline void LM_FN(unpack_q3_K)(const block_q3_K *b, LM_KBLOCK *k) {
    /* 16 six-bit scales: low 4 bits in the nibbles of bytes 0..7 (scales 0..7 low, 8..15 high),
     * top 2 bits in bytes 8..11 (scale j: bits 2(j/4 % 2) + 4(j/8) of byte 8 + j % 4); minus 32 */
    uint32_t u[3], v[4];
    memcpy(u, b->scales, 12);
    v[0] = (u[0] & 0x0f0f0f0fu) | ((u[2] & 0x03030303u) << 4);
    v[1] = (u[1] & 0x0f0f0f0fu) | (((u[2] >> 2) & 0x03030303u) << 4);
    v[2] = ((u[0] >> 4) & 0x0f0f0f0fu) | (((u[2] >> 4) & 0x03030303u) << 4);
    v[3] = ((u[1] >> 4) & 0x0f0f0f0fu) | (((u[2] >> 6) & 0x03030303u) << 4);
    k->dq = lm_h2f(b->d);
    k->doff = 4.0f * k->dq; /* q - 4: the offset is 4 * scale */
#if LM_X86_SIMD
    /* built in registers: a 16-byte load over four 4-byte stores would stall store forwarding */
    const __m128i s8 = _mm_sub_epi8(_mm_set_epi32((int)v[3], (int)v[2], (int)v[1], (int)v[0]), _mm_set1_epi8(32));
    const __m256i s16 = _mm256_cvtepi8_epi16(s8);
    LM_FN(k_spread)(s16, k);
    k->off = s16;
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1), hm = LM_KLOAD(b->hmask);
    for (int h = 0; h < 2; h++) {
        const __m256i bits = LM_KLOAD(b->qs + 32 * h);
        for (int t = 0; t < 4; t++) {
            const __m256i hb = _mm256_and_si256(LM_SRL8(hm, 4 * h + t), one);
            k->q[4 * h + t] = _mm256_or_si256(_mm256_and_si256(LM_SRL8(bits, 2 * t), m3), _mm256_slli_epi16(hb, 2));
        }
    }
#elif LM_ARM_SIMD
    const uint32x4_t v4 = vcombine_u32(vcreate_u32(v[0] | (uint64_t)v[1] << 32), vcreate_u32(v[2] | (uint64_t)v[3] << 32));
    LM_FN(k_signed16)(vsubq_s8(vreinterpretq_s8_u32(v4), vdupq_n_s8(32)), k);
    const uint8x16_t m3 = vdupq_n_u8(3), one = vdupq_n_u8(1);
    const uint8x16_t hm0 = vld1q_u8(b->hmask), hm1 = vld1q_u8(b->hmask + 16);
    for (int h = 0; h < 2; h++) {
        const uint8x16_t b0 = vld1q_u8(b->qs + 32 * h), b1 = vld1q_u8(b->qs + 32 * h + 16);
        for (int t = 0; t < 4; t++) {
            const uint8x16_t h0 = vshlq_n_u8(vandq_u8(LM_SHR8(hm0, 4 * h + t), one), 2);
            const uint8x16_t h1 = vshlq_n_u8(vandq_u8(LM_SHR8(hm1, 4 * h + t), one), 2);
            k->q[8 * h + 2 * t] = vorrq_u8(vandq_u8(LM_SHR8(b0, 2 * t), m3), h0);
            k->q[8 * h + 2 * t + 1] = vorrq_u8(vandq_u8(LM_SHR8(b1, 2 * t), m3), h1);
        }
    }
#else
    uint8_t u8[16];
    memcpy(u8, v, 16);
    for (int j = 0; j < 16; j++) k->sc[j] = k->off[j] = (int16_t)(u8[j] - 32);
    for (int h = 0; h < 2; h++)
        for (int t = 0; t < 4; t++)
            for (int l = 0; l < 32; l++)
                k->q[128 * h + 32 * t + l] = (uint8_t)(((b->qs[32 * h + l] >> (2 * t)) & 3) |
                                                        (((b->hmask[l] >> (4 * h + t)) & 1) << 2));
#endif
}

/* Q4_K and Q5_K share everything but the 5th bit: qh == NULL for Q4_K (always inlined, so that
 * the test of qh folds away) */
static LM_TARGET LM_ALWAYS_INLINE void LM_FN(unpack_k45)(lm_half d, lm_half dmin, const uint8_t *scales, const uint8_t *qs,
                                               const uint8_t *qh, LM_KBLOCK *k) {
#if LM_X86_SIMD
    /* scales and mins decoded in registers (a vector load of bytes just stored by scalar code
     * would stall store forwarding) */
    const __m128i sm = LM_FN(k4_scales_x86)(scales);
    k->dq = LM_CVTSH_SS(d);
    k->doff = LM_CVTSH_SS(dmin);
    LM_FN(k_spread)(LM_FN(k_twice16)(sm), k);
    k->off = LM_FN(k_twice16)(_mm_srli_si128(sm, 8));
    const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
    const __m256i hb = qh ? LM_KLOAD(qh) : _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        const __m256i bits = LM_KLOAD(qs + 32 * c);
        __m256i lo = _mm256_and_si256(bits, m4), hi = _mm256_and_si256(LM_SRL8(bits, 4), m4);
        if (qh) {
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(LM_SRL8(hb, 2 * c), one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(LM_SRL8(hb, 2 * c + 1), one), 4));
        }
        k->q[2 * c] = lo;
        k->q[2 * c + 1] = hi;
    }
#elif LM_ARM_SIMD
    uint8_t sc[8], mn[8];
    LM_FN(k4_scales)(scales, sc, mn);
    k->dq = lm_h2f(d);
    k->doff = lm_h2f(dmin);
    const int16x8_t s8 = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(sc)));
    k->sc[0] = vmovl_s16(vget_low_s16(s8));
    k->sc[1] = vmovl_s16(vget_high_s16(s8));
    k->per32 = 1;
    LM_FN(k_twice16)(mn, &k->off[0], &k->off[1]);
    const uint8x16_t m4 = vdupq_n_u8(0x0f), one = vdupq_n_u8(1);
    for (int c = 0; c < 4; c++) {
        /* low nibbles: weights 64c .. 64c+31; high: 64c+32 .. 64c+63 */
        const uint8x16_t b0 = vld1q_u8(qs + 32 * c), b1 = vld1q_u8(qs + 32 * c + 16);
        k->q[4 * c] = vandq_u8(b0, m4);
        k->q[4 * c + 1] = vandq_u8(b1, m4);
        k->q[4 * c + 2] = vshrq_n_u8(b0, 4);
        k->q[4 * c + 3] = vshrq_n_u8(b1, 4);
    }
    if (qh) { /* Q5_K: the 5th bits, 2c and 2c+1 of qh */
        const uint8x16_t h0 = vld1q_u8(qh), h1 = vld1q_u8(qh + 16);
        for (int c = 0; c < 4; c++) {
            k->q[4 * c] = vorrq_u8(k->q[4 * c], vshlq_n_u8(vandq_u8(LM_SHR8(h0, 2 * c), one), 4));
            k->q[4 * c + 1] = vorrq_u8(k->q[4 * c + 1], vshlq_n_u8(vandq_u8(LM_SHR8(h1, 2 * c), one), 4));
            k->q[4 * c + 2] = vorrq_u8(k->q[4 * c + 2], vshlq_n_u8(vandq_u8(LM_SHR8(h0, 2 * c + 1), one), 4));
            k->q[4 * c + 3] = vorrq_u8(k->q[4 * c + 3], vshlq_n_u8(vandq_u8(LM_SHR8(h1, 2 * c + 1), one), 4));
        }
    }
#else
    uint8_t sc[8], mn[8];
    LM_FN(k4_scales)(scales, sc, mn);
    k->dq = lm_h2f(d);
    k->doff = lm_h2f(dmin);
    for (int j = 0; j < 8; j++) {
        k->sc[2 * j] = k->sc[2 * j + 1] = sc[j];
        k->off[2 * j] = k->off[2 * j + 1] = mn[j];
    }
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            k->q[64 * c + l] = (uint8_t)((qs[32 * c + l] & 0x0f) | (qh ? ((qh[l] >> (2 * c)) & 1) << 4 : 0));
            k->q[64 * c + 32 + l] = (uint8_t)((qs[32 * c + l] >> 4) | (qh ? ((qh[l] >> (2 * c + 1)) & 1) << 4 : 0));
        }
#endif
}

static LM_TARGET inline void LM_FN(unpack_q4_K)(const block_q4_K *b, LM_KBLOCK *k) {
    LM_FN(unpack_k45)(b->d, b->dmin, b->scales, b->qs, NULL, k);
}

static LM_TARGET inline void LM_FN(unpack_q5_K)(const block_q5_K *b, LM_KBLOCK *k) {
    LM_FN(unpack_k45)(b->d, b->dmin, b->scales, b->qs, b->qh, k);
}

static LM_TARGET inline void LM_FN(unpack_q6_K)(const block_q6_K *b, LM_KBLOCK *k) {
    k->dq = lm_h2f(b->d);
    k->doff = 32.0f * k->dq; /* q - 32: the offset is 32 * scale */
#if LM_X86_SIMD
    const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)b->scales));
    LM_FN(k_spread)(s16, k);
    k->off = s16;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3);
    for (int h = 0; h < 2; h++) {
        const __m256i l0 = LM_KLOAD(b->ql + 64 * h), l1 = LM_KLOAD(b->ql + 64 * h + 32), hb = LM_KLOAD(b->qh + 32 * h);
        const __m256i lows[4] = {_mm256_and_si256(l0, m4), _mm256_and_si256(l1, m4),
                                 _mm256_and_si256(LM_SRL8(l0, 4), m4), _mm256_and_si256(LM_SRL8(l1, 4), m4)};
        for (int t = 0; t < 4; t++)
            k->q[4 * h + t] = _mm256_or_si256(lows[t], _mm256_slli_epi16(_mm256_and_si256(LM_SRL8(hb, 2 * t), m3), 4));
    }
#elif LM_ARM_SIMD
    LM_FN(k_signed16)(vld1q_s8(b->scales), k);
    const uint8x16_t m4 = vdupq_n_u8(0x0f), m30 = vdupq_n_u8(0x30);
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        const uint8x16_t l0 = vld1q_u8(ql), l1 = vld1q_u8(ql + 16), l2 = vld1q_u8(ql + 32), l3 = vld1q_u8(ql + 48);
        const uint8x16_t h0 = vld1q_u8(qh), h1 = vld1q_u8(qh + 16);
        /* weights l, l+32, l+64, l+96 take qh bits 0-1, 2-3, 4-5, 6-7 as their bits 4-5 */
        k->q[8 * h + 0] = vorrq_u8(vandq_u8(l0, m4), vandq_u8(vshlq_n_u8(h0, 4), m30));
        k->q[8 * h + 1] = vorrq_u8(vandq_u8(l1, m4), vandq_u8(vshlq_n_u8(h1, 4), m30));
        k->q[8 * h + 2] = vorrq_u8(vandq_u8(l2, m4), vandq_u8(vshlq_n_u8(h0, 2), m30));
        k->q[8 * h + 3] = vorrq_u8(vandq_u8(l3, m4), vandq_u8(vshlq_n_u8(h1, 2), m30));
        k->q[8 * h + 4] = vorrq_u8(vshrq_n_u8(l0, 4), vandq_u8(h0, m30));
        k->q[8 * h + 5] = vorrq_u8(vshrq_n_u8(l1, 4), vandq_u8(h1, m30));
        k->q[8 * h + 6] = vorrq_u8(vshrq_n_u8(l2, 4), vandq_u8(vshrq_n_u8(h0, 2), m30));
        k->q[8 * h + 7] = vorrq_u8(vshrq_n_u8(l3, 4), vandq_u8(vshrq_n_u8(h1, 2), m30));
    }
#else
    for (int j = 0; j < 16; j++) k->sc[j] = k->off[j] = b->scales[j];
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        uint8_t *o = k->q + 128 * h;
        for (int l = 0; l < 32; l++) {
            o[l] = (uint8_t)((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4));
            o[l + 32] = (uint8_t)((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4));
            o[l + 64] = (uint8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
            o[l + 96] = (uint8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
        }
    }
#endif
}

/* acc += the unpacked block . one Q8_K block */
#if LM_X86_SIMD
static LM_TARGET inline __m256 LM_FN(kblock_acc)(const LM_KBLOCK *restrict k, const block_q8_K *restrict a,
                                                 __m256 acc) {
    __m256i s = _mm256_setzero_si256();
    for (int v = 0; v < 8; v++) {
        /* unsigned q x signed a in pairs (no saturation: 2 * 63 * 127 < 2^15), then each 16-bit
         * pair times its scale, summed into 8 int32 */
        const __m256i p = _mm256_maddubs_epi16(k->q[v], LM_KLOAD(a->qs + 32 * v));
#if LM_ISA == LM_ISA_AVX512
        s = _mm256_dpwssd_epi32(s, p, k->sc[v]);
#else
        s = _mm256_add_epi32(s, _mm256_madd_epi16(p, k->sc[v]));
#endif
    }
    const __m256i o = _mm256_madd_epi16(LM_KLOAD(a->bsums), k->off);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(a->d * k->dq), _mm256_cvtepi32_ps(s), acc);
    return _mm256_fnmadd_ps(_mm256_set1_ps(a->d * k->doff), _mm256_cvtepi32_ps(o), acc);
}
#define LM_KACC_T __m256
#define LM_KACC_ZERO _mm256_setzero_ps()
#define LM_KACC_SUM(acc) lm_hsum256(acc)
#elif LM_ARM_SIMD
static LM_TARGET inline float32x4_t LM_FN(kblock_acc)(const LM_KBLOCK *restrict k, const block_q8_K *restrict a,
                                                      float32x4_t acc) {
    const int32x4_t z = vdupq_n_s32(0);
    int32x4_t s = z;
    if (k->per32) { /* 8 scales of 32: two sub-blocks per sdot chain, one lane per scale */
        for (int g = 0; g < 2; g++) {
            const int8_t *aq = a->qs + 128 * g;
            const uint8x16_t *q = k->q + 8 * g;
            const int32x4_t p0 = LM_FN(dot16)(LM_FN(dot16)(z, vreinterpretq_s8_u8(q[0]), vld1q_s8(aq)),
                                              vreinterpretq_s8_u8(q[1]), vld1q_s8(aq + 16));
            const int32x4_t p1 = LM_FN(dot16)(LM_FN(dot16)(z, vreinterpretq_s8_u8(q[2]), vld1q_s8(aq + 32)),
                                              vreinterpretq_s8_u8(q[3]), vld1q_s8(aq + 48));
            const int32x4_t p2 = LM_FN(dot16)(LM_FN(dot16)(z, vreinterpretq_s8_u8(q[4]), vld1q_s8(aq + 64)),
                                              vreinterpretq_s8_u8(q[5]), vld1q_s8(aq + 80));
            const int32x4_t p3 = LM_FN(dot16)(LM_FN(dot16)(z, vreinterpretq_s8_u8(q[6]), vld1q_s8(aq + 96)),
                                              vreinterpretq_s8_u8(q[7]), vld1q_s8(aq + 112));
            s = vmlaq_s32(s, vpaddq_s32(vpaddq_s32(p0, p1), vpaddq_s32(p2, p3)), k->sc[g]);
        }
    } else {
        for (int g = 0; g < 4; g++) {
            /* sub-blocks 4g .. 4g+3: four partial sums each, pairwise-added to one lane per
             * sub-block, times the sub-blocks' scales (no overflow: a lane sums 4 sub-blocks,
             * 4 * 16 * 63 * 127 * 127 < 2^31) */
            const int8_t *aq = a->qs + 64 * g;
            const int32x4_t p0 = LM_FN(dot16)(z, vreinterpretq_s8_u8(k->q[4 * g]), vld1q_s8(aq));
            const int32x4_t p1 = LM_FN(dot16)(z, vreinterpretq_s8_u8(k->q[4 * g + 1]), vld1q_s8(aq + 16));
            const int32x4_t p2 = LM_FN(dot16)(z, vreinterpretq_s8_u8(k->q[4 * g + 2]), vld1q_s8(aq + 32));
            const int32x4_t p3 = LM_FN(dot16)(z, vreinterpretq_s8_u8(k->q[4 * g + 3]), vld1q_s8(aq + 48));
            s = vmlaq_s32(s, vpaddq_s32(vpaddq_s32(p0, p1), vpaddq_s32(p2, p3)), k->sc[g]);
        }
    }
    const int16x8_t b0 = vld1q_s16(a->bsums), b1 = vld1q_s16(a->bsums + 8);
    int32x4_t o = vmull_s16(vget_low_s16(b0), vget_low_s16(k->off[0]));
    o = vmlal_high_s16(o, b0, k->off[0]);
    o = vmlal_s16(o, vget_low_s16(b1), vget_low_s16(k->off[1]));
    o = vmlal_high_s16(o, b1, k->off[1]);
    acc = vmlaq_n_f32(acc, vcvtq_f32_s32(s), a->d * k->dq);
    return vmlsq_n_f32(acc, vcvtq_f32_s32(o), a->d * k->doff);
}
#define LM_KACC_T float32x4_t
#define LM_KACC_ZERO vdupq_n_f32(0.0f)
#define LM_KACC_SUM(acc) vaddvq_f32(acc)
#else
static LM_TARGET inline float LM_FN(kblock_acc)(const LM_KBLOCK *restrict k, const block_q8_K *restrict a,
                                                float acc) {
    int sumi = 0, offi = 0;
    for (int j = 0; j < 16; j++) {
        int t = 0;
        for (int l = 0; l < 16; l++) t += k->q[16 * j + l] * a->qs[16 * j + l];
        sumi += k->sc[j] * t;
        offi += k->off[j] * a->bsums[j];
    }
    return acc + a->d * (k->dq * (float)sumi - k->doff * (float)offi);
}
#define LM_KACC_T float
#define LM_KACC_ZERO 0.0f
#define LM_KACC_SUM(acc) (acc)
#endif

/* decode streams each row once from memory: fetch LM_KPREFETCH_BYTES ahead, every cache line of
 * the block (84 to 210 bytes) */
#if LM_X86_SIMD
#define LM_KPREFETCH(b)                                                                                      \
    for (size_t lm_off = 0; lm_off < sizeof *(b); lm_off += 64)                                              \
        _mm_prefetch((const char *)(b) + LM_KPREFETCH_BYTES + lm_off, _MM_HINT_T0)
#elif LM_ARM_SIMD
#define LM_KPREFETCH(b)                                                                                      \
    for (size_t lm_off = 0; lm_off < sizeof *(b); lm_off += 64)                                              \
    LM_ARM_PREFETCH((const char *)(b) + LM_PREFETCH_BYTES + lm_off) /* arm64: not measured on hardware, kept */
#else
#define LM_KPREFETCH(b) ((void)0)
#endif
#define LM_KQUANT_DOT(wname, btype)                                                                          \
    static LM_TARGET float LM_FN(dot_##wname##_q8_K)(int64_t n, const void *restrict wv, const float *restrict av) { \
        const btype *w = (const btype *)wv;                                                                  \
        const block_q8_K *a = (const block_q8_K *)(const void *)av;                                          \
        LM_KBLOCK k;                                                                                         \
        LM_KACC_T acc = LM_KACC_ZERO;                                                                        \
        for (int64_t ib = 0; ib < n / QK_K; ib++) {                                                          \
            LM_KPREFETCH(w + ib);                                                                            \
            LM_FN(unpack_##wname)(w + ib, &k);                                                               \
            acc = LM_FN(kblock_acc)(&k, a + ib, acc);                                                        \
        }                                                                                                    \
        return LM_KACC_SUM(acc);                                                                             \
    }
#if LM_ISA != LM_ISA_AVX512 /* AVX-512 has its own below */
LM_KQUANT_DOT(q2_K, block_q2_K)
LM_KQUANT_DOT(q3_K, block_q3_K)
#endif
#if !LM_X86_SIMD /* x86 has its own below */
LM_KQUANT_DOT(q4_K, block_q4_K)
LM_KQUANT_DOT(q5_K, block_q5_K)
LM_KQUANT_DOT(q6_K, block_q6_K)
#endif
#undef LM_KQUANT_DOT

#if LM_ISA == LM_ISA_AVX512
/* ---- AVX-512: a k-quant block as 4 x 64 weights ---------------------------------------------------
 * A 512-bit vector holds 64 consecutive weights -- in Q4_K/Q5_K the low and high nibbles of 32
 * bytes, which are sub-blocks 2c and 2c+1; in Q6_K the low / high nibbles of 64 bytes -- so one
 * maddubs and one dpwssd multiply 64 weights by a token and apply their scales. Q4_K, Q5_K and
 * Q6_K are unpacked straight into that form (Q4_K/Q5_K scales decoded by 7 SSE operations, d and
 * dmin converted together by F16C); Q2_K and Q3_K through the 256-bit unpack, widened. The same
 * block serves one token (dot), four (dot4) or many (dotn, k_dot4.h). One core, rows in cache
 * (benchmarks/block_cost.sh), ns per block: Q4_K 5.55 -> 3.3, Q6_K 4.80 -> 3.2 against the 256-bit
 * block-dot. */
typedef struct {
    __m512i q[4], sc[4]; /* q[u]: weights 64u .. 64u+63 (unsigned); sc[u]: their scales, one per int16 lane */
    __m256i off;         /* the 16 offsets (int16), against the token's 16 bsums */
    float dq, doff;
} LM_FN(lm_kblock512);
#define LM_KBLOCK512 LM_FN(lm_kblock512)

static const int8_t LM_FN(k4_pick)[4][64] = { /* scale 2c in the low 256 bits, 2c+1 in the high */
#define LM_W16(k) 2 * (k), 2 * (k) + 1
#define LM_W16X8(k) LM_W16(k), LM_W16(k), LM_W16(k), LM_W16(k), LM_W16(k), LM_W16(k), LM_W16(k), LM_W16(k)
    {LM_W16X8(0), LM_W16X8(0), LM_W16X8(1), LM_W16X8(1)},
    {LM_W16X8(2), LM_W16X8(2), LM_W16X8(3), LM_W16X8(3)},
    {LM_W16X8(4), LM_W16X8(4), LM_W16X8(5), LM_W16X8(5)},
    {LM_W16X8(6), LM_W16X8(6), LM_W16X8(7), LM_W16X8(7)}};
#undef LM_W16X8
#undef LM_W16
static const int16_t LM_FN(q6_pick)[4][32] = { /* scales 4g .. 4g+3, one per 128-bit lane */
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13, 14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15,
     15, 15, 15, 15}};

/* the 256-bit unpacked block, widened (Q2_K, Q3_K) */
static LM_TARGET inline void LM_FN(kblock_widen)(const LM_KBLOCK *restrict k, LM_KBLOCK512 *restrict z) {
    for (int u = 0; u < 4; u++) {
        z->q[u] = _mm512_inserti64x4(_mm512_castsi256_si512(k->q[2 * u]), k->q[2 * u + 1], 1);
        z->sc[u] = _mm512_inserti64x4(_mm512_castsi256_si512(k->sc[2 * u]), k->sc[2 * u + 1], 1);
    }
    z->off = k->off;
    z->dq = k->dq;
    z->doff = k->doff;
}
static LM_TARGET inline void LM_FN(unpack512_q2_K)(const block_q2_K *b, LM_KBLOCK512 *z) {
    LM_KBLOCK k;
    LM_FN(unpack_q2_K)(b, &k);
    LM_FN(kblock_widen)(&k, z);
}
static LM_TARGET inline void LM_FN(unpack512_q3_K)(const block_q3_K *b, LM_KBLOCK512 *z) {
    LM_KBLOCK k;
    LM_FN(unpack_q3_K)(b, &k);
    LM_FN(kblock_widen)(&k, z);
}

/* Q4_K (qh NULL) and Q5_K: always inlined so that the test of qh folds away */
static LM_TARGET LM_ALWAYS_INLINE void LM_FN(unpack512_k45)(const uint8_t *hd, const uint8_t *scales, const uint8_t *qs,
                                                            const uint8_t *qh, LM_KBLOCK512 *z) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m128i twice = _mm_set_epi8(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8);
    const __m128i sm = LM_FN(k4_scales_x86)(scales);
    const __m512i s16 = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(sm)); /* the 8 scales, in every lane */
    const __m256i h = qh ? LM_KLOAD(qh) : _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) { /* weights 64c .. 64c+63: sub-blocks 2c, 2c+1 */
        const __m256i bits = LM_KLOAD(qs + 32 * c);
        z->q[c] = _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(bits), LM_SRL8(bits, 4), 1), m4);
        if (qh) { /* 5th bits: bit 2c of qh for the low nibbles, 2c+1 for the high */
            const __m512i hb = _mm512_inserti64x4(_mm512_castsi256_si512(LM_SRL8(h, 2 * c)), LM_SRL8(h, 2 * c + 1), 1);
            z->q[c] = _mm512_ternarylogic_epi32(z->q[c], _mm512_slli_epi16(hb, 4), _mm512_set1_epi8(0x10),
                                                0xF8); /* q | (hb << 4 & 0x10) */
        }
        z->sc[c] = _mm512_shuffle_epi8(s16, _mm512_loadu_si512(LM_FN(k4_pick)[c]));
    }
    z->off = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(sm, twice)); /* each min twice, against the sums of 16 */
    uint32_t dd; /* d and dmin, both to float at once */
    memcpy(&dd, hd, 4);
    const __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)dd));
    z->dq = _mm_cvtss_f32(f);
    z->doff = _mm_cvtss_f32(_mm_movehdup_ps(f));
}
static LM_TARGET inline void LM_FN(unpack512_q4_K)(const block_q4_K *b, LM_KBLOCK512 *z) {
    LM_FN(unpack512_k45)((const uint8_t *)&b->d, b->scales, b->qs, NULL, z);
}
static LM_TARGET inline void LM_FN(unpack512_q5_K)(const block_q5_K *b, LM_KBLOCK512 *z) {
    LM_FN(unpack512_k45)((const uint8_t *)&b->d, b->scales, b->qs, b->qh, z);
}

static LM_TARGET inline void LM_FN(unpack512_q6_K)(const block_q6_K *b, LM_KBLOCK512 *z) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)b->scales));
    const __m512i sc = _mm512_castsi256_si512(s16);
    for (int h = 0; h < 2; h++) { /* weights 128h .. 128h+127 */
        /* ql's 64 bytes: low nibbles weights 0..63 of the half, high nibbles 64..127; qh's 32
         * bytes give bits 4-5: bits 0-1 / 2-3 for the low nibbles, 4-5 / 6-7 for the high */
        const __m512i l = _mm512_loadu_si512(b->ql + 64 * h);
        const __m256i hb = LM_KLOAD(b->qh + 32 * h);
        const __m512i hx = _mm512_inserti64x4(_mm512_castsi256_si512(hb), LM_SRL8(hb, 2), 1);
        z->q[2 * h] = _mm512_ternarylogic_epi32(_mm512_and_si512(l, m4), _mm512_slli_epi16(hx, 4), m30, 0xF8);
        z->q[2 * h + 1] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4), hx, m30, 0xF8);
        z->sc[2 * h] = _mm512_permutexvar_epi16(_mm512_loadu_si512(LM_FN(q6_pick)[2 * h]), sc);
        z->sc[2 * h + 1] = _mm512_permutexvar_epi16(_mm512_loadu_si512(LM_FN(q6_pick)[2 * h + 1]), sc);
    }
    z->off = s16; /* q - 32: the offset is 32 * scale */
    z->dq = LM_CVTSH_SS(b->d);
    z->doff = 32.0f * z->dq;
}

/* acc += the block . one Q8_K block (maddubs: 2 * 63 * 127 < 2^15) */
static LM_TARGET inline __m512 LM_FN(kblock_acc512)(const LM_KBLOCK512 *restrict z, const block_q8_K *restrict a,
                                                    __m512 acc) {
    __m512i s = _mm512_setzero_si512();
    for (int u = 0; u < 4; u++)
        s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(z->q[u], _mm512_loadu_si512((const void *)(a->qs + 64 * u))),
                                z->sc[u]);
    const __m256i o = _mm256_madd_epi16(LM_KLOAD(a->bsums), z->off);
    acc = _mm512_fmadd_ps(_mm512_set1_ps(a->d * z->dq), _mm512_cvtepi32_ps(s), acc);
    return _mm512_fnmadd_ps(_mm512_set1_ps(a->d * z->doff), _mm512_cvtepi32_ps(_mm512_zextsi256_si512(o)), acc);
}

#define LM_KQUANT_DOT512(wname, btype)                                                                       \
    static LM_TARGET float LM_FN(dot_##wname##_q8_K)(int64_t n, const void *restrict wv, const float *restrict av) { \
        const btype *w = (const btype *)wv;                                                                  \
        const block_q8_K *a = (const block_q8_K *)(const void *)av;                                          \
        LM_KBLOCK512 z;                                                                                      \
        __m512 acc = _mm512_setzero_ps();                                                                    \
        for (int64_t ib = 0; ib < n / QK_K; ib++) {                                                          \
            LM_KPREFETCH(w + ib);                                                                            \
            LM_FN(unpack512_##wname)(w + ib, &z);                                                            \
            acc = LM_FN(kblock_acc512)(&z, a + ib, acc);                                                     \
        }                                                                                                    \
        return lm_hsum512(acc);                                                                              \
    }
LM_KQUANT_DOT512(q2_K, block_q2_K)
LM_KQUANT_DOT512(q3_K, block_q3_K)
LM_KQUANT_DOT512(q4_K, block_q4_K)
LM_KQUANT_DOT512(q5_K, block_q5_K)
LM_KQUANT_DOT512(q6_K, block_q6_K)
#undef LM_KQUANT_DOT512

#elif LM_ISA == LM_ISA_AVX2
/* ---- AVX2: the same decode dots of Q4_K, Q5_K and Q6_K, 32 weights per instruction ---------------
 * As the AVX-512 ones, without materializing the block-dot's 17-register block (it spills with
 * AVX2's 16 registers): each 32 weights are unpacked, multiplied (maddubs) and scaled (madd)
 * where they are read. Measured with benchmarks/block_cost.sh (benchmarks/RESULTS.md). */
static const int8_t LM_FN(kq_pick)[8][32] = { /* int16 word j of a 128-bit lane, in every word */
#define LM_P(j) 2 * (j), 2 * (j) + 1
#define LM_P16(j) LM_P(j), LM_P(j), LM_P(j), LM_P(j), LM_P(j), LM_P(j), LM_P(j), LM_P(j)
    {LM_P16(0), LM_P16(0)}, {LM_P16(1), LM_P16(1)}, {LM_P16(2), LM_P16(2)}, {LM_P16(3), LM_P16(3)},
    {LM_P16(4), LM_P16(4)}, {LM_P16(5), LM_P16(5)}, {LM_P16(6), LM_P16(6)}, {LM_P16(7), LM_P16(7)}};
#undef LM_P16
#undef LM_P

static LM_TARGET LM_ALWAYS_INLINE float LM_FN(dot_k45_avx2)(int64_t n, const uint8_t *w, size_t bsize, size_t qs_at,
                                                            ptrdiff_t qh_at, const block_q8_K *restrict a) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m10 = _mm256_set1_epi8(0x10);
    const __m128i twice = _mm_set_epi8(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < n / QK_K; ib++, w += bsize, a++) {
        for (size_t off = 0; off < bsize; off += 64) _mm_prefetch((const char *)w + LM_KPREFETCH_BYTES + off, _MM_HINT_T0);
        const block_q4_K *b = (const block_q4_K *)(const void *)w; /* d, dmin, scales: Q5_K's too */
        const __m128i sm = LM_FN(k4_scales_x86)(b->scales);
        const __m128i s8 = _mm_cvtepu8_epi16(sm);
        const __m256i s16 = _mm256_set_m128i(s8, s8); /* the 8 scales, in both lanes */
        const __m256i h = qh_at >= 0 ? LM_KLOAD(w + qh_at) : _mm256_setzero_si256();
        __m256i s = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) { /* weights 64c .. 64c+63: sub-blocks 2c (low nibbles), 2c+1 */
            const __m256i bits = LM_KLOAD(w + qs_at + 32 * c);
            __m256i lo = _mm256_and_si256(bits, m4), hi = _mm256_and_si256(LM_SRL8(bits, 4), m4);
            if (qh_at >= 0) {
                lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(LM_SRL8(h, 2 * c), 4), m10));
                hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(LM_SRL8(h, 2 * c + 1), 4), m10));
            }
            const __m256i p0 = _mm256_maddubs_epi16(lo, LM_KLOAD(a->qs + 64 * c)); /* 2 * 31 * 127 < 2^15 */
            const __m256i p1 = _mm256_maddubs_epi16(hi, LM_KLOAD(a->qs + 64 * c + 32));
            s = _mm256_add_epi32(s, _mm256_madd_epi16(p0, _mm256_shuffle_epi8(s16, LM_KLOAD(LM_FN(kq_pick)[2 * c]))));
            s = _mm256_add_epi32(s, _mm256_madd_epi16(p1, _mm256_shuffle_epi8(s16, LM_KLOAD(LM_FN(kq_pick)[2 * c + 1]))));
        }
        const __m256i o = _mm256_madd_epi16(LM_KLOAD(a->bsums), _mm256_cvtepu8_epi16(_mm_shuffle_epi8(sm, twice)));
        uint32_t dd; /* d and dmin, both to float at once */
        memcpy(&dd, &b->d, 4);
        const __m128 f = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)dd)), _mm_set1_ps(a->d));
        acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(f), _mm256_cvtepi32_ps(s), acc);
        accm = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(f)), _mm256_cvtepi32_ps(o), accm);
    }
    return lm_hsum256(acc) - lm_hsum256(accm);
}
static LM_TARGET float LM_FN(dot_q4_K_q8_K)(int64_t n, const void *restrict w, const float *restrict a) {
    return LM_FN(dot_k45_avx2)(n, (const uint8_t *)w, sizeof(block_q4_K), offsetof(block_q4_K, qs), -1,
                               (const block_q8_K *)(const void *)a);
}
static LM_TARGET float LM_FN(dot_q5_K_q8_K)(int64_t n, const void *restrict w, const float *restrict a) {
    return LM_FN(dot_k45_avx2)(n, (const uint8_t *)w, sizeof(block_q5_K), offsetof(block_q5_K, qs),
                               offsetof(block_q5_K, qh), (const block_q8_K *)(const void *)a);
}

static LM_TARGET float LM_FN(dot_q6_K_q8_K)(int64_t n, const void *restrict wv, const float *restrict av) {
    const block_q6_K *w = (const block_q6_K *)wv;
    const block_q8_K *a = (const block_q8_K *)(const void *)av;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps(), acco = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < n / QK_K; ib++) {
        const block_q6_K *b = w + ib;
        const block_q8_K *y = a + ib;
        LM_KPREFETCH(b);
        const __m128i sc8 = _mm_loadu_si128((const __m128i *)(const void *)b->scales);
        const __m256i s16 = _mm256_cvtepi8_epi16(sc8);
        /* scales 0..7 and 8..15, each in both lanes, for the pick by word */
        const __m256i slo = _mm256_permute2x128_si256(s16, s16, 0x00), shi = _mm256_permute2x128_si256(s16, s16, 0x11);
        __m256i s = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) { /* weights 128h .. 128h+127: four runs of 32, two scales each */
            const __m256i l0 = LM_KLOAD(b->ql + 64 * h), l1 = LM_KLOAD(b->ql + 64 * h + 32), hb = LM_KLOAD(b->qh + 32 * h);
            const __m256i sv = h ? shi : slo;
            const __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30)),
                _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30)),
                _mm256_or_si256(_mm256_and_si256(LM_SRL8(l0, 4), m4), _mm256_and_si256(hb, m30)),
                _mm256_or_si256(_mm256_and_si256(LM_SRL8(l1, 4), m4), _mm256_and_si256(LM_SRL8(hb, 2), m30))};
            for (int t = 0; t < 4; t++) { /* weights 128h + 32t ..: scales 8h + 2t (low lane), 8h + 2t + 1 */
                const __m256i p = _mm256_maddubs_epi16(q[t], LM_KLOAD(y->qs + 128 * h + 32 * t)); /* 2 * 63 * 127 < 2^15 */
                const __m256i pick = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(const void *)LM_FN(kq_pick)[2 * t + 1]),
                                                      _mm_loadu_si128((const __m128i *)(const void *)LM_FN(kq_pick)[2 * t]));
                s = _mm256_add_epi32(s, _mm256_madd_epi16(p, _mm256_shuffle_epi8(sv, pick)));
            }
        }
        const __m256i o = _mm256_madd_epi16(LM_KLOAD(y->bsums), s16); /* the offset 32 */
        const float d = y->d * LM_CVTSH_SS(b->d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s), acc);
        acco = _mm256_fmadd_ps(_mm256_set1_ps(32.0f * d), _mm256_cvtepi32_ps(o), acco);
    }
    return lm_hsum256(acc) - lm_hsum256(acco);
}
#endif
#undef LM_KPREFETCH
