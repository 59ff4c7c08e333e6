/* k_dot4.h -- one weight row x 4 activation rows (prefill): dot4_<w>_<a>(n, w, a, astride, out).
 * Compiled once per instruction set through k_all.h (LM_ISA, LM_TARGET, LM_FN). Kernels are named by
 * operand types: <shape>_<weight type>_<activation type>. */

/* ---- the any-token row kernels' loop (dotn) --------------------------------------------------------
 * out[t * ostride] = dot(w, a + t * astride) for t < T, in chunks of up to LM_DOTN_CHUNK tokens
 * whose running sums (ACC_T, one vector each) live in a small array: STEP prepares weight block ib
 * once per chunk and adds it to the m tokens' sums acc[0..m) (their rows start at `at`), FINISH(j)
 * is token j's result. So an unpack or lookup is paid once per block and chunk of tokens, not once
 * per token. Used inside a dotn body, whose parameters it reads. */
#define LM_DOTN_CHUNK 64
#define LM_DOTN_LOOP(ACC_T, ZERO, NB, STEP, FINISH)                                                          \
    ACC_T acc[LM_DOTN_CHUNK];                                                                                \
    for (int64_t t0 = 0; t0 < T; t0 += LM_DOTN_CHUNK) {                                                      \
        const int64_t m = T - t0 < LM_DOTN_CHUNK ? T - t0 : LM_DOTN_CHUNK;                                   \
        const char *at = (const char *)a + t0 * astride;                                                     \
        for (int64_t j = 0; j < m; j++) acc[j] = ZERO;                                                       \
        for (int64_t ib = 0; ib < (NB); ib++) {                                                              \
            STEP;                                                                                            \
        }                                                                                                    \
        for (int64_t j = 0; j < m; j++) out[(t0 + j) * ostride] = (FINISH);                                  \
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
LM_X4_GENERIC(iq4_nl, q8_0)
LM_X4_GENERIC(iq4_xs, q8_K)

/* k-quants: each super-block unpacked once (k_dot.h's LM_KBLOCK), then dotted with 4 tokens.
 * With AVX-512 the block is unpacked as 4 x 64 weights (k_dot.h's LM_KBLOCK512) and each token's
 * dot runs on 512-bit registers: half the instructions of the 256-bit body per token. */
#if LM_ISA == LM_ISA_AVX512
/* what a token's dot reads and accumulates: the 512-bit block and sums with AVX-512,
 * the unpacked block and kblock_acc's accumulator elsewhere */
#define LM_K4_BLOCK LM_KBLOCK512
#define LM_K4_UNPACK(wname, b, k, z) (LM_FN(unpack512_##wname)(b, &(z)), &(z))
#define LM_K4_ACC LM_FN(kblock_acc512)
#define LM_K4_T __m512
#define LM_K4_ZERO _mm512_setzero_ps()
#define LM_K4_SUM(x) lm_hsum512(x)
#else
#define LM_K4_BLOCK LM_KBLOCK
#define LM_K4_UNPACK(wname, b, k, z) (LM_FN(unpack_##wname)(b, &(k)), &(k)) /* the unpacked block itself */
#define LM_K4_ACC LM_FN(kblock_acc)
#define LM_K4_T LM_KACC_T
#define LM_K4_ZERO LM_KACC_ZERO
#define LM_K4_SUM(x) LM_KACC_SUM(x)
#endif
#define LM_KQUANT_DOT4(wname, btype)                                                                         \
    static LM_TARGET void LM_FN(dot4_##wname##_q8_K)(int64_t n, const void *restrict wv, const void *restrict a, \
                                                      int64_t astride, float *restrict out) {                  \
        const btype *w = (const btype *)wv;                                                                  \
        const block_q8_K *a0 = (const block_q8_K *)a, *a1 = (const block_q8_K *)((const char *)a + astride);  \
        const block_q8_K *a2 = (const block_q8_K *)((const char *)a + 2 * astride);                          \
        const block_q8_K *a3 = (const block_q8_K *)((const char *)a + 3 * astride);                          \
        LM_KBLOCK k;                                                                                         \
        LM_K4_BLOCK z;                                                                                       \
        LM_K4_T s0 = LM_K4_ZERO, s1 = LM_K4_ZERO, s2 = LM_K4_ZERO, s3 = LM_K4_ZERO;                          \
        (void)k;                                                                                             \
        (void)z;                                                                                             \
        for (int64_t ib = 0; ib < n / QK_K; ib++) {                                                          \
            const LM_K4_BLOCK *zp = LM_K4_UNPACK(wname, w + ib, k, z);                                       \
            s0 = LM_K4_ACC(zp, a0 + ib, s0);                                                                 \
            s1 = LM_K4_ACC(zp, a1 + ib, s1);                                                                 \
            s2 = LM_K4_ACC(zp, a2 + ib, s2);                                                                 \
            s3 = LM_K4_ACC(zp, a3 + ib, s3);                                                                 \
        }                                                                                                    \
        out[0] = LM_K4_SUM(s0);                                                                              \
        out[1] = LM_K4_SUM(s1);                                                                              \
        out[2] = LM_K4_SUM(s2);                                                                              \
        out[3] = LM_K4_SUM(s3);                                                                              \
    }
LM_KQUANT_DOT4(q2_K, block_q2_K)
LM_KQUANT_DOT4(q3_K, block_q3_K)
LM_KQUANT_DOT4(q4_K, block_q4_K)
LM_KQUANT_DOT4(q5_K, block_q5_K)
LM_KQUANT_DOT4(q6_K, block_q6_K)
#undef LM_KQUANT_DOT4
#undef LM_K4_BLOCK
#undef LM_K4_UNPACK
#undef LM_K4_ACC
#undef LM_K4_T
#undef LM_K4_ZERO
#undef LM_K4_SUM

#if LM_X86_SIMD
/* |q| and the sign to move onto the activation: q*a == |q| * sign(a, q) */
#define LM_X4_BODY(load_q)                                                                               \
    const int64_t nb = n / QK;                                                                           \
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}; \
    for (int64_t ib = 0; ib < nb; ib++) {                                                                \
        const __m256i q = load_q;                                                                        \
        const __m256i aq = _mm256_sign_epi8(q, q);                                                       \
        const float dw = LM_CVTSH_SS(w[ib].d);                                                             \
        for (int j = 0; j < 4; j++) {                                                                    \
            const block_q8_0 *aj = (const block_q8_0 *)((const char *)a + j * astride) + ib;             \
            const __m256i sa = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)aj->qs), q);         \
            const __m256i p = LM_X4_DOT(aq, sa);                                                         \
            acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(dw * LM_CVTSH_SS(aj->d)), _mm256_cvtepi32_ps(p), acc[j]); \
        }                                                                                                \
    }                                                                                                    \
    for (int j = 0; j < 4; j++) out[j] = lm_hsum256(acc[j]);

