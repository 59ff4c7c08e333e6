/* dot_impl.h -- row dot products and activation quantizers, compiled once per ISA.
 *
 * dispatch.h includes this file three times with LM_ISA = LM_ISA_SCALAR, LM_ISA_AVX2,
 * LM_ISA_AVX512, LM_FN(name) adding the ISA suffix and LM_TARGET the compiler's target
 * attribute. Plain C loops below are written so the compiler vectorizes them for each target;
 * the hottest pairs (Q4_0 x Q8_0, Q8_0 x Q8_0, F16/F32 x F32) have hand-written intrinsics.
 *
 * Naming: dot_<weight type>_<activation type>(n, weight row, activation row) -> float,
 * n elements; quantize_row_<type>(x, out, n) makes the activation blocks.
 *
 * The kernels only some ISAs have are named at the end as LM_DOT8_Q8_0, LM_DOT8X2_Q8_0,
 * LM_ROWS_Q4_0 and LM_TILE8_ROWS_Q4_0 (each a function or NULL); the previous include's are
 * released first.
 */
#undef LM_DOT8_Q8_0
#undef LM_DOT8X2_Q8_0
#undef LM_ROWS_Q4_0
#undef LM_TILE8_ROWS_Q4_0

/* ---- activation quantizers ---------------------------------------------------------------- */
/* Q8_0: per 32 values, d = max|x| / 127, q = round-half-even(x / d). */
static LM_TARGET void LM_FN(quantize_row_q8_0)(const float *restrict x, void *restrict out, int64_t n) {
    block_q8_0 *y = (block_q8_0 *)out;
#if LM_ISA >= LM_ISA_AVX2
    /* the same arithmetic 8 lanes at a time: cvtps rounds half to even, as lrintf does */
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t ib = 0; ib < n / QK; ib++) {
        const float *v = x + ib * QK;
        __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8), v2 = _mm256_loadu_ps(v + 16),
               v3 = _mm256_loadu_ps(v + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[ib].d = lm_f2h(d);
        const __m256 s = _mm256_set1_ps(id);
        const __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, s)), q1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, s));
        const __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, s)), q3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, s));
        const __m256i q = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
        _mm256_storeu_si256((__m256i *)y[ib].qs, _mm256_permutevar8x32_epi32(q, order));
    }
    return;
#endif
    for (int64_t ib = 0; ib < n / QK; ib++) {
        const float *v = x + ib * QK;
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) { float a = fabsf(v[j]); amax = a > amax ? a : amax; }
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[ib].d = lm_f2h(d);
        for (int j = 0; j < QK; j++) y[ib].qs[j] = (int8_t)lrintf(v[j] * id);
    }
}

/* Q8_1: as Q8_0, plus s = d * sum(q) for the weights' offset term. */
static LM_TARGET void LM_FN(quantize_row_q8_1)(const float *restrict x, void *restrict out, int64_t n) {
    block_q8_1 *y = (block_q8_1 *)out;
    for (int64_t ib = 0; ib < n / QK; ib++) {
        const float *v = x + ib * QK;
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) { float a = fabsf(v[j]); amax = a > amax ? a : amax; }
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < QK; j++) { int q = (int)lrintf(v[j] * id); y[ib].qs[j] = (int8_t)q; sum += q; }
        y[ib].d = lm_f2h(d);
        y[ib].s = lm_f2h((float)sum * d);
    }
}

/* Q8_K: per 256 values, the value of largest magnitude maps to -127 (ggml's convention). */
static LM_TARGET void LM_FN(quantize_row_q8_K)(const float *restrict x, void *restrict out, int64_t n) {
    block_q8_K *y = (block_q8_K *)out;
    for (int64_t ib = 0; ib < n / QK_K; ib++) {
        const float *v = x + ib * QK_K;
        float amax = 0.0f, mx = 0.0f;
        for (int j = 0; j < QK_K; j++) { float a = fabsf(v[j]); if (a > amax) { amax = a; mx = v[j]; } }
        if (amax == 0.0f) { memset(&y[ib], 0, sizeof y[ib]); continue; }
        const float iscale = -127.0f / mx;
        for (int j = 0; j < QK_K; j++) { long q = lrintf(iscale * v[j]); y[ib].qs[j] = (int8_t)(q > 127 ? 127 : q); }
        for (int g = 0; g < QK_K / 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += y[ib].qs[16 * g + j];
            y[ib].bsums[g] = (int16_t)s;
        }
        y[ib].d = 1.0f / iscale;
    }
}

