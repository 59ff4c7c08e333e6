"""Load benchmark: warm open of a GGUF (mapping + header parse + every tensor's metadata and view)
against reading the file into memory, and against llama.cpp's own load, in one run.

    python benchmarks/bench_load.py                      # 1.1B and 7B, Q4_0/Q8_0/F16
    python benchmarks/bench_load.py --models llama-7b:Q4_0 --runs 7

Every number is the median over --runs fresh processes (the machine is shared and noisy), with
the page cache warm. llama.cpp is measured through llama-cpp-python when a Python that has it is
found ($LLAMA_CPP_PYTHON, default /opt/llcpp-venv/bin/python): it compiles for minutes, so it
lives in its own virtual environment, never in the test dependencies.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from models import ensure  # noqa: E402

LLAMA_CPP_PYTHON = os.environ.get("LLAMA_CPP_PYTHON", "/opt/llcpp-venv/bin/python")

ANON = """
def anon():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
"""

OPEN = ANON + """
import json, sys, time
from llamacy import GGUFFile
path = sys.argv[1]
a0 = anon()
t0 = time.perf_counter()
f = GGUFFile(path)
meta = [(t.name, t.type, t.shape, t.nbytes, t.offset, t.data.shape) for t in f.tensors.values()]
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "anon": anon() - a0, "tensors": len(meta)}))
"""

READ = ANON + """
import json, os, sys, time
path = sys.argv[1]
a0 = anon()
t0 = time.perf_counter()
buf = bytearray(os.path.getsize(path))
with open(path, "rb", buffering=0) as fh:
    view, n = memoryview(buf), 0
    while n < len(buf):
        k = fh.readinto(view[n:])
        if not k:
            break
        n += k
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "anon": anon() - a0}))
"""

LLAMA_CPP = ANON + """
import json, sys, time
from llama_cpp import Llama
path = sys.argv[1]
a0 = anon()
t0 = time.perf_counter()
m = Llama(model_path=path, n_ctx=256, n_threads=2, use_mmap=True, verbose=False)
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "anon": anon() - a0}))
"""


def run(python: str, code: str, path: Path) -> dict:
    r = subprocess.run([python, "-c", code, str(path)], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-1500:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def warm(path: Path) -> None:
    with open(path, "rb", buffering=0) as fh:
        while fh.read(64 << 20):
            pass


def median_of(python: str, code: str, path: Path, runs: int) -> dict:
    rs = [run(python, code, path) for _ in range(runs)]
    return {"seconds": statistics.median(r["seconds"] for r in rs),
            "anon": statistics.median(r["anon"] for r in rs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=[f"{s}:{t}" for s in ("tinyllama-1.1b", "llama-7b")
                                                     for t in ("Q4_0", "Q8_0", "F16")])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--read-runs", type=int, default=3)
    ap.add_argument("--no-llama-cpp", action="store_true")
    a = ap.parse_args()
    have_lc = not a.no_llama_cpp and Path(LLAMA_CPP_PYTHON).exists()
    rows = []
    for spec in a.models:
        shape, tname = spec.split(":")
        path = ensure(shape, tname)
        size = path.stat().st_size
        warm(path)
        o = median_of(sys.executable, OPEN, path, a.runs)
        warm(path)
        r = median_of(sys.executable, READ, path, a.read_runs)
        lc = None
        if have_lc:
            warm(path)
            lc = median_of(LLAMA_CPP_PYTHON, LLAMA_CPP, path, a.read_runs)
        row = {"model": f"{shape} {tname}", "size": size, "open_ms": o["seconds"] * 1e3,
               "open_anon": o["anon"], "read_ms": r["seconds"] * 1e3, "read_over_open": r["seconds"] / o["seconds"],
               "llama_cpp_ms": lc and lc["seconds"] * 1e3, "llama_cpp_anon": lc and lc["anon"],
               "llama_cpp_over_open": lc and lc["seconds"] / o["seconds"]}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    print("| model | file | llamacy warm open | anon growth (of file) | read() into memory | read / open |"
          " llama.cpp warm load | its anon growth | llama.cpp / llamacy |")
    print("|---|---|---|---|---|---|---|---|---|")
    for w in rows:
        lc = (f"{w['llama_cpp_ms']:.0f} ms | {w['llama_cpp_anon'] / 2**20:.0f} MiB | "
              f"{w['llama_cpp_over_open']:.0f}x") if w["llama_cpp_ms"] else "– | – | –"
        print(f"| {w['model']} | {w['size'] / 1e9:.2f} GB | {w['open_ms']:.2f} ms | "
              f"{w['open_anon'] / 2**20:.2f} MiB ({100 * w['open_anon'] / w['size']:.3f}%) | "
              f"{w['read_ms']:.0f} ms | {w['read_over_open']:.0f}x | {lc} |")


if __name__ == "__main__":
    main()
