/* isa_end.h -- closes an isa_*.h: releases the names k_all.h was compiled under. */
#undef LM_ISA
#undef LM_TARGET
#undef LM_SUFFIX
#undef LM_FN
#undef LM_PASTE
#undef LM_PASTE2
#undef LM_KBLOCK
#undef LM_KACC_T
#undef LM_KACC_ZERO
#undef LM_KACC_SUM