/* ---- horizontal sums ------------------------------------------------------------------------- */
#if LM_ISA >= LM_ISA_AVX2
static LM_TARGET inline float LM_FN(hsum256)(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* signed int8 x signed int8 -> 8 int32 partial sums */
static LM_TARGET inline __m256i LM_FN(dot_i8)(__m256i a, __m256i b) {
    const __m256i ax = _mm256_sign_epi8(a, a);
    const __m256i sb = _mm256_sign_epi8(b, a);
#if LM_ISA >= LM_ISA_AVX512
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sb);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sb), _mm256_set1_epi16(1));
#endif
}
#endif

/* ---- float weights ---------------------------------------------------------------------------- */
static LM_TARGET float LM_FN(dot_f32_f32)(int64_t n, const void *restrict wv, const float *restrict x) {
    const float *w = (const float *)wv;
    int64_t i = 0;
#if LM_ISA >= LM_ISA_AVX2
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    float s = LM_FN(hsum256)(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
#else
    float acc[8] = {0};
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += w[i + j] * x[i + j];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
#endif
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

static LM_TARGET float LM_FN(dot_f16_f32)(int64_t n, const void *restrict wv, const float *restrict x) {
    const lm_half *w = (const lm_half *)wv;
    int64_t i = 0;
#if LM_ISA >= LM_ISA_AVX2
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i))), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 8))), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 16))), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 24))), _mm256_loadu_ps(x + i + 24), a3);
    }
    float s = LM_FN(hsum256)(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += _cvtsh_ss(w[i]) * x[i];
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
#if LM_ISA >= LM_ISA_AVX2
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ib++) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(w[ib].d) * _cvtsh_ss(a[ib].d));
        const __m256i p = LM_FN(dot_i8)(_mm256_loadu_si256((const __m256i *)w[ib].qs),
                                        _mm256_loadu_si256((const __m256i *)a[ib].qs));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
    }
    return LM_FN(hsum256)(acc);
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

static LM_TARGET float LM_FN(dot_q4_0_q8_0)(int64_t n, const void *restrict wv, const float *restrict av) {
    const block_q4_0 *w = (const block_q4_0 *)wv;
    const block_q8_0 *a = (const block_q8_0 *)(const void *)av;
    const int64_t nb = n / QK;
#if LM_ISA >= LM_ISA_AVX2
    const __m256i lo = _mm256_set1_epi8(0x0f), eight = _mm256_set1_epi8(8);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t ib = 0;
    for (; ib + 2 <= nb; ib += 2) {
        for (int u = 0; u < 2; u++) {
            const __m128i raw = _mm_loadu_si128((const __m128i *)w[ib + u].qs);
            const __m256i q = _mm256_sub_epi8(
                _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), lo), eight);
            const __m256i p = LM_FN(dot_i8)(q, _mm256_loadu_si256((const __m256i *)a[ib + u].qs));
            const __m256 d = _mm256_set1_ps(_cvtsh_ss(w[ib + u].d) * _cvtsh_ss(a[ib + u].d));
            if (u == 0) acc0 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc0);
            else acc1 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc1);
        }
    }
    for (; ib < nb; ib++) {
        const __m128i raw = _mm_loadu_si128((const __m128i *)w[ib].qs);
        const __m256i q = _mm256_sub_epi8(_mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), lo), eight);
        const __m256i p = LM_FN(dot_i8)(q, _mm256_loadu_si256((const __m256i *)a[ib].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(w[ib].d) * _cvtsh_ss(a[ib].d)), _mm256_cvtepi32_ps(p), acc0);
    }
    return LM_FN(hsum256)(_mm256_add_ps(acc0, acc1));
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

