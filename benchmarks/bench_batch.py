"""Aggregate generation throughput of `llamacy batch`: B = 1, 4, 8, 16 sequences per pass and
workers = 1, 2 processes, on the 1.1B Q4_0 random-weight model, 2 threads in total.

    python benchmarks/bench_batch.py [--model tinyllama-1.1b:Q4_0] [--prompts 32] [--gen 32]
    python benchmarks/bench_batch.py --ray        # the same job through Ray against local --workers

--ray runs in a network namespace of its own with only loopback up (it re-executes itself under
`unshare -n`, as root): a one-node local Ray cluster with --workers actors of threads/workers
threads each, against the local run with the same workers, slots and threads, and reports the
aggregate tokens/s ratio (Ray's overhead) and the total PSS of the processes mapping the model,
sampled mid-run, against the file size.

Decode is bound by reading the weights; a batch of B reads each weight block once for B
tokens, so aggregate tokens/s should grow with B until compute becomes the limit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
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
    ap.add_argument("--ray", action="store_true", help="compare a Ray run with the local one")
    ap.add_argument("--workers", type=int, default=2, help="--ray: processes / actors")
    ap.add_argument("--parallel", type=int, default=8, help="--ray: slots per process")
    ap.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    path = ensure(*a.model.split(":"))
    if a.ray:
        return ray_vs_local(a, path)
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


def ray_vs_local(a: argparse.Namespace, path: Path) -> None:
    if not a.in_netns:  # Ray binds the primary address: run in a namespace with only loopback
        if os.geteuid() != 0 or not shutil.which("unshare"):
            sys.exit("--ray needs root and unshare for a loopback-only network namespace")
        cmd = " ".join([sys.executable, *map(str, sys.argv), "--in-netns"])
        sys.exit(subprocess.call(["unshare", "-n", "sh", "-c", f"ip link set lo up && exec {cmd}"]))
    import ray

    from llamacy import Request, mapping_sharing
    from llamacy import run_batch as run

    ray.init(num_cpus=a.threads, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    address = ray.get_runtime_context().gcs_address
    reqs = [Request(i, f"Story number {i}: once upon a time", i + 1) for i in range(a.prompts)]
    size = path.stat().st_size
    rows = {}
    for label, kw in (("local --workers", {}), ("Ray actors", {"ray": address})):
        rates, pss = [], []
        for _ in range(a.runs):
            sampled: list[float] = []

            def sample(rec: dict, sampled: list[float] = sampled) -> None:
                if not sampled:  # at the first record: every process is up and has read the weights
                    share = mapping_sharing(path)
                    sampled.append(share.total_pss or 0)

            with tempfile.TemporaryDirectory() as d:
                s = run(str(path), list(reqs), Path(d) / "out.jsonl", parallel=a.parallel, workers=a.workers,
                        n_threads=max(1, a.threads // a.workers), n_ctx=256, seed=1, on_record=sample,
                        defaults={"max_tokens": a.gen, "temperature": 0}, **kw)
            rates.append(s.tokens / s.seconds)
            pss += sampled
        rows[label] = (statistics.median(rates), statistics.median(pss) if pss else float("nan"))
    ray.shutdown()
    print(f"{path.name} ({size / 2**20:.0f} MiB): {a.prompts} prompts x {a.gen} tokens, {a.workers} workers x "
          f"{a.parallel} slots, {a.threads} threads in total, median of {a.runs}\n")
    print("| run | aggregate tok/s | vs local | PSS of the mapping, all processes | / file |")
    print("|---|---|---|---|---|")
    base = rows["local --workers"][0]
    for label, (rate, pss) in rows.items():
        print(f"| {label} | {rate:.1f} | {rate / base:.2f}x | {pss / 2**20:.0f} MiB | {pss / size:.2f} |")


if __name__ == "__main__":
    main()
