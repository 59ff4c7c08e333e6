"""llamacy batch: exactness against one-at-a-time generation, resume after kill -9, bad input,
reproducibility across batch sizes and workers, and the Python API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from llamacy import BatchInputError, Llama, read_requests
from llamacy import run_batch as run
from llamacy._generate import derive_seed

PROMPTS = ["Once upon a time", "One day", "", "The dog", "Lily went to the", "Tom and Sue", "The sun was",
           "She said"]


def batch(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llamacy", "batch", *args], capture_output=True, text=True,
                          timeout=300, **kw)


def records(path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        assert rec["id"] not in out, f"id {rec['id']} twice"
        out[rec["id"]] = rec
    return out


@pytest.fixture(scope="module")
def llm(stories_gguf):
    with Llama(str(stories_gguf), verbose=False) as m:
        yield m


def test_batched_greedy_equals_one_at_a_time(stories_gguf, llm, tmp_path):
    single = [llm(p, max_tokens=40, temperature=0)["choices"][0]["text"] for p in PROMPTS]
    (tmp_path / "in.txt").write_text("\n".join(PROMPTS) + "\n")
    for parallel in ("1", "3", "8"):
        out = tmp_path / f"out{parallel}.jsonl"
        r = batch("-m", str(stories_gguf), str(tmp_path / "in.txt"), "-o", str(out), "-n", "40", "--temp", "0",
                  "--parallel", parallel, "-b", "7")  # small batches: prompts are fed in pieces
        assert r.returncode == 0, r.stderr
        recs = records(out)
        assert sorted(recs) == list(range(1, len(PROMPTS) + 1))
        assert [recs[i + 1]["text"] for i in range(len(PROMPTS))] == single
        rec = recs[1]
        assert rec["prompt"] == PROMPTS[0] and rec["finish_reason"] == "length" and rec["completion_tokens"] == 40
        assert rec["prompt_tokens"] == 5 and isinstance(rec["seed"], int) and "seconds" in rec["timings"]
    comps = llm.create_completions(PROMPTS, max_tokens=40, temperature=0, parallel=4)
    assert [c["choices"][0]["text"] for c in comps] == single
    assert comps[0]["object"] == "text_completion" and comps[0]["usage"]["completion_tokens"] == 40


def test_seeded_texts_do_not_depend_on_batching_or_workers(stories_gguf, tmp_path):
    (tmp_path / "in.txt").write_text("\n".join(PROMPTS) + "\n")
    texts = []
    for extra in (["--parallel", "1"], ["--parallel", "5"], ["--parallel", "2", "--workers", "2"]):
        out = tmp_path / f"out{'-'.join(extra)}.jsonl"
        r = batch("-m", str(stories_gguf), str(tmp_path / "in.txt"), "-o", str(out), "-n", "24", "--temp", "0.9",
                  "-s", "77", "-t", "1", *extra)
        assert r.returncode == 0, r.stderr
        recs = records(out)
        texts.append({i: recs[i]["text"] for i in recs})
        assert all(recs[i]["seed"] == derive_seed(77, i) for i in recs)
    assert texts[0] == texts[1] == texts[2]
    assert len(set(texts[0].values())) > 4


def test_resume_after_kill(stories_gguf, tmp_path):
    prompts = [f"{p} {i}" for i in range(6) for p in PROMPTS[:5]]
    (tmp_path / "in.txt").write_text("\n".join(prompts) + "\n")
    args = ["-m", str(stories_gguf), str(tmp_path / "in.txt"), "-n", "60", "--temp", "0", "--parallel", "2",
            "-t", "1", "--quiet"]
    whole = tmp_path / "whole.jsonl"
    assert batch(*args, "-o", str(whole)).returncode == 0
    out = tmp_path / "killed.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "llamacy", "batch", *args, "-o", str(out)])
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 5):
        time.sleep(0.02)
    os.kill(p.pid, getattr(signal, "SIGKILL", signal.SIGTERM))  # Windows: TerminateProcess
    p.wait()
    n_before = len(out.read_text().splitlines())
    assert 5 <= n_before < len(prompts), "the run should have been killed midway"
    with open(out, "a") as fh:
        fh.write('{"id": 999, "prompt": "half a rec')  # what a kill in mid-write would leave
    r = batch(*args, "-o", str(out))
    assert r.returncode == 0, r.stderr
    got, want = records(out), records(whole)
    assert sorted(got) == sorted(want) == list(range(1, len(prompts) + 1))
    assert {i: got[i]["text"] for i in got} == {i: want[i]["text"] for i in want}
    # and a third run has nothing left to do
    r = batch(*args[:-1], "-o", str(out))
    assert r.returncode == 0 and "0 written" in r.stderr and f"{len(prompts)} already done" in r.stderr


def test_jsonl_options_errors_and_skip_bad(stories_gguf, tmp_path):
    lines = [
        {"id": "a", "prompt": "Once upon a time", "max_tokens": 5, "temperature": 0},
        {"id": "b", "prompt": "One day", "stop": [","], "temperature": 0},
        {"id": "c", "prompt": ""},
        {"id": "long", "prompt": "word " * 600},
        {"id": "d", "prompt": "The dog", "seed": 5, "temperature": 1.0, "max_tokens": 8},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = tmp_path / "out.jsonl"
    r = batch("-m", str(stories_gguf), str(src), "-o", str(out), "-n", "20", "-c", "256")
    assert r.returncode == 0, r.stderr
    recs = records(out)
    assert recs["a"]["completion_tokens"] == 5
    assert recs["b"]["finish_reason"] == "stop" and "," not in recs["b"]["text"]
    assert recs["c"]["prompt"] == "" and recs["c"]["completion_tokens"] == 20
    assert recs["long"]["finish_reason"] == "error" and "exceed context window of 256" in recs["long"]["error"]
    assert recs["d"]["seed"] == 5

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(lines[0]) + "\n{not json\n" + json.dumps(lines[1]) + "\n")
    r = batch("-m", str(stories_gguf), str(bad), "-o", str(tmp_path / "x.jsonl"))
    assert r.returncode == 2 and "line 2" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.jsonl").exists()  # nothing done
    r = batch("-m", str(stories_gguf), str(bad), "-o", str(tmp_path / "y.jsonl"), "--skip-bad", "-n", "4")
    assert r.returncode == 0, r.stderr
    recs = records(tmp_path / "y.jsonl")
    assert recs[2]["finish_reason"] == "error" and "line 2" in recs[2]["error"]
    assert recs["a"]["finish_reason"] == "length"


def test_duplicate_ids_fail_before_any_work(stories_gguf, tmp_path):
    src = tmp_path / "dup.jsonl"
    src.write_text('{"id": 1, "prompt": "a"}\n{"id": 2, "prompt": "b"}\n{"id": 1, "prompt": "c"}\n')
    with pytest.raises(BatchInputError, match="line 3: duplicate id 1"):
        read_requests(src)
    r = batch("-m", str(stories_gguf), str(src), "-o", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and "duplicate id" in r.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_stdin_and_python_run(stories_gguf, tmp_path):
    r = batch("-m", str(stories_gguf), "-", "-o", str(tmp_path / "s.jsonl"), "-n", "3", input="hello\nworld\n")
    assert r.returncode == 0, r.stderr
    assert sorted(records(tmp_path / "s.jsonl")) == [1, 2]
    (tmp_path / "in.txt").write_text("a\nb\n")
    seen = []
    s = run(str(stories_gguf), tmp_path / "in.txt", tmp_path / "r.jsonl", parallel=2,
            defaults={"max_tokens": 4, "temperature": 0}, on_record=seen.append)
    assert s.written == len(seen) == 2 and s.errors == 0 and s.tokens == 8