static LM_TARGET float LM_FN(dot_q4_1_q8_1)(int64_t n, const void *restrict wv, const float *restrict av) {
    const block_q4_1 *w = (const block_q4_1 *)wv;
    const block_q8_1 *a = (const block_q8_1 *)(const void *)av;
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
    float s = 0.0f;
    for (int64_t ib = 0; ib < n / QK; ib++)
        s += (float)LM_FN(q5_block_dot)(w[ib].qs, w[ib].qh, a[ib].qs, 16) * (lm_h2f(w[ib].d) * lm_h2f(a[ib].d));
    return s;
}

static LM_TARGET float LM_FN(dot_q5_1_q8_1)(int64_t n, const void *restrict wv, const float *restrict av) {
    const block_q5_1 *w = (const block_q5_1 *)wv;
    const block_q8_1 *a = (const block_q8_1 *)(const void *)av;
    float s = 0.0f;
    for (int64_t ib = 0; ib < n / QK; ib++)
        s += (float)LM_FN(q5_block_dot)(w[ib].qs, w[ib].qh, a[ib].qs, 0) * (lm_h2f(w[ib].d) * lm_h2f(a[ib].d)) +
             lm_h2f(w[ib].m) * lm_h2f(a[ib].s);
    return s;
}

/* ---- k-quants x Q8_K: unpack a super-block to int8, then integer dots per sub-block ------------ */
static LM_TARGET inline void LM_FN(k4_scales)(const uint8_t *s, uint8_t *sc, uint8_t *mn) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0x0f) | ((s[j] >> 6) << 4);
        mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
}

/* sum over 8 sub-blocks of 32: sc[g] * dot(q[32g..], a[32g..]) */
static LM_TARGET inline int LM_FN(dot_32x8)(const int8_t *restrict q, const int8_t *restrict a, const uint8_t *sc) {
    int total = 0;
    for (int g = 0; g < 8; g++) {
        int s = 0;
        for (int l = 0; l < 32; l++) s += q[32 * g + l] * a[32 * g + l];
        total += sc[g] * s;
    }
    return total;
}

/* Q4_K and Q5_K share everything but the 5th bit: qh == NULL for Q4_K. */
static LM_TARGET inline float LM_FN(dot_k45)(const lm_half d, const lm_half dmin, const uint8_t *scales,
                                             const uint8_t *qs, const uint8_t *qh, const block_q8_K *a) {
    int8_t q[QK_K];
    uint8_t sc[8], mn[8];
    LM_FN(k4_scales)(scales, sc, mn);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            q[64 * c + l] = (int8_t)(qs[32 * c + l] & 0x0f);
            q[64 * c + 32 + l] = (int8_t)(qs[32 * c + l] >> 4);
        }
    if (qh)
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                q[64 * c + l] |= (int8_t)(((qh[l] >> (2 * c)) & 1) << 4);
                q[64 * c + 32 + l] |= (int8_t)(((qh[l] >> (2 * c + 1)) & 1) << 4);
            }
    int summ = 0; /* the mins, through the activation's sums of 16 */
    for (int g = 0; g < 8; g++) summ += mn[g] * (a->bsums[2 * g] + a->bsums[2 * g + 1]);
    const int sumi = LM_FN(dot_32x8)(q, a->qs, sc);
    return a->d * (lm_h2f(d) * (float)sumi - lm_h2f(dmin) * (float)summ);
}

static LM_TARGET float LM_FN(dot_q4_K_q8_K)(int64_t n, const void *restrict wv, const float *restrict av) {
    const block_q4_K *w = (const block_q4_K *)wv;
    const block_q8_K *a = (const block_q8_K *)(const void *)av;
    float s = 0.0f;
    for (int64_t ib = 0; ib < n / QK_K; ib++)
        s += LM_FN(dot_k45)(w[ib].d, w[ib].dmin, w[ib].scales, w[ib].qs, NULL, a + ib);
    return s;
}

