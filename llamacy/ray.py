"""llamacy for Ray Data: batch inference over a Dataset, one `Llama` per actor.

    import ray
    from llamacy.ray import LlamaCompletions

    ds = ray.data.from_items([{"id": 1, "prompt": "Once upon a time"},
                              {"id": 2, "messages": [{"role": "user", "content": "Hi"}]}])
    out = ds.map_batches(LlamaCompletions, fn_constructor_kwargs={"model_path": "model.gguf", "max_tokens": 64},
                         concurrency=2, batch_size=16)

Ray Data's batch-inference convention: a callable class whose constructor loads the model once
per actor (here: maps the file; actors on one node share one page-cache copy) and whose
`__call__` takes a batch -- a dict of columns -- and returns it with new columns: `text`,
`finish_reason`, `prompt_tokens`, `completion_tokens`. Rows have a `prompt` (text) or `messages`
(a chat rendered with the model's template). A batch's rows are generated together by the
batching engine (`parallel` at a time); each row's seed derives from `seed` and its `id` column
(or its prompt), so results do not depend on how the dataset is split. Ray is the optional extra
`llamacy[ray]`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llamacy._errors import InvalidRequestError
from llamacy._generate import Request, derive_seed, generate_batch

__all__ = ["LlamaCompletions"]

_SAMPLING = ("max_tokens", "temperature", "top_k", "top_p", "min_p", "repeat_penalty", "stop")


class LlamaCompletions:
    def __init__(self, model_path: str, *, parallel: int = 8, seed: int = 0, max_tokens: int | None = 128,
                 temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
                 repeat_penalty: float = 1.0, stop: str | list[str] | None = None, **llama_kwargs: Any):
        from llamacy._llama import Llama

        self.llm = Llama(model_path, verbose=False, **llama_kwargs)
        self.parallel, self.seed = parallel, seed
        self.defaults = {"max_tokens": max_tokens, "temperature": temperature, "top_k": top_k, "top_p": top_p,
                         "min_p": min_p, "repeat_penalty": repeat_penalty, "stop": stop}

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        if hasattr(batch, "to_dict") and not isinstance(batch, dict):  # a pandas batch
            batch = {k: np.asarray(v) for k, v in batch.to_dict(orient="list").items()}
        if "prompt" not in batch and "messages" not in batch:
            raise InvalidRequestError('a batch needs a "prompt" or a "messages" column')
        n = len(next(iter(batch.values())))
        reqs = []
        for i in range(n):
            prompt = batch["prompt"][i] if "prompt" in batch else None
            messages = batch["messages"][i] if "messages" in batch else None
            if prompt is None and messages is not None:
                messages = [dict(m) for m in messages]  # Ray hands lists of dicts as numpy object arrays
            else:
                messages = None
            key = _plain(batch["id"][i]) if "id" in batch else (prompt if prompt is not None else repr(messages))
            opts = {k: _plain(batch[k][i]) for k in _SAMPLING if k in batch and batch[k][i] is not None}
            if "seed" in batch and batch["seed"][i] is not None:
                opts["seed"] = _plain(batch["seed"][i])
            else:  # the row's own seed, from its id: the same however the dataset is split
                opts["seed"] = derive_seed(self.seed, key)
            reqs.append(Request(i, "" if prompt is None else str(prompt), i, opts, messages=messages))
        rows: dict[int, dict] = {}
        for rec in generate_batch(self.llm.model, self.llm.tokenizer, reqs, parallel=self.parallel,
                                  base_seed=self.seed, defaults=self.defaults, chat=self.llm.chat_prompt):
            rows[rec["id"]] = rec
        rows = [rows[i] for i in range(n)]
        out = dict(batch)
        out["text"] = np.array([r["text"] for r in rows], dtype=object)
        out["finish_reason"] = np.array([r["finish_reason"] for r in rows], dtype=object)
        out["prompt_tokens"] = np.array([r["prompt_tokens"] for r in rows], dtype=np.int64)
        out["completion_tokens"] = np.array([r["completion_tokens"] for r in rows], dtype=np.int64)
        out["error"] = np.array([r.get("error") for r in rows], dtype=object)
        return out


def _plain(v: Any) -> Any:
    """numpy scalars as Python values (ids and options go into JSON-shaped records)."""
    return v.item() if isinstance(v, np.generic) else v
