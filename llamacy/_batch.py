"""Scripted batch generation: many prompts in, one JSON line per prompt out.

This module owns the input (text or JSONL), the output (whole records, resumable), the worker
processes and the progress line; the generation itself is llamacy._generate's batching engine.

- Workers: `workers` processes each map the same file (one copy in memory) and share the
  prompts out; the parent alone writes the output.
- Nothing lost: every record is appended whole and flushed; rerunning with the same output skips
  the ids already there (a partial last line, from a killed run, is discarded first).
- Reproducible: each prompt's seed derives from the base seed and its id, so texts do not depend
  on worker count, batch size or order.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from llamacy._chat import check_messages
from llamacy._errors import BatchInputError, InvalidRequestError, LlamacyError
from llamacy._generate import Request, generate_batch, option_int, request_params
from llamacy._llama import Llama

__all__ = ["Summary", "read_requests", "run"]

PER_RECORD = ("max_tokens", "temperature", "top_k", "top_p", "min_p", "seed", "stop")


# ---- input --------------------------------------------------------------------------------------
def read_requests(source: str | Path | IO[str], skip_bad: bool = False) -> list[Request]:
    """Text (one prompt per line, ids are line numbers) or JSONL ({"id", "prompt", options}, or
    {"id", "messages", options} for a chat turn rendered with the model's chat template).
    A file is JSONL when its name ends in .jsonl or its first non-blank line starts with '{'."""
    if isinstance(source, (str, Path)):
        if str(source) == "-":
            name, lines = "<stdin>", sys.stdin.read().splitlines()
        else:
            name = str(source)
            with open(source, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
    else:
        name, lines = getattr(source, "name", "<input>"), source.read().splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    jsonl = name.endswith(".jsonl") or first.lstrip().startswith("{")
    out: list[Request] = []
    for no, raw in enumerate(lines, 1):
        if not jsonl:
            out.append(Request(no, raw, no))
            continue
        if not raw.strip():
            continue
        rec = None
        try:
            rec = json.loads(raw)
            if not isinstance(rec, dict):
                raise ValueError("a record must be a JSON object")
            if ("prompt" in rec) == ("messages" in rec):
                raise ValueError('a record needs "prompt" (a string) or "messages" (a list), not both')
            if "prompt" in rec and not isinstance(rec["prompt"], str):
                raise ValueError('"prompt" must be a string')
            messages = check_messages(rec["messages"]) if "messages" in rec else None
            unknown = set(rec) - {"id", "prompt", "messages", *PER_RECORD}
            if unknown:
                raise ValueError(f"unknown fields {sorted(unknown)}")
            if not _plain_id(rec.get("id", no)):
                raise ValueError(f'"id" must be a string or an integer, not {rec["id"]!r}')
            options = {k: rec[k] for k in PER_RECORD if k in rec}
            check_options(options)
            out.append(Request(rec.get("id", no), rec.get("prompt", ""), no, options, messages=messages))
        except ValueError as e:
            msg = f"{name}: line {no}: {e}"
            if not skip_bad:
                raise BatchInputError(msg) from None
            rid = rec.get("id", no) if isinstance(rec, dict) and _plain_id(rec.get("id", no)) else no
            out.append(Request(rid, "", no, error=msg))
    seen: dict[str, int] = {}
    for r in out:
        key = json.dumps(r.id, sort_keys=True)
        if key in seen:
            raise BatchInputError(f"{name}: line {r.line}: duplicate id {key} (first on line {seen[key]})")
        seen[key] = r.line
    return out


def _plain_id(rid: Any) -> bool:
    return isinstance(rid, (str, int)) and not isinstance(rid, bool)


def check_options(options: dict[str, Any]) -> None:
    """A record's options checked as generation will read them (InvalidRequestError, a
    ValueError): a bad value is the record's input error, found before any work."""
    request_params(options)
    for key in ("seed", "max_tokens"):
        v = option_int(options, key)
        if key == "seed" and v is not None and not 0 <= v < 2**64:
            raise InvalidRequestError(f"seed must be in [0, 2^64), not {v}")


