"""`llamacy serve` against llama-cpp-python's server, same file, same threads in total.

    python benchmarks/bench_serve.py [--model tinyllama-1.1b:Q4_0] [--clients 8] [--tokens 32] [--runs 3]

Each server runs on 127.0.0.1 at a free port; `--clients` threads each stream one completion of
`--tokens` tokens at once (temperature 0.8, a seed per client), `--runs` rounds after a warm-up.
Reported per server: aggregate completion tokens/s over the round's wall time, time to first token
(p50 / p95 over every request of every round), and the total PSS of the server's processes after
the rounds (psutil; the mapped file counts once however many workers share it). llama.cpp runs
through llama-cpp-python 0.3.36 in its own venv ($LLAMA_CPP_PYTHON, default
/opt/llcpp-venv/bin/python; `python -m llama_cpp.server --interrupt_requests False`: it serves one
request at a time, and by default would cut a running stream off when the next request arrives).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from models import ensure  # noqa: E402

LLAMA_CPP_PYTHON = os.environ.get("LLAMA_CPP_PYTHON", "/opt/llcpp-venv/bin/python")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], url: str) -> subprocess.Popen:
    import tempfile

    import httpx

    log = tempfile.TemporaryFile(mode="w+")  # not a pipe: a chatty server would fill it and stall
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if p.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"{cmd[0]} exited: {log.read()[-2000:]}")
        try:
            r = httpx.post(url + "/v1/completions", json={"prompt": "Hello", "max_tokens": 2}, timeout=60)
            if r.status_code == 200:
                return p
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    p.kill()
    raise RuntimeError("the server did not come up")


def total_pss(pid: int) -> int:
    import psutil

    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sum(p.memory_full_info().pss for p in procs)


def one_round(url: str, clients: int, tokens: int, round_no: int) -> tuple[float, int, list[float]]:
    import httpx

    ttft: list[float] = []
    counts: list[int] = []

    def client(i: int) -> None:
        body = {"prompt": f"Request {i} of round {round_no}: once upon a time", "max_tokens": tokens,
                "temperature": 0.8, "seed": 1000 * round_no + i, "stream": True,
                "stream_options": {"include_usage": True}}
        t0 = time.perf_counter()
        first, usage, chunks = None, None, 0
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=600) as r:
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                c = json.loads(line[6:])
                if c.get("choices") and c["choices"][0].get("text"):
                    chunks += 1
                    if first is None:
                        first = time.perf_counter() - t0
                if c.get("usage"):
                    usage = c["usage"]["completion_tokens"]
        ttft.append(first if first is not None else float("nan"))
        counts.append(usage if usage is not None else chunks)  # llama-cpp-python: a chunk per token

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, sum(counts), ttft


def bench(name: str, cmd: list[str], url: str, a: argparse.Namespace) -> dict:
    p = start(cmd, url)
    try:
        rates, ttfts = [], []
        for k in range(a.runs):
            wall, n, ttft = one_round(url, a.clients, a.tokens, k)
            rates.append(n / wall)
            ttfts += ttft
        pss = total_pss(p.pid)
    finally:
        p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
    ttfts = sorted(t for t in ttfts if t == t)
    return {"name": name, "tok_s": statistics.median(rates), "ttft_p50": ttfts[len(ttfts) // 2],
            "ttft_p95": ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))], "pss": pss}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tinyllama-1.1b:Q4_0")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-llama-cpp", action="store_true")
    a = ap.parse_args()
    shape, qtype = a.model.split(":")
    path = str(ensure(shape, qtype))
    size = os.path.getsize(path)
    rows = []
    configs = [("llamacy serve, 1 worker x 8 slots", 1, 8), ("llamacy serve, 2 workers x 4 slots", 2, 4)]
    for label, workers, parallel in configs:
        port = free_port()
        cmd = [sys.executable, "-m", "llamacy", "serve", "-m", path, "--port", str(port), "--workers", str(workers),
               "--parallel", str(parallel), "-t", str(max(1, a.threads // workers)), "-c", "2048"]
        rows.append(bench(label, cmd, f"http://127.0.0.1:{port}", a))
        print(rows[-1], flush=True)
    if not a.no_llama_cpp and Path(LLAMA_CPP_PYTHON).exists():
        port = free_port()
        cmd = [LLAMA_CPP_PYTHON, "-m", "llama_cpp.server", "--model", path, "--host", "127.0.0.1", "--port", str(port),
               "--n_threads", str(a.threads), "--n_threads_batch", str(a.threads), "--n_ctx", "2048",
               "--interrupt_requests", "False"]  # queue requests instead of cutting the running one off
        rows.append(bench("llama-cpp-python 0.3.36 server", cmd, f"http://127.0.0.1:{port}", a))
        print(rows[-1], flush=True)
    base = rows[-1] if len(rows) > 2 else None
    print(f"\n{a.model} ({size / 2**20:.0f} MiB), {a.clients} concurrent clients x {a.tokens} tokens, "
          f"{a.threads} threads in total, median of {a.runs} rounds\n")
    print("| server | tok/s | vs llama.cpp | TTFT p50 | TTFT p95 | total PSS | PSS / file |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['tok_s'] / base['tok_s']:.2f}x" if base else "-"
        print(f"| {r['name']} | {r['tok_s']:.1f} | {ratio} | {r['ttft_p50'] * 1e3:.0f} ms | "
              f"{r['ttft_p95'] * 1e3:.0f} ms | {r['pss'] / 2**20:.0f} MiB | {r['pss'] / size:.2f} |")


if __name__ == "__main__":
    main()
