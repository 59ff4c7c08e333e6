"""Decode attention alone: one query token against n_kv cached positions, every layer of a 7B
shape (32 heads of 128, float16 KV cache of 512 positions per layer: 268 MB in all, so the cache
is read from memory as in a real decode step), 2 threads.

    python benchmarks/bench_attention.py [--positions 150 400] [--trials 15]

Prints the minimum over trials (each trial runs all 32 layers once): the kernel's cost with the
host's interruptions dropped. llama.cpp has no comparable entry point; its attention is part of
bench_generate.py's decode figure.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from llamacy import _ops_kernels, system_info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positions", type=int, nargs="+", default=[150, 400])
    ap.add_argument("--trials", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    heads, head_dim, n_ctx, layers = 32, 128, 512, 32
    rng = np.random.default_rng(0)
    cache = [[rng.standard_normal((1, n_ctx, heads * head_dim)).astype(np.float16).view(np.uint16) for _ in range(2)]
             for _ in range(layers)]
    q = rng.standard_normal((1, heads * head_dim)).astype(np.float32)
    out = np.empty_like(q)
    slot = np.zeros(1, np.int64)
    print(f"kernels: {system_info()['simd']}, {args.threads} threads")
    print("| positions | ms per token (32 layers), min of", args.trials, "|")
    print("|---|---|")
    for n_kv in args.positions:
        if not 0 < n_kv <= n_ctx:
            ap.error(f"positions must be in 1..{n_ctx}")
        pos = np.array([n_kv - 1], np.int64)
        best = float("inf")
        for _ in range(args.trials):
            t0 = time.perf_counter()
            for k, v in cache:
                _ops_kernels.attention(q, k, v, slot, pos, heads, heads, head_dim, out, args.threads)
            best = min(best, time.perf_counter() - t0)
        print(f"| {n_kv} | {best * 1e3:.2f} |")


if __name__ == "__main__":
    main()