# ---- output: whole records, resumable -------------------------------------------------------------
def done_ids(path: Path) -> set[str]:
    """Ids already in an output file; a partial last line (a killed run) is cut off first."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as fh:
            fh.truncate(end)
    ids = set()
    for no, line in enumerate(data[:end].splitlines(), 1):
        if line.strip():
            try:
                ids.add(json.dumps(json.loads(line)["id"], sort_keys=True))
            except (ValueError, KeyError, TypeError):
                raise BatchInputError(f"{path}: line {no} is not a llamacy batch record") from None
    return ids


class RecordWriter:
    """The output file, opened for appending and locked against a second writer (another
    `llamacy batch` on the same -o gets BatchInputError) for as long as it is open."""

    def __init__(self, path: Path):
        from llamacy._mmap import try_lock_file

        self.fh = open(path, "a", encoding="utf-8")
        try:
            locked = try_lock_file(self.fh.fileno(), str(path))
        except BaseException:
            self.fh.close()
            raise
        if not locked:
            self.fh.close()
            raise BatchInputError(f"{path} is being written by another llamacy batch run; wait for it to finish "
                                  "or write to another file")
        self.last_sync = time.monotonic()

    def write(self, rec: dict) -> None:
        try:
            line = json.dumps(rec, ensure_ascii=False, allow_nan=False)
            line.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from the input: written escaped, as JSON allows
            line = json.dumps(rec, ensure_ascii=True, allow_nan=False)
        self.fh.write(line + "\n")  # one write: a whole line
        self.fh.flush()
        if time.monotonic() - self.last_sync > 5:
            os.fsync(self.fh.fileno())
            self.last_sync = time.monotonic()

    def close(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()


# ---- workers -----------------------------------------------------------------------------------
def _worker(model_path: str, llama_kw: dict, parallel: int, base_seed: int, defaults: dict, tasks: Any,
            results: Any) -> None:
    try:
        llm = Llama(model_path, verbose=False, **llama_kw)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which stops the run
        results.put(("fatal", f"{type(e).__name__}: {e}"))
        return

    def requests() -> Iterator[Request]:
        while True:
            req = tasks.get()
            if req is None:
                return
            yield req

    for rec in generate_batch(llm.model, llm.tokenizer, requests(), parallel=parallel, base_seed=base_seed,
                              defaults=defaults, chat=llm.chat_prompt):
        results.put(("record", rec))
    results.put(("done", None))


# ---- the run ----------------------------------------------------------------------------------
@dataclass
class Summary:
    total: int
    skipped: int
    written: int
    errors: int
    tokens: int
    seconds: float
    ray: dict | None = None  # a Ray run's facts: actors, nodes, actors_lost

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


class _Progress:
    def __init__(self, total: int, stream: IO[str] | None):
        self.total, self.stream = total, stream
        self.done = self.tokens = 0
        self.t0 = self.last = time.perf_counter()
        self.tty = bool(stream and stream.isatty())

    def update(self, rec: dict) -> None:
        self.done += 1
        self.tokens += rec.get("completion_tokens") or 0
        if not self.stream:
            return
        now = time.perf_counter()
        if not self.tty and now - self.last < 5 and self.done < self.total:
            return
        self.last = now
        dt = now - self.t0
        rate = self.tokens / dt if dt > 0 else 0.0
        eta = (self.total - self.done) * dt / self.done if self.done else 0.0
        if self.tty:
            width = 30
            fill = int(width * self.done / max(1, self.total))
            self.stream.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} | {rate:.1f} tok/s | "
                              f"ETA {int(eta) // 60:02d}:{int(eta) % 60:02d} ")
        else:
            self.stream.write(f"llamacy batch: {self.done}/{self.total} done, {rate:.1f} tok/s, ETA {eta:.0f} s\n")
        self.stream.flush()

    def close(self) -> None:
        if self.stream and self.tty:
            self.stream.write("\n")


def run(model_path: str, source: str | Path | IO[str] | list[Request], output: str | Path, *, parallel: int = 4,
        workers: int = 1, n_threads: int | None = None, n_ctx: int = 512, n_batch: int = 512, seed: int = 0,
        defaults: dict[str, Any] | None = None, skip_bad: bool = False, use_mmap: bool = True,
        progress: IO[str] | None = None, on_record: Callable[[dict], None] | None = None,
        ray: str | None | bool = False) -> Summary:
    """Generate for every prompt of `source` not yet in `output`, appending one line each.
    ray: False runs here (`workers` processes); None or an address runs on a Ray cluster (None:
    RAY_ADDRESS or a local one), `workers` actors per node."""
    if parallel < 1 or workers < 1:
        raise InvalidRequestError(f"parallel ({parallel}) and workers ({workers}) must be at least 1")
    reqs = source if isinstance(source, list) else read_requests(source, skip_bad)
    out = Path(output)
    writer = RecordWriter(out)  # locked first: the resume below reads what no one else writes
    try:
        done = done_ids(out)
    except BaseException:
        writer.close()
        raise
    todo = [r for r in reqs if json.dumps(r.id, sort_keys=True) not in done]
    defaults = dict(defaults or {})
    llama_kw = {"n_ctx": n_ctx, "n_batch": n_batch, "n_threads": n_threads, "use_mmap": use_mmap}
    bar = _Progress(len(todo), progress)
    errors = tokens = written = 0
    t0 = time.perf_counter()

    def emit(rec: dict) -> None:
        nonlocal errors, tokens, written
        writer.write(rec)
        written += 1
        errors += rec["finish_reason"] == "error"
        tokens += rec["completion_tokens"] or 0
        bar.update(rec)
        if on_record:
            on_record(rec)

    ray_facts = None
    if ray is not False:
        from llamacy._ray import import_ray

        import_ray()  # "pip install llamacy[ray]" before anything is written
    try:
        if todo and ray is not False:
            from llamacy._ray import run_on_ray

            ray_facts = run_on_ray(ray or None, model_path, todo, workers=workers, parallel=parallel,
                                   llama_kw=llama_kw, seed=seed, defaults=defaults, emit=emit)
        elif todo and workers == 1:
            with Llama(model_path, verbose=False, **llama_kw) as llm:
                for rec in generate_batch(llm.model, llm.tokenizer, todo, parallel=parallel, base_seed=seed,
                                          defaults=defaults, chat=llm.chat_prompt):
                    emit(rec)
        elif todo:
            _run_workers(model_path, llama_kw, todo, workers, parallel, seed, defaults, emit)
    finally:
        writer.close()
        bar.close()
    return Summary(len(reqs), len(reqs) - len(todo), written, errors, tokens, time.perf_counter() - t0, ray_facts)


def _run_workers(model_path: str, llama_kw: dict, todo: list[Request], workers: int, parallel: int, seed: int,
                 defaults: dict, emit: Callable[[dict], None]) -> None:
    ctx = mp.get_context("spawn")  # fresh interpreters: no forked OpenMP state
    tasks, results = ctx.Queue(), ctx.Queue()
    for r in todo:
        tasks.put(r)
    for _ in range(workers):
        tasks.put(None)
    procs = [ctx.Process(target=_worker, args=(model_path, llama_kw, parallel, seed, defaults, tasks, results),
                         daemon=True) for _ in range(workers)]
    for p in procs:
        p.start()
    finished = 0
    try:
        while finished < workers:
            try:
                kind, payload = results.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise LlamacyError(f"a batch worker died (exit code {dead[0].exitcode})") from None
                continue
            if kind == "record":
                emit(payload)
            elif kind == "done":
                finished += 1
            else:
                raise LlamacyError(f"a batch worker could not start: {payload}")
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(timeout=10)
