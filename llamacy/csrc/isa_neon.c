/* isa_neon.c -- the arm64 Advanced SIMD kernel set (every arm64 CPU): int8 products by widening
 * multiplies (smull/smlal + sadalp). Empty on other architectures. */
#include "simd.h"
#if LM_HAVE_ARM_VARIANTS
#define LM_ISA LM_ISA_NEON
#define LM_SUFFIX neon
#define LM_TARGET LM_TARGET_NEON
#include "k_all.h"

const lm_kernels lm_kernels_neon = LM_KERNEL_SET("neon", .dotn = {LM_ARM_DOTNS});
#endif
