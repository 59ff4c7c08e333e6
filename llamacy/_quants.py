"""GGML tensor types: the trait table, one block layout per type, reference dequantization.

Every quantized type stores a row as a run of fixed-size blocks. Each block layout is written
below once, as a numpy structured dtype with a size assertion (the same bytes as ggml's C
structs), and each supported type has a plain-numpy ``dequantize_*`` function: the reference
twin the Cython kernels are tested against. Dispatch goes through ``TRAITS`` by type, never by
bare type numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from llamacy._errors import UnsupportedTypeError

__all__ = [
    "BLOCKS",
    "GGMLType",
    "TRAITS",
    "TypeTraits",
    "dequantize",
    "quantize_q8_0",
    "quantize_q8_1",
    "quantize_q8_k",
    "row_nbytes",
]


class GGMLType(IntEnum):
    """Tensor types as numbered in the GGUF format (ggml's ``enum ggml_type``)."""

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    MXFP4 = 39
    NVFP4 = 40
    Q1_0 = 41


QK = 32  # elements per block of the legacy quants
QK_K = 256  # elements per super-block of the k-quants

f16, f32 = np.dtype("<f2"), np.dtype("<f4")


def _block(fields: list, size: int) -> np.dtype:
    dt = np.dtype(fields)
    assert dt.itemsize == size, (fields, dt.itemsize, size)
    return dt


# One block layout per quantized type (little-endian, packed, as ggml's structs).
BLOCKS: dict[GGMLType, np.dtype] = {
    GGMLType.Q4_0: _block([("d", f16), ("qs", "u1", 16)], 18),
    GGMLType.Q4_1: _block([("d", f16), ("m", f16), ("qs", "u1", 16)], 20),
    GGMLType.Q5_0: _block([("d", f16), ("qh", "u1", 4), ("qs", "u1", 16)], 22),
    GGMLType.Q5_1: _block([("d", f16), ("m", f16), ("qh", "u1", 4), ("qs", "u1", 16)], 24),
    GGMLType.Q8_0: _block([("d", f16), ("qs", "i1", 32)], 34),
    GGMLType.Q8_1: _block([("d", f16), ("s", f16), ("qs", "i1", 32)], 36),
    GGMLType.Q2_K: _block([("scales", "u1", 16), ("qs", "u1", 64), ("d", f16), ("dmin", f16)], 84),
    GGMLType.Q3_K: _block([("hmask", "u1", 32), ("qs", "u1", 64), ("scales", "u1", 12), ("d", f16)], 110),
    GGMLType.Q4_K: _block([("d", f16), ("dmin", f16), ("scales", "u1", 12), ("qs", "u1", 128)], 144),
    GGMLType.Q5_K: _block(
        [("d", f16), ("dmin", f16), ("scales", "u1", 12), ("qh", "u1", 32), ("qs", "u1", 128)], 176
    ),
    GGMLType.Q6_K: _block([("ql", "u1", 128), ("qh", "u1", 64), ("scales", "i1", 16), ("d", f16)], 210),
    GGMLType.Q8_K: _block([("d", f32), ("qs", "i1", 256), ("bsums", "<i2", 16)], 292),
    GGMLType.IQ4_NL: _block([("d", f16), ("qs", "u1", 16)], 18),
    GGMLType.IQ4_XS: _block([("d", f16), ("scales_h", "<u2"), ("scales_l", "u1", 4), ("qs", "u1", 128)], 136),
}

# the 16 levels a non-linear 4-bit quant's nibble picks (ggml's kvalues_iq4nl)
IQ4_VALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.int8)


def _blocks(raw: np.ndarray, t: GGMLType) -> np.ndarray:
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    return raw.view(BLOCKS[t])


def _f(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32)[:, None]


