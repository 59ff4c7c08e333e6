"""Aggregate generation throughput of `llamacy batch`: B = 1, 4, 8, 16 sequences per pass and
workers = 1, 2 processes, on the 1.1B Q4_0 random-weight model, 2 threads in total.

    python benchmarks/bench_batch.py [--model tinyllama-1.1b:Q4_0] [--prompts 32] [--gen 32]

Decode is bound by reading the weights; a batch of B reads each weight block once for B
tokens, so aggregate tokens/s should grow with B until compute becomes the limit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from models import ensure  # noqa: E402


def main() -> None:
    from llamacy import Request
    from llamacy import run_batch as run

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tinyllama-1.1b:Q4_0")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="threads in total")
    a = ap.parse_args()
    path = ensure(*a.model.split(":"))
    reqs = [Request(i, f"Story number {i}: once upon a time", i + 1) for i in range(a.prompts)]
    print(f"{path.name}: {a.prompts} prompts x {a.gen} tokens, {a.threads} threads in total, median of {a.runs}\n")
    print("| parallel (B) | workers | aggregate tok/s | vs B=1, 1 worker |")
    print("|---|---|---|---|")
    base = None
    for workers, parallel in [(1, 1), (1, 4), (1, 8), (1, 16), (2, 1), (2, 4), (2, 8)]:
        rates = []
        for _ in range(a.runs):
            with tempfile.TemporaryDirectory() as d:
                s = run(str(path), list(reqs), Path(d) / "out.jsonl", parallel=parallel, workers=workers,
                        n_threads=max(1, a.threads // workers), n_ctx=256, seed=1,
                        defaults={"max_tokens": a.gen, "temperature": 0})
                rates.append(s.tokens / s.seconds)
        r = statistics.median(rates)
        base = base or r
        print(f"| {parallel} | {workers} | {r:.1f} | {r / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
