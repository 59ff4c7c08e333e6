"""Every Cython kernel against its numpy twin, at awkward sizes, on every kernel set this CPU
runs (scalar, AVX2, AVX-512 VNNI) and with 1 and 2 threads.

Tolerances (named, and why):
- MATMUL_TOL: the kernel and the twin do the same integer block dots; what differs is float32
  vs float64 scaling and summation of the per-block results. The error is measured against
  sum|w*x| (the magnitude of the products): float32 rounding of n terms in random-sign order
  grows like sqrt(n)*eps32 ~ 1e-6 for our sizes; 1e-5 leaves a margin of 10.
- OPS_TOL: elementwise float32 math (RMSNorm, SiLU, softmax, RoPE with float32 cos/sin
  tables, attention over <= 40 positions): a few ulps of float32, relative.
"""

from __future__ import annotations

import numpy as np
import pytest
from quant_blocks import magnitude, random_blocks

import llamacy._matmul as mm
from llamacy import _ops as ops
from llamacy import _ops_kernels
from llamacy._quants import TRAITS, GGMLType, quantize_q8_0, quantize_q8_1, quantize_q8_k

MATMUL_TOL = 1e-5
OPS_TOL = 1e-5

ISAS = mm.available()


@pytest.fixture(params=ISAS)
def isa(request):
    before = mm.simd_path()
    mm.select(request.param)
    yield request.param
    mm.select(before)


