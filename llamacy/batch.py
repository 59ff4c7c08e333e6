"""Scripted batch generation: many prompts in, one JSON line per prompt out.

- Batched decoding: up to `parallel` sequences advance together, one forward pass over the
  weights per step (each weight block is read once for all of them), each with its own KV-cache
  slot and position; a finished sequence's slot takes the next prompt (continuous batching).
- Workers: `workers` processes each map the same file (one copy in memory) and share the
  prompts out; the parent alone writes the output.
- Nothing lost: every record is appended whole and flushed; rerunning with the same output skips
  the ids already there (a partial last line, from a killed run, is discarded first).
- Reproducible: each prompt's seed derives from the base seed and its id, so texts do not depend
  on worker count, batch size or order.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import queue
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from llamacy._errors import BatchInputError, InvalidRequestError, LlamacyError
from llamacy.sampling import Sampler, SamplingParams

__all__ = ["Request", "Summary", "derive_seed", "generate_batch", "read_requests", "run"]

PER_RECORD = ("max_tokens", "temperature", "top_k", "top_p", "min_p", "seed", "stop")


@dataclass
class Request:
    id: Any
    prompt: str
    line: int
    options: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # a bad input line kept with --skip-bad
    tokens: list[int] | None = None  # the prompt as token ids, when given so (then used as is)


def derive_seed(base: int, rid: Any) -> int:
    """A prompt's seed from the run's seed and its id: independent of order and batching."""
    h = hashlib.sha256(f"{base}:{json.dumps(rid, sort_keys=True)}".encode()).digest()
    return int.from_bytes(h[:8], "little") & (2**63 - 1)


# ---- input --------------------------------------------------------------------------------------
def read_requests(source: str | Path | IO[str], skip_bad: bool = False) -> list[Request]:
    """Text (one prompt per line, ids are line numbers) or JSONL ({"id", "prompt", options}).
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
        try:
            rec = json.loads(raw)
            if not isinstance(rec, dict):
                raise ValueError("a record must be a JSON object")
            if "prompt" not in rec or not isinstance(rec["prompt"], str):
                raise ValueError('"prompt" (a string) is missing')
            unknown = set(rec) - {"id", "prompt", *PER_RECORD}
            if unknown:
                raise ValueError(f"unknown fields {sorted(unknown)}")
            out.append(Request(rec.get("id", no), rec["prompt"], no, {k: rec[k] for k in PER_RECORD if k in rec}))
        except ValueError as e:
            msg = f"{name}: line {no}: {e}"
            if not skip_bad:
                raise BatchInputError(msg) from None
            out.append(Request(no, "", no, error=msg))
    seen: dict[str, int] = {}
    for r in out:
        key = json.dumps(r.id, sort_keys=True)
        if key in seen:
            raise BatchInputError(f"{name}: line {r.line}: duplicate id {key} (first on line {seen[key]})")
        seen[key] = r.line
    return out


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
    def __init__(self, path: Path):
        self.fh = open(path, "a", encoding="utf-8")
        self.last_sync = time.monotonic()

    def write(self, rec: dict) -> None:
        self.fh.write(json.dumps(rec, ensure_ascii=False) + "\n")  # one write: a whole line
        self.fh.flush()
        if time.monotonic() - self.last_sync > 5:
            os.fsync(self.fh.fileno())
            self.last_sync = time.monotonic()

    def close(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()


# ---- the batched engine ----------------------------------------------------------------------------
@dataclass
class _Active:
    req: Request
    slot: int
    tokens: list[int]  # prompt tokens
    fed: int  # prompt tokens already in the cache
    params: SamplingParams
    sampler: Sampler
    max_tokens: int
    text: Any  # TextStream
    parts: list[str] = field(default_factory=list)
    generated: list[int] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None


def generate_batch(llm: Any, requests: Iterable[Request], *, parallel: int, base_seed: int,
                   defaults: dict[str, Any]) -> Iterator[dict]:
    """Continuous batching over one Llama: yields one record per request, in finishing order."""
    from llamacy.llama import TextStream

    model = llm.model
    model.ensure_slots(parallel)
    llm.reset()  # the batch uses the cache slots; the single-sequence prefix cache is gone
    n_ctx, budget = model.n_ctx, model.n_batch
    pending = iter(requests)
    active: dict[int, _Active] = {}
    free = list(range(parallel))[::-1]
    exhausted = False

    def admit(req: Request) -> dict | None:
        if req.error:
            return _record(req, "", "error", 0, 0, None, 0.0, error=req.error)
        o = {**defaults, **req.options}
        try:
            params = SamplingParams(temperature=float(o.get("temperature", 0.8)), top_k=int(o.get("top_k", 40)),
                                    top_p=float(o.get("top_p", 0.95)), min_p=float(o.get("min_p", 0.05)),
                                    repeat_penalty=float(o.get("repeat_penalty", 1.0)),
                                    repeat_last_n=int(o.get("repeat_last_n", 64))).validate()
            seed = int(o["seed"]) if req.options.get("seed") is not None else derive_seed(base_seed, req.id)
            stops = o.get("stop") or []
            stops = [stops] if isinstance(stops, str) else [str(s) for s in stops if s]
            tokens = req.tokens or llm.tokenize(req.prompt.encode("utf-8"), add_bos=True, special=True)
        except (TypeError, ValueError) as e:
            return _record(req, "", "error", 0, 0, None, 0.0, error=f"line {req.line}: {e}")
        if len(tokens) > n_ctx:
            return _record(req, "", "error", len(tokens), 0, seed, 0.0,
                           error=f"Requested tokens ({len(tokens)}) exceed context window of {n_ctx}")
        mt = o.get("max_tokens")
        max_tokens = n_ctx - len(tokens) if mt is None or int(mt) <= 0 else int(mt)
        slot = free.pop()
        active[slot] = _Active(req, slot, tokens, 0, params, Sampler(seed), max_tokens,
                               TextStream(llm.tokenizer, tokens, stops))
        return None

    while True:
        while free and not exhausted:
            req = next(pending, None)
            if req is None:
                exhausted = True
                break
            rec = admit(req)
            if rec is not None:
                yield rec
        if not active:
            if exhausted:
                return
            continue
        # One step: decoding sequences give their last token, new ones as much prompt as fits.
        segments, owners, room = [], [], budget
        for a in active.values():
            if a.fed == len(a.tokens) and room > 0:
                segments.append((a.slot, [a.generated[-1]], len(a.tokens) + len(a.generated) - 1))
                owners.append(a)
                room -= 1
        for a in active.values():
            if a.fed < len(a.tokens) and room > 0:
                n = min(room, len(a.tokens) - a.fed)
                segments.append((a.slot, a.tokens[a.fed:a.fed + n], a.fed))
                owners.append(a)
                a.fed += n
                room -= n
        logits = model.forward_batch(segments)
        for a, row, (_, toks, pos) in zip(owners, logits, segments):
            if pos + len(toks) < len(a.tokens):
                continue  # more prompt to feed before this sequence can sample
            rec = _step(a, row, llm, n_ctx)
            if rec is not None:
                del active[a.slot]
                free.append(a.slot)
                yield rec


def _step(a: _Active, logits: np.ndarray, llm: Any, n_ctx: int) -> dict | None:
    """Sample one token for a sequence; its record when it is done."""
    if a.first_token is None:
        a.first_token = time.perf_counter()
    history = a.tokens + a.generated
    tok = a.sampler.sample(logits, history, a.params)
    finish = None
    if tok == llm.token_eos():
        finish = "stop"
    else:
        a.generated.append(tok)
        out, stopped = a.text.push(tok)
        a.parts.append(out)
        if stopped:
            finish = "stop"
        elif len(a.generated) >= a.max_tokens or len(a.tokens) + len(a.generated) >= n_ctx:
            finish = "length"
    if finish is None:
        return None
    a.parts.append(a.text.finish(stopped=finish == "stop"))
    seconds = time.perf_counter() - a.started
    return _record(a.req, "".join(a.parts), finish, len(a.tokens), len(a.generated), a.sampler.seed, seconds,
                   first=(a.first_token - a.started))


def _record(req: Request, text: str, finish: str, n_prompt: int, n_gen: int, seed: int | None, seconds: float,
            error: str | None = None, first: float | None = None) -> dict:
    rec = {"id": req.id, "prompt": req.prompt, "text": text, "finish_reason": finish, "prompt_tokens": n_prompt,
           "completion_tokens": n_gen, "seed": seed,
           "timings": {"seconds": round(seconds, 4),
                       "first_token_seconds": None if first is None else round(first, 4),
                       "tokens_per_second": round(n_gen / seconds, 2) if seconds > 0 and n_gen else None}}
    if error is not None:
        rec["error"] = error
    return rec


# ---- workers -----------------------------------------------------------------------------------
def _worker(model_path: str, llama_kw: dict, parallel: int, base_seed: int, defaults: dict, tasks: Any,
            results: Any) -> None:
    from llamacy.llama import Llama

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

    for rec in generate_batch(llm, requests(), parallel=parallel, base_seed=base_seed, defaults=defaults):
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
        progress: IO[str] | None = None, on_record: Callable[[dict], None] | None = None) -> Summary:
    """Generate for every prompt of `source` not yet in `output`, appending one line each."""
    if parallel < 1 or workers < 1:
        raise InvalidRequestError(f"parallel ({parallel}) and workers ({workers}) must be at least 1")
    reqs = source if isinstance(source, list) else read_requests(source, skip_bad)
    out = Path(output)
    done = done_ids(out)
    todo = [r for r in reqs if json.dumps(r.id, sort_keys=True) not in done]
    defaults = dict(defaults or {})
    llama_kw = {"n_ctx": n_ctx, "n_batch": n_batch, "n_threads": n_threads, "use_mmap": use_mmap}
    writer = RecordWriter(out)
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

    try:
        if todo and workers == 1:
            from llamacy.llama import Llama

            llm = Llama(model_path, verbose=False, **llama_kw)
            with llm:
                for rec in generate_batch(llm, todo, parallel=parallel, base_seed=seed, defaults=defaults):
                    emit(rec)
        elif todo:
            _run_workers(model_path, llama_kw, todo, workers, parallel, seed, defaults, emit)
    finally:
        writer.close()
        bar.close()
    return Summary(len(reqs), len(reqs) - len(todo), written, errors, tokens, time.perf_counter() - t0)


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
