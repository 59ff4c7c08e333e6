/* simd.h -- what every kernel file shares about instruction sets: `restrict` for MSVC, the ISA
 * ids and their families, the per-function target attributes, run-time CPU detection, the one
 * reader of LLAMACY_SIMD / LLAMACY_FORCE_SCALAR, and the horizontal sums. Included by kernels.h
 * (matrix kernels) and ops.h (float kernels): both choose with the same functions.
 *
 * Each kernel set is compiled in its own translation unit (isa_*.c). GCC and clang mark every
 * function of a set with the set's target attribute (LM_TARGET_*), so the units need no special
 * flags and one build serves every CPU of the architecture. MSVC has no target attributes: it
 * accepts any intrinsic anywhere, and setup.py compiles the x86 units with /arch:AVX2 and
 * /arch:AVX512 so that they use VEX encodings throughout.
 */
#ifndef LLAMACY_SIMD_H
#define LLAMACY_SIMD_H

#include <stdlib.h>
#include <string.h>

#include "llamacy_map.h" /* lm_cpu_feature: the CPU features only the OS can tell */

#if defined(_MSC_VER) && !defined(__clang__)
#define restrict __restrict
#define LM_ALWAYS_INLINE __forceinline
#define LM_MSVC 1
#else
#define LM_ALWAYS_INLINE inline __attribute__((always_inline))
#define LM_MSVC 0
#endif

/* 1: the instruction set of a kernel unit comes from its compiler flags, not from attributes
 * (MSVC; and ci/test_kernels.sh builds with GCC that way too, to check the layout MSVC gets) */
#if LM_MSVC || defined(LLAMACY_ISA_BY_UNIT)
#define LM_ISA_BY_UNIT 1
#else
#define LM_ISA_BY_UNIT 0
#endif

/* ISA ids: LM_ISA is one of these inside a kernel unit (isa_*.c) */
#define LM_ISA_SCALAR 0
#define LM_ISA_AVX2 1    /* x86-64: AVX2 + FMA + F16C */
#define LM_ISA_AVX512 2  /* x86-64: AVX-512 F/BW/VL + VNNI */
#define LM_ISA_NEON 3    /* arm64: Advanced SIMD (every arm64 CPU) */
#define LM_ISA_DOTPROD 4 /* arm64: Advanced SIMD + ARMv8.2 dot product (SDOT) */
/* the families the kernel files branch on: `#if LM_X86_SIMD ... #elif LM_ARM_SIMD ... #else` */
#define LM_X86_SIMD (LM_ISA == LM_ISA_AVX2 || LM_ISA == LM_ISA_AVX512)
#define LM_ARM_SIMD (LM_ISA == LM_ISA_NEON || LM_ISA == LM_ISA_DOTPROD)

/* ---- x86-64 ------------------------------------------------------------------------------------- */
#if defined(__x86_64__) || defined(_M_X64)
#define LM_HAVE_X86_VARIANTS 1
#include <immintrin.h>
#if LM_MSVC
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#if LM_ISA_BY_UNIT
#define LM_TARGET_AVX2
#define LM_TARGET_AVX512
#else
#define LM_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define LM_TARGET_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#endif

/* one binary16 -> float by F16C (MSVC has no _cvtsh_ss: through the vector form) */
#if LM_MSVC
#define LM_CVTSH_SS(h) _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128((int)(h))))
#else
#define LM_CVTSH_SS(h) _cvtsh_ss(h)
#endif

/* 8 floats -> their sum. AVX2 code, inlined into AVX-512 code too (its target is a superset). */
static LM_TARGET_AVX2 inline float lm_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
/* 16 floats -> their sum (not _mm512_reduce_add_ps: not every compiler has it) */
static LM_TARGET_AVX512 inline float lm_hsum512(__m512 v) {
    return lm_hsum256(_mm256_add_ps(_mm512_castps512_ps256(v),
                                    _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}

/* cpuid leaf/subleaf -> eax, ebx, ecx, edx; XCR0 (which register states the OS saves) */
static void lm_cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
#if LM_MSVC
    int x[4];
    __cpuidex(x, (int)leaf, (int)sub);
    memcpy(r, x, sizeof x);
#else
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#endif
}
static unsigned long long lm_xcr0(void) {
#if LM_MSVC
    return _xgetbv(0);
#else
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
#endif
}
#else
#define LM_HAVE_X86_VARIANTS 0
#endif

/* ---- arm64 -------------------------------------------------------------------------------------- */
#if defined(__aarch64__) || defined(_M_ARM64)
#define LM_HAVE_ARM_VARIANTS 1
#include <arm_neon.h>
#define LM_TARGET_NEON /* the baseline of every arm64 CPU */
#if LM_MSVC || defined(__ARM_FEATURE_DOTPROD)
#define LM_TARGET_DOTPROD /* MSVC: no attributes; or the build's baseline has it (Apple M1 and later) */
#elif defined(__clang__)
#define LM_TARGET_DOTPROD __attribute__((target("dotprod")))
#else
#define LM_TARGET_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#endif
#else
#define LM_HAVE_ARM_VARIANTS 0
#endif

/* Can this CPU run the kernels of `isa`? */
static int lm_cpu_has(int isa) {
    if (isa == LM_ISA_SCALAR) return 1;
#if LM_HAVE_X86_VARIANTS
    unsigned r1[4], r7[4];
    lm_cpuid(0, 0, r1);
    if (r1[0] < 7) return 0;
    lm_cpuid(1, 0, r1);
    lm_cpuid(7, 0, r7);
    const int osxsave = (r1[2] >> 27) & 1;
    const unsigned long long xcr0 = osxsave ? lm_xcr0() : 0;
    const int avx2 = osxsave && (xcr0 & 0x6) == 0x6 && ((r1[2] >> 28) & 1) /* AVX */ &&
                     ((r1[2] >> 12) & 1) /* FMA */ && ((r1[2] >> 29) & 1) /* F16C */ && ((r7[1] >> 5) & 1) /* AVX2 */;
    if (isa == LM_ISA_AVX2) return avx2;
    if (isa == LM_ISA_AVX512)
        return avx2 && (xcr0 & 0xe6) == 0xe6 /* opmask, zmm state */ && ((r7[1] >> 16) & 1) /* F */ &&
               ((r7[1] >> 30) & 1) /* BW */ && ((r7[1] >> 31) & 1) /* VL */ && ((r7[2] >> 11) & 1) /* VNNI */;
#endif
#if LM_HAVE_ARM_VARIANTS
    if (isa == LM_ISA_NEON) return 1;
    if (isa == LM_ISA_DOTPROD) return lm_cpu_feature(LM_CPU_ARM_DOTPROD);
#endif
    return 0;
}

/* The kernel set the environment asks for: "scalar" when LLAMACY_FORCE_SCALAR=1, else the value
 * of LLAMACY_SIMD ("scalar", "avx2", "avx512vnni", "neon", "neon-dotprod"), else "auto". */
static const char *lm_simd_requested(void) {
    const char *force = getenv("LLAMACY_FORCE_SCALAR");
    if (force && !strcmp(force, "1")) return "scalar";
    const char *want = getenv("LLAMACY_SIMD");
    return want && *want ? want : "auto";
}

#endif /* LLAMACY_SIMD_H */
