/* k_quantize.h -- activation quantizers: quantize_row_<type>(x, out, n), float rows to the
 * 8-bit blocks the integer dot products read (Q8_0, Q8_1, Q8_K).
 * Compiled once per instruction set through k_all.h (LM_ISA, LM_TARGET, LM_FN). Kernels are named by
 * operand types: <shape>_<weight type>_<activation type>. */

/* ---- activation quantizers ---------------------------------------------------------------- */
/* Q8_0: per 32 values, d = max|x| / 127, q = round-half-even(x / d). */
static LM_TARGET void LM_FN(quantize_row_q8_0)(const float *restrict x, void *restrict out, int64_t n) {
    block_q8_0 *y = (block_q8_0 *)out;
#if LM_X86_SIMD
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
#elif LM_ARM_SIMD
    /* 4 lanes at a time: fcvtns rounds half to even, as lrintf does */
    for (int64_t ib = 0; ib < n / QK; ib++) {
        const float *v = x + ib * QK;
        float32x4_t f[8], m = vdupq_n_f32(0.0f);
        for (int j = 0; j < 8; j++) {
            f[j] = vld1q_f32(v + 4 * j);
            m = vmaxq_f32(m, vabsq_f32(f[j]));
        }
        const float amax = vmaxvq_f32(m);
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        y[ib].d = lm_f2h(d);
        for (int j = 0; j < 8; j += 2) {
            const int32x4_t q0 = vcvtnq_s32_f32(vmulq_n_f32(f[j], id)), q1 = vcvtnq_s32_f32(vmulq_n_f32(f[j + 1], id));
            vst1_s8(y[ib].qs + 4 * j, vqmovn_s16(vcombine_s16(vqmovn_s32(q0), vqmovn_s32(q1))));
        }
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
