"""`llamacy batch --ray`: the same batch job on a Ray cluster.

The driver (this process) reads the input, is the only writer of the output file and shows the
progress, exactly as a local run; the generation happens in Ray actors, by default `workers` per
node, each holding a `Llama` that maps the model file on its own node (so the actors of one node
share one page-cache copy) and a batching engine with `parallel` slots.

Work goes out in chunks of `parallel` requests, a few per actor, and the actor's engine thread
batches across the chunks it holds, so its slots stay full; a chunk's records come back when its
last request finishes and are written then. An actor that dies (killed, out of memory, its node
lost) loses only the chunks it held: the driver gives them to the other actors, and every record
is still written exactly once. A driver killed at any moment resumes like a local run (the
output holds whole records only). Seeds derive from the run's seed and each id, so the texts equal
a local run's.

Every actor checks, before it loads anything, that its node's model file is the driver's: same
size and the same SHA-256 of the first MiB and of 16 pages spread over the file. Ray is the
optional extra `llamacy[ray]`, imported only here and in llamacy.ray.
"""

from __future__ import annotations

import collections
import hashlib
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

from llamacy._errors import LlamacyError
from llamacy._generate import Batcher, Request

__all__ = ["fingerprint", "import_ray", "run_on_ray"]

INSTALL_HINT = 'Ray is not installed: pip install "llamacy[ray]"'
CHUNKS_PER_ACTOR = 3  # chunks an actor holds at once: one decoding, the next ones ready to join


def import_ray():
    try:
        import ray
    except ImportError:
        raise LlamacyError(INSTALL_HINT) from None
    return ray


