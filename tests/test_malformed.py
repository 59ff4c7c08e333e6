"""Malformed and truncated GGUF files: always GGUFError, never a crash, hang or stray read.

Each case is written to disk and probed in a child process (tests/probe_gguf.py), so a
segfault or SIGBUS fails the test instead of killing pytest.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import quant_tensor, write_gguf
from gguf_layout import walk

from llamacy._quants import GGMLType

gguf = pytest.importorskip("gguf")
HERE = Path(__file__).resolve().parent
U64_MAX = 2**64 - 1


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    V = gguf.GGUFValueType
    rng = np.random.default_rng(7)
    meta = {
        "general.alignment": (32, V.UINT32),
        "t.name": ("a string value", V.STRING),
        "t.flag": (True, V.BOOL),
        "t.f": (0.5, V.FLOAT32),
        "t.tokens": (["<unk>", "<s>", "</s>", "▁a", "b"], V.ARRAY),
        "t.scores": ([0.0, -1.0, -2.0, -3.0, -4.0], V.ARRAY),
        "t.nested": ([[1, 2], [3, 4, 5]], V.ARRAY),
        "t.bools": ([True, False, True], V.ARRAY),
    }
    tensors = {
        "token_embd.weight": rng.standard_normal((5, 32), dtype=np.float32),
        "blk.0.attn_q.weight": quant_tensor(GGMLType.Q4_0, 2, 64, rng),
        "blk.0.ffn_down.weight": quant_tensor(GGMLType.Q6_K, 1, 256, rng),
        "token_norm.weight": np.ones(3, np.float16),  # same name length as token_embd.weight
    }
    d = tmp_path_factory.mktemp("malformed")
    path = write_gguf(d / "base.gguf", tensors, meta)
    data = path.read_bytes()
    fields, _, _ = walk(data)
    r = gguf.GGUFReader(str(path))
    needed = max(int(t.data_offset) + int(t.n_bytes) for t in r.tensors)  # the writer pads the end
    return d, data[:needed], fields


def run_probe(paths: list[Path]) -> dict[str, str]:
    r = subprocess.run([sys.executable, str(HERE / "probe_gguf.py")], input="\n".join(map(str, paths)) + "\n",
                       capture_output=True, text=True, timeout=300, cwd=HERE)
    results, started = {}, None
    for line in r.stdout.splitlines():
        kind, path, *rest = line.split(" ", 2)
        if kind == "START":
            started = path
        else:
            results[path] = rest[0] if rest else ""
    assert r.returncode == 0, f"probe died (code {r.returncode}) on {started}: {r.stderr[-2000:]}"
    assert len(results) == len(paths)
    return results


def write_cases(d: Path, cases: dict[str, bytes]) -> dict[Path, str]:
    out = {}
    for name, content in cases.items():
        p = d / f"{name}.gguf"
        p.write_bytes(content)
        out[p] = name
    return out


def patch(data: bytes, offset: int, raw: bytes) -> bytes:
    return data[:offset] + raw + data[offset + len(raw):]


def test_base_file_is_valid(base):
    d, data, _ = base
    results = run_probe([d / "base.gguf"])
    assert list(results.values()) == ["ok"]


def test_truncation_everywhere(base):
    d, data, fields = base
    cuts = {0, 1, 3, 4, 7, 8, len(data) - 1}
    for f in fields:
        cuts.update({f.offset, f.offset + 1, f.offset + f.size - 1})
    cuts.update(int(x) for x in np.random.default_rng(1).integers(0, len(data), 60))
    cuts = sorted(c for c in cuts if 0 <= c < len(data))
    cases = write_cases(d, {f"cut{c}": data[:c] for c in cuts})
    results = run_probe(list(cases))
    bad = {cases[p]: r for p, r in ((Path(k), v) for k, v in results.items()) if not r.startswith("GGUFError")}
    assert not bad, bad
    # errors name what is wrong and where
    assert "truncated file: tensor count needs 8 bytes" in results[str(d / "cut8.gguf")]


def structural_corruptions(data: bytes, fields) -> dict[str, bytes]:
    """Every one of these must be rejected: each breaks a rule the reader enforces."""
    cases: dict[str, bytes] = {}

    def add(name, offset, raw):
        cases[f"{name}@{offset}"] = patch(data, offset, raw)

    add("magic", 0, b"GGUG")
    add("magic_lower", 0, b"gguf")
    for v in (0, 1, 4, 0x03000000, 0xFFFFFFFF):
        add(f"version{v}", 4, struct.pack("<I", v))
    for f in fields:
        if f.kind in ("n_tensors", "n_kv"):
            for v in (U64_MAX, 2**40, len(data)):
                add(f"{f.kind}{v}", f.offset, struct.pack("<Q", v))
        elif f.kind.endswith("_len"):
            for v in (U64_MAX, len(data), 2**62):
                add(f"{f.kind}{v}", f.offset, struct.pack("<Q", v))
        elif f.kind == "vtype":
            for v in (13, 255, 0xFFFFFFFF):
                add(f"vtype{v}", f.offset, struct.pack("<I", v))
        elif f.kind == "arr_type":
            for v in (13, 99):
                add(f"arr_type{v}", f.offset, struct.pack("<I", v))
        elif f.kind == "arr_count":
            for v in (U64_MAX, 2**62, len(data)):
                add(f"arr_count{v}", f.offset, struct.pack("<Q", v))
        elif f.kind == "bool":
            add("bool2", f.offset, b"\x02")
        elif f.kind == "n_dims":
            for v in (0, 5, 0xFFFFFFFF):
                add(f"n_dims{v}", f.offset, struct.pack("<I", v))
        elif f.kind == "dim":
            for v in (0, 2**63, U64_MAX):
                add(f"dim{v}", f.offset, struct.pack("<Q", v))
        elif f.kind == "ttype":
            for v in (99, 0xFFFFFFFF):  # unknown: listed, then an error when the data is read
                add(f"ttype{v}", f.offset, struct.pack("<I", v))
        elif f.kind == "toffset":
            old = struct.unpack_from("<Q", data, f.offset)[0]
            for v in (old + 1, old + 4096 * 32, 2**63, U64_MAX - 31):
                add(f"toffset{v}", f.offset, struct.pack("<Q", v))
    # general.alignment values that are not positive powers of two
    key = data.find(b"general.alignment")
    value_at = key + len(b"general.alignment") + 4
    for v in (0, 3, 48, 0xFFFFFFFF):
        add(f"alignment{v}", value_at, struct.pack("<I", v))
    # duplicate key / tensor name: rename the second one to the first one's name
    names = [f for f in fields if f.kind == "name"]
    same = [n for n in names[1:] if n.size == names[0].size]
    cases["dup_tensor_name"] = patch(data, same[0].offset, data[names[0].offset:names[0].offset + names[0].size])
    keys = [f for f in fields if f.kind == "key"]
    a, b = next((a, b) for i, a in enumerate(keys) for b in keys[i + 1:] if a.size == b.size)
    cases["dup_key"] = patch(data, b.offset, data[a.offset:a.offset + a.size])
    return cases


def test_structural_corruptions_raise_gguf_error(base):
    d, data, fields = base
    cases = write_cases(d, structural_corruptions(data, fields))
    assert len(cases) > 80
    results = run_probe(list(cases))
    bad = {cases[Path(p)]: r for p, r in results.items() if not r.startswith("GGUFError")}
    assert not bad, bad
    by_name = {cases[Path(p)]: r for p, r in results.items()}
    assert "GGUFv1 is no longer supported" in by_name["version1@4"]
    assert "byte-swapped" in by_name[f"version{0x03000000}@4"]
    assert any("alignment" in r for n, r in by_name.items() if n.startswith("alignment"))
    assert any("unknown GGML tensor type 99" in r for n, r in by_name.items() if n.startswith("ttype99"))
    assert "duplicate metadata key" in by_name["dup_key"]
    assert "duplicate tensor name 'token_embd.weight'" in by_name["dup_tensor_name"]


def test_random_byte_flips_never_crash(base):
    """Random damage to the header: the reader may accept (a flipped float is still a float)
    but must never crash or raise anything but GGUFError."""
    d, data, fields = base
    header_end = max(f.offset + f.size for f in fields)
    rng = np.random.default_rng(11)
    cases = {}
    for i in range(150):
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            b[int(rng.integers(0, header_end))] = int(rng.integers(0, 256))
        cases[f"flip{i}"] = bytes(b)
    written = write_cases(d, cases)
    results = run_probe(list(written))
    bad = {written[Path(p)]: r for p, r in results.items() if not (r == "ok" or r.startswith("GGUFError"))}
    assert not bad, bad
