"""Prefill and decode speed, llamacy against llama.cpp in the same run.

    python benchmarks/bench_generate.py                                   # 1.1B Q4_0 and Q8_0
    python benchmarks/bench_generate.py --models llama-7b:Q4_0 --threads 2

Both engines get the same random-weight GGUF (benchmarks/models.py), the same thread count, a
prompt of --prompt tokens (one batch) and --gen decode steps; every figure is the median of
--runs runs. The runs alternate between the engines (a fresh process per run, the order swapped
every round) and each ratio is the median of the rounds' ratios: this machine's memory bandwidth
drifts by tens of percent over minutes, which moved the ratio of back-to-back blocks of runs.
Decode is also given as weight bytes streamed per second against the rate at which this machine
reads the model file itself, measured just before the model's runs (benchmarks/read_rate.sh: 2
threads, the widest loads, median of 5 passes; without a C compiler, two numpy threads summing a
1 GiB array, which reads slower). llama.cpp runs through llama-cpp-python from $LLAMA_CPP_PYTHON
(default /opt/llcpp-venv/bin/python).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from models import ensure  # noqa: E402

LLAMA_CPP_PYTHON = os.environ.get("LLAMA_CPP_PYTHON", "/opt/llcpp-venv/bin/python")

LLAMACY = """
import json, sys, time
import numpy as np
from llamacy import GGUFFile
from llamacy._model import LlamaModel
path, threads, n_prompt, n_gen, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
f = GGUFFile(path)
m = LlamaModel(f, n_ctx=n_prompt + n_gen + 8, n_batch=512, n_threads=threads)
prompt = list(np.random.default_rng(0).integers(3, m.config.vocab_size, n_prompt))
m.forward(prompt[:8], 0)  # warm-up: page in the weights
pre, dec = [], []
for _ in range(runs):
    t0 = time.perf_counter(); logits = m.forward(prompt, 0); pre.append(time.perf_counter() - t0)
    tok = int(np.argmax(logits))
    t0 = time.perf_counter()
    for i in range(n_gen):
        tok = int(np.argmax(m.forward([tok], n_prompt + i)))
    dec.append(time.perf_counter() - t0)
print(json.dumps({"prefill": pre, "decode": dec}))
"""

LLAMA_CPP = """
import json, sys, time
import numpy as np
from llama_cpp import Llama
path, threads, n_prompt, n_gen, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
m = Llama(model_path=path, n_ctx=n_prompt + n_gen + 8, n_batch=512, n_threads=threads, n_threads_batch=threads,
          verbose=False)
prompt = [int(t) for t in np.random.default_rng(0).integers(3, m.n_vocab(), n_prompt)]
m.eval(prompt[:8]); m.reset()
pre, dec = [], []
for _ in range(runs):
    m.reset()
    t0 = time.perf_counter(); m.eval(prompt); pre.append(time.perf_counter() - t0)
    tok = int(np.argmax(m.scores[m.n_tokens - 1]))
    t0 = time.perf_counter()
    for i in range(n_gen):
        m.eval([tok]); tok = int(np.argmax(m.scores[m.n_tokens - 1]))
    dec.append(time.perf_counter() - t0)
