/* isa_avx2.c -- the AVX2 + FMA + F16C kernel set (x86-64 from Haswell / Zen 1 on).
 * Its own translation unit: MSVC compiles it with /arch:AVX2 (setup.py), GCC and clang with the
 * target attribute on each function (simd.h). Empty on other architectures. */
#include "simd.h"
#if LM_HAVE_X86_VARIANTS
#define LM_ISA LM_ISA_AVX2
#define LM_SUFFIX avx2
#define LM_TARGET LM_TARGET_AVX2
#include "k_all.h"

/* Q4_0 gets the 8-token tile and the multi-row decode kernel; Q8_0 tiles need dpbusd (maddubs
 * would saturate on 8-bit weights), so Q8_0 prefill goes through dot4 here. */
const lm_kernels lm_kernels_avx2 = LM_KERNEL_SET("avx2",
    .dotn = {LM_KQUANT_DOTNS, LM_IQ4_DOTNS},
    .tile8_rows = {[LM_W_Q4_0] = tile8_rows_q4_0_q8_0_avx2},
    .rows = {[LM_W_Q4_0] = rows_q4_0_q8_0_avx2});
#endif
