"""The llamacy command: output, --json, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llamacy", *args], capture_output=True, text=True,
                          timeout=120, **kw)


def test_info_text(stories_gguf):
    r = run("info", str(stories_gguf))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "llama (stories260K)" in out
    assert "embedding_length                   64" in out
    assert "tokenizer   llama, 512 tokens (bos=1, eos=2, unknown=0)" in out
    assert "tensors     47" in out and "F32" in out
    assert "page cache" in out and "% resident" in out


def test_info_json(stories_gguf):
    r = run("info", "--json", str(stories_gguf))
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["architecture"] == "llama"
    assert s["version"] == 3 and s["alignment"] == 32
    assert s["file_size"] == stories_gguf.stat().st_size
    assert s["hyperparameters"]["block_count"] == 5
    assert s["hyperparameters"]["attention.head_count_kv"] == 4
    assert s["tokenizer"] == {"model": "llama", "vocab_size": 512, "bos_token_id": 1, "eos_token_id": 2,
                              "unknown_token_id": 0}
    assert s["tensor_count"] == 47 and s["tensor_types"]["F32"]["count"] == 47
    assert 0.0 <= s["residency"] <= 1.0
    assert s["system"]["mapping"] in ("posix", "win32")


def test_errors_are_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x01\x00\x00\x00" + b"\x00" * 16)
    for args, needle in [(("info", str(tmp_path / "missing.gguf")), "No such file"),
                         (("info", str(bad)), "GGUFv1 is no longer supported"),
                         (("info", str(tmp_path)), "directory"),
                         (("info",), "required"),
                         (("frobnicate",), "invalid choice")]:
        r = run(*args)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert needle in lines[0]
        assert "Traceback" not in r.stderr
