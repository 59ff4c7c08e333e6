"""Bigger than RAM: generate 4 tokens from a 7B random-weight model inside a 2 GiB memory limit
(a cgroup; needs root), and the same for llama.cpp and for plain read().

    sudo python benchmarks/bench_bigger_than_ram.py [--limit-gib 2] [--model llama-7b:Q4_0]
    sudo python benchmarks/bench_bigger_than_ram.py --model llama-7b:Q2_K     # llama.cpp's Q2_K mix, 2.5 GB
    sudo python benchmarks/bench_bigger_than_ram.py --model llama-7b:Q3_K_M   # llama.cpp's Q3_K_M mix, 3.3 GB
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
import memlimit  # noqa: E402
from models import ensure  # noqa: E402

LLAMA_CPP_PYTHON = os.environ.get("LLAMA_CPP_PYTHON", "/opt/llcpp-venv/bin/python")

LLAMACY = """
import sys, time
import numpy as np
from llamacy import GGUFFile
from llamacy._model import LlamaModel
m = LlamaModel(GGUFFile(sys.argv[1]), n_ctx=64, n_threads=2)
t0 = time.perf_counter()
logits = m.forward([1, 450, 4996, 17354], 0)
out = []
for i in range(4):
    tok = int(np.argmax(logits)); out.append(tok)
    logits = m.forward([tok], 4 + i)
print(out, f"{time.perf_counter() - t0:.1f}s")
"""

LLAMA_CPP = """
import sys, time
from llama_cpp import Llama
m = Llama(model_path=sys.argv[1], n_ctx=64, n_threads=2, verbose=False)
t0 = time.perf_counter()
r = m.create_completion([1, 450, 4996, 17354], max_tokens=4, temperature=0)
print(repr(r["choices"][0]["text"]), f"{time.perf_counter() - t0:.1f}s")
"""

READ = "import sys; d = open(sys.argv[1], 'rb').read(); print(len(d))"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="llama-7b:Q4_0")
    ap.add_argument("--limit-gib", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=900, help="seconds per engine before it counts as stuck")
    a = ap.parse_args()
    why = memlimit.available()
    if why:
        sys.exit(f"cannot create a memory limit: {why}")
    path = ensure(*a.model.split(":"))
    limit = int(a.limit_gib * 2**30)
    print(f"{path.name}: {path.stat().st_size / 1e9:.2f} GB, limit {a.limit_gib} GiB\n")
    print("| engine | outcome | time | peak memory charged |")
    print("|---|---|---|---|")
    runs = [("llamacy", sys.executable, LLAMACY), ("plain read()", sys.executable, READ)]
    if Path(LLAMA_CPP_PYTHON).exists():
        runs.insert(1, ("llama.cpp (llama-cpp-python 0.3.36)", LLAMA_CPP_PYTHON, LLAMA_CPP))
    from llamacy import MappedFile

    for name, py, code in runs:
        # Cold start: pages already cached were charged to another cgroup and would not count here.
        with MappedFile(path) as mf:
            mf.evict()
        try:
            r = memlimit.run_limited([py, "-c", code, str(path)], limit, timeout=a.timeout)
        except subprocess.TimeoutExpired:
            print(f"| {name} | not finished (killed after {a.timeout:.0f} s) | {a.timeout:.0f} s | – |", flush=True)
            continue
        outcome = ("OOM-killed" if r.oom_killed else f"exit {r.returncode}") if r.returncode else "finished: " + \
            r.stdout.strip().splitlines()[-1]
        peak = f"{r.peak_bytes / 2**30:.2f} GiB" if r.peak_bytes else "–"
        print(f"| {name} | {outcome} | {r.seconds:.1f} s | {peak} |", flush=True)


if __name__ == "__main__":
    main()