def fingerprint(path: str) -> dict:
    """Size and a cheap content hash (the first MiB and 16 evenly spread 4 KiB pages)."""
    size = os.path.getsize(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        for k in range(16):
            f.seek(size * k // 16)
            h.update(f.read(4096))
    return {"size": size, "sha256": h.hexdigest()}


class BatchWorker:
    """A Ray actor: one Llama, one engine thread, requests arriving in chunks from the driver."""

    def __init__(self, model_path: str, expect: dict | None, llama_kw: dict, parallel: int, base_seed: int,
                 defaults: dict):
        import ray

        self.node = ray.get_runtime_context().get_node_id()
        try:
            got = fingerprint(model_path)
        except OSError as e:
            raise LlamacyError(f"node {self.node}: cannot read the model file {model_path}: {e}") from None
        if expect is not None and got != expect:
            raise LlamacyError(f"node {self.node}: {model_path} is not the driver's file (size {got['size']} vs "
                               f"{expect['size']}, or different content): give every node the same model file")
        self.fp = got
        from llamacy._llama import Llama

        self.llm = Llama(model_path, verbose=False, **llama_kw)
        self.batcher = Batcher(self.llm.model, self.llm.tokenizer, parallel=parallel, base_seed=base_seed,
                               defaults=defaults, chat=self.llm.chat_prompt)
        self.cond = threading.Condition()
        self.pending: collections.deque = collections.deque()
        self.owner: dict[int, dict] = {}
        threading.Thread(target=self._engine, daemon=True).start()

    def info(self) -> dict:
        return {"node": self.node, "pid": os.getpid(), "fingerprint": self.fp}

    def generate(self, reqs: list[Request]) -> list[dict]:
        box = {"left": len(reqs), "records": [], "done": threading.Event()}
        with self.cond:
            for r in reqs:
                self.pending.append((r, box))
            self.cond.notify()
        box["done"].wait()
        return box["records"]

    def _deliver(self, req: Request, rec: dict) -> None:
        box = self.owner.pop(id(req))
        box["records"].append(rec)
        box["left"] -= 1
        if box["left"] == 0:
            box["done"].set()

    def _engine(self) -> None:
        b = self.batcher
        while True:
            with self.cond:
                while not self.pending and not b.active:
                    self.cond.wait()
                while self.pending and b.has_room:
                    req, box = self.pending.popleft()
                    self.owner[id(req)] = box
                    rec = b.admit(req)
                    if rec is not None:
                        self._deliver(req, rec)
            if b.active:
                for ev in b.step():
                    if ev.record is not None:
                        self._deliver(ev.req, ev.record)


def run_on_ray(address: str | None, model_path: str, todo: list[Request], *, workers: int, parallel: int,
               llama_kw: dict, seed: int, defaults: dict, emit: Callable[[dict], None]) -> dict:
    """Generate every request of `todo` on the cluster at `address` (None: RAY_ADDRESS, or a
    local cluster), calling emit(record) in the driver as chunks finish. Returns run facts."""
    ray = import_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    try:
        expect = fingerprint(model_path)
    except OSError:
        expect = None  # the driver need not have the file: the actors must then agree among themselves
    if address and address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False,
                 logging_level="ERROR")
    except Exception as e:  # noqa: BLE001 - Ray raises many kinds for an unreachable cluster
        raise LlamacyError(f"cannot reach the Ray cluster at {address or 'RAY_ADDRESS / local'}: "
                           f"{type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    threads = llama_kw.get("n_threads")
    remote = ray.remote(BatchWorker)
    run_id = uuid.uuid4().hex[:8]
    actors = []
    for node in nodes:
        cpus = node.get("Resources", {}).get("CPU", 1)
        per = max(1.0, cpus / workers) if threads is None else float(threads)
        kw = dict(llama_kw, n_threads=threads or max(1, int(cpus // workers)))
        for _ in range(workers):
            actors.append(remote.options(
                name=f"llamacy-batch-{run_id}-{len(actors)}", namespace="llamacy", num_cpus=min(per, cpus),
                max_concurrency=CHUNKS_PER_ACTOR + 2, max_restarts=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
            ).remote(model_path, expect, kw, parallel, seed, defaults))
    infos = []
    for a in actors:
        try:
            infos.append(ray.get(a.info.remote()))
        except Exception as e:  # noqa: BLE001 - an actor that cannot start names its node and why
            raise LlamacyError(_ray_error_text(e)) from None
    if expect is None and len({tuple(sorted(i["fingerprint"].items())) for i in infos}) > 1:
        raise LlamacyError(f"the nodes do not have the same {model_path}: give every node the same model file")

    queue = collections.deque(todo[i:i + parallel] for i in range(0, len(todo), parallel))
    live = {a: 0 for a in actors}  # actor -> chunks in flight
    inflight: dict[Any, tuple[Any, list[Request]]] = {}
    lost = 0
    while queue or inflight:
        for level in range(1, CHUNKS_PER_ACTOR + 1):  # round-robin: every actor gets work before any gets more
            for a in list(live):
                if queue and live[a] < level:
                    chunk = queue.popleft()
                    inflight[a.generate.remote(chunk)] = (a, chunk)
                    live[a] += 1
        if not inflight:
            raise LlamacyError("every Ray actor died; the records written so far are kept (rerun to resume)")
        ready, _ = ray.wait(list(inflight), num_returns=1, timeout=5.0)
        for ref in ready:
            a, chunk = inflight.pop(ref)
            try:
                records = ray.get(ref)
            except ray.exceptions.RayActorError:  # the actor died: its chunks go to the others
                queue.appendleft(chunk)
                if a in live:
                    del live[a]
                    lost += 1
                continue
            live[a] -= 1
            for rec in records:
                emit(rec)
    for a in actors:
        try:
            ray.kill(a)
        except Exception:  # noqa: BLE001, S110 - already gone
            pass
    return {"actors": len(actors), "nodes": len(nodes), "actors_lost": lost}


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A TCP connection to the cluster's address first: Ray itself retries an unreachable one for
    minutes before it says so."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as e:
        raise LlamacyError(f"cannot reach the Ray cluster at {address}: {e}") from None


def _ray_error_text(e: BaseException) -> str:
    cause = getattr(e, "cause", None) or getattr(e, "__cause__", None)
    text = str(cause) if cause is not None else str(e)
    text = " ".join(text.split())
    marker = "LlamacyError: "
    return text[text.rindex(marker) + len(marker):] if marker in text else text[:500]