static LM_TARGET float LM_FN(dot_q5_K_q8_K)(int64_t n, const void *restrict wv, const float *restrict av) {
    const block_q5_K *w = (const block_q5_K *)wv;
    const block_q8_K *a = (const block_q8_K *)(const void *)av;
    float s = 0.0f;
    for (int64_t ib = 0; ib < n / QK_K; ib++)
        s += LM_FN(dot_k45)(w[ib].d, w[ib].dmin, w[ib].scales, w[ib].qs, w[ib].qh, a + ib);
    return s;
}

static LM_TARGET float LM_FN(dot_q6_K_q8_K)(int64_t n, const void *restrict wv, const float *restrict av) {
    const block_q6_K *w = (const block_q6_K *)wv;
    const block_q8_K *a = (const block_q8_K *)(const void *)av;
    float s = 0.0f;
    int8_t q[QK_K];
    for (int64_t ib = 0; ib < n / QK_K; ib++) {
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[ib].ql + 64 * h, *qh = w[ib].qh + 32 * h;
            int8_t *o = q + 128 * h;
            for (int l = 0; l < 32; l++) {
                o[l] = (int8_t)(((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32);
                o[l + 32] = (int8_t)(((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32);
                o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
        int sumi = 0;
        for (int g = 0; g < 16; g++) {
            int t = 0;
            for (int l = 0; l < 16; l++) t += q[16 * g + l] * a[ib].qs[16 * g + l];
            sumi += w[ib].scales[g] * t;
        }
        s += a[ib].d * lm_h2f(w[ib].d) * (float)sumi;
    }
    return s;
}

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
    for (int j = 0; j < 4; j++) out[j] = LM_FN(hsum256)(acc[j]);

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

/* ---- one weight row x 8 tokens (prefill, batched decode): lanes are tokens ------------------------
 * Each weight block is unpacked once to unsigned bytes; for each group of 4 elements, the 4 weight
 * bytes are broadcast to all 8 lanes and multiplied with the same 4 elements of the 8 tokens
 * (lm_tile8_q8_0), so one instruction does 32 multiply-adds for 8 different tokens. Unsigned
 * weights carry an offset (Q4_0: q+8 stored as 0..15; Q8_0: shifted by +128), removed with the
 * token's quant sum: sum((w+o)*a) - o*sum(a). Q8_0 (dot8, dot8x2: one or two rows, unpacked
 * through the stack) only with dpbusd; Q4_0 (tile8_rows: up to 4 rows, nibbles masked in
 * registers) with dpbusd or AVX2's maddubs, exact for 0..15. NULL otherwise (the caller falls
 * back to dot4). */
#if LM_ISA >= LM_ISA_AVX2
#if LM_ISA >= LM_ISA_AVX512
#define LM_DPBUSD(acc, u, s) _mm256_dpbusd_epi32(acc, u, s)
#else /* exact only while 2*|u|*|s| < 32768: Q4_0's 0..15 weights */
#define LM_DPBUSD(acc, u, s) _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)))
#endif

/* R <= 4 Q4_0 weight rows against one tile of 8 tokens, reading the packed nibbles directly: the
 * raw dword of bytes 4k..4k+3 is broadcast once; & 0x0f gives elements 4k..4k+3, & 0xf0 gives
 * 16 x elements 16+4k..16+4k+3, whose sums are divided by 16 (exactly: >> 4) at the end of the
 * block. 8 dpbusd + 8 ands + 4 broadcasts per row and block, the tile loads shared by the rows.
 * Measured in cache on one core: 121-129 GMAC/s against 84 for the 2-row kernel it replaced,
 * which unpacked each block through the stack (load-port bound).
 * AVX2 has no dpbusd; its maddubs would saturate on 16 x nibble, so there the high nibbles are
 * shifted down instead (one more operation) and nothing is divided at the end.
 * out[j * ostride + r] for the first ntok tokens of the tile. */
static LM_TARGET inline __attribute__((always_inline)) void
LM_FN(tile8_rows_q4_0_body)(const int R, int64_t n, const uint8_t *restrict w, int64_t wstride,
                            const lm_tile8_q8_0 *restrict t, int ntok, float *restrict out, int64_t ostride) {
    const __m256i mlo = _mm256_set1_epi8(0x0f);
#if LM_ISA >= LM_ISA_AVX512
    const __m256i mhi = _mm256_set1_epi8((char)0xf0);
#define LM_HI_NIBBLES(raw) _mm256_and_si256(raw, mhi) /* 16 x the high nibbles */
#define LM_HI_SUM(x) _mm256_srai_epi32(x, 4)
#else
#define LM_HI_NIBBLES(raw) _mm256_and_si256(_mm256_srli_epi16(raw, 4), mlo)
#define LM_HI_SUM(x) (x)
#endif
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const block_q4_0 *b[4];
    for (int r = 0; r < R; r++) b[r] = (const block_q4_0 *)(const void *)(w + r * wstride);
    for (int64_t ib = 0; ib < n / QK; ib++, t++) {
        /* the weights' +8 offset: start every sum at -8 * (the token's quant sum) */
        const __m256i c = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)t->s), 3));
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
                lo[r] = LM_DPBUSD(lo[r], _mm256_and_si256(raw, mlo), a_lo);
                hi[r] = LM_DPBUSD(hi[r], LM_HI_NIBBLES(raw), a_hi);
            }
        }
        const __m256 da = _mm256_loadu_ps(t->d);
        for (int r = 0; r < R; r++) {
            const __m256i sum = _mm256_add_epi32(lo[r], LM_HI_SUM(hi[r]));
            acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(b[r][ib].d)), da), _mm256_cvtepi32_ps(sum),
                                     acc[r]);
        }
    }
