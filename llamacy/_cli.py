"""The `llamacy` command: a thin layer over the Python API.

Errors of the user's input or the OS are one line on stderr and exit code 2, no traceback; a
genuine bug keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from llamacy._errors import InvalidRequestError, LlamacyError
from llamacy._sampling import DEFAULTS

EXIT_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


# -- info ---------------------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    from llamacy._gguf import GGUFFile
    from llamacy._render import info_text, summarize
    from llamacy._system import system_info

    with GGUFFile(args.model) as f:
        s = summarize(f)
    s["system"] = system_info()
    if args.json:
        print(json.dumps(s, indent=2, allow_nan=False))
        return 0
    print(info_text(s))
    return 0


# -- generate -----------------------------------------------------------------------------------
def _positive(kind: type, what: str, minimum: float = 1):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, not {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be at least {minimum}, not {text}")
        return v

    return parse


def add_sampling_flags(p: argparse.ArgumentParser) -> None:
    """The flags `generate` and `batch` share, with llama.cpp's names."""
    p.add_argument("-m", "--model", required=True, metavar="FNAME", help="GGUF model file")
    p.add_argument("-c", "--ctx-size", type=_positive(int, "--ctx-size", 0), default=512,
                   help="context size in tokens (0: the model's own; default 512)")
    p.add_argument("-t", "--threads", type=_positive(int, "--threads"), default=None, help="threads (default: cores)")
    p.add_argument("-b", "--batch-size", type=_positive(int, "--batch-size"), default=512,
                   help="prompt tokens per forward pass (default 512)")
    p.add_argument("-s", "--seed", type=int, default=-1, help="random seed (-1: random)")
    p.add_argument("-n", "--n-predict", type=int, default=-1, help="tokens to generate (-1: until end of text)")
    d = DEFAULTS
    p.add_argument("--temp", type=float, default=d.temperature,
                   help=f"temperature (0: greedy; default {d.temperature})")
    p.add_argument("--top-k", type=int, default=d.top_k)
    p.add_argument("--top-p", type=float, default=d.top_p)
    p.add_argument("--min-p", type=float, default=d.min_p)
    p.add_argument("--repeat-penalty", type=float, default=d.repeat_penalty)
    p.add_argument("--repeat-last-n", type=int, default=d.repeat_last_n)
    p.add_argument("--no-mmap", action="store_true", help="read the weights into private memory")
    p.add_argument("--mlock", action="store_true", help="lock the model in RAM")
    p.add_argument("--quiet", action="store_true", help="no load, memory or timing lines on stderr")


def _open_llama(args: argparse.Namespace, **kw: Any):
    from llamacy._llama import Llama

    return Llama(args.model, n_ctx=args.ctx_size, n_batch=args.batch_size, n_threads=args.threads,
                 seed=args.seed, use_mmap=not args.no_mmap, use_mlock=args.mlock,
                 last_n_tokens_size=args.repeat_last_n, verbose=not args.quiet and not getattr(args, "json", False),
                 **kw)


def cmd_generate(args: argparse.Namespace) -> int:
    if args.prompt is not None and args.file is not None:
        raise InvalidRequestError("give either -p/--prompt or -f/--file, not both")
    from llamacy._sampling import SamplingParams

    SamplingParams(temperature=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                   repeat_penalty=args.repeat_penalty, repeat_last_n=args.repeat_last_n).validate()
    # the prompt as bytes, as llama.cpp reads it: -p as the OS gave it (any encoding), -f raw;
    # bytes that are not UTF-8 become U+FFFD one by one, as in llama.cpp
    if args.file is not None:
        with open(args.file, "rb") as fh:
            prompt = fh.read()
    else:
        prompt = os.fsencode(args.prompt or "")
    llm = _open_llama(args)
    with llm:
        tokens = llm.tokenize(prompt, add_bos=True, special=True)
        stream = llm.create_completion(tokens, max_tokens=args.n_predict, temperature=args.temp, top_k=args.top_k,
                                       top_p=args.top_p, min_p=args.min_p, repeat_penalty=args.repeat_penalty,
                                       stream=True, seed=None)
        text, finish = [], None
        for chunk in stream:
            piece = chunk["choices"][0]["text"]
            finish = chunk["choices"][0]["finish_reason"] or finish
            if args.json:
                text.append(piece)
            elif piece:
                sys.stdout.write(piece)
                sys.stdout.flush()
        t = llm.last_timings
        rates = {"load_ms": round(1e3 * llm.load_seconds, 3),
                 "prompt_tokens": t["prompt_tokens"],
                 "prompt_tokens_per_s": round(t["prompt_tokens"] / max(t["prompt_seconds"], 1e-9), 2),
                 "completion_tokens": t["completion_tokens"],
                 "completion_tokens_per_s": round(t["completion_tokens"] / max(t["completion_seconds"], 1e-9), 2)}
        if args.json:
            print(json.dumps({"text": "".join(text), "finish_reason": finish, "seed": llm._sampler.seed, **rates}))
        else:
            sys.stdout.write("\n")
            if not args.quiet:
                print(f"llamacy: load {rates['load_ms']:.1f} ms | prompt {rates['prompt_tokens']} tokens, "
                      f"{rates['prompt_tokens_per_s']:.1f} tok/s | generated {rates['completion_tokens']} tokens, "
                      f"{rates['completion_tokens_per_s']:.1f} tok/s | {finish}", file=sys.stderr)
    return 0


