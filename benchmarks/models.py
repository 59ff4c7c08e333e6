"""Write LLaMA-shaped GGUF files with random weights, for benchmarks (kept out of git).

    python benchmarks/models.py --shape tinyllama-1.1b --type Q4_0      # one file
    python benchmarks/models.py --all                                   # 1.1B and 7B x Q4_0, Q8_0, F16
    python benchmarks/models.py --shape tinyllama-1.1b --type Q4_K_M    # by llama.cpp's quantizer

Mixed k-quant file types (Q2_K, Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M, Q6_K) are what users download:
those files are written by llama.cpp's own quantizer (llama_model_quantize, through
llama-cpp-python in $LLAMA_CPP_PYTHON) from the F16 file of the same shape, so the per-tensor
type mix is exactly llama.cpp's.

Weights are random blocks with small fp16 scales (llamacy._quants.random_blocks), streamed to
disk one tensor at a time; the vocabulary is the real LLaMA tokenizer from tests/data, so
metadata parsing costs what it costs on a real model. Files land in benchmarks/models/
(or $LLAMACY_BENCH_MODELS).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TOKENIZER = HERE.parent / "tests" / "data" / "tokenizer.model"
OUT = Path(os.environ.get("LLAMACY_BENCH_MODELS", HERE / "models"))

SHAPES = {
    # name: dim, layers, heads, kv heads, ffn, vocab, context
    "tinyllama-1.1b": dict(dim=2048, n_layers=22, n_heads=32, n_kv_heads=4, ffn=5632, vocab=32000, ctx=2048),
    "llama-7b": dict(dim=4096, n_layers=32, n_heads=32, n_kv_heads=32, ffn=11008, vocab=32000, ctx=4096),
}


def model_path(shape: str, type_name: str) -> Path:
    return OUT / f"{shape}-{type_name.lower()}-random.gguf"


def tensor_shapes(s: dict) -> list[tuple[str, tuple[int, int] | tuple[int]]]:
    """(name, numpy shape) in llama.cpp's naming and order."""
    dim, kv = s["dim"], s["dim"] * s["n_kv_heads"] // s["n_heads"]
    out: list = [("token_embd.weight", (s["vocab"], dim))]
    for i in range(s["n_layers"]):
        b = f"blk.{i}."
        out += [(b + "attn_norm.weight", (dim,)), (b + "attn_q.weight", (dim, dim)),
                (b + "attn_k.weight", (kv, dim)), (b + "attn_v.weight", (kv, dim)),
                (b + "attn_output.weight", (dim, dim)), (b + "ffn_norm.weight", (dim,)),
                (b + "ffn_gate.weight", (s["ffn"], dim)), (b + "ffn_up.weight", (s["ffn"], dim)),
                (b + "ffn_down.weight", (dim, s["ffn"]))]
    out += [("output_norm.weight", (dim,)), ("output.weight", (s["vocab"], dim))]
    return out


def llama_vocab() -> tuple[list[str], list[float], list[int]]:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(TOKENIZER))
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i) else 1)
    return tokens, scores, types


def write_model(shape: str, type_name: str, path: Path | None = None, seed: int = 0) -> Path:
    import gguf

    sys.path.insert(0, str(HERE.parent / "tests"))
    from quant_blocks import random_blocks  # the tests' random well-formed blocks

    from llamacy._quants import TRAITS, GGMLType

    s = SHAPES[shape]
    t = GGMLType[type_name]
    tr = TRAITS[t]
    path = path or model_path(shape, type_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    rng = np.random.default_rng(seed)
    pool = random_blocks(t, (48 << 20) // tr.type_size, rng)  # ~48 MiB of random blocks
    norm = np.ones(s["dim"], np.float32)

    w = gguf.GGUFWriter(str(tmp), "llama")
    w.add_name(f"{shape}-{type_name}-random")
    w.add_context_length(s["ctx"])
    w.add_embedding_length(s["dim"])
    w.add_block_count(s["n_layers"])
    w.add_feed_forward_length(s["ffn"])
    w.add_head_count(s["n_heads"])
    w.add_head_count_kv(s["n_kv_heads"])
    w.add_rope_dimension_count(s["dim"] // s["n_heads"])
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type({"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7}.get(type_name, 0))
    tokens, scores, types = llama_vocab()
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    shapes = tensor_shapes(s)
    for name, shp in shapes:
        if len(shp) == 1:
            w.add_tensor_info(name, shp, np.dtype(np.float32), shp[0] * 4, raw_dtype=gguf.GGMLQuantizationType.F32)
        else:
            nbytes = shp[0] * shp[1] // tr.block_size * tr.type_size
            w.add_tensor_info(name, (shp[0], shp[1] // tr.block_size * tr.type_size), np.dtype(np.uint8),
                              nbytes, raw_dtype=gguf.GGMLQuantizationType(int(t)))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for _, shp in shapes:
        if len(shp) == 1:
            w.write_tensor_data(norm)
            continue
        nbytes = shp[0] * shp[1] // tr.block_size * tr.type_size
        start = int(rng.integers(0, pool.size // tr.type_size)) * tr.type_size
        data = np.resize(np.roll(pool, -start), nbytes).reshape(shp[0], -1)
        w.write_tensor_data(data)
    w.close()
    os.replace(tmp, path)
    return path


LLAMA_CPP_PYTHON = os.environ.get("LLAMA_CPP_PYTHON", "/opt/llcpp-venv/bin/python")
# llama.cpp's file types (enum llama_ftype) for the mixes it writes
LLAMA_FTYPES = {"Q2_K": 10, "Q3_K_S": 11, "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_S": 16,
                "Q5_K_M": 17, "Q6_K": 18, "IQ4_NL": 25, "IQ4_XS": 30}
QUANTIZE = """
import sys, llama_cpp
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = int(sys.argv[3]); p.nthread = 2
rc = llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), p)
sys.exit(rc)
"""


def quantize_with_llama_cpp(src: Path, dst: Path, ftype_name: str) -> Path:
    import subprocess

    tmp = dst.with_suffix(".partial")
    r = subprocess.run([LLAMA_CPP_PYTHON, "-c", QUANTIZE, str(src), str(tmp), str(LLAMA_FTYPES[ftype_name])],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"llama.cpp's quantizer failed ({r.returncode}): {r.stderr[-2000:]}")
    os.replace(tmp, dst)
    return dst


def ensure(shape: str, type_name: str) -> Path:
    p = model_path(shape, type_name)
    if not p.exists():
        print(f"writing {p} ...", file=sys.stderr, flush=True)
        if type_name in LLAMA_FTYPES:
            quantize_with_llama_cpp(ensure(shape, "F16"), p, type_name)
        else:
            write_model(shape, type_name, p)
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=SHAPES, default="tinyllama-1.1b")
    ap.add_argument("--type", default="Q4_0")
    ap.add_argument("--all", action="store_true")
    a = ap.parse_args()
    combos = ([(s, t) for s in SHAPES for t in ("Q4_0", "Q8_0", "F16")] if a.all else [(a.shape, a.type)])
    for s, t in combos:
        print(ensure(s, t))


if __name__ == "__main__":
    main()
