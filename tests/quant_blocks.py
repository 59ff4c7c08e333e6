"""Test helpers for quantized data: random well-formed blocks of any type, and the magnitude
against which a product's rounding error is measured. (Also used by benchmarks/models.py.)"""

from __future__ import annotations

import numpy as np

from llamacy._matmul import _dequantized_activation, as_rows
from llamacy._quants import BLOCKS, GGMLType, dequantize, traits

__all__ = ["magnitude", "random_blocks"]


def random_blocks(t: int, n_blocks: int, rng: np.random.Generator, scale: float = 0.01) -> np.ndarray:
    """Random but well-formed blocks of type ``t`` (uint8 bytes): random quants, small finite
    fp16 scales. For tests and benchmark models: fast to make, safe to compute with."""
    tr = traits(t)
    if not tr.quantized:
        x = (rng.standard_normal(n_blocks, dtype=np.float32) * scale * 10)
        if t == GGMLType.BF16:
            return (x.view(np.uint32) >> 16).astype("<u2").view(np.uint8)
        return x.astype(tr.dtype).view(np.uint8)
    raw = rng.integers(0, 256, size=n_blocks * tr.type_size, dtype=np.uint8)
    if GGMLType(t) in BLOCKS:
        b = raw.view(BLOCKS[GGMLType(t)])
        for field in ("d", "m", "dmin"):
            if field in b.dtype.names:
                b[field] = (rng.random(n_blocks, dtype=np.float32) * scale + scale / 10).astype(b[field].dtype)
    return raw


def magnitude(w: np.ndarray, wtype: int, x: np.ndarray) -> np.ndarray:
    """|x| @ |W|.T: the scale against which a product's rounding error is measured."""
    x2 = np.asarray(x, np.float32).reshape(1 if x.ndim == 1 else x.shape[0], -1)
    rows = as_rows(w, wtype, x2.shape[1])
    xa, _ = _dequantized_activation(x2, wtype)
    W = np.abs(dequantize(rows, GGMLType(wtype)).reshape(rows.shape[0], -1).astype(np.float64))
    y = np.abs(xa) @ W.T
    return y.reshape(-1) if x.ndim == 1 else y