# -- chat ------------------------------------------------------------------------------------------
def cmd_chat(args: argparse.Namespace) -> int:
    """A conversation: on a terminal, an interactive loop (streamed replies, /reset, Ctrl-D ends);
    with piped stdin, one user turn per line and one reply per line on stdout. The history stays
    in the KV cache: each turn evaluates only its new tokens. When the context is full the oldest
    turns are dropped (the system message stays)."""
    from llamacy._sampling import SamplingParams

    SamplingParams(temperature=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                   repeat_penalty=args.repeat_penalty, repeat_last_n=args.repeat_last_n).validate()
    interactive = sys.stdin.isatty()
    llm = _open_llama(args, chat_format=args.chat_format)
    system = [{"role": "system", "content": args.system}] if args.system else []
    history: list[dict] = []
    with llm:
        if interactive and not args.quiet:
            print(f"llamacy chat ({llm.chat_format}): /reset forgets the conversation, Ctrl-D ends", file=sys.stderr)
        while True:
            if interactive:
                try:
                    line = input("> ")
                except EOFError:
                    print(file=sys.stderr)
                    return 0
            else:
                line = sys.stdin.readline()
                if not line:
                    return 0
            text = line.rstrip("\r\n")
            if text.strip() == "/reset":
                history = []
                llm.reset()
                if interactive:
                    print("(conversation reset)", file=sys.stderr)
                continue
            if not text.strip():
                continue
            history.append({"role": "user", "content": text})
            reply = _chat_turn(llm, args, system, history, interactive)
            history.append({"role": "assistant", "content": reply})


def _chat_turn(llm: Any, args: argparse.Namespace, system: list[dict], history: list[dict], interactive: bool) -> str:
    """Stream one reply to stdout (Ctrl-C on a terminal cuts it short); the oldest turns are
    dropped while the conversation does not fit the context."""
    while True:
        try:
            chunks = llm.create_chat_completion(system + history, max_tokens=args.n_predict, temperature=args.temp,
                                                top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                                                repeat_penalty=args.repeat_penalty, stream=True)
            break
        except InvalidRequestError as e:
            if "exceed context window" not in str(e) or len(history) <= 1:
                raise
            del history[:2]  # the oldest user turn and its reply
            if interactive:
                print("(the oldest turn was dropped to fit the context)", file=sys.stderr)
    parts = []
    try:
        for c in chunks:
            piece = c["choices"][0]["delta"].get("content") or ""
            if piece:
                parts.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
    except KeyboardInterrupt:
        if not interactive:
            raise
    sys.stdout.write("\n")
    sys.stdout.flush()
    return "".join(parts)


# -- serve ----------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from llamacy._server import ServeConfig, serve

    if not os.path.isfile(args.model):
        raise FileNotFoundError(2, "No such file", args.model)
    serve(ServeConfig(model=args.model, host=args.host, port=args.port, workers=args.workers, parallel=args.parallel,
                      n_ctx=args.ctx_size, n_batch=args.batch_size, n_threads=args.threads, api_key=args.api_key,
                      max_queue=args.max_queue, max_body=args.max_body, chat_format=args.chat_format,
                      alias=args.alias, seed=args.seed if args.seed >= 0 else int.from_bytes(os.urandom(4), "little")))
    return 0


