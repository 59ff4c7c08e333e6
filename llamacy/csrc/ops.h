/* ops.h -- the float kernels of the forward pass besides matrix products:
 * RMSNorm, RoPE, SiLU x up, softmax, and attention over the KV cache.
 * Plain C with fixed-width partial sums (so compilers vectorize without -ffast-math and the
 * summation order is the same on every machine). All arrays are float32 unless named _f16.
 */
#ifndef LLAMACY_OPS_H
#define LLAMACY_OPS_H

#include <math.h>
#include <stdint.h>

#include "quants.h"
#include "simd.h"

/* binary16 -> binary32 by table (256 KiB, filled once by lm_ops_init): the KV cache is read
 * through it at every attention step, where a branchy conversion would cost more than the math. */
static float lm_f16_table[65536];

static void lm_ops_init(void) {
    for (uint32_t i = 0; i < 65536; i++) lm_f16_table[i] = lm_h2f((lm_half)i);
}

static inline float lm_sum8(const float *a) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

static inline float lm_dot(const float *restrict a, const float *restrict b, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float s = lm_sum8(acc);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline float lm_dot_f16(const float *restrict a, const lm_half *restrict b, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * lm_f16_table[b[i + j]];
    float s = lm_sum8(acc);
    for (; i < n; i++) s += a[i] * lm_f16_table[b[i]];
    return s;
}

/* out = x / sqrt(mean(x^2) + eps) * w        x, w, out: (n,) */
static inline void lm_rmsnorm(const float *restrict x, const float *restrict w, float eps, float *restrict out,
                              int64_t n) {
    float ss = lm_dot(x, x, n) / (float)n;
    const float scale = 1.0f / sqrtf(ss + eps);
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

/* In place: rotate adjacent pairs (x[2i], x[2i+1]) of the first n_rot values of every head by
 * angle pos * theta_i; cos/sin: (n_rot/2,) for this position.          x: (n_heads * head_dim,) */
static inline void lm_rope(float *restrict x, const float *restrict cs, const float *restrict sn, int64_t n_heads,
                           int64_t head_dim, int64_t n_rot) {
    for (int64_t h = 0; h < n_heads; h++) {
        float *v = x + h * head_dim;
        for (int64_t i = 0; i < n_rot / 2; i++) {
            const float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = a * cs[i] - b * sn[i];
            v[2 * i + 1] = a * sn[i] + b * cs[i];
        }
    }
}

/* exp(x) within 2 ulp for x in [-87.3, 88.3] (clamped outside: 1.2e-38 .. 2.2e38), written
 * without calls or branches so that loops over it vectorize: exp(x) = 2^k exp(r) with
 * k = round(x / ln 2) (by the 1.5 * 2^23 rounding trick), r = x - k ln 2 in two parts, and
 * Cephes' degree-7 polynomial for exp(r) on [-ln2/2, ln2/2]. */
static inline float lm_expf(float x) {
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.3f ? 88.3f : x;
    const float big = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    const float t = x * 1.44269504088896341f + big;
    const float k = t - big;
    const float r = (x - k * 0.693359375f) - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t ki = (int32_t)(lm_bits_from_f32(t) - lm_bits_from_f32(big)); /* k as an integer */
    return p * lm_f32_from_bits((uint32_t)(ki + 127) << 23);
}

/* In place: g = silu(g) * u = g / (1 + exp(-g)) * u        g, u: (n,) */
static inline void lm_silu_mul_generic(float *restrict g, const float *restrict u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + lm_expf(-g[i])) * u[i];
}

/* In place, numerically stable.        x: (n,) */
static inline void lm_softmax(float *x, int64_t n) {
    float mx = x[0];
    for (int64_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) { x[i] = lm_expf(x[i] - mx); s += x[i]; }
    const float inv = 1.0f / s;
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

/* One query head attending to positions 0..n_kv-1 of one KV head.
 *   q: (head_dim,)   k, v: position p at k + p*stride, (head_dim,) each
 *   att: (n_kv,) scratch   out: (head_dim,) */
static inline void lm_attend_f32_generic(const float *restrict q, const float *restrict k, const float *restrict v,
                                 int64_t stride, int64_t n_kv, int64_t head_dim, float scale, float *restrict att,
                                 float *restrict out) {
    for (int64_t p = 0; p < n_kv; p++) att[p] = lm_dot(q, k + p * stride, head_dim) * scale;
    lm_softmax(att, n_kv);
    for (int64_t i = 0; i < head_dim; i++) out[i] = 0.0f;
    for (int64_t p = 0; p < n_kv; p++) {
        const float a = att[p], *vp = v + p * stride;
        for (int64_t i = 0; i < head_dim; i++) out[i] += a * vp[i];
    }
}

static inline void lm_attend_f16_generic(const float *restrict q, const lm_half *restrict k, const lm_half *restrict v,
                                 int64_t stride, int64_t n_kv, int64_t head_dim, float scale, float *restrict att,
                                 float *restrict out) {
    for (int64_t p = 0; p < n_kv; p++) att[p] = lm_dot_f16(q, k + p * stride, head_dim) * scale;
    lm_softmax(att, n_kv);
    for (int64_t i = 0; i < head_dim; i++) out[i] = 0.0f;
    for (int64_t p = 0; p < n_kv; p++) {
        const float a = att[p];
        const lm_half *vp = v + p * stride;
        for (int64_t i = 0; i < head_dim; i++) out[i] += a * lm_f16_table[vp[i]];
    }
}

/* ---- AVX2 + FMA + F16C versions, chosen at run time (lm_ops_select) ------------------------------
 * Same arithmetic; the cache's halves are converted by F16C instead of the table, 8 at a time. */
typedef void (*lm_attend_f32_fn)(const float *restrict q, const float *restrict k, const float *restrict v,
                                 int64_t stride, int64_t n_kv, int64_t head_dim, float scale, float *restrict att,
                                 float *restrict out);
typedef void (*lm_attend_f16_fn)(const float *restrict q, const lm_half *restrict k, const lm_half *restrict v,
                                 int64_t stride, int64_t n_kv, int64_t head_dim, float scale, float *restrict att,
                                 float *restrict out);
typedef void (*lm_silu_mul_fn)(float *restrict g, const float *restrict u, int64_t n);
/* n floats -> n binary16, round to nearest even (the KV cache store) */
typedef void (*lm_f2h_row_fn)(const float *restrict x, lm_half *restrict out, int64_t n);
static void lm_f2h_row_generic(const float *restrict x, lm_half *restrict out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = lm_f2h(x[i]);
}

/* one cache element, float32 or float16, for the SIMD loops' tails */
static inline float lm_load1_f32(const float *p) { return *p; }
static inline float lm_load1_f16(const lm_half *p) { return lm_h2f(*p); }

/* MSVC builds keep the generic loops here: without target attributes these AVX2 functions would
 * share a translation unit (and legacy SSE encodings) with the rest of the module. */
#define LM_OPS_X86 (LM_HAVE_X86_VARIANTS && !LM_ISA_BY_UNIT)
#if LM_OPS_X86
#define LM_OPS_AVX2 LM_TARGET_AVX2

/* the cache element loaders: 8 floats from float32 or float16 storage */
static LM_OPS_AVX2 inline __m256 lm_load8_f32(const float *p) { return _mm256_loadu_ps(p); }
static LM_OPS_AVX2 inline __m256 lm_load8_f16(const lm_half *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* Four positions at a time: four independent FMA chains instead of one (a head's 16 dependent
 * FMAs per position were latency-bound), and `out` loaded and stored once per four value rows;
 * a head's rows are 256-byte pieces one cache row (kv_dim) apart, which the hardware prefetchers
 * follow poorly, so the rows 8 positions on are prefetched. Each position's sum is formed in the
 * same order as one at a time, so results are unchanged. benchmarks/bench_attention.py (7B
 * shape, f16 cache, 2 threads): 6.5 -> 3.1 ms per token at 150 positions, 17.1 -> 7.6 ms at 400. */
#define LM_ATTEND_AVX2(T, sfx)                                                                             \
    static LM_OPS_AVX2 void lm_attend_##sfx##_avx2(const float *restrict q, const T *restrict k,            \
                                                    const T *restrict v, int64_t stride, int64_t n_kv,        \
                                                    int64_t head_dim, float scale, float *restrict att,       \
                                                    float *restrict out) {                                    \
        int64_t p = 0;                                                                                       \
        for (; p + 4 <= n_kv; p += 4) {                                                                      \
            const T *kp = k + p * stride;                                                                    \
            for (int j = 0; j < 4; j++) /* the rows 8 positions on (strided: fetched by hand) */         \
                for (int64_t b = 0; b < head_dim * (int64_t)sizeof(T); b += 64)                         \
                    _mm_prefetch((const char *)(kp + (8 + j) * stride) + b, _MM_HINT_T0);               \
            __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}; \
            int64_t i = 0;                                                                                   \
            for (; i + 8 <= head_dim; i += 8) {                                                              \
                const __m256 qv = _mm256_loadu_ps(q + i);                                                    \
                for (int j = 0; j < 4; j++) acc[j] = _mm256_fmadd_ps(qv, lm_load8_##sfx(kp + j * stride + i), acc[j]); \
            }                                                                                                \
            for (int j = 0; j < 4; j++) {                                                                    \
                float s = lm_hsum256(acc[j]);                                                                \
                for (int64_t r = i; r < head_dim; r++) s += q[r] * lm_load1_##sfx(kp + j * stride + r);      \
                att[p + j] = s * scale;                                                                      \
            }                                                                                                \
        }                                                                                                    \
        for (; p < n_kv; p++) {                                                                              \
            const T *kp = k + p * stride;                                                                    \
            __m256 acc = _mm256_setzero_ps();                                                                \
            int64_t i = 0;                                                                                   \
            for (; i + 8 <= head_dim; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), lm_load8_##sfx(kp + i), acc); \
            float s = lm_hsum256(acc);                                                                    \
            for (; i < head_dim; i++) s += q[i] * lm_load1_##sfx(kp + i);                                    \
            att[p] = s * scale;                                                                              \
        }                                                                                                    \
        lm_softmax(att, n_kv);                                                                               \
        for (int64_t i = 0; i < head_dim; i++) out[i] = 0.0f;                                                \
        for (p = 0; p + 4 <= n_kv; p += 4) {                                                                 \
            const T *vp = v + p * stride;                                                                    \
            for (int j = 0; j < 4; j++) /* the rows 8 positions on (strided: fetched by hand) */         \
                for (int64_t b = 0; b < head_dim * (int64_t)sizeof(T); b += 64)                         \
                    _mm_prefetch((const char *)(vp + (8 + j) * stride) + b, _MM_HINT_T0);               \
            const __m256 a0 = _mm256_set1_ps(att[p]), a1 = _mm256_set1_ps(att[p + 1]);                       \
            const __m256 a2 = _mm256_set1_ps(att[p + 2]), a3 = _mm256_set1_ps(att[p + 3]);                   \
            int64_t i = 0;                                                                                   \
            for (; i + 8 <= head_dim; i += 8) {                                                              \
                __m256 o = _mm256_fmadd_ps(a0, lm_load8_##sfx(vp + i), _mm256_loadu_ps(out + i));            \
                o = _mm256_fmadd_ps(a1, lm_load8_##sfx(vp + stride + i), o);                                 \
                o = _mm256_fmadd_ps(a2, lm_load8_##sfx(vp + 2 * stride + i), o);                             \
                _mm256_storeu_ps(out + i, _mm256_fmadd_ps(a3, lm_load8_##sfx(vp + 3 * stride + i), o));      \
            }                                                                                                \
            for (; i < head_dim; i++)                                                                        \
                for (int j = 0; j < 4; j++) out[i] += att[p + j] * lm_load1_##sfx(vp + j * stride + i);      \
        }                                                                                                    \
        for (; p < n_kv; p++) {                                                                              \
            const T *vp = v + p * stride;                                                                    \
            const __m256 a = _mm256_set1_ps(att[p]);                                                         \
            int64_t i = 0;                                                                                   \
            for (; i + 8 <= head_dim; i += 8)                                                                \
                _mm256_storeu_ps(out + i, _mm256_fmadd_ps(a, lm_load8_##sfx(vp + i), _mm256_loadu_ps(out + i))); \
            for (; i < head_dim; i++) out[i] += att[p] * lm_load1_##sfx(vp + i);                             \
        }                                                                                                    \
    }
LM_ATTEND_AVX2(float, f32)
LM_ATTEND_AVX2(lm_half, f16)
#undef LM_ATTEND_AVX2

/* lm_expf on 8 lanes, step for step */
static LM_OPS_AVX2 inline __m256 lm_expf8_avx2(__m256 x) {
    const __m256 big = _mm256_set1_ps(12582912.0f);
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    const __m256 t = _mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), big);
    const __m256 k = _mm256_sub_ps(t, big);
    const __m256 r = _mm256_sub_ps(_mm256_sub_ps(x, _mm256_mul_ps(k, _mm256_set1_ps(0.693359375f))),
                                   _mm256_mul_ps(k, _mm256_set1_ps(-2.12194440e-4f)));
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(p, r), r), r), _mm256_set1_ps(1.0f));
    const __m256i ki = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(big));
    return _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(ki, _mm256_set1_epi32(127)), 23)));
}

