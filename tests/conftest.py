"""Shared fixtures: the real model files in tests/data, and GGUF files written by the reference writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parent / "data"  # small real files, with their licences (README.md there)
MODELS = DATA
STORIES_GGUF = DATA / "stories260K.gguf"
# llama2.c's published greedy continuation of stories260K from BOS alone
REFERENCE_TEXT = (DATA / "stories260K-greedy.txt").read_text()


@pytest.fixture(scope="session")
def stories_gguf() -> Path:
    return STORIES_GGUF


@pytest.fixture(scope="session")
def _scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cwd")


@pytest.fixture(autouse=True)
def _outside_the_source_tree(_scratch, monkeypatch):
    """Every test, and every child process it starts (`python -m llamacy`, `python -c`), runs in
    a scratch directory: a child's sys.path[0] is its working directory, and the checkout's
    uncompiled llamacy/ must never shadow the installed package."""
    monkeypatch.chdir(_scratch)


def write_gguf(path: Path, tensors: dict, metadata: dict | None = None, arch: str = "llama",
               alignment: int | None = None) -> Path:
    """Write a GGUF with the reference writer (gguf-py). tensors: name -> float array, or
    (raw uint8 array shaped (rows, row bytes), GGMLQuantizationType) for quantized data."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, value in (metadata or {}).items():
        if isinstance(value, tuple):  # (value, GGUFValueType)
            w.add_key_value(key, value[0], value[1])
        else:
            w.add_key_value(key, value, _vtype(value))
    for name, t in tensors.items():
        if isinstance(t, tuple):
            w.add_tensor(name, t[0], raw_dtype=t[1])
        else:
            w.add_tensor(name, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _vtype(v):
    import gguf

    V = gguf.GGUFValueType
    if isinstance(v, bool):
        return V.BOOL
    if isinstance(v, int):
        return V.INT64 if v < 0 else V.UINT32 if v < 2**32 else V.UINT64
    if isinstance(v, float):
        return V.FLOAT32
    if isinstance(v, str):
        return V.STRING
    return V.ARRAY


def quant_tensor(t, rows: int, cols: int, rng: np.random.Generator):
    """Random well-formed data of llamacy/gguf type t, as the writer's (raw, type) pair."""
    import gguf
    from quant_blocks import random_blocks

    from llamacy._quants import TRAITS, GGMLType

    tr = TRAITS[GGMLType(int(t))]
    raw = random_blocks(t, rows * cols // tr.block_size, rng)
    return raw.reshape(rows, -1), gguf.GGMLQuantizationType(int(t))


def llama_weights(wtype, *, dim=256, n_layers=2, n_heads=4, n_kv_heads=2, ffn=512, vocab=300, seed=0,
                  tied=False, std=0.05):
    """Random LLaMA weights as the writer takes them: 2-D weights of type `wtype` with roughly
    normal values of standard deviation `std`, float32 norms."""
    import gguf
    from quant_blocks import random_blocks

    from llamacy._quants import TRAITS, GGMLType, dequantize

    rng = np.random.default_rng(seed)
    t = GGMLType(int(wtype))
    tr = TRAITS[t]
    gt = gguf.GGMLQuantizationType(int(t))

    def mat(rows, cols):
        x = (rng.standard_normal((rows, cols)) * std).astype(np.float32)
        if t == GGMLType.F32:
            return x
        try:
            return gguf.quants.quantize(x, gt), gt
        except NotImplementedError:  # k-quants: random blocks, scales set for the wanted spread
            raw = random_blocks(t, rows * cols // tr.block_size, rng, scale=1.0).reshape(rows, -1)
            s = float(dequantize(raw, t).std())
            raw = random_blocks(t, rows * cols // tr.block_size, rng, scale=std / s).reshape(rows, -1)
            return raw, gt

    kv = dim * n_kv_heads // n_heads
    tensors = {"token_embd.weight": mat(vocab, dim)}
    for i in range(n_layers):
        p = f"blk.{i}."
        tensors[p + "attn_norm.weight"] = (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32)
        tensors[p + "attn_q.weight"] = mat(dim, dim)
        tensors[p + "attn_k.weight"] = mat(kv, dim)
        tensors[p + "attn_v.weight"] = mat(kv, dim)
        tensors[p + "attn_output.weight"] = mat(dim, dim)
        tensors[p + "ffn_norm.weight"] = (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32)
        tensors[p + "ffn_gate.weight"] = mat(ffn, dim)
        tensors[p + "ffn_up.weight"] = mat(ffn, dim)
        tensors[p + "ffn_down.weight"] = mat(dim, ffn)
    tensors["output_norm.weight"] = np.ones(dim, np.float32)
    if not tied:
        tensors["output.weight"] = mat(vocab, dim)
    meta = {
        "llama.context_length": 256, "llama.embedding_length": dim, "llama.block_count": n_layers,
        "llama.feed_forward_length": ffn, "llama.attention.head_count": n_heads,
        "llama.attention.head_count_kv": n_kv_heads, "llama.rope.dimension_count": dim // n_heads,
        "llama.attention.layer_norm_rms_epsilon": 1e-5, "llama.rope.freq_base": 10000.0,
    }
    return tensors, meta


def write_llama(path: Path, wtype, **kw) -> Path:
    tensors, meta = llama_weights(wtype, **kw)
    return write_gguf(path, tensors, meta)


def llama_vocab(tokenizer_model: Path | None = None) -> dict:
    """GGUF tokenizer metadata made from a SentencePiece tokenizer.model (the LLaMA one)."""
    import gguf
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model or MODELS / "tokenizer.model"))
    V = gguf.GGUFValueType
    n = sp.get_piece_size()
    types = [2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i) else 1 for i in range(n)]
    return {
        "tokenizer.ggml.model": ("llama", V.STRING),
        "tokenizer.ggml.tokens": ([sp.id_to_piece(i) for i in range(n)], V.ARRAY),
        "tokenizer.ggml.scores": ([sp.get_score(i) for i in range(n)], V.ARRAY),
        "tokenizer.ggml.token_type": (types, V.ARRAY),
        "tokenizer.ggml.bos_token_id": (sp.bos_id(), V.UINT32),
        "tokenizer.ggml.eos_token_id": (sp.eos_id(), V.UINT32),
        "tokenizer.ggml.unknown_token_id": (sp.unk_id(), V.UINT32),
    }


# ---- real vocabularies: llama.cpp's vocabulary-only test files, xz-compressed in tests/data ----------
@pytest.fixture(scope="session")
def real_vocab(tmp_path_factory):
    """name ("llama-bpe", "gpt-2") -> path of the decompressed ggml-vocab-NAME.gguf."""
    import lzma

    folder = tmp_path_factory.mktemp("vocab")

    def get(name: str) -> Path:
        out = folder / f"ggml-vocab-{name}.gguf"
        if not out.exists():
            out.write_bytes(lzma.decompress((DATA / f"ggml-vocab-{name}.gguf.xz").read_bytes()))
        return out

    return get


def vocab_metadata(path: Path, **overrides) -> dict:
    """The tokenizer.* metadata of a GGUF file, as write_gguf takes it (value, type), so a test can
    give its own small model a real vocabulary."""
    import gguf

    from llamacy import GGUFFile

    V = gguf.GGUFValueType
    out = {}
    with GGUFFile(path) as f:
        for k, v in f.metadata.items():
            if not k.startswith("tokenizer."):
                continue
            if isinstance(v, str):
                out[k] = (v, V.STRING)
            elif isinstance(v, bool):
                out[k] = (v, V.BOOL)
            elif isinstance(v, int):
                out[k] = (v, V.UINT32)
            else:
                out[k] = (list(v) if not hasattr(v, "tolist") else v.tolist(), V.ARRAY)
    for k, v in overrides.items():
        out[k] = v if isinstance(v, tuple) else (v, _vtype(v))
    return out


@pytest.fixture(scope="session")
def llama3_model(real_vocab, tmp_path_factory) -> Path:
    """A small random-weight model shaped like Llama 3 (GQA, rope base 500000, tied embeddings)
    with the real Llama 3 vocabulary and Llama 3.2's chat template: F16, 2 layers, dim 64."""
    import gguf

    tensors, meta = llama_weights(gguf.GGMLQuantizationType.F16, dim=64, n_layers=2, n_heads=8, n_kv_heads=2,
                                  ffn=128, vocab=128256, tied=True, seed=3)
    meta["llama.rope.freq_base"] = 500000.0
    meta["llama.context_length"] = 2048
    template = (DATA / "meta-llama-Llama-3.2-3B-Instruct.jinja").read_text()
    meta.update(vocab_metadata(real_vocab("llama-bpe"), **{"tokenizer.chat_template": template}))
    return write_gguf(tmp_path_factory.mktemp("llama3") / "llama3-tiny-f16.gguf", tensors, meta)
