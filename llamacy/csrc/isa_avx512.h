/* isa_avx512.h -- the AVX-512 VNNI kernel set (dpbusd: Ice Lake, Zen 4 and later). The 256-bit
 * bodies are shared with AVX2; VNNI's dpbusd replaces maddubs + madd. */
#define LM_ISA LM_ISA_AVX512
#define LM_TARGET LM_TARGET_AVX512
#define LM_FN(name) name##_avx512
#include "k_quantize.h"
#include "k_dot.h"
#include "k_dot4.h"
#include "k_tile8.h"
#include "k_rows.h"

static const lm_kernels lm_kernels_avx512 = {
    .dot = LM_ALL_DOTS,
    .dot4 = LM_ALL_DOT4S,
    .dot8 = {[LM_W_Q8_0] = dot8_q8_0_q8_0_avx512},
    .dot8x2 = {[LM_W_Q8_0] = dot8x2_q8_0_q8_0_avx512},
    .tile8_rows = {[LM_W_Q4_0] = tile8_rows_q4_0_q8_0_avx512},
    .rows = {[LM_W_Q4_0] = rows_q4_0_q8_0_avx512},
    .quantize = LM_ALL_QUANTIZERS,
    .name = "avx512vnni",
};
#undef LM_ISA
#undef LM_TARGET
#undef LM_FN
