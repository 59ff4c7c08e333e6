"""Sampling: each filter and penalty, seeded reproducibility, and the distribution itself."""

from __future__ import annotations

import numpy as np
import pytest

from llamacy._sampling import Sampler, SamplingParams, apply_penalties

GREEDY = SamplingParams(temperature=0.0)
PLAIN = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)


def test_greedy_is_argmax():
    logits = np.array([0.1, 3.0, -1.0, 2.9], np.float32)
    assert Sampler(0).sample(logits, [], GREEDY) == 1
    assert Sampler(0).sample(logits, [], SamplingParams(temperature=1.0, top_k=1)) == 1


def test_filters():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    s = Sampler(1)
    draws = {s.sample(logits, [], SamplingParams(temperature=1.0, top_k=2, top_p=1.0, min_p=0.0)) for _ in range(300)}
    assert draws == {0, 1}
    draws = {s.sample(logits, [], SamplingParams(temperature=1.0, top_k=0, top_p=0.8, min_p=0.0)) for _ in range(300)}
    assert draws == {0, 1}  # 0.5 + 0.3 reaches 0.8
    draws = {s.sample(logits, [], SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.25)) for _ in range(300)}
    assert draws == {0, 1, 2}  # 0.05 < 0.25 * 0.5
    draws = {s.sample(logits, [], SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=1.0)) for _ in range(50)}
    assert draws == {0}


def test_distribution_follows_softmax_with_temperature():
    logits = np.array([1.0, 0.0, -1.0, 0.5], np.float32)
    for temp in (1.0, 0.5):
        s = Sampler(7)
        p = SamplingParams(temperature=temp, top_k=0, top_p=1.0, min_p=0.0)
        n = 20000
        counts = np.bincount([s.sample(logits, [], p) for _ in range(n)], minlength=4)
        expect = np.exp(logits / temp) / np.exp(logits / temp).sum()
        sd = np.sqrt(expect * (1 - expect) / n)
        assert np.all(np.abs(counts / n - expect) < 5 * sd), (counts / n, expect)


def test_seed_reproducible():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(1000).astype(np.float32)
    p = SamplingParams(temperature=0.9)
    s1, s2 = Sampler(1234), Sampler(1234)
    a = [s1.sample(logits, [], p) for _ in range(50)]
    b = [s2.sample(logits, [], p) for _ in range(50)]
    assert a == b and len(set(a)) > 5
    assert a != [Sampler(4321).sample(logits, [], p) for _ in range(50)]


def test_penalties():
    logits = np.array([2.0, -2.0, 1.0, 0.5], np.float32)
    p = SamplingParams(repeat_penalty=2.0, repeat_last_n=3)
    out = apply_penalties(logits, [3, 0, 1, 1], p)  # last 3: 0, 1, 1
    np.testing.assert_allclose(out, [1.0, -4.0, 1.0, 0.5])
    p = SamplingParams(frequency_penalty=0.5, presence_penalty=0.25, repeat_last_n=-1)
    out = apply_penalties(logits, [3, 0, 1, 1], p)
    np.testing.assert_allclose(out, [2.0 - 0.75, -2.0 - 1.25, 1.0, 0.5 - 0.75])
    assert apply_penalties(logits, [0], SamplingParams(repeat_penalty=2.0, repeat_last_n=0)) is logits


def test_invalid_params():
    for kw in ({"top_p": 1.5}, {"min_p": -0.1}, {"repeat_penalty": 0.0}, {"repeat_last_n": -2}):
        with pytest.raises(ValueError):
            SamplingParams(**kw).validate()
