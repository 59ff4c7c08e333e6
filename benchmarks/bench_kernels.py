"""The matrix products of one forward step, alone: every weight matrix of the model against T
token rows, in forward order, on each kernel set this CPU runs.

    python benchmarks/bench_kernels.py [--model tinyllama-1.1b:Q4_0] [--tokens 1 4 8] [--runs 9]

This isolates the kernels from attention, norms and Python: decode (T=1) should stream the
weights at the memory wall, batched steps (T=8) are compute-bound. Each kernel set runs in its
own process (LLAMACY_SIMD), figures are medians; llama.cpp has no comparable entry point, so the
end-to-end comparison is bench_generate.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from models import ensure  # noqa: E402

STEP = """
import json, statistics, sys, time
import numpy as np
from llamacy import GGUFFile, _matmul_kernels
from llamacy import _matmul as matmul
path, runs, Ts = sys.argv[1], int(sys.argv[2]), [int(t) for t in sys.argv[3].split(",")]
f = GGUFFile(path)
names = [n for n in f.tensors if n.startswith("blk.") and n.endswith(".weight") and len(f.tensors[n].shape) == 2]
names += ["output.weight"] if "output.weight" in f.tensors else []
mats = [(np.asarray(f.tensors[n].data).reshape(f.tensors[n].shape[0], -1), matmul.kernel_index(f.tensors[n].type),
         f.tensors[n].shape[1], f.tensors[n].shape[0]) for n in names]
total = sum(w.nbytes for w, *_ in mats)
out = {"kernels": matmul.simd_path(), "bytes": total, "steps": {}}
for T in Ts:
    xs = {n: np.random.default_rng(0).standard_normal((T, n)).astype(np.float32) for _, _, n, _ in mats}
    outs = [np.empty((T, r), np.float32) for *_, r in mats]
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        for (w, k, n, _), o in zip(mats, outs):
            _matmul_kernels.matmul(w, k, xs[n], o, 2)
        times.append(time.perf_counter() - t0)
    out["steps"][T] = statistics.median(times[1:])  # the first pass pages the weights in
print(json.dumps(out))
"""


def main() -> None:
    from llamacy import _matmul as matmul

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tinyllama-1.1b:Q4_0")
    ap.add_argument("--tokens", type=int, nargs="*", default=[1, 4, 8])
    ap.add_argument("--runs", type=int, default=9)
    a = ap.parse_args()
    path = ensure(*a.model.split(":"))
    print(f"{path.name}: every matrix product of one step, 2 threads, median of {a.runs}\n")
    print("| kernels | tokens per step | ms per step | tokens/s | weights streamed |")
    print("|---|---|---|---|---|")
    for simd in [s for s in matmul.available() if s != "scalar"] or ["scalar"]:
        env = {**__import__("os").environ, "LLAMACY_SIMD": simd}
        r = subprocess.run([sys.executable, "-c", STEP, str(path), str(a.runs), ",".join(map(str, a.tokens))],
                           capture_output=True, text=True, env=env, timeout=3600)
        if r.returncode:
            sys.exit(r.stderr[-2000:])
        res = json.loads(r.stdout.strip().splitlines()[-1])
        for T, sec in res["steps"].items():
            print(f"| {res['kernels']} | {T} | {sec * 1e3:.1f} | {int(T) / sec:.1f} | {res['bytes'] / sec / 1e9:.1f} GB/s |",
                  flush=True)


if __name__ == "__main__":
    main()
