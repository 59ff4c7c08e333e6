"""Run a command inside a memory limit (a cgroup made for it), for the bigger-than-RAM test and
benchmark. cgroup v1 (memory.limit_in_bytes) or v2 (memory.max); needs root or a delegated
cgroup. `available()` says why not, when it cannot."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

V1 = Path("/sys/fs/cgroup/memory")
V2 = Path("/sys/fs/cgroup")


def _root() -> tuple[Path, str] | None:
    if (V1 / "memory.limit_in_bytes").exists():
        return V1, "memory.limit_in_bytes"
    if (V2 / "cgroup.controllers").exists() and "memory" in (V2 / "cgroup.controllers").read_text():
        return V2, "memory.max"
    return None


def available() -> str | None:
    """None when a limited cgroup can be made here, else the reason it cannot."""
    r = _root()
    if r is None:
        return "no cgroup memory controller (v1 or v2) is mounted"
    if not os.access(r[0], os.W_OK):
        return f"{r[0]} is not writable (needs root or a delegated cgroup)"
    return None


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_bytes: int | None
    oom_killed: bool


def run_limited(cmd: list[str], limit_bytes: int, timeout: float = 600, env: dict | None = None) -> Result:
    root, limit_file = _root() or (None, None)
    if root is None:
        raise RuntimeError(available())
    cg = root / f"llamacy-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    cg.mkdir()
    try:
        (cg / limit_file).write_text(str(limit_bytes))
        procs = str(cg / "cgroup.procs")

        def enter() -> None:
            with open(procs, "w") as fh:
                fh.write(str(os.getpid()))

        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=enter, env=env)
        dt = time.perf_counter() - t0
        peak = None
        for name in ("memory.max_usage_in_bytes", "memory.peak"):
            if (cg / name).exists():
                peak = int((cg / name).read_text().split()[0])
        oom = p.returncode == -9
        for name in ("memory.oom_control", "memory.events"):
            f = cg / name
            if f.exists():
                for line in f.read_text().splitlines():
                    k, _, v = line.partition(" ")
                    if k == "oom_kill" and int(v) > 0:
                        oom = True
        return Result(p.returncode, p.stdout, p.stderr, dt, peak, oom)
    finally:
        for _ in range(50):
            try:
                cg.rmdir()
                break
            except OSError:
                time.sleep(0.1)
