/* k_dot.h -- one weight row x one activation row: dot_<w>_<a>(n, w, a) -> float.
 * Plain C loops are written so the compiler vectorizes them for each target; the hottest pairs
 * (Q4_0 x Q8_0, Q8_0 x Q8_0, F16/F32 x F32) have hand-written intrinsics.
 * Compiled once per instruction set through k_all.h (LM_ISA, LM_TARGET, LM_FN). Kernels are named by
 * operand types: <shape>_<weight type>_<activation type>. */

#if LM_ISA >= LM_ISA_AVX2
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
    float s = lm_hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
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
    float s = lm_hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
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
    return lm_hsum256(acc);
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
    return lm_hsum256(_mm256_add_ps(acc0, acc1));
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
