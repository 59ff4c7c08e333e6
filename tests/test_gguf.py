"""GGUFFile on real files: the shared stories260K model and files the reference writer makes."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import quant_tensor, write_gguf
from gguf_layout import walk

from llamacy import GGMLType, GGUFError, GGUFFile, UnsupportedTypeError
from llamacy._quants import TRAITS

gguf = pytest.importorskip("gguf")

ALL_TYPES = [t for t, tr in TRAITS.items() if t != GGMLType.Q8_1]


def _plain(v):
    """gguf-py field contents -> comparable python values."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def test_stories_metadata_and_tensors_match_reference_reader(stories_gguf):
    r = gguf.GGUFReader(str(stories_gguf))
    with GGUFFile(stories_gguf) as f:
        assert f.version == 3
        assert f.architecture == "llama"
        oracle = {k: fld.contents() for k, fld in r.fields.items() if not k.startswith("GGUF.")}
        assert set(f.metadata) == set(oracle)
        for k, v in oracle.items():
            ours = _plain(f.metadata[k])
            if isinstance(v, float):
                assert ours == pytest.approx(v, rel=1e-7), k
            elif isinstance(v, list) and v and isinstance(v[0], float):
                np.testing.assert_allclose(ours, v, rtol=1e-7, err_msg=k)
            else:
                assert ours == v, k
        assert len(f.tensors) == len(r.tensors) == 47
        assert f.data_offset == r.data_offset
        for t in r.tensors:
            ours = f.tensors[t.name]
            assert int(ours.type) == int(t.tensor_type)
            assert ours.ne == tuple(int(x) for x in t.shape)
            assert ours.shape == tuple(int(x) for x in reversed(t.shape))
            assert ours.nbytes == int(t.n_bytes)
            assert ours.file_offset == int(t.data_offset)
            np.testing.assert_array_equal(ours.data.reshape(-1), np.asarray(t.data).reshape(-1))


def test_views_are_zero_copy_inside_the_mapping(stories_gguf):
    with GGUFFile(stories_gguf) as f:
        lo, hi = f.mapping.address, f.mapping.address + f.mapping.size
        for t in f.tensors.values():
            a = t.data
            start = a.__array_interface__["data"][0]
            assert lo <= start and start + a.nbytes <= hi
            assert start == lo + t.file_offset
            assert not a.flags.writeable and not a.flags.owndata


def test_stories_hyperparameters(stories_gguf):
    with GGUFFile(stories_gguf) as f:
        assert f.arch_value("embedding_length") == 64
        assert f.arch_value("block_count") == 5
        assert f.arch_value("attention.head_count") == 8
        assert f.arch_value("attention.head_count_kv") == 4
        assert len(f.metadata["tokenizer.ggml.tokens"]) == 512
        emb = f.tensor("token_embd.weight")
        assert emb.shape == (512, 64) and emb.type == GGMLType.F32
        with pytest.raises(KeyError, match="nope"):
            f.tensor("nope")