# -- legacy 32-element blocks ------------------------------------------------------------------
def dequantize_q4_0(raw: np.ndarray) -> np.ndarray:
    b = _blocks(raw, GGMLType.Q4_0)
    q = np.concatenate([b["qs"] & 0xF, b["qs"] >> 4], axis=1).astype(np.int8) - 8
    return (q * _f(b["d"])).reshape(-1)


def dequantize_q4_1(raw: np.ndarray) -> np.ndarray:
    b = _blocks(raw, GGMLType.Q4_1)
    q = np.concatenate([b["qs"] & 0xF, b["qs"] >> 4], axis=1)
    return (q * _f(b["d"]) + _f(b["m"])).reshape(-1)


def _q5_high_bits(b: np.ndarray) -> np.ndarray:
    qh = b["qh"].copy().view("<u4")  # (n, 1): bit j is the 5th bit of element j
    return ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8) << 4


def dequantize_q5_0(raw: np.ndarray) -> np.ndarray:
    b = _blocks(raw, GGMLType.Q5_0)
    q = np.concatenate([b["qs"] & 0xF, b["qs"] >> 4], axis=1) | _q5_high_bits(b)
    return ((q.astype(np.int8) - 16) * _f(b["d"])).reshape(-1)


def dequantize_q5_1(raw: np.ndarray) -> np.ndarray:
    b = _blocks(raw, GGMLType.Q5_1)
    q = np.concatenate([b["qs"] & 0xF, b["qs"] >> 4], axis=1) | _q5_high_bits(b)
    return (q * _f(b["d"]) + _f(b["m"])).reshape(-1)


def dequantize_q8_0(raw: np.ndarray) -> np.ndarray:
    b = _blocks(raw, GGMLType.Q8_0)
    return (b["qs"] * _f(b["d"])).reshape(-1)


# -- k-quants: 256-element super-blocks -------------------------------------------------------
def _two_bit_planes(qs: np.ndarray) -> np.ndarray:
    """qs (n, 64) -> (n, 256) in output order: half h, shift 2j, byte l -> 128h + 32j + l."""
    q = qs.reshape(-1, 2, 1, 32)
    shifts = (2 * np.arange(4, dtype=np.uint8)).reshape(1, 1, 4, 1)
    return ((q >> shifts) & 3).reshape(-1, 256)


def dequantize_q2_k(raw: np.ndarray) -> np.ndarray:
    b = _blocks(raw, GGMLType.Q2_K)
    q = _two_bit_planes(b["qs"]).reshape(-1, 16, 16)
    dl = _f(b["d"]) * (b["scales"] & 0xF)
    ml = _f(b["dmin"]) * (b["scales"] >> 4)
    return (q * dl[:, :, None] - ml[:, :, None]).reshape(-1)


def _q3_k_scales(s: np.ndarray) -> np.ndarray:
    """12 bytes -> 16 signed 6-bit scales."""
    lo, hi = s[:, 0:8], s[:, 8:12]
    low4 = np.concatenate([lo & 0xF, lo >> 4], axis=1)  # scales 0-7 | 8-15, low 4 bits
    top2 = np.concatenate([(hi >> (2 * k)) & 3 for k in range(4)], axis=1)  # (n, 16)
    return (low4 | (top2 << 4)).astype(np.int8) - 32


def dequantize_q3_k(raw: np.ndarray) -> np.ndarray:
    b = _blocks(raw, GGMLType.Q3_K)
    low = _two_bit_planes(b["qs"]).astype(np.int8)
    bit = (4 * np.arange(2)[:, None] + np.arange(4)[None, :]).astype(np.uint8)  # (2, 4)
    hm = (b["hmask"][:, None, None, :] >> bit[None, :, :, None]) & 1  # (n, 2, 4, 32)
    q = (low - 4 * (1 - hm.reshape(-1, 256).astype(np.int8))).reshape(-1, 16, 16)
    dl = _f(b["d"]) * _q3_k_scales(b["scales"])
    return (q * dl[:, :, None]).reshape(-1)


