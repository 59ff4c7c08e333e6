/* isa_scalar.c -- the portable kernel set: plain C, vectorized only as far as the build's baseline
 * allows (SSE2 on x86-64, NEON on arm64). Always built; the fallback everywhere.
 * No tiles and no multi-row decode kernel: those products go through dot4 and dot. */
#define LM_ISA LM_ISA_SCALAR
#define LM_TARGET
#define LM_SUFFIX scalar
#include "k_all.h"

const lm_kernels lm_kernels_scalar = LM_KERNEL_SET("scalar", .rows = {NULL});