#if LM_ISA == LM_ISA_AVX512
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
#elif LM_ARM_SIMD
/* The weight block as two int8x16 (elements 0..15, 16..31) and its scale, against T tokens'
 * blocks ib: acc[j] += scale products of token j. Shared by dot4 and dotn. */
static LM_TARGET LM_ALWAYS_INLINE void LM_FN(q8_block_tokens)(int8x16_t lo, int8x16_t hi, float dw,
                                                              const void *restrict a, int64_t astride, int64_t ib,
                                                              int64_t T, float32x4_t *restrict acc) {
    const int32x4_t z = vdupq_n_s32(0);
    for (int64_t j = 0; j < T; j++) {
        const block_q8_0 *aj = (const block_q8_0 *)(const void *)((const char *)a + j * astride) + ib;
        const int32x4_t p = LM_FN(dot16)(LM_FN(dot16)(z, lo, vld1q_s8(aj->qs)), hi, vld1q_s8(aj->qs + 16));
        acc[j] = vmlaq_n_f32(acc[j], vcvtq_f32_s32(p), dw * LM_H2F(aj->d));
    }
}
/* one Q4_0 / Q8_0 weight row against T tokens, in chunks of up to 64 (each weight block decoded
 * once per chunk): out[t * ostride] */
#define LM_ARM_Q8_ROWS(wname, btype, load)                                                                \
    static LM_TARGET void LM_FN(dotn_##wname##_q8_0)(int64_t n, const void *restrict wv, const void *restrict a, \
                                                      int64_t astride, int64_t T, float *restrict out,         \
                                                      int64_t ostride) {                                       \
        const btype *w = (const btype *)wv;                                                                  \
        int8x16_t lo, hi;                                                                                    \
        LM_DOTN_LOOP(float32x4_t, vdupq_n_f32(0.0f), n / QK,                                                 \
                     (load, LM_FN(q8_block_tokens)(lo, hi, LM_H2F(w[ib].d), at, astride, ib, m, acc)),        \
                     vaddvq_f32(acc[j]))                                                                     \
    }                                                                                                        \
    static LM_TARGET void LM_FN(dot4_##wname##_q8_0)(int64_t n, const void *restrict w, const void *restrict a, \
                                                      int64_t astride, float *restrict out) {                  \
        LM_FN(dotn_##wname##_q8_0)(n, w, a, astride, 4, out, 1);                                             \
    }
LM_ARM_Q8_ROWS(q4_0, block_q4_0, LM_FN(q4_0_nibbles)(w + ib, &lo, &hi))
LM_ARM_Q8_ROWS(q8_0, block_q8_0, (lo = vld1q_s8(w[ib].qs), hi = vld1q_s8(w[ib].qs + 16)))
#undef LM_ARM_Q8_ROWS

/* 8 converted weights against m float rows at element i: acc[j] += */
static LM_TARGET LM_ALWAYS_INLINE void LM_FN(f32_tokens8)(float32x4_t w0, float32x4_t w1, const char *at, int64_t astride,
                                                          int64_t i, int64_t m, float32x4_t *restrict acc) {
    for (int64_t j = 0; j < m; j++) {
        const float *x = (const float *)(const void *)(at + j * astride) + i;
        acc[j] = vfmaq_f32(vfmaq_f32(acc[j], w0, vld1q_f32(x)), w1, vld1q_f32(x + 4));
    }
}
/* one F16 weight row against T float rows: each 8 weights converted once per chunk of 64 tokens;
 * the n % 8 weights after the last 8 added to each token's sum, one by one */
static LM_TARGET inline float LM_FN(f16_tail)(float s, const lm_half *w, const float *x, int64_t n) {
    for (int64_t r = n - n % 8; r < n; r++) s += lm_h2f(w[r]) * x[r];
    return s;
}
static LM_TARGET void LM_FN(dotn_f16_f32)(int64_t n, const void *restrict wv, const void *restrict a, int64_t astride,
                                          int64_t T, float *restrict out, int64_t ostride) {
    const lm_half *w = (const lm_half *)wv;
    float32x4_t w0, w1;
    LM_DOTN_LOOP(float32x4_t, vdupq_n_f32(0.0f), n / 8,
                 (w0 = LM_FN(load4_f16)(w + 8 * ib), w1 = LM_FN(load4_f16)(w + 8 * ib + 4),
                  LM_FN(f32_tokens8)(w0, w1, at, astride, 8 * ib, m, acc)),
                 LM_FN(f16_tail)(vaddvq_f32(acc[j]), w, (const float *)(const void *)(at + j * astride), n))
}
#else
LM_X4_GENERIC(q4_0, q8_0)
LM_X4_GENERIC(q8_0, q8_0)
#endif
#undef LM_X4_GENERIC

/* ---- one weight row x T tokens (k-quants): each super-block unpacked once for up to 64 tokens ----- */
#if LM_ISA == LM_ISA_AVX512
/* the 512-bit block in registers (8 zmm) across the tokens: per token only its activation loads */
static LM_TARGET inline void LM_FN(kblock512_tokens)(const LM_KBLOCK512 *restrict z, const void *restrict a,
                                                     int64_t astride, int64_t ib, int64_t m, __m512 *restrict acc) {
    const __m512i q0 = z->q[0], q1 = z->q[1], q2 = z->q[2], q3 = z->q[3];
    const __m512i c0 = z->sc[0], c1 = z->sc[1], c2 = z->sc[2], c3 = z->sc[3];
    const __m256i off = z->off;
    const float dq = z->dq, doff = z->doff;
    for (int64_t j = 0; j < m; j++) {
        const block_q8_K *b = (const block_q8_K *)((const char *)a + j * astride) + ib;
        __m512i s = _mm512_dpwssd_epi32(_mm512_setzero_si512(),
                                        _mm512_maddubs_epi16(q0, _mm512_loadu_si512((const void *)b->qs)), c0);
        s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(q1, _mm512_loadu_si512((const void *)(b->qs + 64))), c1);
        s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(q2, _mm512_loadu_si512((const void *)(b->qs + 128))), c2);
        s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(q3, _mm512_loadu_si512((const void *)(b->qs + 192))), c3);
        const __m256i o = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(const void *)b->bsums), off);
        __m512 t = _mm512_fmadd_ps(_mm512_set1_ps(b->d * dq), _mm512_cvtepi32_ps(s), acc[j]);
        acc[j] = _mm512_fnmadd_ps(_mm512_set1_ps(b->d * doff), _mm512_cvtepi32_ps(_mm512_zextsi256_si512(o)), t);
    }
}
#define LM_KN_BLOCK LM_KBLOCK512
#define LM_KN_UNPACK(wname, b, k, z) (LM_FN(unpack512_##wname)(b, &(z)), &(z))
#define LM_KN_TOKENS LM_FN(kblock512_tokens)
#define LM_KN_T __m512
#define LM_KN_ZERO _mm512_setzero_ps()
#define LM_KN_SUM(x) lm_hsum512(x)
#elif LM_ISA == LM_ISA_AVX2
/* the unpacked block against m tokens' blocks ib, in two halves of 128 weights: a half's 4 weight
 * and 4 scale vectors stay in registers across the tokens (the whole block's 16 would not fit
 * AVX2's 16 registers, and were reloaded for every token) */
