"""The float kernels of the forward pass (llamacy/_ops_kernels.pyx) and their numpy twins.

Each ``name`` runs the Cython kernel; ``name_reference`` is the same math in plain numpy
(float64), for the tests. Shapes: T tokens per call, rows C-contiguous float32.
"""

from __future__ import annotations

import numpy as np

from llamacy import _ops_kernels
from llamacy._quants import GGMLType, dequantize

__all__ = [
    "attention",
    "attention_reference",
    "cache_store",
    "embedding",
    "embedding_reference",
    "rmsnorm",
    "rmsnorm_reference",
    "rope",
    "rope_angles",
    "rope_reference",
    "rope_tables",
    "silu_mul",
    "silu_mul_reference",
    "softmax",
    "softmax_reference",
]


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


# -- RMSNorm ------------------------------------------------------------------------------------
def rmsnorm(x: np.ndarray, w: np.ndarray, eps: float, out: np.ndarray | None = None) -> np.ndarray:
    """x: (T, n) -> x / sqrt(mean(x^2) + eps) * w."""
    x = _f32(x)
    out = np.empty_like(x) if out is None else out
    _ops_kernels.rmsnorm(x, _f32(w), float(eps), out)
    return out


def rmsnorm_reference(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * np.asarray(w, np.float64)


# -- RoPE (GGUF `llama` layout: adjacent pairs) ---------------------------------------------------
def rope_tables(n_ctx: int, n_rot: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin of pos * base^(-2i/n_rot), i < n_rot/2, for every position: (n_ctx, n_rot/2) each."""
    theta = base ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot)
    return rope_angles(np.arange(n_ctx), theta)


def rope_angles(positions: np.ndarray, freqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin of position * freq, computed in float64: (len(positions), len(freqs)) float32 each."""
    ang = np.asarray(positions, dtype=np.float64)[:, None] * freqs[None, :]
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def rope(x: np.ndarray, positions: np.ndarray, tables: tuple[np.ndarray, np.ndarray], n_heads: int,
         head_dim: int, n_rot: int) -> np.ndarray:
    """In place on x: (T, n_heads*head_dim); rotates pairs (2i, 2i+1) of each head's first n_rot."""
    cos, sin = tables
    pos = np.ascontiguousarray(positions, dtype=np.int64)
    if pos.size and (pos.min() < 0 or pos.max() >= cos.shape[0]):
        raise ValueError(f"positions must be in [0, {cos.shape[0]})")
    _ops_kernels.rope(x, cos, sin, pos, n_heads, head_dim, n_rot)
    return x


def rope_reference(x: np.ndarray, positions: np.ndarray, n_heads: int, head_dim: int, n_rot: int,
                   base: float) -> np.ndarray:
    x = np.asarray(x, np.float64).reshape(len(positions), n_heads, head_dim).copy()
    theta = base ** (-np.arange(0, n_rot, 2, dtype=np.float64) / n_rot)
    ang = np.asarray(positions, np.float64)[:, None, None] * theta[None, None, :]
    a, b = x[..., 0:n_rot:2].copy(), x[..., 1:n_rot:2].copy()
    x[..., 0:n_rot:2] = a * np.cos(ang) - b * np.sin(ang)
    x[..., 1:n_rot:2] = a * np.sin(ang) + b * np.cos(ang)
    return x.reshape(len(positions), -1)


# -- SiLU x up ---------------------------------------------------------------------------------------
def silu_mul(g: np.ndarray, u: np.ndarray) -> np.ndarray:
    """In place on g: (T, n): g = silu(g) * u."""
    _ops_kernels.silu_mul(g, _f32(u))
    return g


def silu_mul_reference(g: np.ndarray, u: np.ndarray) -> np.ndarray:
    g = np.asarray(g, np.float64)
    return g / (1.0 + np.exp(-g)) * np.asarray(u, np.float64)


# -- softmax -------------------------------------------------------------------------------------
def softmax(x: np.ndarray) -> np.ndarray:
    """In place on a float32 vector."""
    _ops_kernels.softmax(x)
    return x


def softmax_reference(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


# -- attention and the KV cache ------------------------------------------------------------------
def _cache3(c: np.ndarray) -> np.ndarray:
    """(n_ctx, KV) or (n_seq, n_ctx, KV) -> (n_seq, n_ctx, KV), float32 or float16 bits."""
    c = c if c.ndim == 3 else c[None]
    return c.view(np.uint16) if c.dtype == np.float16 else c


def _rows(T: int, positions: int | np.ndarray, slots: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    pos = np.arange(positions, positions + T, dtype=np.int64) if np.isscalar(positions) else \
        np.ascontiguousarray(positions, dtype=np.int64)
    slot = np.zeros(T, np.int64) if slots is None else np.ascontiguousarray(slots, dtype=np.int64)
    if pos.shape != (T,) or slot.shape != (T,):
        raise ValueError(f"need one position and one slot per row ({T})")
    return slot, pos


def attention(q: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, positions: int | np.ndarray, n_heads: int,
              n_kv_heads: int, head_dim: int, out: np.ndarray | None = None, n_threads: int = 1,
              slots: np.ndarray | None = None) -> np.ndarray:
    """Causal grouped-query attention. q: (T, n_heads*head_dim), row t at position positions[t]
    (or pos0 + t) of sequence slots[t] (default 0); k_cache, v_cache: (n_ctx, KV) or
    (n_seq, n_ctx, KV), float32 or float16, holding positions 0..positions[t] of each sequence."""
    T = q.shape[0]
    kc, vc = _cache3(k_cache), _cache3(v_cache)
    slot, pos = _rows(T, positions, slots)
    if T and (pos.min() < 0 or pos.max() >= kc.shape[1] or slot.min() < 0 or slot.max() >= kc.shape[0]):
        raise ValueError(f"positions must be in [0, {kc.shape[1]}) and slots in [0, {kc.shape[0]})")
    if n_heads % n_kv_heads:
        raise ValueError(f"{n_heads} heads cannot share {n_kv_heads} KV heads")
    out = np.empty((T, n_heads * head_dim), np.float32) if out is None else out
    _ops_kernels.attention(_f32(q), kc, vc, slot, pos, n_heads, n_kv_heads, head_dim, out, max(1, n_threads))
    return out


def cache_store(x: np.ndarray, cache: np.ndarray, positions: int | np.ndarray, slots: np.ndarray | None = None) -> None:
    """Write rows x (T, KV) into cache (n_seq, n_ctx, KV) at (slots[t], positions[t])."""
    c = _cache3(cache)
    slot, pos = _rows(x.shape[0], positions, slots)
    if x.shape[0] and (pos.min() < 0 or pos.max() >= c.shape[1] or slot.min() < 0 or slot.max() >= c.shape[0]):
        raise ValueError(f"positions must be in [0, {c.shape[1]}) and slots in [0, {c.shape[0]})")
    _ops_kernels.cache_store(_f32(x), c, slot, pos)


def attention_reference(q: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, positions: int | np.ndarray,
                        n_heads: int, n_kv_heads: int, head_dim: int, slots: np.ndarray | None = None) -> np.ndarray:
    T = q.shape[0]
    slot, pos = _rows(T, positions, slots)
    kc = np.asarray(k_cache if k_cache.ndim == 3 else k_cache[None], np.float64)
    vc = np.asarray(v_cache if v_cache.ndim == 3 else v_cache[None], np.float64)
    q = np.asarray(q, np.float64).reshape(T, n_heads, head_dim)
    out = np.zeros((T, n_heads, head_dim))
    group = n_heads // n_kv_heads
    for t in range(T):
        n = pos[t] + 1
        k = kc[slot[t], :n].reshape(n, n_kv_heads, head_dim)
        v = vc[slot[t], :n].reshape(n, n_kv_heads, head_dim)
        for h in range(n_heads):
            s = k[:, h // group] @ q[t, h] / np.sqrt(head_dim)
            out[t, h] = softmax_reference(s) @ v[:, h // group]
    return out.reshape(T, -1)


# -- embedding rows ----------------------------------------------------------------------------------
def embedding(table: np.ndarray, ttype: int, ids: np.ndarray) -> np.ndarray:
    """Rows `ids` of an embedding table of any supported type, as float32 (T, dim). Only those
    rows are read and dequantized; the table itself stays where it is."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
        raise ValueError(f"token id out of range [0, {table.shape[0]})")
    rows = table[ids]
    if ttype == GGMLType.F32:
        return np.ascontiguousarray(rows, dtype=np.float32)
    return dequantize(rows, ttype).reshape(len(ids), -1)


def embedding_reference(table: np.ndarray, ttype: int, ids: np.ndarray) -> np.ndarray:
    full = dequantize(table, ttype).reshape(table.shape[0], -1)
    return full[np.asarray(ids, dtype=np.int64)].astype(np.float64)