def _shapes(t):
    tr = TRAITS[t]
    if not tr.quantized:  # any length: tails of the SIMD loops
        return [(1, 1, 1), (3, 7, 2), (17, 37, 1), (5, 100, 3), (2, 64, 5)]
    bs = tr.block_size
    # odd block counts; T of 4-5 (4-token kernels), 8+3 (two 8-token tiles, the last padded) and
    # 17, 40 (16-token tiles: a full one and a padded one; 40 = two and a half); 22 blocks x 9
    # tokens: k-quant rows too long for 9 tokens' activations in one pass of the any-token kernel
    # (3 passes of 3)
    return [(1, bs, 1), (3, bs * 3, 2), (17, bs * 5, 1), (4, bs * 2, 5), (5, bs * 3, 11), (2, bs, 8),
            (3, bs * 2, 17), (18, bs, 40), (3, bs * 22, 9)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("t", list(mm.KERNEL_TYPES), ids=lambda t: t.name)
def test_matmul_matches_twin(t, threads, isa):
    rng = np.random.default_rng(int(t) * 7 + threads)
    tr = TRAITS[t]
    for rows, n, T in _shapes(t):
        w = random_blocks(t, rows * n // tr.block_size, rng).reshape(rows, -1)
        x = rng.standard_normal((T, n)).astype(np.float32)
        got = mm.matmul(w, t, x, n_threads=threads)
        ref = mm.matmul_reference(w, t, x)
        scale = magnitude(w, t, x)
        assert got.shape == (T, rows)
        err = np.abs(got - ref) / np.maximum(scale, 1e-30)
        assert err.max() <= MATMUL_TOL, (t.name, isa, rows, n, T, err.max())
        # matrix x vector (decode) against the same twin
        vec = mm.matmul(w, t, x[0], n_threads=threads)
        assert vec.shape == (rows,)
        assert (np.abs(vec - ref[0]) / np.maximum(scale[0], 1e-30)).max() <= MATMUL_TOL


@pytest.mark.parametrize("threads", [1, 2])
def test_q4_0_multi_row_kernel_at_its_edges(threads, isa):
    """Q4_0 decode and small batches go through a kernel that takes 4 blocks (a group) at a time,
    16 rows per work item and up to 4 tokens per pass; from 5 tokens on, 8-token tiles take 4 rows
    at a time. Whole groups only, groups plus tail blocks, row counts around the work item size
    and not a multiple of 4, every token count up to the tiles, one and several (padded) tiles."""
    rng = np.random.default_rng(11)
    t = GGMLType.Q4_0
    for rows, nb in [(1, 4), (16, 8), (17, 9), (33, 12), (31, 7), (2, 13)]:
        n = nb * 32
        w = random_blocks(t, rows * nb, rng).reshape(rows, -1)
        for T in (1, 2, 3, 4, 5, 6, 8, 11, 17):
            x = rng.standard_normal((T, n)).astype(np.float32)
            got = mm.matmul(w, t, x, n_threads=threads)
            ref = mm.matmul_reference(w, t, x)
            err = np.abs(got - ref) / np.maximum(magnitude(w, t, x), 1e-30)
            assert err.max() <= MATMUL_TOL, (isa, rows, nb, T, err.max())


def _guarded(nbytes):
    """A writable numpy byte array whose last byte is the last one before an inaccessible page:
    a kernel reading past the end of its weights faults here instead of reading a neighbour."""
    import ctypes
    import mmap

    page = mmap.PAGESIZE
    size = -(-nbytes // page) * page
    m = mmap.mmap(-1, size + page)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mprotect(ctypes.c_void_p(base + size), ctypes.c_size_t(page), 0) != 0:
        pytest.skip("mprotect is not available")
    return np.frombuffer(m, np.uint8, nbytes, size - nbytes), m


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="POSIX mprotect guard page")
def test_kernels_never_read_past_the_last_weight_byte(isa):
    """Weights are views of a mapped file and may end where the mapping ends."""
    rng = np.random.default_rng(12)
    for t in mm.KERNEL_TYPES:
        tr = TRAITS[t]
        bs = tr.block_size
        for rows, nblocks in [(3, 4), (5, 5), (1, 9)]:
            n = nblocks * bs
            data = random_blocks(t, rows * nblocks, rng)
            w, _mapping = _guarded(data.size)
            w[:] = data
            w = w.reshape(rows, -1)
            for T in (1, 4, 8, 17):
                x = rng.standard_normal((T, n)).astype(np.float32)
                got = mm.matmul(w, t, x)
                err = np.abs(got - mm.matmul_reference(w, t, x)) / np.maximum(magnitude(w, t, x), 1e-30)
                assert err.max() <= MATMUL_TOL, (t.name, isa, rows, n, T)


@pytest.mark.parametrize("T", [1, 3, 8, 13])
def test_shared_input_products_equal_separate_ones(T, isa):
    """matmul_shared (Q, K, V from one quantization of x) gives exactly what separate calls give."""
    from llamacy import _matmul_kernels

    rng = np.random.default_rng(13)
    for t in (GGMLType.Q4_0, GGMLType.Q8_0, GGMLType.Q6_K, GGMLType.F16):
        tr = TRAITS[t]
        n = 2 * max(tr.block_size, 128)
        ws = tuple(random_blocks(t, r * n // tr.block_size, rng).reshape(r, -1) for r in (19, 4, 4))
        x = rng.standard_normal((T, n)).astype(np.float32)
        outs = tuple(np.empty((T, w.shape[0]), np.float32) for w in ws)
        _matmul_kernels.matmul_shared(ws, mm.kernel_index(t), x, outs, 2)
        for w, out in zip(ws, outs):
            np.testing.assert_array_equal(out, mm.matmul(w, t, x, n_threads=2))


@pytest.mark.parametrize("threading", ["openmp", "python"])
def test_both_threading_backends_agree(threading, monkeypatch):
    """OpenMP inside the kernel, or the thread pool used by builds without OpenMP (macOS)."""
    monkeypatch.setattr(mm, "THREADING", threading)
    rng = np.random.default_rng(9)
    for t in (GGMLType.Q4_0, GGMLType.F16):
        tr = TRAITS[t]
        n = 64
        w = random_blocks(t, 37 * n // tr.block_size, rng).reshape(37, -1)
        x = rng.standard_normal((3, n)).astype(np.float32)
        np.testing.assert_array_equal(mm.matmul(w, t, x, n_threads=3), mm.matmul(w, t, x, n_threads=1))


def test_matmul_on_a_zero_row_and_zero_activation(isa):
    for t in mm.KERNEL_TYPES:
        tr = TRAITS[t]
        n = tr.block_size * 2 if tr.quantized else 8
        w = np.zeros((2, n // tr.block_size * tr.type_size), np.uint8)
        assert np.all(mm.matmul(w, t, np.ones(n, np.float32)) == 0)
        w = random_blocks(t, 2 * n // tr.block_size, np.random.default_rng(0)).reshape(2, -1)
        assert np.all(mm.matmul(w, t, np.zeros(n, np.float32)) == 0), t.name


def test_matmul_rejects_bad_shapes():
    w = random_blocks(GGMLType.Q4_0, 4, np.random.default_rng(0)).reshape(2, -1)
    with pytest.raises(ValueError, match="multiple of the Q4_0 block size"):
        mm.matmul(w, GGMLType.Q4_0, np.ones(48, np.float32))
    from llamacy import UnsupportedTypeError

    with pytest.raises(UnsupportedTypeError, match="IQ2_XXS"):
        mm.matmul(np.zeros((1, 66), np.uint8), GGMLType.IQ2_XXS, np.ones(256, np.float32))


@pytest.mark.parametrize("t,ref", [(GGMLType.Q4_0, quantize_q8_0), (GGMLType.Q4_1, quantize_q8_1),
                                   (GGMLType.Q6_K, quantize_q8_k)], ids=["q8_0", "q8_1", "q8_K"])
def test_activation_quantizers_are_bit_exact(t, ref, isa):
    from llamacy import _matmul_kernels

    rng = np.random.default_rng(3)
    for n in (256, 512):
        x = (rng.standard_normal(n) * rng.choice([1e-3, 1.0, 50.0])).astype(np.float32)
        x[:32] = 0.0  # an all-zero block
        x[32:64] = 0.5 + np.arange(32) - 16  # d = 1: every value a tie, rounded half to even
        x[32] = 127.0
        got = np.frombuffer(_matmul_kernels.quantize_activations(mm.kernel_index(t), x), np.uint8)
        np.testing.assert_array_equal(got, ref(x))


def test_half_conversions_are_exact():
    halves = np.arange(65536, dtype=np.uint16)
    out = np.empty(65536, np.float32)
    _ops_kernels.f16_to_f32(halves, out)
    expect = halves.view(np.float16).astype(np.float32)
    both_nan = np.isnan(out) & np.isnan(expect)
    assert np.array_equal(out[~both_nan], expect[~both_nan])
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(100000).astype(np.float32) * s for s in (1e-8, 1e-6, 1e-4, 1, 1e3, 7e4)]
                       + [np.array([0.0, -0.0, 65504, 65519.99, 65520, np.inf, -np.inf], np.float32)])
    h = np.empty(x.size, np.uint16)
    _ops_kernels.f32_to_f16(x, h)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(h, x.astype(np.float16).view(np.uint16))


def _rel(got, ref):
    return np.max(np.abs(got - ref) / (np.abs(ref) + 1e-6))


def test_rmsnorm_matches_twin():
    rng = np.random.default_rng(1)
    for T, n in [(1, 1), (3, 7), (2, 64), (5, 300)]:
        x = rng.standard_normal((T, n)).astype(np.float32) * 3
        w = rng.standard_normal(n).astype(np.float32)
        assert _rel(ops.rmsnorm(x, w, 1e-5), ops.rmsnorm_reference(x, w, 1e-5)) <= OPS_TOL


def test_rope_matches_twin():
    rng = np.random.default_rng(2)
    for n_heads, head_dim, n_rot, base in [(1, 2, 2, 10000.0), (8, 8, 8, 10000.0), (4, 64, 32, 500000.0),
                                           (3, 6, 4, 10.0)]:
        tables = ops.rope_tables(64, n_rot, base)
        pos = np.array([0, 1, 5, 63], np.int64)
        x = rng.standard_normal((4, n_heads * head_dim)).astype(np.float32)
        ref = ops.rope_reference(x, pos, n_heads, head_dim, n_rot, base)
        got = ops.rope(x.copy(), pos, tables, n_heads, head_dim, n_rot)
        np.testing.assert_allclose(got, ref, rtol=0, atol=OPS_TOL * 4)
        # dims past n_rot are untouched
        np.testing.assert_array_equal(got.reshape(4, n_heads, head_dim)[..., n_rot:],
                                      x.reshape(4, n_heads, head_dim)[..., n_rot:])


def test_silu_mul_and_softmax_match_twins(isa):
    rng = np.random.default_rng(3)
    for T, n in [(1, 1), (2, 13), (3, 172)]:
        g = rng.standard_normal((T, n)).astype(np.float32) * 4
        g[0, :3] = [-100.0, 100.0, 0.0][:n]  # past the exponential's clamps, and 0
        u = rng.standard_normal((T, n)).astype(np.float32)
        ref = ops.silu_mul_reference(g, u)
        assert _rel(ops.silu_mul(g.copy(), u), ref) <= OPS_TOL
    for n in (1, 2, 33, 1000):
        x = rng.standard_normal(n).astype(np.float32) * 10
        assert _rel(ops.softmax(x.copy()), ops.softmax_reference(x)) <= OPS_TOL


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cache", [np.float32, np.float16])
def test_attention_matches_twin(cache, threads, isa):
    rng = np.random.default_rng(4)
    # the last case is enough work (> 2^18 multiply-adds) for attention to use its threads
    for n_heads, n_kv, hd, pos0, T in [(1, 1, 1, 0, 1), (8, 4, 8, 0, 5), (4, 4, 16, 7, 1), (6, 2, 10, 20, 3),
                                       (8, 2, 64, 600, 2)]:
        n_ctx = pos0 + T + 5
        kc = rng.standard_normal((n_ctx, n_kv * hd)).astype(cache)
        vc = rng.standard_normal((n_ctx, n_kv * hd)).astype(cache)
        q = rng.standard_normal((T, n_heads * hd)).astype(np.float32)
        got = ops.attention(q, kc, vc, pos0, n_heads, n_kv, hd, n_threads=threads)
        ref = ops.attention_reference(q, kc, vc, pos0, n_heads, n_kv, hd)
        np.testing.assert_allclose(got, ref, rtol=0, atol=OPS_TOL * 4)


@pytest.mark.parametrize("cache", [np.float32, np.float16])
def test_attention_over_several_sequences_and_cache_store(cache, isa):
    """Rows of different sequences (slots) at their own positions, as batched decoding runs them."""
    rng = np.random.default_rng(6)
    n_seq, n_ctx, n_heads, n_kv, hd = 3, 16, 4, 2, 8
    kc = rng.standard_normal((n_seq, n_ctx, n_kv * hd)).astype(cache)
    vc = rng.standard_normal((n_seq, n_ctx, n_kv * hd)).astype(cache)
    slots, pos = np.array([2, 0, 0, 1]), np.array([5, 0, 1, 15])
    new_k = rng.standard_normal((4, n_kv * hd)).astype(np.float32)
    ops.cache_store(new_k, kc, pos, slots)
    for i in range(4):
        np.testing.assert_array_equal(kc[slots[i], pos[i]], new_k[i].astype(cache))
    q = rng.standard_normal((4, n_heads * hd)).astype(np.float32)
    got = ops.attention(q, kc, vc, pos, n_heads, n_kv, hd, n_threads=2, slots=slots)
    ref = ops.attention_reference(q, kc, vc, pos, n_heads, n_kv, hd, slots=slots)
    np.testing.assert_allclose(got, ref, rtol=0, atol=OPS_TOL * 4)
    with pytest.raises(ValueError, match="slots"):
        ops.attention(q, kc, vc, pos, n_heads, n_kv, hd, slots=np.array([3, 0, 0, 0]))


@pytest.mark.parametrize("t", [GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.Q4_0, GGMLType.Q8_0,
                               GGMLType.Q4_K, GGMLType.Q6_K], ids=lambda t: t.name)
def test_embedding_rows_match_twin(t):
    tr = TRAITS[t]
    rng = np.random.default_rng(5)
    n = 256
    table = random_blocks(t, 10 * n // tr.block_size, rng)
    table = table.reshape(10, -1) if tr.quantized else table.view(tr.dtype).reshape(10, n)
    ids = np.array([0, 9, 3, 3])
    np.testing.assert_array_equal(ops.embedding(table, t, ids), ops.embedding_reference(table, t, ids))
    with pytest.raises(ValueError, match="out of range"):
        ops.embedding(table, t, [10])