static LM_TARGET inline void LM_FN(kblock_tokens)(const LM_KBLOCK *restrict k, const void *restrict a, int64_t astride,
                                                  int64_t ib, int64_t m, __m256 *restrict acc) {
    __m256i part[LM_DOTN_CHUNK];
    for (int h = 0; h < 2; h++) {
        const __m256i q0 = k->q[4 * h], q1 = k->q[4 * h + 1], q2 = k->q[4 * h + 2], q3 = k->q[4 * h + 3];
        const __m256i c0 = k->sc[4 * h], c1 = k->sc[4 * h + 1], c2 = k->sc[4 * h + 2], c3 = k->sc[4 * h + 3];
        for (int64_t j = 0; j < m; j++) {
            const int8_t *aq = ((const block_q8_K *)((const char *)a + j * astride) + ib)->qs + 128 * h;
            __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(q0, LM_KLOAD(aq)), c0);
            s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(q1, LM_KLOAD(aq + 32)), c1));
            s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(q2, LM_KLOAD(aq + 64)), c2));
            s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(q3, LM_KLOAD(aq + 96)), c3));
            part[j] = h ? _mm256_add_epi32(part[j], s) : s;
        }
    }
    for (int64_t j = 0; j < m; j++) {
        const block_q8_K *b = (const block_q8_K *)((const char *)a + j * astride) + ib;
        const __m256i o = _mm256_madd_epi16(LM_KLOAD(b->bsums), k->off);
        acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(b->d * k->dq), _mm256_cvtepi32_ps(part[j]), acc[j]);
        acc[j] = _mm256_fnmadd_ps(_mm256_set1_ps(b->d * k->doff), _mm256_cvtepi32_ps(o), acc[j]);
    }
}
#elif LM_ARM_SIMD
/* the unpacked block against m tokens' blocks ib */
static LM_TARGET inline void LM_FN(kblock_tokens)(const LM_KBLOCK *restrict k, const void *restrict a, int64_t astride,
                                                  int64_t ib, int64_t m, LM_KACC_T *restrict acc) {
    for (int64_t j = 0; j < m; j++)
        acc[j] = LM_FN(kblock_acc)(k, (const block_q8_K *)((const char *)a + j * astride) + ib, acc[j]);
}
#endif
#if LM_ISA == LM_ISA_AVX2 || LM_ARM_SIMD /* the 256-bit / NEON unpacked block */
#define LM_KN_BLOCK LM_KBLOCK
#define LM_KN_UNPACK(wname, b, k, z) (LM_FN(unpack_##wname)(b, &(k)), &(k))
#define LM_KN_TOKENS LM_FN(kblock_tokens)
#define LM_KN_T LM_KACC_T
#define LM_KN_ZERO LM_KACC_ZERO
#define LM_KN_SUM(x) LM_KACC_SUM(x)
#endif
#ifdef LM_KN_BLOCK
#define LM_KQUANT_DOTN(wname, btype)                                                                         \
    static LM_TARGET void LM_FN(dotn_##wname##_q8_K)(int64_t n, const void *restrict wv, const void *restrict a, \
                                                      int64_t astride, int64_t T, float *restrict out,         \
                                                      int64_t ostride) {                                       \
        const btype *w = (const btype *)wv;                                                                  \
        LM_KBLOCK k;                                                                                         \
        LM_KN_BLOCK z;                                                                                       \
        (void)k;                                                                                             \
        (void)z;                                                                                             \
        LM_DOTN_LOOP(LM_KN_T, LM_KN_ZERO, n / QK_K,                                                          \
                     LM_KN_TOKENS(LM_KN_UNPACK(wname, w + ib, k, z), at, astride, ib, m, acc),                \
                     LM_KN_SUM(acc[j]))                                                                      \
    }
