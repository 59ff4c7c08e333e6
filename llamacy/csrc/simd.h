/* simd.h -- what every kernel file shares about instruction sets: `restrict` for MSVC, the ISA
 * ids, the x86 target attributes, run-time CPU detection, the one reader of LLAMACY_SIMD /
 * LLAMACY_FORCE_SCALAR, and the horizontal sum. Included by dispatch.h (matrix kernels) and
 * ops.h (float kernels): both choose with the same functions.
 */
#ifndef LLAMACY_SIMD_H
#define LLAMACY_SIMD_H

#include <stdlib.h>
#include <string.h>

#if defined(_MSC_VER) && !defined(__clang__)
#define restrict __restrict
#endif

#define LM_ISA_SCALAR 0
#define LM_ISA_AVX2 1
#define LM_ISA_AVX512 2

/* x86 variants need GCC/clang's per-function target attributes (MSVC builds: scalar only). */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define LM_HAVE_X86_VARIANTS 1
#include <immintrin.h>
#define LM_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define LM_TARGET_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

/* 8 floats -> their sum. AVX2 code, inlined into AVX-512 code too (its target is a superset). */
static LM_TARGET_AVX2 inline float lm_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#else
#define LM_HAVE_X86_VARIANTS 0
#endif

/* Can this CPU run the kernels of `isa`? */
static int lm_cpu_has(int isa) {
#if LM_HAVE_X86_VARIANTS
    __builtin_cpu_init();
    if (isa == LM_ISA_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    if (isa == LM_ISA_AVX512)
        return lm_cpu_has(LM_ISA_AVX2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#endif
    return isa == LM_ISA_SCALAR;
}

/* The kernel set the environment asks for: "scalar" when LLAMACY_FORCE_SCALAR=1, else the value
 * of LLAMACY_SIMD ("scalar", "avx2", "avx512vnni"), else "auto". */
static const char *lm_simd_requested(void) {
    const char *force = getenv("LLAMACY_FORCE_SCALAR");
    if (force && !strcmp(force, "1")) return "scalar";
    const char *want = getenv("LLAMACY_SIMD");
    return want && *want ? want : "auto";
}

#endif /* LLAMACY_SIMD_H */
