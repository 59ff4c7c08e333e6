"""`Llama`: the llama-cpp-python API over llamacy's engine.

A llama-cpp-python user switches with one import change::

    from llamacy import Llama            # was: from llama_cpp import Llama
    llm = Llama("model.gguf", n_ctx=512)
    print(llm("Once upon a time", max_tokens=32)["choices"][0]["text"])

Same constructor keywords (GPU-only ones are accepted and ignored), same completion dicts and
stream chunks, same tokenize/detokenize/eval/scores surface for the common path, and
`create_chat_completion` rendering messages with the file's chat template (llamacy._chat).
`vocab_only=True` opens only the vocabulary.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from llamacy._chat import ChatFormat, check_messages, choose_format
from llamacy._errors import InvalidRequestError, LlamacyError, ModelError
from llamacy._generate import Request, generate_batch, request_params
from llamacy._generate import Sequence as GenSequence
from llamacy._gguf import GGUFFile
from llamacy._model import LlamaModel, default_threads, zeros
from llamacy._sampling import DEFAULT_SEED, DEFAULTS, Sampler, SamplingParams
from llamacy._tokenizer import Tokenizer, _token_id

__all__ = ["Llama"]

_IGNORED = {  # llama-cpp-python keywords that have no meaning on llamacy's CPU engine
    "n_gpu_layers", "split_mode", "main_gpu", "tensor_split", "rpc_servers", "kv_overrides",
    "offload_kqv", "flash_attn", "numa", "embedding", "rope_scaling_type", "pooling_type",
    "yarn_ext_factor", "yarn_attn_factor", "yarn_beta_fast", "yarn_beta_slow",
    "yarn_orig_ctx", "mul_mat_q", "chat_handler", "draft_model", "lora_base", "lora_path",
    "lora_scale", "type_k", "type_v", "spm_infill", "op_offload", "swa_full", "no_perf", "logits_processor",
    "n_ubatch", "offload", "defrag_thold", "cache", "verbose_load",
}


class Llama:
    """A GGUF LLaMA model with its tokenizer, KV cache and sampler."""

    def __init__(self, model_path: str, *, n_ctx: int = 512, n_batch: int = 512, n_threads: int | None = None,
                 n_threads_batch: int | None = None, seed: int = DEFAULT_SEED, use_mmap: bool = True,
                 use_mlock: bool = False, logits_all: bool = False, verbose: bool = True,
                 last_n_tokens_size: int = 64, tokenizer_path: str | None = None, kv_type: str = "f16",
                 vocab_only: bool = False, chat_format: str | None = None, rope_freq_base: float = 0.0,
                 rope_freq_scale: float = 0.0, **kwargs: Any):
        unknown = set(kwargs) - _IGNORED
        if unknown:
            raise TypeError(f"Llama() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
        t0 = time.perf_counter()
        self.model_path = str(model_path)
        self.verbose = verbose
        self.vocab_only = bool(vocab_only)
        self._gguf = GGUFFile(model_path, use_mmap=use_mmap)
        try:
            if use_mlock and not vocab_only:
                self._gguf.mapping.lock()  # warns, does not fail, when the OS refuses
            if not isinstance(n_ctx, (int, np.integer)) or isinstance(n_ctx, bool) or n_ctx < 0:
                raise InvalidRequestError(f"n_ctx must be an integer >= 0 (0: the model's own), not {n_ctx!r}")
            if n_ctx == 0:
                n_ctx = self._gguf.arch_typed("context_length", int, 2048, lo=1, hi=2**31 - 1, error=ModelError)
            self.tokenizer = Tokenizer.from_file(tokenizer_path) if tokenizer_path else Tokenizer.from_gguf(self._gguf)
            self.model: LlamaModel | None = None
            if not vocab_only:
                self.model = LlamaModel(self._gguf, n_ctx=n_ctx, n_batch=n_batch,
                                        n_threads=n_threads or n_threads_batch or default_threads(),
                                        kv_type=kv_type, rope_freq_base=rope_freq_base,
                                        rope_freq_scale=rope_freq_scale)
                if self.tokenizer.n_vocab != self.model.config.vocab_size:
                    raise ModelError(f"{model_path}: the vocabulary has {self.tokenizer.n_vocab} tokens but "
                                     f"token_embd.weight has {self.model.config.vocab_size} rows")
            self.chat_handler: ChatFormat = choose_format(
                chat_format, self._gguf.metadata.get("tokenizer.chat_template"),
                bos_token=self._token_text(self.tokenizer.bos_id), eos_token=self._token_text(self.tokenizer.eos_id))
            self.chat_format = self.chat_handler.name
        except BaseException:
            self._gguf.close()
            raise
        self.logits_all = logits_all
        self.last_n_tokens_size = last_n_tokens_size
        # One Llama, one KV cache: calls from several threads are serialized by this lock; a
        # stream holds it for each step and raises if another call ran in between (_epoch).
        self._lock = threading.RLock()
        self._epoch = 0
        if vocab_only:
            self._n_ctx, self.n_batch, self.n_threads = n_ctx, n_batch, 0
            self.load_seconds = time.perf_counter() - t0
            return
        self._n_ctx = n_ctx
        self.n_batch = self.model.n_batch
        self.n_threads = self.model.n_threads
        self._sampler = Sampler(seed)
        self.input_ids = np.zeros(n_ctx, np.int64)  # tokens in the KV cache
        self.n_tokens = 0
        # rows written only for evaluated positions; untouched rows cost no memory
        self.scores = zeros((n_ctx if logits_all else 1, self.model.config.vocab_size), np.float32)
        self._last_logits: np.ndarray | None = None
        self.load_seconds = time.perf_counter() - t0
        if verbose:
            from llamacy._render import memory_line

            print(f"llamacy: loaded {self.model_path} in {1e3 * self.load_seconds:.1f} ms "
                  f"({self.model.config.n_layers} layers, n_ctx {n_ctx}, {self.n_threads} threads)", file=sys.stderr)
            print(memory_line(self), file=sys.stderr)

    # -- model facts --------------------------------------------------------------------------------
    @property
    def metadata(self) -> dict[str, str]:
        """GGUF metadata as strings, as llama-cpp-python gives it (arrays left out)."""
        out = {}
        for k, v in self._gguf.metadata.items():
            if isinstance(v, bool):
                out[k] = "true" if v else "false"
            elif isinstance(v, (int, float, str)):
                out[k] = str(v)
        return out

    def _weights(self) -> LlamaModel:
        if self.model is None:
            raise ModelError(f"{self.model_path} was opened with vocab_only=True: it has no weights to evaluate")
        return self.model

    def _token_text(self, token: int) -> str:
        """A token's text as stored in the vocabulary (what templates get as bos_token/eos_token)."""
        return self.tokenizer.pieces[token]

    def n_ctx(self) -> int:
        return self._n_ctx

    def n_vocab(self) -> int:
        return self.tokenizer.n_vocab if self.model is None else self.model.config.vocab_size

    def n_embd(self) -> int:
        return self._weights().config.dim

    def token_bos(self) -> int:
        return self.tokenizer.bos_id

    def token_eos(self) -> int:
        return self.tokenizer.eos_id

    # -- tokens ----------------------------------------------------------------------------------------
    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return self.tokenizer.encode(text, add_bos=add_bos, special=special)

    def detokenize(self, tokens: Sequence[int], prev_tokens: Sequence[int] | None = None,
                   special: bool = False) -> bytes:
        return self.tokenizer.decode_bytes(tokens, prev_tokens, special)

    # -- evaluation ------------------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self.n_tokens = 0
            self._epoch += 1

    def eval(self, tokens: Sequence[int]) -> None:
        """Evaluate tokens after the ones already in the cache."""
        with self._lock:
            self._eval(tokens)

    def _eval(self, tokens: Sequence[int]) -> None:
        model = self._weights()
        tokens = [_token_id(t) for t in tokens]
        if not tokens:
            return
        if self.n_tokens + len(tokens) > model.n_ctx:
            raise InvalidRequestError(f"Requested tokens ({self.n_tokens + len(tokens)}) exceed context window of "
                                      f"{model.n_ctx}")
        logits = model.forward(tokens, self.n_tokens, all_logits=self.logits_all)
        self.input_ids[self.n_tokens:self.n_tokens + len(tokens)] = tokens
        if self.logits_all:
            self.scores[self.n_tokens:self.n_tokens + len(tokens)] = logits
            self._last_logits = self.scores[self.n_tokens + len(tokens) - 1]
        else:
            self.scores[0] = logits
            self._last_logits = self.scores[0]
        self.n_tokens += len(tokens)
        self._epoch += 1  # the cache changed: a stream that did not do this must not go on

    def _eval_prompt(self, tokens: list[int]) -> None:
        """Reuse the cached prefix shared with the last evaluation (llama-cpp-python does too)."""
        same = 0
        limit = min(self.n_tokens, len(tokens) - 1)  # re-evaluate at least one token for fresh logits
        while same < limit and self.input_ids[same] == tokens[same]:
            same += 1
        self.n_tokens = same
        self._eval(tokens[same:])

    # -- completion ------------------------------------------------------------------------------------
    def __call__(self, prompt: str | Sequence[int], **kwargs: Any) -> dict | Iterator[dict]:
        return self.create_completion(prompt, **kwargs)

    def create_completion(self, prompt: str | Sequence[int], suffix: str | None = None, max_tokens: int | None = 16,
                          temperature: float = DEFAULTS.temperature, top_p: float = DEFAULTS.top_p,
                          min_p: float = DEFAULTS.min_p, typical_p: float = 1.0, logprobs: int | None = None,
                          echo: bool = False, stop: str | list[str] | None = None,
                          frequency_penalty: float = DEFAULTS.frequency_penalty,
                          presence_penalty: float = DEFAULTS.presence_penalty,
                          repeat_penalty: float = DEFAULTS.repeat_penalty, top_k: int = DEFAULTS.top_k,
                          stream: bool = False, seed: int | None = None, model: str | None = None,
                          **ignored: Any) -> dict | Iterator[dict]:
        self._weights()
        if logprobs is not None and not self.logits_all:
            raise InvalidRequestError("logprobs is not supported for models created with logits_all=False")
        params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                                repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
                                presence_penalty=presence_penalty,
                                repeat_last_n=self.last_n_tokens_size).validate()
        stops = request_params({"stop": stop})[1]
        if isinstance(prompt, str):
            prompt_tokens = self.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        else:
            try:
                prompt_tokens = [_token_id(t) for t in prompt]
            except LlamacyError as e:
                raise InvalidRequestError(str(e)) from None
            if any(not 0 <= t < self.n_vocab() for t in prompt_tokens):
                raise InvalidRequestError(f"prompt token ids must be in [0, {self.n_vocab()})")
        if not prompt_tokens:
            prompt_tokens = [self.token_bos()]
        if len(prompt_tokens) > self.model.n_ctx:
            raise InvalidRequestError(f"Requested tokens ({len(prompt_tokens)}) exceed context window of "
                                      f"{self.model.n_ctx}")
        if seed is not None:
            self._sampler.reseed(seed)
        gen = self._generate(prompt_tokens, params, max_tokens, stops, logprobs, echo, model or self.model_path)
        if stream:
            return gen
        with self._lock:  # a whole completion: calls from other threads wait
            *chunks, last = list(gen)
        text = "".join(c["choices"][0]["text"] for c in chunks + [last])
        out = last
        out["object"] = "text_completion"
        out["choices"][0]["text"] = text
        if logprobs is not None:
            lp = {"tokens": [], "text_offset": [], "token_logprobs": [], "top_logprobs": []}
            for c in chunks + [last]:
                part = c["choices"][0]["logprobs"]
                if part:
                    for k in lp:
                        lp[k] += part[k]
            out["choices"][0]["logprobs"] = lp
        return out

    # -- chat ------------------------------------------------------------------------------------------
    def chat_prompt(self, messages: Sequence[dict], **template_kwargs: Any) -> tuple[list[int], list[str]]:
        """Prompt tokens and the format's stop strings for chat messages (the chat format's text,
        tokenized with special tokens parsed; BOS added unless the template wrote it)."""
        result = self.chat_handler(check_messages(messages), **template_kwargs)
        tokens = self.tokenize(result.text.encode("utf-8"), add_bos=not result.added_special, special=True)
        return tokens, result.stop

    def create_chat_completion(self, messages: Sequence[dict], functions: Any = None, function_call: Any = None,
                               tools: Any = None, tool_choice: Any = None, temperature: float = 0.2,
                               top_p: float = 0.95, top_k: int = 40, min_p: float = 0.05, typical_p: float = 1.0,
                               stream: bool = False, stop: str | list[str] | None = None, seed: int | None = None,
                               response_format: dict | None = None, max_tokens: int | None = None,
                               presence_penalty: float = 0.0, frequency_penalty: float = 0.0,
                               repeat_penalty: float = 1.0, model: str | None = None, logprobs: bool | None = None,
                               top_logprobs: int | None = None, **ignored: Any) -> dict | Iterator[dict]:
        """A chat completion (llama-cpp-python's call and defaults): `chat.completion` dicts, or
        `chat.completion.chunk`s with stream=True, the first carrying {"role": "assistant"}."""
        if response_format is not None and response_format.get("type", "text") != "text":
            raise InvalidRequestError(f"response_format {response_format.get('type')!r} is not supported: llamacy "
                                      "has no grammar-constrained sampling (only {'type': 'text'})")
        if functions or function_call:
            raise InvalidRequestError("functions / function_call are not supported (the reply is plain text)")
        extra = {"tools": tools, "tool_choice": tool_choice} if tools else {}
        prompt, format_stops = self.chat_prompt(messages, **extra)
        stops = ([stop] if isinstance(stop, str) else list(stop or [])) + format_stops
        result = self.create_completion(prompt, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                        min_p=min_p, typical_p=typical_p, top_k=top_k, stream=stream, stop=stops,
                                        seed=seed, presence_penalty=presence_penalty,
                                        frequency_penalty=frequency_penalty, repeat_penalty=repeat_penalty,
                                        model=model, logprobs=top_logprobs or 0 if logprobs else None)
        if stream:
            return _chat_chunks(result)
        choice = result["choices"][0]
        return {"id": "chat" + result["id"], "object": "chat.completion", "created": result["created"],
                "model": result["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": choice["text"]},
                             "logprobs": _chat_logprobs(choice["logprobs"]), "finish_reason": choice["finish_reason"]}],
                "usage": result["usage"]}

    def create_completions(self, prompts: Sequence[str | Sequence[int]], *, max_tokens: int | None = 16,
                           temperature: float = DEFAULTS.temperature, top_p: float = DEFAULTS.top_p,
                           min_p: float = DEFAULTS.min_p, top_k: int = DEFAULTS.top_k,
                           repeat_penalty: float = DEFAULTS.repeat_penalty, stop: str | list[str] | None = None,
                           seed: int | None = None, parallel: int = 8) -> list[dict]:
        """Many completions at once, batched: up to `parallel` sequences share each pass over the
        weights. Returns one completion dict per prompt, in order. Each prompt's seed derives
        from `seed` and its index, so results do not depend on `parallel`."""
        self._weights()
        reqs = []
        for i, p in enumerate(prompts):
            if isinstance(p, str):
                reqs.append(Request(i, p, i + 1))
            else:  # token ids go in as they are (a text round trip need not give them back)
                try:
                    ids = [_token_id(t) for t in p] or [self.token_bos()]
                except LlamacyError as e:
                    raise InvalidRequestError(f"prompt {i}: {e}") from None
                if any(not 0 <= t < self.n_vocab() for t in ids):
                    raise InvalidRequestError(f"prompt {i}: token ids must be in [0, {self.n_vocab()})")
                reqs.append(Request(i, self.detokenize(ids).decode("utf-8", errors="replace"), i + 1, tokens=ids))
        defaults = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "min_p": min_p,
                    "top_k": top_k, "repeat_penalty": repeat_penalty, "stop": stop,
                    "repeat_last_n": self.last_n_tokens_size}
        base = self._sampler.seed if seed is None else seed
        if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
            raise InvalidRequestError(f"parallel must be a positive integer, not {parallel!r}")
        with self._lock:
            self.reset()  # the batch uses the cache slots; the single-sequence prefix cache is gone
            recs = {r["id"]: r for r in generate_batch(self.model, self.tokenizer, reqs, parallel=parallel,
                                                        base_seed=base, defaults=defaults)}
        created = int(time.time())
        out = []
        for i in range(len(reqs)):
            r = recs[i]
            if r["finish_reason"] == "error":
                raise InvalidRequestError(f"prompt {i}: {r['error']}")
            out.append({"id": f"cmpl-{uuid.uuid4()}", "object": "text_completion", "created": created,
                        "model": self.model_path,
                        "choices": [{"text": r["text"], "index": 0, "logprobs": None,
                                     "finish_reason": r["finish_reason"]}],
                        "usage": {"prompt_tokens": r["prompt_tokens"], "completion_tokens": r["completion_tokens"],
                                  "total_tokens": r["prompt_tokens"] + r["completion_tokens"]}})
        return out

    def _generate(self, prompt_tokens: list[int], params: SamplingParams, max_tokens: int | None,
                  stops: list[str], logprobs: int | None, echo: bool, model_name: str) -> Iterator[dict]:
        cid, created = f"cmpl-{uuid.uuid4()}", int(time.time())
        n_ctx = self.model.n_ctx

        def chunk(text: str, finish: str | None, lp: dict | None = None, usage: dict | None = None) -> dict:
            c = {"id": cid, "object": "text_completion", "created": created, "model": model_name,
                 "choices": [{"text": text, "index": 0, "logprobs": lp, "finish_reason": finish}]}
            if usage is not None:
                c["usage"] = usage
            return c

        t0 = time.perf_counter()
        with self._lock:
            self._eval_prompt(prompt_tokens)
            mine = self._epoch  # the cache state this stream owns
        t1 = time.perf_counter()
        self.last_timings = {"prompt_tokens": len(prompt_tokens), "prompt_seconds": t1 - t0,
                             "completion_tokens": 0, "completion_seconds": 0.0}
        if echo:
            yield chunk(self.detokenize(prompt_tokens).decode("utf-8", errors="replace"), None)
        seq = GenSequence(self.tokenizer, prompt_tokens, params, self._sampler, max_tokens, stops, n_ctx)
        while seq.finish is None:
            with self._lock:
                self._still_mine(mine)
                logits = self._last_logits
                tok, out = seq.step(logits)
                lp = (self._logprobs(logits, tok, logprobs, seq.text.offset - len(out))
                      if logprobs is not None and seq.finish != "stop" else None)
            if seq.finish == "stop":  # end of text, or a stop string: nothing of this token is shown
                break
            if out or lp is not None:
                yield chunk(out, None, lp)
            if seq.finish is None:
                with self._lock:
                    self._still_mine(mine)
                    self._eval([tok])
                    mine = self._epoch
        pending = seq.rest()
        completion = seq.generated
        self.last_timings.update(completion_tokens=len(completion), completion_seconds=time.perf_counter() - t1)
        usage = {"prompt_tokens": len(prompt_tokens), "completion_tokens": len(completion),
                 "total_tokens": len(prompt_tokens) + len(completion)}
        yield chunk(pending, seq.finish, None, usage)

    def _still_mine(self, epoch: int) -> None:
        if self._epoch != epoch:
            raise InvalidRequestError("another call used this Llama while the stream was open: streams of one Llama "
                                      "cannot interleave with other calls (use one Llama per concurrent stream)")

    def _logprobs(self, logits: np.ndarray, tok: int, k: int, offset: int) -> dict:
        z = logits.astype(np.float64)
        lse = z.max() + np.log(np.exp(z - z.max()).sum())
        logp = z - lse
        top = np.argsort(-logp, kind="stable")[:max(k, 1)]
        piece = self.tokenizer.token_bytes(tok).decode("utf-8", errors="replace")
        return {"tokens": [piece], "text_offset": [offset], "token_logprobs": [float(logp[tok])],
                "top_logprobs": [{self.tokenizer.token_bytes(int(i)).decode("utf-8", errors="replace"):
                                  float(logp[i]) for i in top}]}

    # -- lifetime -----------------------------------------------------------------------------------
    def close(self) -> None:
        self._gguf.close()

    def __enter__(self) -> Llama:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _chat_chunks(chunks: Iterator[dict]) -> Iterator[dict]:
    """Completion stream chunks as chat.completion.chunk: a role chunk first, then content, then
    an empty delta with the finish reason (text held back to the end gets a content chunk first)."""
    first = True
    for c in chunks:
        head = {"id": "chat" + c["id"], "model": c["model"], "created": c["created"], "object": "chat.completion.chunk"}
        if first:
            yield {**head, "choices": [{"index": 0, "delta": {"role": "assistant"}, "logprobs": None,
                                        "finish_reason": None}]}
            first = False
        choice = c["choices"][0]
        if choice["text"] or choice["logprobs"]:
            yield {**head, "choices": [{"index": 0, "delta": {"content": choice["text"]},
                                        "logprobs": _chat_logprobs(choice["logprobs"]), "finish_reason": None}]}
        if choice["finish_reason"] is not None:
            yield {**head, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                        "finish_reason": choice["finish_reason"]}]}


def _chat_logprobs(lp: dict | None) -> dict | None:
    """Completion logprobs in the chat shape: {"content": [{token, bytes, logprob, top_logprobs}]}."""
    if lp is None:
        return None
    content = []
    for tok, logprob, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
        content.append({"token": tok, "bytes": None, "logprob": logprob,
                        "top_logprobs": [{"token": t, "bytes": None, "logprob": p} for t, p in (top or {}).items()]})
    return {"content": content, "refusal": None}
