"""Choosing the next token from logits: greedy, or penalties -> top-k -> top-p -> min-p ->
temperature -> a draw, in llama.cpp's order. Vectorized numpy; the random source is numpy's
PCG64, so a seed gives the same draws on every OS, thread count and batch size."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llamacy._errors import InvalidRequestError

__all__ = ["DEFAULTS", "Sampler", "SamplingParams", "apply_penalties"]

DEFAULT_SEED = 0xFFFFFFFF  # llama.cpp's LLAMA_DEFAULT_SEED: "pick one at random"


@dataclass(frozen=True)
class SamplingParams:
    """The sampling settings; their defaults here are llamacy's (and llama.cpp's) defaults,
    everywhere: the Llama API, the CLI flags and batch records all read them from DEFAULTS."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repeat_last_n: int = 64

    def validate(self) -> SamplingParams:
        """The parameters checked: numbers of the right kind (no NaN or infinity, integers where
        counts are meant), in range; InvalidRequestError naming the first that is not."""
        for name in ("temperature", "top_p", "min_p", "repeat_penalty", "frequency_penalty", "presence_penalty"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
                raise InvalidRequestError(f"{name} must be a finite number, not {v!r}")
        for name in ("top_k", "repeat_last_n"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise InvalidRequestError(f"{name} must be an integer, not {v!r}")
        if self.temperature < 0:
            raise InvalidRequestError(f"temperature must be >= 0 (0: greedy), not {self.temperature}")
        if not 0.0 <= self.top_p <= 1.0:
            raise InvalidRequestError(f"top_p must be in [0, 1], not {self.top_p}")
        if not 0.0 <= self.min_p <= 1.0:
            raise InvalidRequestError(f"min_p must be in [0, 1], not {self.min_p}")
        if self.repeat_penalty <= 0:
            raise InvalidRequestError(f"repeat_penalty must be positive, not {self.repeat_penalty}")
        if self.repeat_last_n < -1:
            raise InvalidRequestError(f"repeat_last_n must be -1 (all), 0 (off) or positive, not {self.repeat_last_n}")
        return self


DEFAULTS = SamplingParams()


def apply_penalties(logits: np.ndarray, history: Sequence[int], p: SamplingParams) -> np.ndarray:
    """Repeat penalty (divide positive logits, multiply negative ones), then frequency and presence
    penalties, over the last `repeat_last_n` tokens (-1: all). Returns a new array."""
    if not history or p.repeat_last_n == 0 or (
            p.repeat_penalty == 1.0 and p.frequency_penalty == 0.0 and p.presence_penalty == 0.0):
        return logits
    recent = np.asarray(history if p.repeat_last_n < 0 else history[-p.repeat_last_n:], dtype=np.int64)
    ids, counts = np.unique(recent, return_counts=True)
    out = logits.astype(np.float32, copy=True)
    v = out[ids]
    v = np.where(v > 0, v / p.repeat_penalty, v * p.repeat_penalty)
    v -= counts * p.frequency_penalty + p.presence_penalty
    out[ids] = v
    return out


class Sampler:
    """Stateful only in its random generator (PCG64 from `seed`)."""

    def __init__(self, seed: int | None = None):
        self.reseed(seed)

    def reseed(self, seed: int | None) -> None:
        if seed is None or seed == DEFAULT_SEED or seed < 0:
            seed = int(np.random.SeedSequence().entropy % 2**63)
        self.seed = int(seed)
        self.rng = np.random.Generator(np.random.PCG64(self.seed))

    def sample(self, logits: np.ndarray, history: Sequence[int], p: SamplingParams) -> int:
        logits = apply_penalties(np.asarray(logits, np.float32), history, p)
        if p.temperature <= 0:
            return int(np.argmax(logits))
        order = np.argsort(-logits, kind="stable")  # ties: lower id first
        if 0 < p.top_k < order.size:
            order = order[:p.top_k]
        z = logits[order].astype(np.float64)
        probs = np.exp(z - z[0])
        probs /= probs.sum()
        if p.top_p < 1.0:  # smallest prefix with cumulative probability >= top_p
            keep = int(np.searchsorted(np.cumsum(probs), p.top_p, side="left")) + 1
            order, z, probs = order[:keep], z[:keep], probs[:keep]
        if p.min_p > 0.0:  # drop tokens below min_p x the most likely one
            keep = max(1, int(np.count_nonzero(probs >= p.min_p * probs[0])))
            order, z = order[:keep], z[:keep]
        w = np.exp((z - z[0]) / p.temperature)
        cdf = np.cumsum(w)
        i = int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right"))
        return int(order[min(i, order.size - 1)])