# -- mem -------------------------------------------------------------------------------------------
def cmd_mem(args: argparse.Namespace) -> int:
    from llamacy import _diagnostics as d
    from llamacy._render import report_text

    first = True
    while True:
        r = d.report(args.model, pids=args.pid, all_processes=args.all, do_evict=args.evict and first,
                     do_prefetch=args.prefetch and first)
        first = False
        if args.json:
            print(json.dumps(r.to_json(), indent=None if args.watch else 2), flush=True)
        else:
            if args.watch and sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[2J")
            print(report_text(r), flush=True)
        if not args.watch:
            return 0
        time.sleep(args.watch)


# -- batch -----------------------------------------------------------------------------------------
def cmd_batch(args: argparse.Namespace) -> int:
    from llamacy._batch import read_requests, run
    from llamacy._sampling import SamplingParams

    SamplingParams(temperature=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                   repeat_penalty=args.repeat_penalty, repeat_last_n=args.repeat_last_n).validate()
    reqs = read_requests(args.input, args.skip_bad)  # bad input and duplicate ids fail before any work
    defaults = {"max_tokens": args.n_predict, "temperature": args.temp, "top_k": args.top_k, "top_p": args.top_p,
                "min_p": args.min_p, "repeat_penalty": args.repeat_penalty, "repeat_last_n": args.repeat_last_n}
    seed = args.seed if args.seed >= 0 else int.from_bytes(os.urandom(7), "little")
    s = run(args.model, reqs, args.output, parallel=args.parallel, workers=args.workers, n_threads=args.threads,
            n_ctx=args.ctx_size or 512, n_batch=args.batch_size, seed=seed, defaults=defaults,
            use_mmap=not args.no_mmap, progress=None if args.quiet else sys.stderr,
            ray=False if args.ray is None else args.ray)
    if not args.quiet:
        print(f"llamacy batch: {s.written} written ({s.errors} errors), {s.skipped} already done, "
              f"{s.tokens} tokens in {s.seconds:.1f} s ({s.tokens_per_second:.1f} tok/s) -> {args.output}",
              file=sys.stderr)
    return 0


# -- convert -----------------------------------------------------------------------------------------
def cmd_convert(args: argparse.Namespace) -> int:
    from llamacy._convert import convert_llama2c

    out = convert_llama2c(args.checkpoint, args.tokenizer, args.output)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="llamacy", description="LLaMA inference on the CPU with zero-copy GGUF weights.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    info = sub.add_parser("info", help="show a GGUF model's metadata, tensors and page-cache residency")
    info.add_argument("model", metavar="MODEL.gguf")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=cmd_info)

    gen = sub.add_parser("generate", help="generate text from a prompt (llama.cpp flag names)")
    add_sampling_flags(gen)
    gen.add_argument("-p", "--prompt", default=None, help="prompt text")
    gen.add_argument("-f", "--file", default=None, help="read the prompt from a file")
    gen.add_argument("--json", action="store_true", help="print one JSON record instead of streaming text")
    gen.set_defaults(func=cmd_generate)

    bat = sub.add_parser("batch", help="generate for many prompts: JSONL out, batched, resumable")
    add_sampling_flags(bat)
    bat.add_argument("input", metavar="INPUT", help="prompts: text (one per line) or JSONL; - for stdin")
    bat.add_argument("-o", "--output", required=True, metavar="OUT.jsonl", help="records are appended here")
    bat.add_argument("--parallel", type=_positive(int, "--parallel"), default=4,
                     help="sequences decoded together per process (default 4)")
    bat.add_argument("--workers", type=_positive(int, "--workers"), default=1,
                     help="processes sharing the prompts, each mapping the same file (default 1)")
    bat.add_argument("--skip-bad", action="store_true", help="record malformed input lines as errors and go on")
    bat.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                     help="run on a Ray cluster (ADDRESS, or RAY_ADDRESS / a local one): --workers actors per node "
                          '(pip install "llamacy[ray]")')
    bat.set_defaults(func=cmd_batch)

    chat = sub.add_parser("chat", help="chat with an instruct model (its chat template; piped stdin: a turn per line)")
    add_sampling_flags(chat)
    chat.add_argument("--system", default=None, metavar="TEXT", help="system message")
    chat.add_argument("--chat-format", default=None, metavar="NAME",
                      help="llama-2, llama-3 or chatml instead of the file's template")
    chat.set_defaults(func=cmd_chat)

    srv = sub.add_parser("serve", help="an OpenAI-compatible HTTP server (pip install \"llamacy[server]\")")
    srv.add_argument("-m", "--model", required=True, metavar="FNAME", help="GGUF model file")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    srv.add_argument("--port", type=_positive(int, "--port"), default=8000)
    srv.add_argument("--workers", type=_positive(int, "--workers"), default=1,
                     help="processes, each mapping the same file (one copy in memory)")
    srv.add_argument("--parallel", type=_positive(int, "--parallel"), default=4,
                     help="requests decoded together per worker (default 4)")
    srv.add_argument("-c", "--ctx-size", type=_positive(int, "--ctx-size"), default=2048)
    srv.add_argument("-b", "--batch-size", type=_positive(int, "--batch-size"), default=512)
    srv.add_argument("-t", "--threads", type=_positive(int, "--threads"), default=None,
                     help="threads per worker (default: cores / workers)")
    srv.add_argument("-s", "--seed", type=int, default=-1, help="base seed of requests without one")
    srv.add_argument("--api-key", default=None, help="require Authorization: Bearer KEY (all routes but /health)")
    srv.add_argument("--max-queue", type=_positive(int, "--max-queue"), default=64,
                     help="requests waiting per worker before 503 (default 64)")
    srv.add_argument("--max-body", type=_positive(int, "--max-body"), default=1 << 20,
                     help="largest request body in bytes (default 1 MiB)")
    srv.add_argument("--chat-format", default=None, metavar="NAME", help="llama-2, llama-3 or chatml")
    srv.add_argument("--alias", default=None, help="the model id clients see (default: the file name)")
    srv.set_defaults(func=cmd_serve)

    mem = sub.add_parser("mem", help="page-cache residency of a model and the memory of processes mapping it")
    mem.add_argument("model", metavar="MODEL.gguf")
    mem.add_argument("--pid", type=int, action="append", help="a process to inspect (repeatable)")
    mem.add_argument("--all", action="store_true", help="every process of this user that maps the file")
    mem.add_argument("--evict", action="store_true", help="drop the file's pages from the page cache first")
    mem.add_argument("--prefetch", action="store_true", help="read the file into the page cache first")
    mem.add_argument("--json", action="store_true", help="print JSON")
    mem.add_argument("--watch", type=_positive(float, "--watch", 0.1), metavar="SECONDS",
                     help="refresh every SECONDS until interrupted")
    mem.set_defaults(func=cmd_mem)

    conv = sub.add_parser("convert", help="convert other model formats to GGUF")
    conv_sub = conv.add_subparsers(dest="format", metavar="FORMAT", parser_class=_Parser)
    conv_sub.required = True
    l2c = conv_sub.add_parser("llama2c", help="a llama2.c checkpoint (legacy v0) and its tokenizer.bin")
    l2c.add_argument("checkpoint", metavar="CHECKPOINT.bin")
    l2c.add_argument("tokenizer", metavar="TOKENIZER.bin")
    l2c.add_argument("-o", "--output", required=True, metavar="OUT.gguf")
    l2c.set_defaults(func=cmd_convert)
    return p


def _version() -> str:
    from llamacy import __version__

    return f"llamacy {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("llamacy: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError as e:
        if _reader_went_away():  # `llamacy generate ... | head`: stop quietly, as Unix tools do
            return 0
        print(f"llamacy: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except (LlamacyError, OSError) as e:  # the user's input or the OS: one line; anything else is a bug
        print(f"llamacy: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR


def _reader_went_away() -> bool:
    """Whether stdout is a pipe whose reader has closed it (then the broken pipe was ours to
    expect); any other broken pipe is an error. stdout is pointed at devnull so that Python's
    exit-time flush stays quiet."""
    gone = False
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        gone = True
    if not gone:
        try:
            import select

            poller = select.poll()
            poller.register(sys.stdout.fileno(), select.POLLOUT)
            gone = any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
        except (AttributeError, OSError, ValueError):  # no poll (Windows), or no real stdout
            gone = False
    if gone:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
    return gone


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