#endif
#ifdef LM_KQUANT_DOTN
LM_KQUANT_DOTN(q2_K, block_q2_K)
LM_KQUANT_DOTN(q3_K, block_q3_K)
LM_KQUANT_DOTN(q4_K, block_q4_K)
LM_KQUANT_DOTN(q5_K, block_q5_K)
LM_KQUANT_DOTN(q6_K, block_q6_K)
#undef LM_KQUANT_DOTN
#undef LM_KN_BLOCK
#undef LM_KN_UNPACK
#undef LM_KN_TOKENS
#undef LM_KN_T
#undef LM_KN_ZERO
#undef LM_KN_SUM
#endif


/* ---- one IQ4 weight row x T tokens: each block looked up once per chunk of up to 64 tokens ------ */
#if LM_X86_SIMD || LM_ARM_SIMD
/* the looked-up block against m tokens' blocks ib */
#define LM_IQ4_TOKENS(wname, atype)                                                                          \
    static LM_TARGET LM_ALWAYS_INLINE void LM_FN(wname##_tokens)(const LM_FN(lm_iq4_block) *restrict k,      \
                                                                 const char *at, int64_t astride, int64_t ib, \
                                                                 int64_t m, LM_IQ4_T *restrict acc) {         \
        for (int64_t j = 0; j < m; j++)                                                                      \
            acc[j] = LM_FN(wname##_acc)(k, (const atype *)(const void *)(at + j * astride) + ib, acc[j]);     \
    }
LM_IQ4_TOKENS(iq4_nl, block_q8_0)
LM_IQ4_TOKENS(iq4_xs, block_q8_K)
#undef LM_IQ4_TOKENS
#define LM_IQ4_DOTN(wname, btype, aname, atype)                                                              \
    static LM_TARGET void LM_FN(dotn_##wname##_##aname)(int64_t n, const void *restrict wv, const void *restrict a, \
                                                         int64_t astride, int64_t T, float *restrict out,      \
                                                         int64_t ostride) {                                    \
        const btype *w = (const btype *)wv;                                                                  \
        LM_FN(lm_iq4_block) k;                                                                               \
        LM_DOTN_LOOP(LM_IQ4_T, LM_IQ4_ZERO, n / (int64_t)(sizeof((const atype *)0)->qs),                     \
                     (LM_FN(wname##_load)(w + ib, &k), LM_FN(wname##_tokens)(&k, at, astride, ib, m, acc)),  \
                     LM_IQ4_SUM(acc[j]))                                                                     \
    }
LM_IQ4_DOTN(iq4_nl, block_iq4_nl, q8_0, block_q8_0)
LM_IQ4_DOTN(iq4_xs, block_iq4_xs, q8_K, block_q8_K)
#undef LM_IQ4_DOTN
#endif
#undef LM_DOTN_LOOP
