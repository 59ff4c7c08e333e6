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
    assert s["tokenizer"] == {"model": "llama", "pre": None, "vocab_size": 512, "chat_template": False,
                              "bos_token_id": 1, "eos_token_id": 2, "unknown_token_id": 0}
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


def test_generate_streams_only_text(stories_gguf):
    from conftest import REFERENCE_TEXT

    ref = REFERENCE_TEXT
    r = run("generate", "-m", str(stories_gguf), "-n", "40", "--temp", "0", "-t", "1")
    assert r.returncode == 0, r.stderr
    assert ref.startswith(r.stdout.rstrip("\n")) and len(r.stdout) > 60
    assert "llamacy: memory: model" in r.stderr
    timing = r.stderr.strip().splitlines()[-1]
    assert "load" in timing and "prompt 1 tokens" in timing and "generated 40 tokens" in timing
    q = run("generate", "-m", str(stories_gguf), "-n", "40", "--temp", "0", "--quiet")
    assert q.stdout == r.stdout and q.stderr == ""


def test_generate_prompt_file_and_json(stories_gguf, tmp_path):
    p = tmp_path / "prompt.txt"
    p.write_text("Once upon a time")
    r = run("generate", "-m", str(stories_gguf), "-f", str(p), "-n", "8", "-s", "3", "--json")
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["completion_tokens"] == 8 and rec["prompt_tokens"] == 5 and rec["seed"] == 3
    assert rec["finish_reason"] == "length" and isinstance(rec["text"], str)
    again = json.loads(run("generate", "-m", str(stories_gguf), "-f", str(p), "-n", "8", "-s", "3", "--json").stdout)
    assert again["text"] == rec["text"]


def test_generate_errors(stories_gguf, tmp_path):
    m = str(stories_gguf)
    for args, needle in [(("generate", "-m", str(tmp_path / "no.gguf")), "No such file"),
                         (("generate",), "required"),
                         (("generate", "-m", m, "-n", "abc"), "invalid int"),
                         (("generate", "-m", m, "-t", "0"), "--threads must be at least 1"),
                         (("generate", "-m", m, "--top-p", "3"), "top_p"),
                         (("generate", "-m", m, "-f", str(tmp_path / "none.txt")), "none.txt"),
                         (("generate", "-m", m, "-p", "x", "-f", "y"), "not both")]:
        r = run(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, (args, r.stderr)
