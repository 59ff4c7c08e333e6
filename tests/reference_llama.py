"""A float64 LLaMA forward pass in plain numpy, written from the architecture, for the tests.

It shares nothing with llamacy's engine except the reference dequantization of weights
(llamacy._quants, itself checked against the gguf package): no activation quantization, no
float32, no KV cache -- the whole sequence at once with a causal mask.
"""

from __future__ import annotations

import numpy as np

from llamacy import GGUFFile


def _w(f: GGUFFile, name: str) -> np.ndarray:
    return f.tensors[name].dequantize().astype(np.float64)


def _rmsnorm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def _rope(x, n_rot, base, scale=1.0, factors=None):
    """x: (T, heads, head_dim); rotate adjacent pairs of the first n_rot dims by pos*theta_i,
    theta_i = scale * base^(-2i/n_rot) / factors_i (linear scaling; Llama 3.1 frequency factors)."""
    T = x.shape[0]
    theta = base ** (-np.arange(0, n_rot, 2) / n_rot) * scale / (1.0 if factors is None else factors)
    ang = np.arange(T)[:, None, None] * theta[None, None, :]
    out = x.copy()
    a, b = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
    out[..., 0:n_rot:2] = a * np.cos(ang) - b * np.sin(ang)
    out[..., 1:n_rot:2] = a * np.sin(ang) + b * np.cos(ang)
    return out


def forward(f: GGUFFile, tokens: list[int]) -> np.ndarray:
    """Logits (T, vocab) for every position of `tokens`, float64."""
    a = f.architecture
    m = f.metadata
    D = m[f"{a}.embedding_length"]
    L = m[f"{a}.block_count"]
    H = m[f"{a}.attention.head_count"]
    Hkv = m.get(f"{a}.attention.head_count_kv", H)
    hd = D // H
    eps = m.get(f"{a}.attention.layer_norm_rms_epsilon", 1e-5)
    base = m.get(f"{a}.rope.freq_base", 10000.0)
    n_rot = m.get(f"{a}.rope.dimension_count", hd)
    factor = m.get(f"{a}.rope.scaling.factor", 0.0) if m.get(f"{a}.rope.scaling.type") == "linear" else 0.0
    scale = 1.0 / factor if factor else 1.0
    factors = _w(f, "rope_freqs.weight") if "rope_freqs.weight" in f.tensors else None
    T = len(tokens)
    x = _w(f, "token_embd.weight")[tokens]  # (T, D)
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(L):
        p = f"blk.{i}."
        h = _rmsnorm(x, _w(f, p + "attn_norm.weight"), eps)
        q = (h @ _w(f, p + "attn_q.weight").T).reshape(T, H, hd)
        k = (h @ _w(f, p + "attn_k.weight").T).reshape(T, Hkv, hd)
        v = (h @ _w(f, p + "attn_v.weight").T).reshape(T, Hkv, hd)
        q, k = _rope(q, n_rot, base, scale, factors), _rope(k, n_rot, base, scale, factors)
        k = np.repeat(k, H // Hkv, axis=1)
        v = np.repeat(v, H // Hkv, axis=1)
        s = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        att = np.einsum("hts,shd->thd", s, v).reshape(T, D)
        x = x + att @ _w(f, p + "attn_output.weight").T
        h = _rmsnorm(x, _w(f, p + "ffn_norm.weight"), eps)
        g = h @ _w(f, p + "ffn_gate.weight").T
        u = h @ _w(f, p + "ffn_up.weight").T
        x = x + (g / (1 + np.exp(-g)) * u) @ _w(f, p + "ffn_down.weight").T
    x = _rmsnorm(x, _w(f, "output_norm.weight"), eps)
    out = "output.weight" if "output.weight" in f.tensors else "token_embd.weight"
    return x @ _w(f, out).T
