"""Weight x activation products: the Cython kernels (llamacy/_matmul_kernels.pyx) and their numpy twin.

``matmul(w, wtype, x)`` computes ``x @ W.T`` -- one output row per token, one column per
weight row -- reading the weights where they lie (usually a zero-copy view of the mapped file).
Quantized weights follow ggml's scheme: the activations are quantized once per call to
8-bit blocks (Q8_0, Q8_1 or Q8_K), each block product is an integer dot, scaled in float.
``matmul_reference`` does the same arithmetic in numpy (float64), for the tests.

Kernel sets: the best one the CPU supports is chosen at import ("avx512vnni", "avx2" on x86-64;
"neon-dotprod", "neon" on arm64; "scalar" everywhere); LLAMACY_FORCE_SCALAR=1 or LLAMACY_SIMD=NAME
override, ``select()`` switches later.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from llamacy import _matmul_kernels, _ops_kernels
from llamacy._errors import UnsupportedTypeError
from llamacy._quants import (
    BLOCKS,
    QK,
    TRAITS,
    GGMLType,
    dequantize,
    quantize_q8_0,
    quantize_q8_1,
    quantize_q8_k,
)

__all__ = ["KERNEL_TYPES", "available", "matmul", "matmul_reference", "select", "simd_path"]

# weight type -> (kernel table index, activation quantizer or None for float activations), from
# the C table of weight types (csrc/kernels.h)
_QUANTIZERS = (None, quantize_q8_0, quantize_q8_1, quantize_q8_k)  # by activation format
KERNEL_TYPES: dict[GGMLType, tuple[int, object]] = {
    GGMLType(ggml): (index, _QUANTIZERS[act]) for index, (ggml, act) in enumerate(_matmul_kernels.weight_types())
}


def select(name: str = "auto") -> str:
    """Use kernel set ``name`` ("auto", "scalar", "avx2", "avx512vnni", "neon", "neon-dotprod"); returns the one chosen.
    The float kernels of llamacy._ops (attention, SiLU) follow: generic loops for "scalar"."""
    chosen = _matmul_kernels.select(name)
    _ops_kernels.select(chosen != "scalar")
    return chosen


def simd_path() -> str:
    return _matmul_kernels.current()


def available() -> list[str]:
    """Kernel sets this CPU can run, slowest first."""
    return _matmul_kernels.available()


select(_matmul_kernels.requested())  # LLAMACY_FORCE_SCALAR / LLAMACY_SIMD, read once in C


def kernel_index(wtype: int) -> int:
    try:
        return KERNEL_TYPES[GGMLType(wtype)][0]
    except (ValueError, KeyError):
        name = GGMLType(wtype).name if wtype in GGMLType._value2member_map_ else f"type {wtype}"
        raise UnsupportedTypeError(
            f"no matrix kernel for {name} weights (supported: {', '.join(t.name for t in KERNEL_TYPES)})"
        ) from None


def as_rows(w: np.ndarray, wtype: int, n: int) -> np.ndarray:
    """The weight as (rows, bytes per row) uint8, without copying."""
    tr = TRAITS[GGMLType(wtype)]
    if n % tr.block_size:
        raise ValueError(f"row length {n} is not a multiple of the {tr.name} block size {tr.block_size}")
    row_bytes = n // tr.block_size * tr.type_size
    w = np.asarray(w)
    if not w.flags.c_contiguous:
        raise ValueError("weights must be C-contiguous")
    raw = w.reshape(-1).view(np.uint8)
    if raw.size % row_bytes:
        raise ValueError(f"{raw.size} weight bytes are not a whole number of {tr.name} rows of {n}")
    return raw.reshape(-1, row_bytes)


# How rows are shared out over threads: OpenMP inside the kernel where the build has it, else a
# pool of Python threads, each running the kernel on a slice of rows without the GIL.
THREADING = "openmp" if _matmul_kernels.openmp() else "python"
_pool: ThreadPoolExecutor | None = None


def _pool_for(n: int) -> ThreadPoolExecutor:
    global _pool
    if _pool is None or _pool._max_workers < n:
        _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="llamacy")
    return _pool


def _matmul_threads(rows: np.ndarray, k: int, x2: np.ndarray, out: np.ndarray, n_threads: int) -> None:
    bounds = np.linspace(0, rows.shape[0], n_threads + 1).astype(int)
    parts = [(a, b, np.empty((x2.shape[0], b - a), np.float32)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    list(_pool_for(n_threads).map(lambda p: _matmul_kernels.matmul(rows[p[0]:p[1]], k, x2, p[2], 1), parts))
    for a, b, part in parts:
        out[:, a:b] = part


def matmul(w: np.ndarray, wtype: int, x: np.ndarray, out: np.ndarray | None = None,
           n_threads: int = 1) -> np.ndarray:
    """x: (T, n) or (n,) float32; w: weight rows of type ``wtype`` -> (T, rows) or (rows,) float32."""
    k = kernel_index(wtype)
    vec = x.ndim == 1
    x2 = np.ascontiguousarray(x, dtype=np.float32).reshape(1 if vec else x.shape[0], -1)
    rows = as_rows(w, wtype, x2.shape[1])
    if out is None:
        out = np.empty((x2.shape[0], rows.shape[0]), np.float32)
    elif out.shape != (x2.shape[0], rows.shape[0]) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous float32 of shape {(x2.shape[0], rows.shape[0])}")
    n_threads = max(1, int(n_threads))
    if n_threads > 1 and THREADING == "python" and rows.shape[0] >= 2 * n_threads:
        _matmul_threads(rows, k, x2, out, n_threads)
    else:
        _matmul_kernels.matmul(rows, k, x2, out, n_threads)
    return out.reshape(-1) if vec else out


# -- the numpy twin ------------------------------------------------------------------------------
def _dequantized_activation(x: np.ndarray, wtype: int) -> tuple[np.ndarray, np.ndarray | None]:
    """x (T, n) as the kernel sees it: quantized and back (float64), and Q8_1's stored s terms."""
    quant = KERNEL_TYPES[GGMLType(wtype)][1]
    if quant is None:
        return x.astype(np.float64), None
    blocks = [quant(row) for row in x]
    if quant is quantize_q8_1:
        b = np.stack([q.view(BLOCKS[GGMLType.Q8_1]) for q in blocks])  # (T, n/32)
        xa = (b["qs"].astype(np.float64) * b["d"].astype(np.float64)[..., None]).reshape(x.shape)
        return xa, b["s"].astype(np.float64)
    act = GGMLType.Q8_K if quant is quantize_q8_k else GGMLType.Q8_0
    return np.stack([dequantize(q, act) for q in blocks]).astype(np.float64), None


