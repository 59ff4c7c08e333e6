"""K-quant files as users download them: written by llama.cpp's own quantizer, checked against the
logits llama.cpp computes on them and against the float64 reference.

tests/data/kquants/ (made by tests/oracle/make_kquant_files.py with llama-cpp-python 0.3.36): a
one-layer LLaMA (dim 256, FFN 512, stories260K's vocabulary) quantized to Q2_K, Q3_K_M and
Q4_K_M -- together every k-quant tensor type (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) -- and to IQ4_NL and
IQ4_XS (8 matrices of that type and one Q6_K each), with llama.cpp's logits for every position of
20 tokens, f32 KV cache.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import reference_llama
from conftest import DATA

import llamacy._matmul as mm
from llamacy import GGUFFile, Llama
from llamacy._model import LlamaModel

KQ = DATA / "kquants"
TOKENS = json.loads((KQ / "tokens.json").read_text())
FILES = ["q2_k", "q3_k_m", "q4_k_m", "iq4_nl", "iq4_xs"]
TYPES = {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"}

# llamacy quantizes activations exactly as llama.cpp does (Q8_K, the same rounding) and sums the
# same integers, so the logits agree to float32 rounding: per position, relative error measured
# 1.1e-7 .. 2.1e-7 on every kernel set (IQ4_NL / IQ4_XS: medians 1.0e-7 .. 1.7e-7, at most
# 3.7e-7). Bound with margin:
POSITION_BOUND = 1e-5
# One exception is legitimate: when two activations of a 256-block are equal in magnitude to 1e-6,
# a different float summation order elsewhere picks the other one as the block's maximum, the
# Q8_K scale changes, and that position's logits move by quantization noise. Measured: the scalar
# kernels on Q4_K_M, position 12 of 20, 1.7% there and 3.9e-3 over the whole sequence. Bound for
# the whole sequence:
TOTAL_BOUND = 1e-2
# Against float64 with the same (dequantized) weights: the activation quantization alone, as in
# test_model.py (QUANT_BOUND). Measured 2.6-2.7% for the k-quant files, 1.9% (IQ4_NL) and 2.6%
# (IQ4_XS).
REFERENCE_BOUND = 0.05


@pytest.fixture(params=mm.available())
def isa(request):
    before = mm.simd_path()
    mm.select(request.param)
    yield request.param
    mm.select(before)


def _logits(f: GGUFFile) -> np.ndarray:
    """Prefill in chunks of 7 (the multi-token kernels, a partial chunk), then token by token."""
    m = LlamaModel(f, n_ctx=64, n_batch=7, kv_type="f32")
    pre = m.forward(TOKENS[:14], 0, all_logits=True)
    dec = [m.forward([t], 14 + i) for i, t in enumerate(TOKENS[14:])]
    return np.concatenate([pre, np.stack(dec)]).astype(np.float64)


@pytest.mark.parametrize("name", FILES)
def test_logits_equal_llama_cpp(name, isa):
    with GGUFFile(KQ / f"tiny-{name}.gguf") as f:
        got = _logits(f)
    theirs = np.load(KQ / f"tiny-{name}.logits.npy").astype(np.float64)
    per = np.linalg.norm(got - theirs, axis=1) / np.linalg.norm(theirs, axis=1)
    assert np.median(per) <= POSITION_BOUND, (name, isa, per)
    assert np.linalg.norm(got - theirs) / np.linalg.norm(theirs) <= TOTAL_BOUND, (name, isa, per)
    assert np.mean(got.argmax(1) == theirs.argmax(1)) >= 0.95


@pytest.mark.parametrize("name", FILES)
def test_logits_near_the_float64_reference(name):
    with GGUFFile(KQ / f"tiny-{name}.gguf") as f:
        types = {t.type_name for t in f.tensors.values()}
        got = _logits(f)
        ref = reference_llama.forward(f, TOKENS)
    assert types & TYPES
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) <= REFERENCE_BOUND


def test_every_k_quant_type_is_covered():
    seen = set()
    for name in FILES:
        with GGUFFile(KQ / f"tiny-{name}.gguf") as f:
            seen |= {t.type_name for t in f.tensors.values()}
    assert TYPES <= seen


def test_k_quant_files_generate_through_the_api():
    for name in FILES:
        with Llama(str(KQ / f"tiny-{name}.gguf"), n_ctx=64, verbose=False) as llm:
            out = llm("Once upon a time", max_tokens=6, temperature=0)
            assert out["usage"]["completion_tokens"] >= 1
