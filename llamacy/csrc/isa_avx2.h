/* isa_avx2.h -- the AVX2 + FMA + F16C kernel set (x86-64 from Haswell / Zen 1 on). */
#define LM_ISA LM_ISA_AVX2
#define LM_TARGET LM_TARGET_AVX2
#define LM_FN(name) name##_avx2
#include "k_quantize.h"
#include "k_dot.h"
#include "k_dot4.h"
#include "k_tile8.h"
#include "k_rows.h"

static const lm_kernels lm_kernels_avx2 = {
    .dot = LM_ALL_DOTS,
    .dot4 = LM_ALL_DOT4S,
    .dot8 = {NULL},       /* Q8_0 tiles need dpbusd (maddubs would saturate): dot4 */
    .dot8x2 = {NULL},
    .tile8_rows = {[LM_W_Q4_0] = tile8_rows_q4_0_q8_0_avx2},
    .rows = {[LM_W_Q4_0] = rows_q4_0_q8_0_avx2},
    .quantize = LM_ALL_QUANTIZERS,
    .name = "avx2",
};
#undef LM_ISA
#undef LM_TARGET
#undef LM_FN
