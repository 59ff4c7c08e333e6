"""Regenerates tests/data/kquants/: small models quantized by llama.cpp's own quantizer, and the
logits llama.cpp computes on them -- the oracle of tests/test_kquants.py.

    python tests/oracle/make_kquant_files.py [NAME...]    # with llamacy's test environment active

A one-layer LLaMA (dim 256, 4 heads / 2 KV heads, FFN 512) with random F16 weights and
stories260K's real 512-token vocabulary is written with the tests' own writer; llama-cpp-python
0.3.36 ($LLAMA_CPP_PYTHON, default /opt/llcpp-venv/bin/python) then quantizes it with
llama_model_quantize to the file types users download (Q2_K, Q3_K_M, Q4_K_M: together every
k-quant tensor type appears; IQ4_NL and IQ4_XS) and records its logits for every position of a fixed token sequence
(logits_all, f32 KV cache).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from conftest import DATA, llama_weights, vocab_metadata, write_gguf  # noqa: E402

OUT = DATA / "kquants"
LLAMA_CPP_PYTHON = os.environ.get("LLAMA_CPP_PYTHON", "/opt/llcpp-venv/bin/python")
# together: every k-quant tensor type, and the non-linear 4-bit ones (llama.cpp's LLAMA_FTYPE_MOSTLY_*)
FTYPES = {"Q2_K": 10, "Q3_K_M": 12, "Q4_K_M": 15, "IQ4_NL": 25, "IQ4_XS": 30}
TOKENS = [1, 403, 407, 261, 378, 429, 289, 271, 416, 289, 305, 434, 363, 260, 346, 278, 273, 310, 267, 424]

ORACLE = """
import json, sys
import numpy as np
import llama_cpp
src, out, ftype, tokens = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = ftype
p.nthread = 2
assert llama_cpp.llama_model_quantize(src.encode(), out.encode(), p) == 0
m = llama_cpp.Llama(out, n_ctx=64, logits_all=True, n_threads=2, verbose=False, type_k=0, type_v=0)
m.eval(tokens)
np.save(out[:-5] + ".logits.npy", np.asarray(m.scores[:len(tokens)], np.float32))
"""


def main() -> None:
    import gguf

    OUT.mkdir(parents=True, exist_ok=True)
    tensors, meta = llama_weights(gguf.GGMLQuantizationType.F16, dim=256, n_layers=1, n_heads=4, n_kv_heads=2,
                                  ffn=512, vocab=512, seed=11, std=0.08)
    meta.update(vocab_metadata(DATA / "stories260K.gguf"))
    with tempfile.TemporaryDirectory() as tmp:
        src = write_gguf(Path(tmp) / "f16.gguf", tensors, meta)
        for name, ftype in FTYPES.items():
            if sys.argv[1:] and name not in sys.argv[1:]:
                continue
            out = OUT / f"tiny-{name.lower()}.gguf"
            subprocess.run([LLAMA_CPP_PYTHON, "-c", ORACLE, str(src), str(out), str(ftype), json.dumps(TOKENS)],
                           check=True)
            print(out, out.stat().st_size)
    (OUT / "tokens.json").write_text(json.dumps(TOKENS) + "\n")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
