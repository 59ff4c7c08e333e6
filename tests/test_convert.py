"""llama2.c checkpoints to GGUF: the shared stories260K files, and malformed inputs."""

from __future__ import annotations

import struct
import subprocess
import sys

import numpy as np
import pytest
from conftest import MODELS, REFERENCE_TEXT

from llamacy import ConversionError, GGUFFile, Llama
from llamacy._convert import convert_llama2c


def test_converts_stories260k_to_the_reference_gguf(tmp_path, stories_gguf):
    out = convert_llama2c(MODELS / "stories260K.bin", MODELS / "tok512.bin", tmp_path / "s.gguf")
    with GGUFFile(out) as a, GGUFFile(stories_gguf) as b:
        assert list(a.tensors) == list(b.tensors)
        for name, t in b.tensors.items():
            assert a.tensors[name].shape == t.shape
            np.testing.assert_array_equal(a.tensors[name].data, t.data)
        for k in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            assert list(a.metadata[k]) == list(b.metadata[k]), k
        assert set(a.metadata) == set(b.metadata)
    with Llama(str(out), verbose=False) as llm:
        text = llm("", max_tokens=200, temperature=0)["choices"][0]["text"]
    ref = REFERENCE_TEXT
    assert ref.startswith(text) and len(text) > 300


def test_cli_convert(tmp_path):
    r = subprocess.run([sys.executable, "-m", "llamacy", "convert", "llama2c", str(MODELS / "stories260K.bin"),
                        str(MODELS / "tok512.bin"), "-o", str(tmp_path / "c.gguf")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "c.gguf").read_bytes() == (MODELS / "stories260K.gguf").read_bytes()


def test_malformed_checkpoints(tmp_path):
    data = (MODELS / "stories260K.bin").read_bytes()
    cases = {
        "short.bin": data[:20],
        "truncated.bin": data[:-4],
        "longer.bin": data + b"\0" * 8,
        "negative.bin": struct.pack("<7i", 64, -172, 5, 8, 4, 512, 512) + data[28:],
        "heads.bin": struct.pack("<7i", 64, 172, 5, 7, 4, 512, 512) + data[28:],
    }
    messages = {"short.bin": "too short", "truncated.bin": "needs", "longer.bin": "needs",
                "negative.bin": "hidden_dim=-172", "heads.bin": "do not divide"}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ConversionError, match=messages[name]):
            convert_llama2c(tmp_path / name, MODELS / "tok512.bin", tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()
    (tmp_path / "tok.bin").write_bytes((MODELS / "tok512.bin").read_bytes()[:100])
    with pytest.raises(ConversionError, match="tok.bin"):
        convert_llama2c(MODELS / "stories260K.bin", tmp_path / "tok.bin", tmp_path / "out.gguf")
    r = subprocess.run([sys.executable, "-m", "llamacy", "convert", "llama2c", str(tmp_path / "short.bin"),
                        str(MODELS / "tok512.bin"), "-o", str(tmp_path / "o.gguf")], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "too short" in r.stderr
