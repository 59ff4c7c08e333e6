"""Generation: from logits to tokens to text, for one sequence or many batched together.

- `Sequence`: the one sampling step every caller shares -- sample a token, stop on end of text,
  a stop string, the token budget or the context's end, and turn tokens into whole UTF-8 text.
- `TextStream`: tokens to text, holding back what could still be the start of a stop string.
- `Batcher`: continuous batching over one `LlamaModel` -- up to `parallel` sequences advance
  together, one forward pass over the weights per step, each in its own KV-cache slot; requests
  join and leave (or are cancelled) between steps. `generate_batch` drives it over an iterable of
  requests and yields one record per request; `llamacy serve`'s workers drive it per step.

`Llama` runs single completions through `Sequence` and `create_completions` through
`generate_batch`; `llamacy batch` (input, resume, workers, progress) feeds `generate_batch`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llamacy._errors import InvalidRequestError, LlamacyError
from llamacy._model import LlamaModel
from llamacy._sampling import Sampler, SamplingParams
from llamacy._tokenizer import Tokenizer

__all__ = ["Batcher", "Event", "Request", "Sequence", "TextStream", "derive_seed", "generate_batch", "option_float",
           "option_int", "request_params"]


# ---- text out ------------------------------------------------------------------------------------
class TextStream:
    """Generated tokens to text: whole UTF-8 characters only, and text that could still begin a
    stop string held back until it cannot (stop strings are cut even when split across tokens)."""

    def __init__(self, tokenizer: Tokenizer, prompt_tokens: Seq[int], stops: list[str]):
        self.decoder = tokenizer.stream(prompt_tokens)
        self.stops = stops
        self.pending = ""
        self.offset = 0  # characters emitted so far

    def push(self, token: int) -> tuple[str, bool]:
        """(text safe to emit now, whether a stop string was reached)."""
        self.pending += self.decoder.push(token)
        cut = _find_stop(self.pending, self.stops)
        if cut is not None:
            self.pending = self.pending[:cut]
            return "", True
        safe = len(self.pending) - _stop_prefix_len(self.pending, self.stops)
        out, self.pending = self.pending[:safe], self.pending[safe:]
        self.offset += len(out)
        return out, False

    def finish(self, stopped: bool) -> str:
        """The rest: held-back text (and incomplete bytes, unless a stop string ended it)."""
        out = self.pending + ("" if stopped else self.decoder.flush())
        self.pending = ""
        self.offset += len(out)
        return out


def _find_stop(text: str, stops: list[str]) -> int | None:
    """Index where the earliest stop string starts in text, or None."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


