"""Convert llama2.c checkpoints (legacy v0 format) and their tokenizer to GGUF.

llama2.c checkpoint: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size --
negative when the classifier is not shared with the embedding -- and seq_len), then float32
weights: token embedding, attention norms, wq, wk, wv, wo, FFN norms, w1 (gate), w2 (down),
w3 (up), final norm, two RoPE tables (skipped), and the classifier when not shared.
tokenizer.bin: int32 max_token_length, then per token float32 score, int32 length, bytes.
llama2.c's RoPE already rotates adjacent pairs, as GGUF `llama` does: no permutation needed.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np

from llamacy._errors import ConversionError
from llamacy._gguf import GGUFValueType as V
from llamacy._gguf_writer import GGUFWriter

__all__ = ["convert_llama2c", "read_llama2c_tokenizer"]


def read_llama2c_tokenizer(path: str | Path, vocab_size: int) -> tuple[list[str], list[float], list[int]]:
    """tokens, scores, GGUF token types (1 normal, 2 unknown, 3 control, 6 byte)."""
    data = Path(path).read_bytes()
    if len(data) < 4:
        raise ConversionError(f"{path}: too short for a llama2.c tokenizer ({len(data)} bytes)")
    pos, tokens, scores, types = 4, [], [], []
    for i in range(vocab_size):
        if pos + 8 > len(data):
            raise ConversionError(f"{path}: ends at token {i} of {vocab_size} (offset {pos})")
        score, n = struct.unpack_from("<fi", data, pos)
        if n < 0 or pos + 8 + n > len(data):
            raise ConversionError(f"{path}: token {i} has length {n}, past the end of the file (offset {pos})")
        raw = data[pos + 8:pos + 8 + n]
        pos += 8 + n
        text = raw.decode("utf-8", errors="surrogateescape")
        if i == 0:
            t = 2
        elif text.strip("\n") in ("<s>", "</s>") and (text.startswith("\n") or i in (1, 2)):
            text, t = text.strip("\n"), 3
        elif re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", text):
            t = 6
        else:
            t = 1
        tokens.append(text.replace(" ", "\u2581"))
        scores.append(score)
        types.append(t)
    return tokens, scores, types


def convert_llama2c(checkpoint: str | Path, tokenizer: str | Path, out: str | Path,
                    name: str | None = None) -> Path:
    checkpoint, out = Path(checkpoint), Path(out)
    size = checkpoint.stat().st_size
    if size < 28:
        raise ConversionError(f"{checkpoint}: {size} bytes is too short for a llama2.c header (28 bytes)")
    with open(checkpoint, "rb") as fh:
        dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", fh.read(28))
    shared = vocab > 0
    vocab = abs(vocab)
    dims = dict(dim=dim, hidden_dim=hidden, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv, vocab_size=vocab,
                seq_len=seq_len)
    bad = [f"{k}={v}" for k, v in dims.items() if v <= 0]
    if bad:
        raise ConversionError(f"{checkpoint}: header has non-positive dimensions: {', '.join(bad)}")
    if dim % n_heads or n_heads % n_kv:
        raise ConversionError(f"{checkpoint}: dim {dim}, {n_heads} heads and {n_kv} KV heads do not divide")
    hd = dim // n_heads
    kv = n_kv * hd
    parts = [("token_embd", (vocab, dim)), ("attn_norm", (n_layers, dim)), ("attn_q", (n_layers, dim, dim)),
             ("attn_k", (n_layers, kv, dim)), ("attn_v", (n_layers, kv, dim)), ("attn_output", (n_layers, dim, dim)),
             ("ffn_norm", (n_layers, dim)), ("ffn_gate", (n_layers, hidden, dim)),
             ("ffn_down", (n_layers, dim, hidden)), ("ffn_up", (n_layers, hidden, dim)), ("output_norm", (dim,)),
             ("rope_cos", (seq_len, hd // 2)), ("rope_sin", (seq_len, hd // 2))]
    if not shared:
        parts.append(("output", (vocab, dim)))
    floats = sum(int(np.prod(s)) for _, s in parts)
    if 28 + 4 * floats != size:
        raise ConversionError(f"{checkpoint}: header {dims} needs {28 + 4 * floats} bytes, the file has {size}")
    w = np.memmap(checkpoint, dtype="<f4", mode="r", offset=28, shape=(floats,))
    arrays, pos = {}, 0
    for key, shape in parts:
        n = int(np.prod(shape))
        arrays[key] = w[pos:pos + n].reshape(shape)
        pos += n
    tokens, scores, types = read_llama2c_tokenizer(tokenizer, vocab)

    g = GGUFWriter(out, "llama")
    g.add("general.name", name or checkpoint.stem, V.STRING)
    g.add("llama.context_length", seq_len, V.UINT32)
    g.add("llama.embedding_length", dim, V.UINT32)
    g.add("llama.block_count", n_layers, V.UINT32)
    g.add("llama.feed_forward_length", hidden, V.UINT32)
    g.add("llama.rope.dimension_count", hd, V.UINT32)
    g.add("llama.attention.head_count", n_heads, V.UINT32)
    g.add("llama.attention.head_count_kv", n_kv, V.UINT32)
    g.add("llama.attention.layer_norm_rms_epsilon", 1e-5, V.FLOAT32)
    g.add("llama.rope.freq_base", 10000.0, V.FLOAT32)
    g.add("general.file_type", 0, V.UINT32)
    g.add("tokenizer.ggml.model", "llama", V.STRING)
    g.add("tokenizer.ggml.tokens", tokens, V.ARRAY, V.STRING)
    g.add("tokenizer.ggml.scores", scores, V.ARRAY, V.FLOAT32)
    g.add("tokenizer.ggml.token_type", types, V.ARRAY, V.INT32)
    g.add("tokenizer.ggml.bos_token_id", 1, V.UINT32)
    g.add("tokenizer.ggml.eos_token_id", 2, V.UINT32)
    g.add("tokenizer.ggml.unknown_token_id", 0, V.UINT32)
    g.add("tokenizer.ggml.add_bos_token", True, V.BOOL)
    g.add("tokenizer.ggml.add_eos_token", False, V.BOOL)
    g.add_tensor("token_embd.weight", arrays["token_embd"])
    for i in range(n_layers):
        for key in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_down",
                    "ffn_up"):
            g.add_tensor(f"blk.{i}.{key}.weight", arrays[key][i])
    g.add_tensor("output_norm.weight", arrays["output_norm"])
    if not shared:
        g.add_tensor("output.weight", arrays["output"])
    return g.write()
