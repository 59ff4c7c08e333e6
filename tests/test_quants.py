"""Reference dequantization (numpy) against the gguf package's, for every type both know."""

from __future__ import annotations

import numpy as np
import pytest
from quant_blocks import random_blocks

from llamacy._quants import (
    BLOCKS,
    TRAITS,
    GGMLType,
    dequantize,
    quantize_q8_0,
    quantize_q8_k,
    row_nbytes,
)

gguf = pytest.importorskip("gguf")
from gguf.quants import dequantize as oracle_dequantize  # noqa: E402

ORACLE_TYPES = [GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1, GGMLType.Q8_0,
                GGMLType.Q2_K, GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K,
                GGMLType.IQ4_NL, GGMLType.IQ4_XS, GGMLType.F16, GGMLType.BF16, GGMLType.F32]
EXACT = 0.0  # both sides compute the same float32 products: results must be bit-equal


def test_trait_table_matches_ggml_sizes():
    sizes = gguf.constants.GGML_QUANT_SIZES
    for t, tr in TRAITS.items():
        if t == GGMLType.Q8_1:
            # gguf-py keeps the pre-2023 float32 d/s layout (40 bytes); ggml's block_q8_1 is
            # two fp16 + 32 int8 = 36 bytes, and that is what llamacy uses.
            assert tr.type_size == 36
            continue
        assert sizes[gguf.GGMLQuantizationType(int(t))] == (tr.block_size, tr.type_size), t.name
        assert tr.name == t.name
    for t, dt in BLOCKS.items():
        assert dt.itemsize == TRAITS[t].type_size


@pytest.mark.parametrize("t", ORACLE_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("rows,blocks_per_row", [(1, 1), (3, 5), (7, 2)])
def test_dequantize_matches_gguf(t, rows, blocks_per_row):
    rng = np.random.default_rng(int(t) * 100 + rows)
    tr = TRAITS[t]
    cols = tr.block_size * blocks_per_row if tr.quantized else 37 * blocks_per_row
    raw = random_blocks(t, rows * cols // tr.block_size, rng).reshape(rows, -1)
    ours = dequantize(raw if tr.quantized else raw.view(tr.dtype), t, (rows, cols))
    oracle = oracle_dequantize(raw, gguf.GGMLQuantizationType(int(t)))
    assert ours.dtype == np.float32
    assert ours.shape == (rows, cols)
    np.testing.assert_allclose(ours, oracle.reshape(rows, cols), rtol=EXACT, atol=EXACT)


def test_q8_0_quantizer_matches_gguf():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(32 * 9).astype(np.float32)
    x[:32] = 0.0  # an all-zero block has d = 0
    ours = quantize_q8_0(x)
    oracle = gguf.quants.quantize(x.reshape(1, -1), gguf.GGMLQuantizationType.Q8_0).reshape(-1)
    np.testing.assert_array_equal(ours, oracle)


def test_q8_k_round_trip():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(256 * 3).astype(np.float32)
    q = quantize_q8_k(x)
    assert q.size == 3 * 292
    b = q.view(BLOCKS[GGMLType.Q8_K])
    np.testing.assert_array_equal(b["bsums"], b["qs"].reshape(3, 16, 16).sum(axis=2))
    back = dequantize(q, GGMLType.Q8_K)
    # max |error| of 8-bit rounding is half a step: d/2 per block
    assert np.all(np.abs(back - x).reshape(3, -1).max(axis=1) <= np.abs(b["d"]) / 2 + 1e-7)


def test_row_nbytes():
    assert row_nbytes(GGMLType.Q4_0, 4096) == 4096 // 32 * 18
    assert row_nbytes(GGMLType.Q6_K, 4096) == 16 * 210
    assert row_nbytes(GGMLType.F16, 7) == 14


def test_unsupported_type_names_itself():
    from llamacy import UnsupportedTypeError

    with pytest.raises(UnsupportedTypeError, match="IQ2_XXS"):
        dequantize(np.zeros(66, np.uint8), GGMLType.IQ2_XXS)
    with pytest.raises(UnsupportedTypeError, match="unknown GGML tensor type 99"):
        dequantize(np.zeros(4, np.uint8), 99)
