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

#if defined(_MSC_VER) && !defined(__clang__)
#define restrict __restrict
#endif

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

/* In place: g = silu(g) * u = g / (1 + exp(-g)) * u        g, u: (n,) */
static inline void lm_silu_mul(float *restrict g, const float *restrict u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* In place, numerically stable.        x: (n,) */
static inline void lm_softmax(float *x, int64_t n) {
    float mx = x[0];
    for (int64_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) { x[i] = expf(x[i] - mx); s += x[i]; }
    const float inv = 1.0f / s;
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

/* One query head attending to positions 0..n_kv-1 of one KV head.
 *   q: (head_dim,)   k, v: position p at k + p*stride, (head_dim,) each
 *   att: (n_kv,) scratch   out: (head_dim,) */
static inline void lm_attend_f32(const float *restrict q, const float *restrict k, const float *restrict v,
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

static inline void lm_attend_f16(const float *restrict q, const lm_half *restrict k, const lm_half *restrict v,
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

#endif /* LLAMACY_OPS_H */
