"""`llamacy mem` and llamacy._diagnostics: residency after evict and read, sharing across processes,
and the "unknown" rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import write_gguf

from llamacy import _diagnostics as d

LINUX = sys.platform.startswith("linux")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A GGUF of 72 MiB in a directory every user may read (the unknown-rule test needs that)."""
    import tempfile

    dirpath = tempfile.mkdtemp(prefix="llamacy-mem-", dir="/tmp" if os.path.isdir("/tmp") else None)
    os.chmod(dirpath, 0o755)
    rng = np.random.default_rng(0)
    tensors = {f"blk.{i}.ffn_up.weight": rng.standard_normal((1536, 2048), dtype=np.float32) for i in range(6)}
    tensors["token_embd.weight"] = rng.standard_normal((512, 2048), dtype=np.float32)
    from pathlib import Path

    p = write_gguf(Path(dirpath) / "m.gguf", tensors)
    os.chmod(p, 0o644)
    yield p
    import shutil

    shutil.rmtree(dirpath, ignore_errors=True)


def mem_json(*args: str, **kw) -> dict:
    r = subprocess.run([sys.executable, "-m", "llamacy", "mem", "--json", *args], capture_output=True, text=True,
                       timeout=120, **kw)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.skipif(not LINUX, reason="the OS cannot drop one file's pages here")
def test_evict_then_read(model):
    j = mem_json("--evict", str(model))
    assert set(j) >= {"path", "size", "residency", "resident_bytes", "method", "regions"}
    assert j["size"] == model.stat().st_size and j["evicted"] is True
    assert j["residency"] <= 0.05 and j["method"] in ("cachestat", "mincore")
    assert [r["name"] for r in j["regions"]][:2] == ["header+metadata", "token embeddings"]
    assert len(j["strip"]) == d.STRIP_CELLS
    model.read_bytes()  # a read pass
    r = d.file_residency(model)
    assert r.residency >= 0.95 and r.verdict == "warm"
    assert all(g.residency >= 0.95 for g in r.regions)
    j = mem_json("--evict", "--prefetch", str(model))
    assert j["residency"] >= 0.95 and j["prefetch_seconds"] > 0


def test_text_screen(model):
    r = subprocess.run([sys.executable, "-m", "llamacy", "mem", str(model)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "page cache:" in r.stdout and "region" in r.stdout and "blk.5" in r.stdout
    strip = next(line for line in r.stdout.splitlines() if line.startswith("["))
    assert len(strip) == d.STRIP_CELLS + 2


@pytest.mark.skipif(not LINUX, reason="PSS is Linux's")
def test_three_processes_share_one_copy(model):
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        from llamacy import GGUFFile
        f = GGUFFile({str(model)!r})
        for t in f.tensors.values():
            np.bitwise_xor.reduce(t.data.reshape(-1).view(np.uint8))
        print("ready", flush=True)
        sys.stdin.read()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        size = model.stat().st_size
        share = d.mapping_sharing(model, [p.pid for p in procs])
        assert len(share.processes) == 3
        for pm in share.processes:
            # the weights are not in anonymous memory (Python + numpy alone take ~20 MB of it)...
            assert pm.anonymous < 0.5 * size, pm
            assert pm.file_backed >= 0.9 * size and pm.mapping_rss >= 0.9 * size  # ...they are the file
        assert abs(share.total_pss - size) <= 0.10 * size  # ...and together they hold one copy
        j = mem_json("--pid", str(procs[0].pid), "--pid", str(procs[1].pid), "--pid", str(procs[2].pid), str(model))
        assert len(j["processes"]) == 3 and abs(j["total_pss"] - size) <= 0.10 * size
        found = {p["pid"] for p in mem_json("--all", str(model))["processes"]}
        assert found >= {p.pid for p in procs}
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=30)


def test_unknown_rule_never_reports_a_false_full_cache(model):
    """As a user who neither owns nor may write the file: a real figure (cachestat) or None
    (mincore would lie) -- never 100% for an evicted file."""
    if not LINUX or os.geteuid() != 0:
        pytest.skip("needs root to evict and then look as another user")
    d.evict(model)
    code = textwrap.dedent(f"""
        import json, os
        from llamacy import _diagnostics as d
        import llamacy._gguf, llamacy._gguf_scan
        os.setgid(65534); os.setuid(65534)
        r = d.file_residency({str(model)!r}, regions=False)
        print(json.dumps([r.residency, r.method]))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    residency, method = json.loads(r.stdout)
    assert residency is None or residency <= 0.05, (residency, method)
    if residency is None:
        assert "hidden" in method


def test_errors_are_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "llamacy", "mem", str(tmp_path / "none.gguf")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "none.gguf" in r.stderr


def test_watch_refreshes(model):
    p = subprocess.Popen([sys.executable, "-m", "llamacy", "mem", "--json", "--watch", "0.2", str(model)],
                         stdout=subprocess.PIPE, text=True)
    try:
        lines = [p.stdout.readline() for _ in range(2)]
        assert all(json.loads(line)["size"] == model.stat().st_size for line in lines)
    finally:
        p.terminate()
        p.wait(timeout=10)
