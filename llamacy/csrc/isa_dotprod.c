/* isa_dotprod.c -- the arm64 kernel set with the ARMv8.2 dot product (SDOT: Cortex-A55/A76 and
 * later, Neoverse, Apple M1 and later): the NEON bodies with one sdot per 16 byte pairs.
 * Chosen when the OS says the CPU has it (lm_cpu_feature). Empty on other architectures. */
#include "simd.h"
#if LM_HAVE_ARM_VARIANTS
#define LM_ISA LM_ISA_DOTPROD
#define LM_SUFFIX dotprod
#define LM_TARGET LM_TARGET_DOTPROD
#include "k_all.h"

const lm_kernels lm_kernels_dotprod = LM_KERNEL_SET("neon-dotprod", .dotn = {LM_ARM_DOTNS});
#endif