def matmul_reference(w: np.ndarray, wtype: int, x: np.ndarray) -> np.ndarray:
    """The same product in numpy and float64: dequantize W (reference), quantize x as the kernel
    does, multiply. Q4_1/Q5_1 take their offset term from Q8_1's stored s, as the kernel does."""
    kernel_index(wtype)
    vec = x.ndim == 1
    x2 = np.asarray(x, np.float32).reshape(1 if vec else x.shape[0], -1)
    n = x2.shape[1]
    rows = as_rows(w, wtype, n)
    t = GGMLType(wtype)
    xa, s = _dequantized_activation(x2, wtype)
    if s is None:
        W = dequantize(rows, t).reshape(rows.shape[0], n).astype(np.float64)
        y = xa @ W.T
    else:  # w = q*d + m per block: x.w = sum_b d_b (xa_b . q_b) + m_b * s_b
        b = rows.reshape(-1).view(BLOCKS[t]).reshape(rows.shape[0], n // QK)
        W0 = dequantize(rows, t).reshape(rows.shape[0], n // QK, QK).astype(np.float64)
        W0 -= b["m"].astype(np.float64)[..., None]  # the q*d part
        y = xa @ W0.reshape(rows.shape[0], n).T + s @ b["m"].astype(np.float64).T
    return (y.reshape(-1) if vec else y).astype(np.float32)
