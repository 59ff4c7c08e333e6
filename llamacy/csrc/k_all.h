/* k_all.h -- every kernel file, for one ISA: each isa_*.c defines LM_ISA, LM_TARGET and LM_SUFFIX
 * and includes this file, which names each kernel <name>_<suffix> (LM_FN) and compiles it for the
 * ISA's target; the kernels an ISA has no fast version of compile to nothing there. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"

#define LM_PASTE2(a, b) a##_##b
#define LM_PASTE(a, b) LM_PASTE2(a, b)
#define LM_FN(name) LM_PASTE(name, LM_SUFFIX)
#include "k_quantize.h"
#include "k_dot.h"
#include "k_dot4.h"
#include "k_tile8.h"
#include "k_rows.h"
#include "k_tile16.h"
