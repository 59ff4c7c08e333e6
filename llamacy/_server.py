"""`llamacy serve`: an OpenAI-compatible HTTP server over the batching engine.

    POST /v1/completions         text completions (stream: server-sent events ending in [DONE])
    POST /v1/chat/completions    chat completions, rendered with the model's chat template
    GET  /v1/models              the one model served
    GET  /health                 liveness (no API key needed)
    GET  /slots                  this worker's slots, idle or processing (as llama.cpp's server)

Each worker process (uvicorn's --workers; all map the same file, one copy in the page cache)
holds one `Llama` and an engine thread driving a `Batcher`: up to `parallel` requests share each
pass over the weights, joining and leaving between steps; a client that disconnects is cancelled
at the next step. HTTP handlers validate, tokenize and queue; the engine thread pushes text
back to each request's asyncio queue. Bad input is a 400 in OpenAI's error shape, a full queue a
503 with Retry-After, a body over the limit a 413, a wrong API key a 401 -- never a dead worker.

Starlette and uvicorn are the optional extra `llamacy[server]`, imported only here.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from llamacy._chat import check_messages
from llamacy._errors import InvalidRequestError, LlamacyError
from llamacy._generate import Batcher, Request, option_float, option_int, request_params

__all__ = ["ServeConfig", "make_app", "serve"]

CONFIG_ENV = "LLAMACY_SERVE_CONFIG"  # how uvicorn's worker processes get the configuration


@dataclass
class ServeConfig:
    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    parallel: int = 4
    n_ctx: int = 2048
    n_batch: int = 512
    n_threads: int | None = None
    api_key: str | None = None
    max_queue: int = 64  # requests waiting for a slot, per worker; more get 503
    max_body: int = 1 << 20  # bytes
    chat_format: str | None = None
    alias: str | None = None
    seed: int = 0


# ---- errors in OpenAI's shape ----------------------------------------------------------------------
class HTTPError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def _bad(message: str, param: str | None = None) -> HTTPError:
    return HTTPError(400, message, param=param)


# ---- the engine thread -------------------------------------------------------------------------------
@dataclass
class Job:
    req: Request
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue
    n_prompt: int
    cancelled: bool = False

    def push(self, item: Any) -> None:
        self.loop.call_soon_threadsafe(self.out.put_nowait, item)


@dataclass
class Engine:
    """One worker's model and the thread that runs its batching engine."""

    config: ServeConfig
    llm: Any = None
    waiting: collections.deque = field(default_factory=collections.deque)
    inbox: queue.Queue = field(default_factory=queue.Queue)
    jobs: dict[int, Job] = field(default_factory=dict)

    def start(self) -> None:
        from llamacy._llama import Llama

        c = self.config
        threads = c.n_threads or max(1, (os.cpu_count() or 1) // max(1, c.workers))
        self.llm = Llama(c.model, n_ctx=c.n_ctx, n_batch=c.n_batch, n_threads=threads, verbose=False,
                         chat_format=c.chat_format, seed=c.seed)
        self.batcher = Batcher(self.llm.model, self.llm.tokenizer, parallel=c.parallel, base_seed=c.seed,
                               defaults={}, chat=None)
        self.thread = threading.Thread(target=self._run, name="llamacy-engine", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> None:
        if self.inbox.qsize() + len(self.waiting) >= self.config.max_queue:
            raise HTTPError(503, "the server is busy: every slot is taken and the queue is full; retry shortly",
                            kind="server_error", code="overloaded", headers={"Retry-After": "1"})
        self.inbox.put(job)

    def cancel(self, job: Job) -> None:
        job.cancelled = True
        self.inbox.put(None)  # wake the thread

    def _run(self) -> None:
        b = self.batcher
        while True:
            block = not b.active and not self.waiting
            try:
                item = self.inbox.get(timeout=0.5) if block else self.inbox.get_nowait()
                while True:
                    if item is not None:
                        self.waiting.append(item)
                    item = self.inbox.get_nowait()
            except queue.Empty:
                pass
            for job in [j for j in self.waiting if j.cancelled]:
                self.waiting.remove(job)
                job.push(("done", None))
            for job in list(self.jobs.values()):
                if job.cancelled:
                    b.cancel(job.req)
            while b.has_room and self.waiting:
                job = self.waiting.popleft()
                rec = b.admit(job.req)
                if rec is not None:
                    job.push(("error", rec.get("error", "cannot serve this request")))
                else:
                    self.jobs[id(job.req)] = job
            if not b.active:
                continue
            try:
                events = b.step()
            except Exception as e:  # noqa: BLE001 - a bug must not take the worker down: fail these requests
                for job in self.jobs.values():
                    job.push(("error", f"{type(e).__name__}: {e}"))
                for a in list(b.active.values()):
                    b.cancel(a.req)
                b.step()
                self.jobs.clear()
                continue
            for ev in events:
                job = self.jobs.get(id(ev.req))
                if job is None:
                    continue
                if ev.text:
                    job.push(("text", ev.text))
                if ev.record is not None:
                    del self.jobs[id(ev.req)]
                    job.push(("done", ev.record))


# ---- requests -----------------------------------------------------------------------------------------
_SAMPLING = {"temperature": 0.8, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1}


def _options(body: dict, max_tokens_default: int | None) -> dict:
    """The request's sampling options, checked (400 naming the field), llama-cpp-python's defaults."""
    o: dict[str, Any] = {}
    try:
        for key, default in _SAMPLING.items():
            v = body.get(key, default)
            o[key] = option_int({key: v}, key) if key == "top_k" else option_float({key: v}, key, default)
        mt = body.get("max_tokens", body.get("max_completion_tokens", max_tokens_default))
        o["max_tokens"] = option_int({"max_tokens": mt}, "max_tokens")
        if o["max_tokens"] is not None and o["max_tokens"] < 0:
            raise InvalidRequestError("max_tokens must be >= 0")
        if body.get("seed") is not None:
            o["seed"] = option_int(body, "seed")
            if not 0 <= o["seed"] < 2**64:
                raise InvalidRequestError("seed must be in [0, 2^64)")
        if body.get("stop") is not None:
            o["stop"] = body["stop"]
        request_params(o)  # ranges and stop's type
    except InvalidRequestError as e:
        field_name = next((k for k in (*_SAMPLING, "max_tokens", "seed", "stop") if k in str(e)), None)
        raise _bad(str(e), field_name) from None
    for key in ("n", "best_of"):
        if body.get(key, 1) not in (1, None):
            raise _bad(f"{key} > 1 is not supported: one choice per request", key)
    if body.get("logprobs") not in (None, False, 0) or body.get("top_logprobs") not in (None, 0):
        raise _bad("logprobs are not supported by llamacy serve", "logprobs")
    if body.get("echo"):
        raise _bad("echo is not supported by llamacy serve", "echo")
    rf = body.get("response_format")
    if rf is not None and (not isinstance(rf, dict) or rf.get("type", "text") != "text"):
        raise _bad("response_format other than text is not supported (no grammar-constrained sampling)",
                   "response_format")
    if not isinstance(body.get("stream", False), bool):
        raise _bad("stream must be a boolean", "stream")
    return o


def _check_length(n_prompt: int, max_tokens: int | None, n_ctx: int) -> None:
    if n_prompt > n_ctx:
        raise _bad(f"the prompt is {n_prompt} tokens, more than the context of {n_ctx}", "messages")
    if max_tokens is not None and n_prompt + max_tokens > n_ctx:
        raise _bad(f"the prompt ({n_prompt} tokens) plus max_tokens ({max_tokens}) exceeds the context of {n_ctx}",
                   "max_tokens")


# ---- the app ------------------------------------------------------------------------------------------
def make_app(config: ServeConfig):
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    engine = Engine(config)
    model_id = config.alias or os.path.basename(config.model)

    def error_response(e: HTTPError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    def check_key(request) -> None:
        if config.api_key is not None and request.headers.get("authorization", "") != f"Bearer {config.api_key}":
            raise HTTPError(401, "invalid or missing API key (Authorization: Bearer ...)",
                            kind="authentication_error", code="invalid_api_key")

    async def read_json(request) -> dict:
        check_key(request)
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > config.max_body):
            raise HTTPError(413, f"the request body is larger than {config.max_body} bytes", code="body_too_large")
        data = bytearray()
        try:
            async for chunk in request.stream():
                data += chunk
                if len(data) > config.max_body:
                    raise HTTPError(413, f"the request body is larger than {config.max_body} bytes",
                                    code="body_too_large")
        except ClientDisconnect:
            raise HTTPError(400, "the client went away") from None
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise _bad(f"the body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise _bad("the body must be a JSON object")
        return body

    async def run(request, build) -> Any:
        try:
            body = await read_json(request)
            req, n_prompt, stream, chat = build(body)
        except HTTPError as e:
            return error_response(e)
        loop = asyncio.get_running_loop()
        job = Job(req, loop, asyncio.Queue(), n_prompt)
        try:
            engine.submit(job)
        except HTTPError as e:
            return error_response(e)
        cid, created = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex, int(time.time())
        if stream:
            return StreamingResponse(_sse(job, engine, cid, created, model_id, chat), media_type="text/event-stream")
        parts, record = [], None
        try:
            while True:
                kind, payload = await job.out.get()
                if kind == "text":
                    parts.append(payload)
                elif kind == "error":
                    return error_response(_bad(payload))
                else:
                    record = payload
                    break
        finally:
            if record is None:
                engine.cancel(job)
        return JSONResponse(_whole(record, "".join(parts), cid, created, model_id, chat))

    def build_completion(body: dict):
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        o = _options(body, 16)
        llm = engine.llm
        if isinstance(prompt, str):
            tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        elif isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool)
                                                         for t in prompt):
            if any(not 0 <= t < llm.n_vocab() for t in prompt):
                raise _bad(f"prompt token ids must be in [0, {llm.n_vocab()})", "prompt")
            tokens, prompt = list(prompt), llm.detokenize(prompt).decode("utf-8", errors="replace")
        else:
            raise _bad("prompt must be a string, a list of one string, or a list of token ids", "prompt")
        _check_length(len(tokens), o["max_tokens"], llm.n_ctx())
        return Request(uuid.uuid4().hex, prompt, 0, o, tokens=tokens), len(tokens), body.get("stream", False), False

    def build_chat(body: dict):
        try:
            messages = check_messages(body.get("messages"))
        except InvalidRequestError as e:
            raise _bad(str(e), "messages") from None
        o = _options(body, None)
        extra = {"tools": body["tools"]} if body.get("tools") else {}
        try:
            tokens, stops = engine.llm.chat_prompt(messages, **extra)
        except LlamacyError as e:
            raise _bad(str(e), "messages") from None
        stop = o.get("stop") or []
        o["stop"] = ([stop] if isinstance(stop, str) else list(stop)) + stops
        _check_length(len(tokens), o["max_tokens"], engine.llm.n_ctx())
        return Request(uuid.uuid4().hex, "", 0, o, tokens=tokens), len(tokens), body.get("stream", False), True

    async def completions(request):
        return await run(request, build_completion)

    async def chat_completions(request):
        return await run(request, build_chat)

    async def models(request):
        try:
            check_key(request)
        except HTTPError as e:
            return error_response(e)
        return JSONResponse({"object": "list", "data": [{"id": model_id, "object": "model", "created": 0,
                                                          "owned_by": "llamacy", "permissions": []}]})

    async def health(request):
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await asyncio.get_running_loop().run_in_executor(None, engine.start)
        yield

    async def slots(request):
        try:
            check_key(request)
        except HTTPError as e:
            return error_response(e)
        busy = set(engine.batcher.active)
        return JSONResponse({"slots": [{"id": i, "state": "processing" if i in busy else "idle"}
                                       for i in range(config.parallel)],
                             "waiting": len(engine.waiting) + engine.inbox.qsize(), "pid": os.getpid()})

    app = Starlette(routes=[Route("/v1/completions", completions, methods=["POST"]),
                            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
                            Route("/v1/models", models, methods=["GET"]),
                            Route("/health", health, methods=["GET"]),
                            Route("/slots", slots, methods=["GET"])],
                    lifespan=lifespan)
    app.state.engine = engine
    return app


def _usage(record: dict) -> dict:
    p, c = record["prompt_tokens"], record["completion_tokens"]
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _finish(record: dict) -> str:
    return "stop" if record["finish_reason"] == "cancelled" else record["finish_reason"]


def _whole(record: dict, text: str, cid: str, created: int, model: str, chat: bool) -> dict:
    if chat:
        return {"id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                             "finish_reason": _finish(record)}], "usage": _usage(record)}
    return {"id": cid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": _finish(record)}],
            "usage": _usage(record)}


async def _sse(job: Job, engine: Engine, cid: str, created: int, model: str, chat: bool):
    """Server-sent events: a chunk per piece of text, the finish reason, then [DONE]. A client
    that goes away cancels the request (the engine frees its slot at the next step)."""
    obj = "chat.completion.chunk" if chat else "text_completion"

    def chunk(text: str | None, finish: str | None, role: bool = False, usage: dict | None = None) -> str:
        if chat:
            delta = {"role": "assistant"} if role else ({"content": text} if text is not None else {})
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"text": text or "", "index": 0, "logprobs": None, "finish_reason": finish}
        c = {"id": cid, "object": obj, "created": created, "model": model, "choices": [choice]}
        if usage is not None:
            c["usage"] = usage
        return "data: " + json.dumps(c, ensure_ascii=False) + "\n\n"

    done = False
    try:
        if chat:
            yield chunk(None, None, role=True)
        while True:
            kind, payload = await job.out.get()
            if kind == "text":
                yield chunk(payload, None)
            elif kind == "error":
                yield "data: " + json.dumps(_bad(payload).body()) + "\n\n"
                done = True
                break
            else:
                done = True
                yield chunk(None, _finish(payload), usage=_usage(payload))
                break
        yield "data: [DONE]\n\n"
    finally:
        if not done:
            engine.cancel(job)


# ---- running it ---------------------------------------------------------------------------------------
def app_factory():
    """uvicorn's entry in each worker process: the configuration comes through the environment."""
    return make_app(ServeConfig(**json.loads(os.environ[CONFIG_ENV])))


def serve(config: ServeConfig) -> None:
    try:
        import starlette  # noqa: F401 - the app's framework, imported again by each worker
        import uvicorn
    except ImportError:
        raise LlamacyError('llamacy serve needs the server extra: pip install "llamacy[server]"') from None
    os.environ[CONFIG_ENV] = json.dumps(config.__dict__)
    uvicorn.run("llamacy._server:app_factory", factory=True, host=config.host, port=config.port,
                workers=config.workers, log_level="warning", timeout_graceful_shutdown=5)

