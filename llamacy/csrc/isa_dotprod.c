/* isa_dotprod.c -- the arm64 kernel set with the ARMv8.2 dot product (SDOT: Cortex-A55/A76 and
 * later, Neoverse, Apple M1 and later): the NEON bodies with one sdot per 16 byte pairs.
 * Chosen when the OS says the CPU has it (lm_cpu_feature). Empty on other architectures. */
#include "simd.h"
#if LM_HAVE_ARM_VARIANTS
#define LM_ISA LM_ISA_DOTPROD
#define LM_SUFFIX dotprod
#define LM_TARGET LM_TARGET_DOTPROD
#include "k_all.h"

/* Q4_0, Q8_0 and IQ4_NL also get the 4-row kernel (sdot by lane on rows transposed in registers):
 * decode and, 4 tokens at a time, prefill; the other types run dotn for several tokens. */
const lm_kernels lm_kernels_dotprod = LM_KERNEL_SET("neon-dotprod", .dotn = {LM_ARM_DOTNS},
    .rows = {[LM_W_Q4_0] = rows_q4_0_q8_0_dotprod, [LM_W_Q8_0] = rows_q8_0_q8_0_dotprod,
             [LM_W_IQ4_NL] = rows_iq4_nl_q8_0_dotprod});
#endif
