"""Hostile files, misuse and concurrency: one regression test per defect class of issue 14.

Metadata of the wrong type or out of range, a model file truncated or overwritten while mapped,
unbounded allocations, batch records that used to abort or corrupt a run, concurrent use of one
Llama or one output file, and API calls that used to return silently wrong results.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import DATA, STORIES_GGUF
from fuzz.gguf_fuzz import ARR, F32, KV, STR, U32, U64, decode, encode

from llamacy import (
    GGUFError,
    InvalidRequestError,
    Llama,
    LlamacyError,
    ModelError,
    ModelFileChangedError,
    ResourceError,
    TokenizerError,
)
from llamacy._cli import main as cli_main


def _mutant(tmp_path: Path, change) -> Path:
    """stories260K with one structural change made by change(model)."""
    m = decode(STORIES_GGUF.read_bytes())
    change(m)
    path = tmp_path / "m.gguf"
    path.write_bytes(encode(m))
    return path


def _set(key: bytes, vtype: int, value):
    def change(m):
        kv = next((k for k in m.kvs if k.key == key), None)
        if kv is None:
            m.kvs.append(KV(key, vtype, value))
        else:
            kv.vtype, kv.value = vtype, value
    return change


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llamacy", *args], capture_output=True, text=True, timeout=300,
                          **kw)


# ---- 1. metadata of the wrong type, NaN/inf, out of range ----------------------------------------
METADATA_CASES = [
    ("context_length inf", _set(b"llama.context_length", F32, float("inf")), ModelError, "context_length"),
    ("head_count array", _set(b"llama.attention.head_count", ARR, (U32, [8, 8])), ModelError, "head_count"),
    ("tokens u64", _set(b"tokenizer.ggml.tokens", U64, 7), TokenizerError, "tokenizer.ggml.tokens"),
    ("bos 2^31", _set(b"tokenizer.ggml.bos_token_id", U32, 2**31), TokenizerError, "bos_token_id"),
    ("bos = vocab size", _set(b"tokenizer.ggml.bos_token_id", U32, 512), TokenizerError, "bos_token_id"),
    ("block_count -1", _set(b"llama.block_count", 5, -1), ModelError, "block_count"),  # 5: INT32
    ("rms eps nan", _set(b"llama.attention.layer_norm_rms_epsilon", F32, float("nan")), ModelError, "epsilon"),
    ("architecture array", _set(b"general.architecture", ARR, (STR, [b"llama"])), ModelError, "architecture"),
]


@pytest.mark.parametrize("change,error,key", [c[1:] for c in METADATA_CASES], ids=[c[0] for c in METADATA_CASES])
def test_bad_metadata_is_a_clear_error_naming_the_key(tmp_path, change, error, key):
    path = _mutant(tmp_path, change)
    with pytest.raises(error, match=key):
        Llama(str(path), n_ctx=0, verbose=False)
    r = _cli("generate", "-m", str(path), "-p", "x", "-n", "2", "-c", "0")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and key in r.stderr, r.stderr


def test_a_corrupt_byte_piece_is_named(tmp_path):
    def change(m):
        tokens = next(k for k in m.kvs if k.key == b"tokenizer.ggml.tokens")
        items = list(tokens.value[1])
        items[33] = b"<0x4\xff>"
        tokens.value = (STR, items)
    with pytest.raises(TokenizerError, match=r"tokens\[33\] is not valid UTF-8"):
        Llama(str(_mutant(tmp_path, change)), verbose=False)


def test_info_json_stays_standard_json_with_odd_metadata(tmp_path):
    path = _mutant(tmp_path, lambda m: (_set(b"general.name", ARR, (STR, [b"a", b"b"]))(m),
                                        _set(b"llama.rope.freq_base", F32, float("nan"))(m)))
    r = _cli("info", "--json", str(path))
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert s["name"] is None and s["hyperparameters"]["rope.freq_base"] is None


def test_vocabulary_and_embedding_must_agree(tmp_path):
    """513 embedding rows for 512 tokens: sampling could pick a token that has no text (the
    partial-text-then-IndexError defect). The tensor moves to the end of the data, one row longer."""
    m = decode(STORIES_GGUF.read_bytes())
    for name in (b"token_embd.weight", b"output.weight"):
        t = next((t for t in m.tensors if t.name == name), None)
        if t is None:
            continue
        dim, rows = t.dims
        old = m.data[t.offset:t.offset + 4 * dim * rows]
        t.offset = -(-len(m.data) // 32) * 32
        m.data = m.data + b"\0" * (t.offset - len(m.data)) + old + b"\0" * 4 * dim
        t.dims = [dim, rows + 1]
    path = tmp_path / "m.gguf"
    path.write_bytes(encode(m))
    with pytest.raises(ModelError, match="512 tokens but token_embd.weight has 513 rows"):
        Llama(str(path), verbose=False)


# ---- 2. the model file truncated or overwritten while mapped ---------------------------------------
def test_a_file_truncated_between_steps_is_an_error(tmp_path):
    path = tmp_path / "m.gguf"
    shutil.copy(STORIES_GGUF, path)
    with Llama(str(path), verbose=False) as llm:
        assert llm("Once", max_tokens=3, temperature=0)["choices"][0]["text"]
        os.truncate(path, 500_000)
        with pytest.raises(ModelFileChangedError, match="renaming it over"):
            llm("Once", max_tokens=3, temperature=0)


def test_a_file_replaced_by_rename_keeps_working(tmp_path):
    path = tmp_path / "m.gguf"
    shutil.copy(STORIES_GGUF, path)
    with Llama(str(path), verbose=False) as llm:
        before = llm("Once", max_tokens=8, temperature=0)["choices"][0]["text"]
        new = tmp_path / "new.gguf"
        new.write_bytes(b"GGUF" + b"\0" * 100)  # anything: the mapping keeps the old file
        os.replace(new, path)
        assert llm("Once", max_tokens=8, temperature=0)["choices"][0]["text"] == before


@pytest.mark.skipif(sys.platform == "win32", reason="Windows refuses to truncate a mapped file")
def test_sigbus_inside_the_mapping_names_the_file(tmp_path):
    path = tmp_path / "m.gguf"
    shutil.copy(STORIES_GGUF, path)
    code = ("import os, sys, numpy as np\n"
            "from llamacy import GGUFFile\n"
            f"f = GGUFFile({str(path)!r})\n"
            f"os.truncate({str(path)!r}, 4096)\n"
            "print(np.asarray(f.tensors['output_norm.weight'].data).sum())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == -signal.SIGBUS
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("llamacy: SIGBUS reading byte ") and str(path) in lines[0], r.stderr
    assert "truncated or overwritten while mapped" in lines[0]


# ---- 3. unbounded allocations ----------------------------------------------------------------------
def test_huge_contexts_threads_and_slots_are_refused_up_front(tmp_path):
    for args in (["-c", "100000000"], ["-t", "1000"]):
        r = _cli("generate", "-m", str(STORIES_GGUF), "-p", "x", "-n", "2", *args)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    declared = _mutant(tmp_path, _set(b"llama.context_length", U32, 2**31 - 1))  # then -c 0 asks for it all
    with pytest.raises(ResourceError, match="KV cache"):
        Llama(str(declared), n_ctx=0, verbose=False)
    with Llama(str(STORIES_GGUF), verbose=False) as llm:
        with pytest.raises(ResourceError, match="parallel"):
            llm.create_completions(["a"], parallel=10**6)
        assert llm("Once", max_tokens=2)["choices"]  # and the Llama still works


# ---- 4. batch ----------------------------------------------------------------------------------------
def _batch(src: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return _cli("batch", "-m", str(STORIES_GGUF), str(src), "-o", str(out), "-n", "8", "--temp", "0", "--quiet",
                *extra)


def test_bad_record_options_are_input_errors_not_crashes(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "prompt": "Once"}\n'
                   '{"id": 2, "prompt": "One day", "max_tokens": 1e400}\n'
                   '{"id": 3, "prompt": "A cat", "top_k": 2.5}\n'
                   '{"id": 4, "prompt": "A dog", "seed": "x"}\n'
                   '{"id": 5, "prompt": "Lily", "temperature": NaN}\n')
    r = _batch(src, tmp_path / "a.jsonl")
    assert r.returncode == 2 and "line 2" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = _batch(src, tmp_path / "b.jsonl", "--skip-bad")
    assert r.returncode == 0, r.stderr
    recs = {rec["id"]: rec for rec in map(json.loads, (tmp_path / "b.jsonl").read_text().splitlines())}
    assert recs[1]["finish_reason"] in ("stop", "length")
    for rid, what in ((2, "max_tokens"), (3, "top_k"), (4, "seed"), (5, "temperature")):
        assert recs[rid]["finish_reason"] == "error" and what in recs[rid]["error"], recs[rid]


def test_nan_ids_are_refused_and_output_is_standard_json(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": NaN, "prompt": "Once"}\n{"id": [1], "prompt": "x"}\n')
    r = _batch(src, tmp_path / "o.jsonl")
    assert r.returncode == 2 and '"id" must be a string or an integer' in r.stderr


def test_a_lone_surrogate_prompt_is_written_and_resumable(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "s", "prompt": "\\ud800 once"}\n{"id": "t", "prompt": "Once"}\n')
    out = tmp_path / "o.jsonl"
    r = _batch(src, out)
    assert r.returncode == 0, r.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and {json.loads(x)["id"] for x in lines} == {"s", "t"}
    r = _batch(src, out)  # the resume reads it back: nothing to do
    assert r.returncode == 0 and len(out.read_text().splitlines()) == 2


def test_a_second_batch_run_on_the_same_output_is_refused(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("".join(f"prompt {i}\n" for i in range(40)))
    out = tmp_path / "o.jsonl"
    first = subprocess.Popen([sys.executable, "-m", "llamacy", "batch", "-m", str(STORIES_GGUF), str(src), "-o",
                              str(out), "-n", "64", "--temp", "0", "--quiet", "--parallel", "1"],
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while (not out.exists() or not out.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)  # the first run holds the lock once it writes
    second = _batch(src, out)
    assert second.returncode == 2 and "another llamacy batch run" in second.stderr, second.stderr
    assert first.wait(timeout=300) == 0, first.stderr.read()
    ids = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert sorted(ids) == list(range(1, 41))  # every record once


def test_a_failed_worker_start_is_an_error_not_success(tmp_path, real_vocab):
    src = tmp_path / "in.txt"
    src.write_text("a\nb\n")
    out = tmp_path / "o.jsonl"
    r = _cli("batch", "-m", str(real_vocab("gpt-2")), str(src), "-o", str(out), "--workers", "2", "--quiet")
    assert r.returncode == 2 and r.stderr.startswith("llamacy: error:") and "could not start" in r.stderr
    assert not out.exists() or out.read_text() == ""


def test_a_closed_stdout_reader_is_not_an_error():
    p = subprocess.Popen(f"{sys.executable} -m llamacy generate -m {STORIES_GGUF} -p Once -n 300 --temp 0 --quiet "
                         "| head -c 5", shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=120)
    assert len(out) == 5 and b"Traceback" not in err and b"error" not in err


# ---- 5. API misuse -------------------------------------------------------------------------------------
def test_one_llama_from_two_threads_is_serialized():
    with Llama(str(STORIES_GGUF), verbose=False) as llm:
        want = {p: llm(p, max_tokens=24, temperature=0)["choices"][0]["text"] for p in ("Once upon", "One day")}
        got: dict[str, list[str]] = {p: [] for p in want}

        def work(p: str) -> None:
            for _ in range(4):
                got[p].append(llm(p, max_tokens=24, temperature=0)["choices"][0]["text"])

        threads = [threading.Thread(target=work, args=(p,)) for p in want]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert got == {p: [want[p]] * 4 for p in want}


def test_a_stream_interrupted_by_another_call_raises():
    with Llama(str(STORIES_GGUF), verbose=False) as llm:
        stream = llm("Once upon a time", max_tokens=30, temperature=0, stream=True)
        next(stream)
        llm("One day", max_tokens=2)
        with pytest.raises(InvalidRequestError, match="while the stream was open"):
            list(stream)


def test_api_misuse_is_refused():
    with Llama(str(STORIES_GGUF), verbose=False) as llm:
        with pytest.raises(InvalidRequestError, match="temperature"):
            llm("Once", temperature=float("nan"))
        for bad in ([-1], [512], [1.0], ["5"]):
            with pytest.raises(LlamacyError):
                llm.detokenize(bad)
        for bad in ([1, 2.0], [1, "3"], [1, 10**6]):
            with pytest.raises(InvalidRequestError):
                llm(bad, max_tokens=2)
            with pytest.raises(InvalidRequestError):
                llm.create_completions([bad], max_tokens=2)
        assert llm("Once", max_tokens=8, temperature=0, stop="")["choices"][0]["text"]  # "" stops nothing
        assert llm("Once", max_tokens=8, temperature=0, stop=["", "zzz"])["choices"][0]["finish_reason"] == "length"


# ---- 6. mem and non-UTF-8 prompts ----------------------------------------------------------------------
def test_mem_refuses_directories_and_names_non_gguf_files(tmp_path):
    r = _cli("mem", str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "directory" in r.stderr.lower()
    other = tmp_path / "notes.txt"
    other.write_text("hello\n")
    r = _cli("mem", str(other))
    assert r.returncode == 0 and "not a GGUF file" in r.stdout
    assert json.loads(_cli("mem", "--json", str(other)).stdout)["gguf"] is False


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_mem_on_an_unreadable_file_is_one_line(tmp_path):
    locked = tmp_path / "locked.gguf"
    shutil.copy(STORIES_GGUF, locked)
    os.chmod(locked, 0o000)
    become = "os.setgid(65534); os.setuid(65534)" if os.geteuid() == 0 else ""
    code = (f"import os, sys, locale, json, errno\nfrom llamacy import _diagnostics, _render\n"  # before setuid: root's
            f"from llamacy._cli import main, build_parser\nbuild_parser()\n{become}\n"  # stdlib is not readable
            f"sys.exit(main(['mem', {str(locked)!r}]))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Permission denied" in r.stderr and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX argv bytes")
def test_a_non_utf8_prompt_is_read_as_bytes(tmp_path):
    raw = b"Once \xff upon a time"
    r = subprocess.run([sys.executable.encode(), b"-m", b"llamacy", b"generate", b"-m", os.fsencode(STORIES_GGUF),
                        b"-p", raw, b"-n", b"8", b"--temp", b"0", b"--json"], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (tmp_path / "p.txt").write_bytes(raw)
    r2 = _cli("generate", "-m", str(STORIES_GGUF), "-f", str(tmp_path / "p.txt"), "-n", "8", "--temp", "0", "--json")
    assert r2.returncode == 0 and json.loads(r2.stdout)["text"] == json.loads(r.stdout)["text"]
    with Llama(str(STORIES_GGUF), verbose=False) as llm:  # the U+FFFD llama.cpp reads for the bad byte
        assert llm.tokenize(raw) == llm.tokenize("Once \ufffd upon a time".encode())


def test_malformed_files_stay_gguf_errors_through_the_cli(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(STORIES_GGUF.read_bytes()[:1000])
    with pytest.raises(GGUFError):
        Llama(str(bad), verbose=False)
    assert cli_main(["info", str(bad)]) == 2
    assert DATA.exists()
