/* isa_scalar.h -- the portable kernel set: plain C, vectorized only as far as the build's
 * baseline allows. Always built; the fallback everywhere and the only set of MSVC builds. */
#define LM_ISA LM_ISA_SCALAR
#define LM_TARGET
#define LM_FN(name) name##_scalar
#include "k_quantize.h"
#include "k_dot.h"
#include "k_dot4.h"

static const lm_kernels lm_kernels_scalar = {
    .dot = LM_ALL_DOTS,
    .dot4 = LM_ALL_DOT4S,
    .dot8 = {NULL},       /* no tiles: dot4 */
    .dot8x2 = {NULL},
    .tile8_rows = {NULL},
    .rows = {NULL},       /* no multi-row decode: dot4 / dot */
    .quantize = LM_ALL_QUANTIZERS,
    .name = "scalar",
};
#undef LM_ISA
#undef LM_TARGET
#undef LM_FN