static LM_OPS_AVX2 void lm_silu_mul_avx2(float *restrict g, const float *restrict u, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 e = lm_expf8_avx2(_mm256_sub_ps(zero, x));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) g[i] = g[i] / (1.0f + lm_expf(-g[i])) * u[i];
}

/* F16C's conversion rounds to nearest even, as lm_f2h (finite values and infinities alike) */
static LM_OPS_AVX2 void lm_f2h_row_avx2(const float *restrict x, lm_half *restrict out, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(void *)(out + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) out[i] = lm_f2h(x[i]);
}
#endif

/* ---- arm64 NEON versions (the baseline of every arm64 CPU: no target attribute needed) ----------
 * Same arithmetic, 4 lanes; the cache's halves converted by fcvtl. */
#if LM_HAVE_ARM_VARIANTS
static inline float32x4_t lm_load4_f32(const float *p) { return vld1q_f32(p); }
static inline float32x4_t lm_load4_f16(const lm_half *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

#define LM_ATTEND_NEON(T, sfx)                                                                             \
    static void lm_attend_##sfx##_neon(const float *restrict q, const T *restrict k, const T *restrict v,   \
                                       int64_t stride, int64_t n_kv, int64_t head_dim, float scale,          \
                                       float *restrict att, float *restrict out) {                           \
        for (int64_t p = 0; p < n_kv; p++) {                                                                 \
            const T *kp = k + p * stride;                                                                    \
            float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0;                                                     \
            int64_t i = 0;                                                                                   \
            for (; i + 8 <= head_dim; i += 8) {                                                              \
                a0 = vfmaq_f32(a0, vld1q_f32(q + i), lm_load4_##sfx(kp + i));                                \
                a1 = vfmaq_f32(a1, vld1q_f32(q + i + 4), lm_load4_##sfx(kp + i + 4));                        \
            }                                                                                                \
            float s = vaddvq_f32(vaddq_f32(a0, a1));                                                         \
            for (; i < head_dim; i++) s += q[i] * lm_load1_##sfx(kp + i);                                    \
            att[p] = s * scale;                                                                              \
        }                                                                                                    \
        lm_softmax(att, n_kv);                                                                               \
        for (int64_t i = 0; i < head_dim; i++) out[i] = 0.0f;                                                \
        for (int64_t p = 0; p < n_kv; p++) {                                                                 \
            const T *vp = v + p * stride;                                                                    \
            int64_t i = 0;                                                                                   \
            for (; i + 4 <= head_dim; i += 4)                                                                \
                vst1q_f32(out + i, vfmaq_n_f32(vld1q_f32(out + i), lm_load4_##sfx(vp + i), att[p]));         \
            for (; i < head_dim; i++) out[i] += att[p] * lm_load1_##sfx(vp + i);                             \
        }                                                                                                    \
    }
LM_ATTEND_NEON(float, f32)
LM_ATTEND_NEON(lm_half, f16)
#undef LM_ATTEND_NEON

/* lm_expf on 4 lanes, step for step (multiplies and adds unfused, as there) */
static inline float32x4_t lm_expf4_neon(float32x4_t x) {
    const float32x4_t big = vdupq_n_f32(12582912.0f);
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.3f)), vdupq_n_f32(88.3f));
    const float32x4_t t = vaddq_f32(vmulq_n_f32(x, 1.44269504088896341f), big);
    const float32x4_t k = vsubq_f32(t, big);
    const float32x4_t r = vsubq_f32(vsubq_f32(x, vmulq_n_f32(k, 0.693359375f)), vmulq_n_f32(k, -2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(1.3981999507e-3f));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(8.3334519073e-3f));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(4.1665795894e-2f));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(1.6666665459e-1f));
    p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(5.0000001201e-1f));
    p = vaddq_f32(vaddq_f32(vmulq_f32(vmulq_f32(p, r), r), r), vdupq_n_f32(1.0f));
    const int32x4_t ki = vsubq_s32(vreinterpretq_s32_f32(t), vreinterpretq_s32_f32(big));
    return vmulq_f32(p, vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(ki, vdupq_n_s32(127)), 23)));
}

