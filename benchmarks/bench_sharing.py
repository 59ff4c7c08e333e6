"""Sharing and warmness: N processes generating at once from one mapped model, and cold vs warm
time to first token -- llamacy against llama.cpp in the same run.

    python benchmarks/bench_sharing.py [--model tinyllama-1.1b:Q4_0] [--procs 1 2 4] [--gen 32]

For N = 1, 2, 4: N processes each load the model and generate --gen tokens concurrently, then
hold still while the parent sums their PSS (psutil memory_full_info) and the PSS of their
mappings of the model file. Time to first token is measured inside a fresh process, from after
the imports (before loading) to the first generated token of a 5-token prompt, after
`llamacy mem --evict` (cold) and again (warm).
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

WORKER = {
    "llamacy": """
import sys, time, json
from llamacy import Llama
t0 = time.perf_counter()  # after the imports: load + prompt + first token
llm = Llama(sys.argv[1], n_ctx=512, n_threads=int(sys.argv[3]), verbose=False)
ttft = None
for i, c in enumerate(llm("Once upon a time", max_tokens=int(sys.argv[2]), temperature=0, stream=True)):
    if ttft is None:
        ttft = time.perf_counter() - t0
print(json.dumps({"ttft": ttft}), flush=True)
sys.stdin.read()
""",
    "llama.cpp": """
import sys, time, json
from llama_cpp import Llama
t0 = time.perf_counter()
llm = Llama(model_path=sys.argv[1], n_ctx=512, n_threads=int(sys.argv[3]), verbose=False)
ttft = None
for c in llm("Once upon a time", max_tokens=int(sys.argv[2]), temperature=0, stream=True):
    if ttft is None:
        ttft = time.perf_counter() - t0
print(json.dumps({"ttft": ttft}), flush=True)
sys.stdin.read()
""",
}


def pythons() -> dict[str, str]:
    out = {"llamacy": sys.executable}
    if Path(LLAMA_CPP_PYTHON).exists():
        out["llama.cpp"] = LLAMA_CPP_PYTHON
    return out


def concurrent(engine: str, python: str, path: Path, n: int, gen: int, threads: int) -> dict:
    from llamacy import _diagnostics as d

    procs = [subprocess.Popen([python, "-c", WORKER[engine], str(path), str(gen), str(threads)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    try:
        info = [json.loads(p.stdout.readline()) for p in procs]
        share = d.mapping_sharing(path, [p.pid for p in procs])
        total_pss = sum(pm.pss or 0 for pm in share.processes)
        return {"n": n, "total_pss": total_pss, "file_pss": share.total_pss, "ttft": [i["ttft"] for i in info],
                "anon": [pm.anonymous for pm in share.processes]}
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=120)


def ttft(engine: str, python: str, path: Path, cold: bool, threads: int) -> float:
    from llamacy import _diagnostics as d

    if cold:
        d.evict(path)
    p = subprocess.Popen([python, "-c", WORKER[engine], str(path), "1", str(threads)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    out = json.loads(p.stdout.readline())
    p.stdin.close()
    p.wait(timeout=120)
    return out["ttft"]


def kv_bytes(path: Path, n_ctx: int = 512) -> int:
    """An f16 KV cache of n_ctx positions (both engines use f16 by default)."""
    from llamacy import GGUFFile
    from llamacy._model import LlamaConfig

    with GGUFFile(path) as f:
        c = LlamaConfig.from_gguf(f)
    return 2 * n_ctx * c.n_layers * c.kv_dim * 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tinyllama-1.1b:Q4_0")
    ap.add_argument("--procs", type=int, nargs="*", default=[1, 2, 4])
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    path = ensure(*a.model.split(":"))
    size = path.stat().st_size
    threads = max(1, (os.cpu_count() or 2) // 1)
    print(f"{path.name}: {size / 2**20:.0f} MiB; {threads} threads per process\n")
    print("| engine | processes | total PSS | PSS of the file's mappings | target: 1.2 x file + N x KV |"
          " anonymous per process |")
    print("|---|---|---|---|---|---|")
    for engine, py in pythons().items():
        for n in a.procs:
            r = concurrent(engine, py, path, n, a.gen, max(1, threads // n))
            target = 1.2 * size + n * kv_bytes(path)
            fp = "–" if r["file_pss"] is None else f"{r['file_pss'] / 2**20:.0f} MiB"
            print(f"| {engine} | {n} | {r['total_pss'] / 2**20:.0f} MiB ({r['total_pss'] / size:.2f} x file) | {fp} | "
                  f"{target / 2**20:.0f} MiB {'(met)' if r['total_pss'] <= target else '(missed)'} | "
                  f"{statistics.median(r['anon']) / 2**20:.0f} MiB |", flush=True)
    print("\n| engine | cold time to first token | warm | cold / warm |")
    print("|---|---|---|---|")
    for engine, py in pythons().items():
        cold = statistics.median(ttft(engine, py, path, True, threads) for _ in range(a.runs))
        ttft(engine, py, path, False, threads)
        warm = statistics.median(ttft(engine, py, path, False, threads) for _ in range(a.runs))
        print(f"| {engine} | {cold * 1e3:.0f} ms | {warm * 1e3:.0f} ms | {cold / warm:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