print(json.dumps({"prefill": pre, "decode": dec}))
"""


def read_bandwidth(threads: int = 2, gib: float = 1.0) -> float:
    """Bytes/s of two threads summing a 1 GiB array (numpy releases the GIL in reductions): the
    median of 7 passes (a single pass here has been seen at up to twice the usual figure)."""
    a = np.ones(int(gib * 2**30) // 8, np.float64)
    parts = np.array_split(a, threads)
    rates = []
    for _ in range(7):
        ts = [threading.Thread(target=p.sum) for p in parts]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        rates.append(a.nbytes / (time.perf_counter() - t0))
    return statistics.median(rates)


def file_read_rate(path: Path, threads: int = 2) -> float | None:
    """Bytes/s at which `threads` threads read the mapped file (benchmarks/read_rate.sh, median of
    its passes), or None when it cannot be built here."""
    r = subprocess.run(["bash", str(HERE / "read_rate.sh"), str(path), str(threads)], capture_output=True, text=True,
                       timeout=600)
    rates = [float(line.split()[2]) for line in r.stdout.splitlines() if line.startswith("pass ")]
    return statistics.median(rates) * 1e9 if r.returncode == 0 and rates else None


def run(python: str, code: str, *args) -> dict:
    r = subprocess.run([python, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def streamed_bytes(path: Path) -> int:
    """Weight bytes read per decoded token: every matrix, one embedding row."""
    from llamacy import GGUFFile

    with GGUFFile(path) as f:
        total = sum(t.nbytes for t in f.tensors.values())
        if "output.weight" in f.tensors:
            total -= f.tensors["token_embd.weight"].nbytes
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["tinyllama-1.1b:Q4_0", "tinyllama-1.1b:Q8_0"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-llama-cpp", action="store_true")
    a = ap.parse_args()
    have_lc = not a.no_llama_cpp and Path(LLAMA_CPP_PYTHON).exists()
    fallback = None
    rows = []
    for spec in a.models:
        shape, tname = spec.split(":")
        path = ensure(shape, tname)
        bw = file_read_rate(path, a.threads)
        if bw is None:
            fallback = fallback or read_bandwidth(a.threads)
            bw = fallback
        print(f"{path.name}: read at {bw / 1e9:.1f} GB/s ({a.threads} threads)", file=sys.stderr)
        args = (path, a.threads, a.prompt, a.gen, 1)
        ours, theirs = {"prefill": [], "decode": []}, {"prefill": [], "decode": []}
        for i in range(a.runs):  # alternating rounds, the order swapped each time
            engines = [(ours, sys.executable, LLAMACY)] + ([(theirs, LLAMA_CPP_PYTHON, LLAMA_CPP)] if have_lc else [])
            for into, python, code in engines[:: 1 if i % 2 == 0 else -1]:
                r = run(python, code, *args)
                into["prefill"] += r["prefill"]
                into["decode"] += r["decode"]
        sb = streamed_bytes(path)

        def rates(r):
            return (a.prompt / statistics.median(r["prefill"]), a.gen / statistics.median(r["decode"]))

        pre, dec = rates(ours)
        row = {"model": f"{shape} {tname}", "prefill": pre, "decode": dec, "decode_bw": dec * sb / bw, "read": bw}
        if have_lc:
            lpre, ldec = rates(theirs)
            row.update(lc_prefill=lpre, lc_decode=ldec, lc_decode_bw=ldec * sb / bw,
                       prefill_ratio=statistics.median(t / o for o, t in zip(ours["prefill"], theirs["prefill"])),
                       decode_ratio=statistics.median(t / o for o, t in zip(ours["decode"], theirs["decode"])))
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    reads = ", ".join(f"{r['model']} {r['read'] / 1e9:.1f}" for r in rows)
    print(f"{a.threads} threads, prompt {a.prompt} tokens, {a.gen} decoded tokens, median of {a.runs} alternating "
          "rounds (ratios: median of the rounds' ratios); decode bandwidth: weight bytes per second against the "
          f"file's own read rate ({'numpy' if fallback else 'read_rate.sh'}, GB/s: {reads})\n")
    print("| model | llamacy prefill tok/s | llama.cpp prefill | ratio | llamacy decode tok/s | llama.cpp decode |"
          " ratio | llamacy decode bandwidth | llama.cpp decode bandwidth |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "lc_prefill" in r:
            print(f"| {r['model']} | {r['prefill']:.1f} | {r['lc_prefill']:.1f} | {r['prefill_ratio']:.2f}x "
                  f"| {r['decode']:.1f} | {r['lc_decode']:.1f} | {r['decode_ratio']:.2f}x "
                  f"| {100 * r['decode_bw']:.0f}% | {100 * r['lc_decode_bw']:.0f}% |")
        else:
            print(f"| {r['model']} | {r['prefill']:.1f} | – | – | {r['decode']:.1f} | – | – "
                  f"| {100 * r['decode_bw']:.0f}% | – |")


if __name__ == "__main__":
    main()