@pytest.mark.parametrize("t", ALL_TYPES, ids=lambda t: t.name)
def test_every_tensor_type(tmp_path, t):
    rng = np.random.default_rng(int(t))
    tr = TRAITS[t]
    rows, cols = 3, tr.block_size * 2 if tr.quantized else 33
    tensors = {"w": quant_tensor(t, rows, cols, rng), "v": np.arange(7, dtype=np.float32)}
    path = write_gguf(tmp_path / f"{t.name}.gguf", tensors)
    r = gguf.GGUFReader(str(path))
    with GGUFFile(path) as f:
        w = f.tensor("w")
        assert w.type == t and w.shape == (rows, cols)
        assert w.nbytes == rows * cols // tr.block_size * tr.type_size
        oracle = next(x for x in r.tensors if x.name == "w")
        assert w.data.tobytes() == np.asarray(oracle.data).tobytes()
        if tr.quantized:
            assert w.data.dtype == np.uint8 and w.data.shape == (rows, w.nbytes // rows)
        else:
            assert w.data.shape == (rows, cols) and w.data.dtype == np.dtype(tr.dtype)
        no_oracle = (GGMLType.I8, GGMLType.I16, GGMLType.I32, GGMLType.I64, GGMLType.F64, GGMLType.Q8_K)
        if tr.dequantize is not None and t not in no_oracle:
            ref = gguf.quants.dequantize(np.asarray(oracle.data), gguf.GGMLQuantizationType(int(t)))
            np.testing.assert_array_equal(w.dequantize(), ref.reshape(rows, cols))
        elif tr.dequantize is None:
            with pytest.raises(UnsupportedTypeError, match=t.name):
                w.dequantize()
        np.testing.assert_array_equal(f.tensor("v").data, np.arange(7, dtype=np.float32))


def test_all_metadata_value_types(tmp_path):
    V = gguf.GGUFValueType
    meta = {
        "t.u8": (200, V.UINT8), "t.i8": (-100, V.INT8), "t.u16": (60000, V.UINT16),
        "t.i16": (-30000, V.INT16), "t.u32": (4_000_000_000, V.UINT32), "t.i32": (-2_000_000_000, V.INT32),
        "t.f32": (1.5, V.FLOAT32), "t.bool": (True, V.BOOL), "t.str": ("héllo ✓", V.STRING),
        "t.u64": (2**63 + 5, V.UINT64), "t.i64": (-(2**62), V.INT64), "t.f64": (2.0**-30, V.FLOAT64),
        "t.arr_str": (["a", "", "ü"], V.ARRAY), "t.arr_i32": ([1, -2, 3], V.ARRAY),
        "t.nested": ([[1, 2], [3]], V.ARRAY), "t.bools": ([True, False], V.ARRAY),
    }
    path = write_gguf(tmp_path / "meta.gguf", {"x": np.zeros(4, np.float32)}, meta)
    with GGUFFile(path) as f:
        m = f.metadata
        for k in ("t.u8", "t.i8", "t.u16", "t.i16", "t.u32", "t.i32", "t.u64", "t.i64", "t.str"):
            assert m[k] == meta[k][0], k
        assert m["t.bool"] is True
        assert m["t.f32"] == 1.5 and m["t.f64"] == 2.0**-30
        assert m["t.arr_str"] == ["a", "", "ü"]
        assert m["t.arr_i32"].tolist() == [1, -2, 3]
        assert [x.tolist() for x in m["t.nested"]] == [[1, 2], [3]]
        assert m["t.bools"].dtype == np.bool_ and m["t.bools"].tolist() == [True, False]
        assert f.metadata_types["t.u64"].name == "UINT64"


def test_custom_alignment_and_version_2(tmp_path):
    path = write_gguf(tmp_path / "a.gguf", {"x": np.ones((2, 3), np.float32), "y": np.ones(5, np.float16)},
                      alignment=64)
    with GGUFFile(path) as f:
        assert f.alignment == 64 and f.data_offset % 64 == 0
        assert all(t.offset % 64 == 0 for t in f.tensors.values())
    data = bytearray(path.read_bytes())
    data[4:8] = struct.pack("<I", 2)
    (tmp_path / "v2.gguf").write_bytes(bytes(data))
    with GGUFFile(tmp_path / "v2.gguf") as f:
        assert f.version == 2
        np.testing.assert_array_equal(f.tensor("x").data, np.ones((2, 3), np.float32))


def test_unknown_type_listed_and_named_on_access(tmp_path):
    path = write_gguf(tmp_path / "u.gguf", {"a": np.ones(32, np.float32), "b": np.ones(8, np.float32)})
    data = bytearray(path.read_bytes())
    fields, _, _ = walk(bytes(data))
    ttype = [fl for fl in fields if fl.kind == "ttype"][1]
    data[ttype.offset:ttype.offset + 4] = struct.pack("<I", 99)
    (tmp_path / "u2.gguf").write_bytes(bytes(data))
    with GGUFFile(tmp_path / "u2.gguf") as f:
        b = f.tensor("b")
        assert b.type == 99 and b.nbytes is None
        assert [t.name for t in f.unsupported_tensors] == ["b"]
        with pytest.raises(UnsupportedTypeError, match="99"):
            b.data  # noqa: B018
        np.testing.assert_array_equal(f.tensor("a").data, np.ones(32, np.float32))


def test_close_with_live_views(stories_gguf):
    f = GGUFFile(stories_gguf)
    a = f.tensor("token_embd.weight").data
    expected = a.copy()
    f.close()
    np.testing.assert_array_equal(a, expected)  # mapping kept until the view dies
    with pytest.raises(ValueError, match="closed"):
        f.tensor("token_embd.weight").data  # noqa: B018


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.gguf"):
        GGUFFile(tmp_path / "nothing.gguf")
    with pytest.raises(IsADirectoryError):
        GGUFFile(tmp_path)
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(GGUFError, match="empty"):
        GGUFFile(tmp_path / "empty.gguf")
    (tmp_path / "text.gguf").write_bytes(b"hello world, not a model")
    with pytest.raises(GGUFError, match="not a GGUF file: magic is b'hell'"):
        GGUFFile(tmp_path / "text.gguf")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RssAnon is a Linux /proc field")
def test_reading_tensors_does_not_grow_anonymous_memory(tmp_path):
    """Open a 64 MiB model and read every byte of every tensor: anonymous memory must not grow
    by the tensor bytes (the weights stay file-backed page cache)."""
    rng = np.random.default_rng(0)
    tensors = {f"blk.{i}.w": rng.standard_normal((1024, 2048), dtype=np.float32) for i in range(8)}
    path = write_gguf(tmp_path / "big.gguf", tensors)
    total = sum(a.nbytes for a in tensors.values())
    del tensors
    code = textwrap.dedent(f"""
        import numpy as np
        from llamacy import GGUFFile
        from llamacy._diagnostics import anonymous_bytes as anon
        before = anon()
        f = GGUFFile({str(path)!r})
        s = 0.0
        for t in f.tensors.values():
            s += float(t.data.sum(dtype=np.float64))
        print(anon() - before, s)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    growth = int(r.stdout.split()[0])
    assert growth < total / 20, f"anonymous memory grew {growth} bytes for {total} tensor bytes"


def test_package_import_does_not_shadow_stdlib_platform():
    # platform/ holds C only: `import platform` from the repo root must find the stdlib module.
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", "import platform, uuid; print(platform.system())"],
                       cwd=repo, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