#undef LM_HI_NIBBLES
#undef LM_HI_SUM
    for (int r = 0; r < R; r++) {
        float res[8];
        _mm256_storeu_ps(res, acc[r]);
        for (int j = 0; j < ntok; j++) out[j * ostride + r] = res[j];
    }
}

static LM_TARGET void LM_FN(tile8_rows_q4_0_q8_0)(int64_t n, const void *restrict w, int64_t wstride, int64_t rows,
                                                  const lm_tile8_q8_0 *restrict t, int ntok, float *restrict out,
                                                  int64_t ostride) {
    const uint8_t *wp = (const uint8_t *)w;
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) LM_FN(tile8_rows_q4_0_body)(4, n, wp + r * wstride, wstride, t, ntok, out + r, ostride);
    switch (rows - r) {
    case 3: LM_FN(tile8_rows_q4_0_body)(3, n, wp + r * wstride, wstride, t, ntok, out + r, ostride); break;
    case 2: LM_FN(tile8_rows_q4_0_body)(2, n, wp + r * wstride, wstride, t, ntok, out + r, ostride); break;
    case 1: LM_FN(tile8_rows_q4_0_body)(1, n, wp + r * wstride, wstride, t, ntok, out + r, ostride); break;
    default: break;
    }
}
#define LM_TILE8_ROWS_Q4_0 LM_FN(tile8_rows_q4_0_q8_0)

#if LM_ISA >= LM_ISA_AVX512
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
        acc = LM_FN(tile8_block)(wu, _cvtsh_ss(w[ib].d), t + ib, 7, acc); /* q = u - 128 */
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
        LM_FN(tile8_block2)(u0, u1, _cvtsh_ss(w0[ib].d), _cvtsh_ss(w1[ib].d), t + ib, 7, &acc0, &acc1);
    }
    _mm256_storeu_ps(out, acc0);
    _mm256_storeu_ps(out + 8, acc1);
}
#define LM_DOT8_Q8_0 LM_FN(dot8_q8_0_q8_0)
#define LM_DOT8X2_Q8_0 LM_FN(dot8x2_q8_0_q8_0)
#else
#define LM_DOT8_Q8_0 NULL
#define LM_DOT8X2_Q8_0 NULL
#endif
#undef LM_DPBUSD
#else
#define LM_DOT8_Q8_0 NULL
#define LM_DOT8X2_Q8_0 NULL
#define LM_TILE8_ROWS_Q4_0 NULL
#endif