def _stop_prefix_len(text: str, stops: list[str]) -> int:
    """Length of the longest tail of text that is a proper prefix of some stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


# ---- one sequence's sampling step ------------------------------------------------------------------
class Sequence:
    """A sequence being generated after its prompt: `step(logits)` samples the next token; once
    `finish` is set ("stop" or "length"), `rest()` gives the text still held back."""

    def __init__(self, tokenizer: Tokenizer, prompt: list[int], params: SamplingParams, sampler: Sampler,
                 max_tokens: int | None, stops: list[str], n_ctx: int):
        self.prompt = prompt
        self.params = params
        self.sampler = sampler
        # max_tokens None or <= 0: until the context is full (llama-cpp-python's rule)
        self.max_tokens = n_ctx - len(prompt) if max_tokens is None or max_tokens <= 0 else max_tokens
        self.n_ctx = n_ctx
        self.end_ids = tokenizer.eog_ids  # EOS and the other end-of-generation tokens (<|eot_id|>, ...)
        self.text = TextStream(tokenizer, prompt, stops)
        self.generated: list[int] = []
        self.finish: str | None = None

    def step(self, logits: np.ndarray) -> tuple[int, str]:
        """Sample one token: (the token, the text it completes)."""
        tok = self.sampler.sample(logits, self.prompt + self.generated, self.params)
        if tok in self.end_ids:
            self.finish = "stop"
            return tok, ""
        self.generated.append(tok)
        out, stopped = self.text.push(tok)
        if stopped:
            self.finish = "stop"
        elif len(self.generated) >= self.max_tokens or len(self.prompt) + len(self.generated) >= self.n_ctx:
            self.finish = "length"
        return tok, out

    def rest(self) -> str:
        return self.text.finish(stopped=self.finish == "stop")


# ---- requests --------------------------------------------------------------------------------------
@dataclass
class Request:
    id: Any
    prompt: str
    line: int
    options: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # a bad input line kept with --skip-bad
    tokens: list[int] | None = None  # the prompt as token ids, when given so (then used as is)
    messages: list[dict] | None = None  # a chat turn instead of a prompt: rendered with the chat template


def derive_seed(base: int, rid: Any) -> int:
    """A request's seed from the run's seed and its id: independent of order and batching."""
    h = hashlib.sha256(f"{base}:{json.dumps(rid, sort_keys=True)}".encode()).digest()
    return int.from_bytes(h[:8], "little") & (2**63 - 1)


def option_int(options: dict[str, Any], key: str, default: Any = None) -> Any:
    """An integer option: an int, or a float with an integral value (JSON's 40.0); None stays
    None. InvalidRequestError for anything else (1.5, "40", 1e400, NaN, true)."""
    v = options.get(key, default)
    if v is None or (isinstance(v, (int, np.integer)) and not isinstance(v, bool)):
        return v if v is None else int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    raise InvalidRequestError(f"{key} must be an integer, not {v!r}")


def option_float(options: dict[str, Any], key: str, default: float) -> float:
    v = options.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
        raise InvalidRequestError(f"{key} must be a finite number, not {v!r}")
    return float(v)


def request_params(options: dict[str, Any]) -> tuple[SamplingParams, list[str]]:
    """Sampling parameters and stop strings from a request's options; the defaults are
    SamplingParams' own. InvalidRequestError for values of the wrong kind or out of range."""
    d = SamplingParams()
    params = SamplingParams(temperature=option_float(options, "temperature", d.temperature),
                            top_k=option_int(options, "top_k", d.top_k),
                            top_p=option_float(options, "top_p", d.top_p),
                            min_p=option_float(options, "min_p", d.min_p),
                            repeat_penalty=option_float(options, "repeat_penalty", d.repeat_penalty),
                            repeat_last_n=option_int(options, "repeat_last_n", d.repeat_last_n)).validate()
    stops = options.get("stop") or []
    if isinstance(stops, str):
        stops = [stops]
    if not isinstance(stops, (list, tuple)) or not all(isinstance(x, str) for x in stops):
        raise InvalidRequestError(f"stop must be a string or a list of strings, not {stops!r}")
    return params, [x for x in stops if x]  # an empty stop string would end every text at once


# ---- the batched engine ----------------------------------------------------------------------------
@dataclass
class _Active:
    req: Request
    slot: int
    fed: int  # prompt tokens already in the cache
    seq: Sequence
    parts: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None


@dataclass
class Event:
    """What one step did for one request: the text it added, and its record once finished."""

    req: Request
    text: str
    record: dict | None = None


class Batcher:
    """Continuous batching over one model, driven from outside: `admit` requests while slots are
    free, `step` advances every active sequence by one pass over the weights (decoding ones by a
    token, new ones by as much prompt as fits) and returns what each produced; `cancel` drops a
    request at the next step. `generate_batch` (batch files) and the server's worker loop both
    drive it. `chat` turns a request's messages into prompt tokens and the format's stop strings."""

    def __init__(self, model: LlamaModel, tokenizer: Tokenizer, *, parallel: int, base_seed: int,
                 defaults: dict[str, Any], chat: Callable[[list[dict]], tuple[list[int], list[str]]] | None = None):
        model.ensure_slots(parallel)
        self.model, self.tokenizer, self.chat = model, tokenizer, chat
        self.base_seed, self.defaults = base_seed, defaults
        self.active: dict[int, _Active] = {}
        self.free = list(range(parallel))[::-1]
        self._cancelled: set[int] = set()  # id() of requests to drop

    @property
    def has_room(self) -> bool:
        return bool(self.free)

    def admit(self, req: Request) -> dict | None:
        """Take a request into a free slot; a record (finish_reason "error") if it cannot be served."""
        if req.error:
            return _record(req, "", "error", 0, 0, None, 0.0, error=req.error)
        o = {**self.defaults, **req.options}
        n_ctx = self.model.n_ctx
        try:
            params, stops = request_params(o)
            seed = (option_int(o, "seed") if req.options.get("seed") is not None
                    else derive_seed(self.base_seed, req.id))
            if not 0 <= seed < 2**64:
                raise InvalidRequestError(f"seed must be in [0, 2^64), not {seed}")
            max_tokens = option_int(o, "max_tokens")
            if req.messages is not None:
                if self.chat is None:
                    raise InvalidRequestError("chat messages need a chat format")
                tokens, format_stops = self.chat(req.messages)
                stops = stops + format_stops
            else:
                tokens = req.tokens or self.tokenizer.encode(req.prompt.encode("utf-8"), add_bos=True, special=True)
        except (TypeError, ValueError, OverflowError, LlamacyError) as e:
            return _record(req, "", "error", 0, 0, None, 0.0, error=f"line {req.line}: {e}")
        if len(tokens) > n_ctx:
            return _record(req, "", "error", len(tokens), 0, seed, 0.0,
                           error=f"Requested tokens ({len(tokens)}) exceed context window of {n_ctx}")
        slot = self.free.pop()
        self.active[slot] = _Active(req, slot, 0, Sequence(self.tokenizer, tokens, params, Sampler(seed), max_tokens,
                                                           stops, n_ctx))
        return None

    def cancel(self, req: Request) -> None:
        self._cancelled.add(id(req))

    def step(self) -> list[Event]:
        """One pass over the weights for every active sequence (nothing to do: no events)."""
        events: list[Event] = []
        for a in [a for a in self.active.values() if id(a.req) in self._cancelled]:
            self._finish(a)
            events.append(Event(a.req, "", self._final(a, "cancelled")))
        self._cancelled.clear()
        if not self.active:
            return events
        segments, owners, room = [], [], self.model.n_batch
        for a in self.active.values():  # decoding sequences first: one token each
            s = a.seq
            if a.fed == len(s.prompt) and room > 0:
                segments.append((a.slot, [s.generated[-1]], len(s.prompt) + len(s.generated) - 1))
                owners.append(a)
                room -= 1
        for a in self.active.values():  # then as much new prompt as fits
            s = a.seq
            if a.fed < len(s.prompt) and room > 0:
                n = min(room, len(s.prompt) - a.fed)
                segments.append((a.slot, s.prompt[a.fed:a.fed + n], a.fed))
                owners.append(a)
                a.fed += n
                room -= n
        logits = self.model.forward_batch(segments)
        for a, row, (_, toks, pos) in zip(owners, logits, segments):
            if pos + len(toks) < len(a.seq.prompt):
                continue  # more prompt to feed before this sequence can sample
            if a.first_token is None:
                a.first_token = time.perf_counter()
            _, out = a.seq.step(row)
            if a.seq.finish is None:
                a.parts.append(out)
                if out:
                    events.append(Event(a.req, out))
                continue
            out += a.seq.rest()
            a.parts.append(out)
            self._finish(a)
            events.append(Event(a.req, out, self._final(a, a.seq.finish)))
        return events

    def _finish(self, a: _Active) -> None:
        del self.active[a.slot]
        self.free.append(a.slot)

    @staticmethod
    def _final(a: _Active, finish: str) -> dict:
        s, now = a.seq, time.perf_counter()
        return _record(a.req, "".join(a.parts), finish, len(s.prompt), len(s.generated), s.sampler.seed,
                       now - a.started, first=None if a.first_token is None else a.first_token - a.started)


def generate_batch(model: LlamaModel, tokenizer: Tokenizer, requests: Iterable[Request], *, parallel: int,
                   base_seed: int, defaults: dict[str, Any],
                   chat: Callable[[list[dict]], tuple[list[int], list[str]]] | None = None) -> Iterator[dict]:
    """Continuous batching over one model: yields one record per request, in finishing order. A
    request that cannot be served becomes a record with finish_reason "error"."""
    b = Batcher(model, tokenizer, parallel=parallel, base_seed=base_seed, defaults=defaults, chat=chat)
    pending = iter(requests)
    exhausted = False
    while True:
        while b.has_room and not exhausted:
            req = next(pending, None)
            if req is None:
                exhausted = True
                break
            rec = b.admit(req)
            if rec is not None:
                yield rec
        if not b.active:
            if exhausted:
                return
            continue
        for ev in b.step():
            if ev.record is not None:
                yield ev.record


def _record(req: Request, text: str, finish: str, n_prompt: int, n_gen: int, seed: int | None, seconds: float,
            error: str | None = None, first: float | None = None) -> dict:
    rec = {"id": req.id, **({"messages": req.messages} if req.messages is not None else {"prompt": req.prompt}),
           "text": text, "finish_reason": finish, "prompt_tokens": n_prompt,
           "completion_tokens": n_gen, "seed": seed,
           "timings": {"seconds": round(seconds, 4),
                       "first_token_seconds": None if first is None else round(first, 4),
                       "tokens_per_second": round(n_gen / seconds, 2) if seconds > 0 and n_gen else None}}
    if error is not None:
        rec["error"] = error
    return rec
