/* isa_avx512.c -- the AVX-512 VNNI kernel set (dpbusd: Ice Lake, Zen 4 and later). The 256-bit
 * bodies are shared with AVX2, with dpbusd in place of maddubs + madd.
 * Its own translation unit: MSVC compiles it with /arch:AVX512 (setup.py), GCC and clang with the
 * target attribute on each function (simd.h). Empty on other architectures. */
#include "simd.h"
#if LM_HAVE_X86_VARIANTS
#define LM_ISA LM_ISA_AVX512
#define LM_SUFFIX avx512
#define LM_TARGET LM_TARGET_AVX512
#include "k_all.h"

const lm_kernels lm_kernels_avx512 = LM_KERNEL_SET("avx512vnni",
    .dotn = {LM_KQUANT_DOTNS, LM_IQ4_DOTNS},
    .tile16_rows = {LM_KQUANT_TILE16S, [LM_W_IQ4_XS] = tile16_rows_iq4_xs_q8_K_avx512},
    .dot8 = {[LM_W_Q8_0] = dot8_q8_0_q8_0_avx512},
    .dot8x2 = {[LM_W_Q8_0] = dot8x2_q8_0_q8_0_avx512},
    .tile8_rows = {[LM_W_Q4_0] = tile8_rows_q4_0_q8_0_avx512, [LM_W_IQ4_NL] = tile8_rows_iq4_nl_q8_0_avx512},
    .rows = {[LM_W_Q4_0] = rows_q4_0_q8_0_avx512, [LM_W_IQ4_NL] = rows_iq4_nl_q8_0_avx512});
#endif