def _k4_scales_mins(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K/Q5_K: 12 bytes -> 8 six-bit scales and 8 six-bit mins."""
    sc = np.empty((s.shape[0], 8), np.uint8)
    mn = np.empty((s.shape[0], 8), np.uint8)
    sc[:, :4] = s[:, 0:4] & 63
    mn[:, :4] = s[:, 4:8] & 63
    sc[:, 4:] = (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)
    mn[:, 4:] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return sc, mn


def _nibble_planes(qs: np.ndarray) -> np.ndarray:
    """qs (n, 128) -> (n, 256): chunk c, low then high nibbles of its 32 bytes."""
    q = qs.reshape(-1, 4, 1, 32)
    return ((q >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)) & 0xF).reshape(-1, 256)


def _k4_apply(b: np.ndarray, q: np.ndarray) -> np.ndarray:
    sc, mn = _k4_scales_mins(b["scales"])
    d = _f(b["d"]) * sc
    m = _f(b["dmin"]) * mn
    return (q.reshape(-1, 8, 32) * d[:, :, None] - m[:, :, None]).reshape(-1)


def dequantize_q4_k(raw: np.ndarray) -> np.ndarray:
    b = _blocks(raw, GGMLType.Q4_K)
    return _k4_apply(b, _nibble_planes(b["qs"]))


def dequantize_q5_k(raw: np.ndarray) -> np.ndarray:
    b = _blocks(raw, GGMLType.Q5_K)
    bit = np.arange(8, dtype=np.uint8).reshape(1, 4, 2, 1)  # chunk c, half h -> bit 2c+h
    hi = (b["qh"][:, None, None, :] >> bit) & 1
    return _k4_apply(b, _nibble_planes(b["qs"]) | (hi.reshape(-1, 256) << 4))


def dequantize_q6_k(raw: np.ndarray) -> np.ndarray:
    b = _blocks(raw, GGMLType.Q6_K)
    ql = b["ql"].reshape(-1, 2, 2, 32)  # half n, (first|second 32 bytes), l
    low = np.stack([ql[:, :, 0] & 0xF, ql[:, :, 1] & 0xF, ql[:, :, 0] >> 4, ql[:, :, 1] >> 4], axis=2)
    qh = b["qh"].reshape(-1, 2, 1, 32)
    high = (qh >> (2 * np.arange(4, dtype=np.uint8)).reshape(1, 1, 4, 1)) & 3
    q = ((low | (high << 4)).astype(np.int8) - 32).reshape(-1, 16, 16)
    d = _f(b["d"]) * b["scales"]
    return (q * d[:, :, None]).reshape(-1)


def _iq4_levels(qs: np.ndarray) -> np.ndarray:
    """(..., 16) nibble bytes -> (..., 32) levels: low nibbles are elements 0-15, high 16-31."""
    return IQ4_VALUES[np.concatenate([qs & 0xF, qs >> 4], axis=-1)]


def dequantize_iq4_nl(raw: np.ndarray) -> np.ndarray:
    b = _blocks(raw, GGMLType.IQ4_NL)
    return (_iq4_levels(b["qs"]) * _f(b["d"])).reshape(-1)


def dequantize_iq4_xs(raw: np.ndarray) -> np.ndarray:
    b = _blocks(raw, GGMLType.IQ4_XS)
    ib = np.arange(8)
    lo = (b["scales_l"][:, ib // 2] >> (4 * (ib % 2)).astype(np.uint8)) & 0xF
    hi = (b["scales_h"][:, None] >> (2 * ib).astype(np.uint16)) & 3
    ls = (lo.astype(np.int32) | (hi.astype(np.int32) << 4)) - 32  # (blocks, 8)
    d = _f(b["d"]) * ls.astype(np.float32)
    q = _iq4_levels(b["qs"].reshape(-1, 8, 16))  # (blocks, 8, 32)
    return (q * d[:, :, None]).reshape(-1)


def dequantize_q8_k(raw: np.ndarray) -> np.ndarray:
    b = _blocks(raw, GGMLType.Q8_K)
    return (b["qs"] * b["d"][:, None]).reshape(-1)


# -- plain element types -----------------------------------------------------------------------
def _plain(dtype: str) -> Callable[[np.ndarray], np.ndarray]:
    def dequantize_plain(raw: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(raw).reshape(-1).view(dtype).astype(np.float32)

    return dequantize_plain


def dequantize_bf16(raw: np.ndarray) -> np.ndarray:
    u = np.ascontiguousarray(raw).reshape(-1).view("<u2").astype(np.uint32) << 16
    return u.view(np.float32)


# -- activation quantizers (the reference of what the kernels do to the input vector) ----------
# Rounding is half-to-even everywhere (np.rint here, lrintf / SIMD round-nearest in C).
def quantize_q8_0(x: np.ndarray) -> np.ndarray:
    """float32 (n,) with n % 32 == 0 -> Q8_0 blocks (uint8 bytes)."""
    x = np.asarray(x, np.float32).reshape(-1, QK)
    d = (np.abs(x).max(axis=1) / np.float32(127.0)).astype(np.float32)
    inv = np.divide(np.float32(1.0), d, out=np.zeros_like(d), where=d != 0)
    b = np.zeros(x.shape[0], BLOCKS[GGMLType.Q8_0])
    b["d"] = d.astype(f16)
    b["qs"] = np.rint(x * inv[:, None]).astype(np.int8)
    return b.view(np.uint8)


def quantize_q8_k(x: np.ndarray) -> np.ndarray:
    """float32 (n,) with n % 256 == 0 -> Q8_K blocks (uint8 bytes)."""
    x = np.asarray(x, np.float32).reshape(-1, QK_K)
    amax_idx = np.abs(x).argmax(axis=1)
    mx = x[np.arange(x.shape[0]), amax_idx]
    iscale = np.divide(np.float32(-127.0), mx, out=np.zeros_like(mx), where=mx != 0).astype(np.float32)
    q = np.minimum(np.rint(x * iscale[:, None]), 127).astype(np.int8)
    b = np.zeros(x.shape[0], BLOCKS[GGMLType.Q8_K])
    b["d"] = np.divide(np.float32(1.0), iscale, out=np.zeros_like(iscale), where=iscale != 0)
    b["qs"] = q
    b["bsums"] = q.reshape(-1, 16, 16).sum(axis=2, dtype=np.int16)
    return b.view(np.uint8)


# -- the trait table ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TypeTraits:
    name: str
    block_size: int  # elements per block
    type_size: int  # bytes per block
    dtype: str | None  # numpy dtype of a view of the data; None: raw uint8 blocks
    dequantize: Callable[[np.ndarray], np.ndarray] | None  # reference; None: unsupported

    @property
    def quantized(self) -> bool:
        return self.dtype is None


def _t(t: GGMLType, bs: int, ts: int, dtype: str | None, deq=None) -> tuple[GGMLType, TypeTraits]:
    return t, TypeTraits(t.name, bs, ts, dtype, deq)


TRAITS: dict[GGMLType, TypeTraits] = dict(
    [
        _t(GGMLType.F32, 1, 4, "<f4", _plain("<f4")),
        _t(GGMLType.F16, 1, 2, "<f2", _plain("<f2")),
        _t(GGMLType.BF16, 1, 2, "<u2", dequantize_bf16),
        _t(GGMLType.F64, 1, 8, "<f8", _plain("<f8")),
        _t(GGMLType.I8, 1, 1, "i1", _plain("i1")),
        _t(GGMLType.I16, 1, 2, "<i2", _plain("<i2")),
        _t(GGMLType.I32, 1, 4, "<i4", _plain("<i4")),
        _t(GGMLType.I64, 1, 8, "<i8", _plain("<i8")),
        _t(GGMLType.Q4_0, QK, 18, None, dequantize_q4_0),
        _t(GGMLType.Q4_1, QK, 20, None, dequantize_q4_1),
        _t(GGMLType.Q5_0, QK, 22, None, dequantize_q5_0),
        _t(GGMLType.Q5_1, QK, 24, None, dequantize_q5_1),
        _t(GGMLType.Q8_0, QK, 34, None, dequantize_q8_0),
        _t(GGMLType.Q8_1, QK, 36, None),
        _t(GGMLType.Q2_K, QK_K, 84, None, dequantize_q2_k),
        _t(GGMLType.Q3_K, QK_K, 110, None, dequantize_q3_k),
        _t(GGMLType.Q4_K, QK_K, 144, None, dequantize_q4_k),
        _t(GGMLType.Q5_K, QK_K, 176, None, dequantize_q5_k),
        _t(GGMLType.Q6_K, QK_K, 210, None, dequantize_q6_k),
        _t(GGMLType.Q8_K, QK_K, 292, None, dequantize_q8_k),
        _t(GGMLType.IQ2_XXS, QK_K, 66, None),
        _t(GGMLType.IQ2_XS, QK_K, 74, None),
        _t(GGMLType.IQ3_XXS, QK_K, 98, None),
        _t(GGMLType.IQ1_S, QK_K, 50, None),
        _t(GGMLType.IQ4_NL, QK, 18, None, dequantize_iq4_nl),
        _t(GGMLType.IQ3_S, QK_K, 110, None),
        _t(GGMLType.IQ2_S, QK_K, 82, None),
        _t(GGMLType.IQ4_XS, QK_K, 136, None, dequantize_iq4_xs),
        _t(GGMLType.IQ1_M, QK_K, 56, None),
        _t(GGMLType.TQ1_0, QK_K, 54, None),
        _t(GGMLType.TQ2_0, QK_K, 66, None),
        _t(GGMLType.MXFP4, QK, 17, None),
        _t(GGMLType.NVFP4, 64, 36, None),
        _t(GGMLType.Q1_0, 128, 18, None),
    ]
)


def traits(t: int) -> TypeTraits:
    """The traits of type ``t``; UnsupportedTypeError names an unknown type number."""
    try:
        return TRAITS[GGMLType(t)]
    except (ValueError, KeyError):
        raise UnsupportedTypeError(f"unknown GGML tensor type {int(t)}") from None


def row_nbytes(t: int, n: int) -> int:
    """Bytes of one row of ``n`` elements of type ``t`` (n must be a multiple of the block)."""
    tr = traits(t)
    return n // tr.block_size * tr.type_size


def dequantize(raw: np.ndarray, t: int, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Reference dequantization: raw tensor data of type ``t`` -> float32 (numpy only)."""
    tr = traits(t)
    if tr.dequantize is None:
        raise UnsupportedTypeError(f"tensor type {tr.name} cannot be dequantized by llamacy")
    out = tr.dequantize(np.asarray(raw).view(np.uint8) if tr.dtype is None else raw)
    return out.reshape(shape) if shape is not None else out


def quantize_q8_1(x: np.ndarray) -> np.ndarray:
    """float32 (n,) with n % 32 == 0 -> Q8_1 blocks: Q8_0 plus s = d * sum(q) (uint8 bytes)."""
    x = np.asarray(x, np.float32).reshape(-1, QK)
    d = (np.abs(x).max(axis=1) / np.float32(127.0)).astype(np.float32)
    inv = np.divide(np.float32(1.0), d, out=np.zeros_like(d), where=d != 0)
    q = np.rint(x * inv[:, None]).astype(np.int8)
    b = np.zeros(x.shape[0], BLOCKS[GGMLType.Q8_1])
    b["d"] = d.astype(f16)
    b["qs"] = q
    b["s"] = (q.sum(axis=1, dtype=np.int32).astype(np.float32) * d).astype(f16)
    return b.view(np.uint8)