static void lm_silu_mul_neon(float *restrict g, const float *restrict u, int64_t n) {
    const float32x4_t one = vdupq_n_f32(1.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t x = vld1q_f32(g + i);
        const float32x4_t e = lm_expf4_neon(vnegq_f32(x));
        vst1q_f32(g + i, vmulq_f32(vdivq_f32(x, vaddq_f32(one, e)), vld1q_f32(u + i)));
    }
    for (; i < n; i++) g[i] = g[i] / (1.0f + lm_expf(-g[i])) * u[i];
}

/* fcvtn rounds to nearest even (the default FPCR mode), as lm_f2h */
static void lm_f2h_row_neon(const float *restrict x, lm_half *restrict out, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(out + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; i++) out[i] = lm_f2h(x[i]);
}
#endif

static lm_attend_f32_fn lm_attend_f32 = lm_attend_f32_generic;
static lm_attend_f16_fn lm_attend_f16 = lm_attend_f16_generic;
static lm_silu_mul_fn lm_silu_mul = lm_silu_mul_generic;
static lm_f2h_row_fn lm_f2h_row = lm_f2h_row_generic;

/* simd = 0: the generic loops; otherwise the AVX2 (x86-64) or NEON (arm64) versions where the
 * CPU has them. Returns 1 when such versions are in use. */
static int lm_ops_select(int simd) {
    lm_attend_f32 = lm_attend_f32_generic;
    lm_attend_f16 = lm_attend_f16_generic;
    lm_silu_mul = lm_silu_mul_generic;
    lm_f2h_row = lm_f2h_row_generic;
#if LM_OPS_X86
    if (simd && lm_cpu_has(LM_ISA_AVX2)) {
        lm_attend_f32 = lm_attend_f32_avx2;
        lm_attend_f16 = lm_attend_f16_avx2;
        lm_silu_mul = lm_silu_mul_avx2;
        lm_f2h_row = lm_f2h_row_avx2;
        return 1;
    }
#endif
#if LM_HAVE_ARM_VARIANTS
    if (simd) {
        lm_attend_f32 = lm_attend_f32_neon;
        lm_attend_f16 = lm_attend_f16_neon;
        lm_silu_mul = lm_silu_mul_neon;
        lm_f2h_row = lm_f2h_row_neon;
        return 1;
    }
#endif
    (void)simd;
    return 0;
}

#endif /* LLAMACY_OPS_H */
