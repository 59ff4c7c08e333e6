/* isa_scalar.h -- the portable kernel set: plain C, vectorized only as far as the build's
 * baseline allows. Always built; the fallback everywhere and the only set of MSVC builds.
 * No tiles and no multi-row decode kernel: those products go through dot4 and dot. */
#define LM_ISA LM_ISA_SCALAR
#define LM_TARGET
#define LM_SUFFIX scalar
#include "k_all.h"

static const lm_kernels lm_kernels_scalar = LM_KERNEL_SET("scalar", .rows = {NULL});
#include "isa_end.h"