/* ---- a run of Q4_0 weight rows x 1..4 tokens (decode, small batches) ------------------------------
 * Reads the mapped layout as it is, two blocks per 256-bit step: their 16-byte nibble arrays are
 * two loads into one register, low and high nibbles separated by masks, and each token's
 * activations were regrouped once per call to match (lm_group4_q8_0: a group of 4 blocks, whose
 * first 32 bytes of lo/hi, 8 corr and 8 d values belong to blocks 0 and 1). The -8 nibble offset
 * is the sums' starting value (corr); the two blocks' scales fill lanes 0-3 and 4-7. Per 2 blocks
 * and token: 2 dpbusd (AVX-512 VNNI) or 2 maddubs + madd (AVX2: exact, 2 * 15 * 127 < 32768),
 * 1 convert, 1 scale multiply, 1 fma. Blocks after the last whole group go through
 * dot_q4_0_q8_0. out[t * ostride + r] for t < T <= 4, r < rows; NULL for the scalar build.
 * A 512-bit version (4 blocks per step gathered by word permutes) was measured 6% slower on
 * decode on this Zen 4 machine (53.8 against 57.4 tok/s, 1.1B matrix products) and dropped. */
#if LM_ISA >= LM_ISA_AVX2
static LM_TARGET inline __attribute__((always_inline)) void
LM_FN(rows_q4_0_body)(const int T, int64_t n, const uint8_t *restrict w, int64_t wstride, int64_t rows,
                      const lm_group4_q8_0 *restrict g, const block_q8_0 *restrict act, float *restrict out,
                      int64_t ostride) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
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
                const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                const __m256 dw = _mm256_set_m128(_mm_set1_ps(_cvtsh_ss(lm_load_half(&b[1].d))),
                                                  _mm_set1_ps(_cvtsh_ss(lm_load_half(&b[0].d))));
                for (int t = 0; t < T; t++) {
                    const lm_group4_q8_0 *a = g + t * ng + k;
                    const __m256i alo = _mm256_loadu_si256((const __m256i *)(a->lo + 32 * h));
                    const __m256i ahi = _mm256_loadu_si256((const __m256i *)(a->hi + 32 * h));
                    const __m256i corr = _mm256_loadu_si256((const __m256i *)(a->corr + 8 * h));
#if LM_ISA >= LM_ISA_AVX512
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
            float v = LM_FN(hsum256)(acc[t]);
            if (nb > 4 * ng)
                v += LM_FN(dot_q4_0_q8_0)(n - 4 * QK * ng, w + r * wstride + 4 * ng * sizeof(block_q4_0),
                                          (const float *)(const void *)(act + t * nb + 4 * ng));
            out[t * ostride + r] = v;
        }
    }
}
#endif

#if LM_ISA >= LM_ISA_AVX2
static LM_TARGET void LM_FN(rows_q4_0_q8_0)(int64_t n, const void *restrict w, int64_t wstride, int64_t rows,
                                            int T, const lm_group4_q8_0 *restrict g, const void *restrict act,
                                            float *restrict out, int64_t ostride) {
    const uint8_t *wp = (const uint8_t *)w;
    const block_q8_0 *ap = (const block_q8_0 *)act;
    switch (T) { /* one specialization per token count: the accumulators stay in registers */
    case 1: LM_FN(rows_q4_0_body)(1, n, wp, wstride, rows, g, ap, out, ostride); break;
    case 2: LM_FN(rows_q4_0_body)(2, n, wp, wstride, rows, g, ap, out, ostride); break;
    case 3: LM_FN(rows_q4_0_body)(3, n, wp, wstride, rows, g, ap, out, ostride); break;
    default: LM_FN(rows_q4_0_body)(4, n, wp, wstride, rows, g, ap, out, ostride); break;
    }
}
#define LM_ROWS_Q4_0 LM_FN(rows_q4_0_q8_0)
#else
#define LM_ROWS_Q4_0 NULL
#endif
