"""llamacy.Llama against llama-cpp-python's documented shapes and behaviour (not imported)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import REFERENCE_TEXT

from llamacy import Llama

REFERENCE = REFERENCE_TEXT  # llama2.c's greedy text
COMPLETION_KEYS = {"id", "object", "created", "model", "choices", "usage"}
CHOICE_KEYS = {"text", "index", "logprobs", "finish_reason"}


@pytest.fixture(scope="module")
def llm(stories_gguf):
    with Llama(str(stories_gguf), n_ctx=512, verbose=False, seed=1) as m:
        yield m


def test_completion_shape_and_greedy_text(llm):
    r = llm("", max_tokens=64, temperature=0)
    assert set(r) == COMPLETION_KEYS and r["object"] == "text_completion" and r["id"].startswith("cmpl-")
    assert isinstance(r["created"], int) and r["model"].endswith("stories260K.gguf")
    (c,) = r["choices"]
    assert set(c) == CHOICE_KEYS and c["index"] == 0 and c["logprobs"] is None and c["finish_reason"] == "length"
    assert REFERENCE.startswith(c["text"]) and len(c["text"]) > 100
    assert r["usage"] == {"prompt_tokens": 1, "completion_tokens": 64, "total_tokens": 65}


def test_prompt_as_text_or_ids_and_echo(llm):
    ids = llm.tokenize(b"Once upon a time")
    a = llm("Once upon a time", max_tokens=10, temperature=0)["choices"][0]["text"]
    b = llm.create_completion(ids, max_tokens=10, temperature=0)["choices"][0]["text"]
    assert a == b and REFERENCE.startswith("Once upon a time" + a)
    e = llm("Once upon a time", max_tokens=10, temperature=0, echo=True)["choices"][0]["text"]
    assert e == "Once upon a time" + a


def test_stream_chunks(llm):
    chunks = list(llm("Once upon a time", max_tokens=12, temperature=0, stream=True))
    for c in chunks:
        assert {"id", "object", "created", "model", "choices"} <= set(c)
        assert c["object"] == "text_completion" and set(c["choices"][0]) == CHOICE_KEYS
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert text == llm("Once upon a time", max_tokens=12, temperature=0)["choices"][0]["text"]


def test_stop_strings_cut_even_across_tokens(llm):
    full = llm("Once upon a time", max_tokens=30, temperature=0)["choices"][0]["text"]
    assert "girl named" in full
    r = llm("Once upon a time", max_tokens=30, temperature=0, stop=["rl nam"])  # spans " girl" + " named"
    assert r["choices"][0]["text"] == full[:full.index("rl nam")]
    assert r["choices"][0]["finish_reason"] == "stop"
    streamed = "".join(c["choices"][0]["text"] for c in llm("Once upon a time", max_tokens=30, temperature=0,
                                                             stop=["rl nam"], stream=True))
    assert streamed == r["choices"][0]["text"]


def test_seeded_sampling_is_reproducible(llm):
    a = llm("One day", max_tokens=20, temperature=0.9, seed=5)["choices"][0]["text"]
    b = llm("One day", max_tokens=20, temperature=0.9, seed=5)["choices"][0]["text"]
    c = llm("One day", max_tokens=20, temperature=0.9, seed=6)["choices"][0]["text"]
    assert a == b and a != c


def test_context_limits(stories_gguf):
    with Llama(str(stories_gguf), n_ctx=16, verbose=False) as small:
        with pytest.raises(ValueError, match=r"Requested tokens \(21\) exceed context window of 16"):
            small(list(range(3, 24)), max_tokens=4)
        r = small("Once upon a time", max_tokens=100, temperature=0)
        assert r["choices"][0]["finish_reason"] == "length"
        assert r["usage"]["total_tokens"] <= 16 + 1


def test_logprobs_need_logits_all(llm, stories_gguf):
    with pytest.raises(ValueError, match="logits_all"):
        llm("x", max_tokens=2, logprobs=3)
    with Llama(str(stories_gguf), logits_all=True, verbose=False) as m:
        r = m("Once", max_tokens=4, temperature=0, logprobs=2)
        lp = r["choices"][0]["logprobs"]
        assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == 4
        assert all(v <= 0 for v in lp["token_logprobs"])
        assert all(len(d) <= 2 for d in lp["top_logprobs"])
        assert m.scores.shape == (512, m.n_vocab())


def test_tokens_and_facts(llm):
    ids = [1, 385, 328, 432, 261, 376, 400, 428, 395, 392, 412, 444]
    assert llm.tokenize(b"One day, a little dog named Max") == ids
    assert llm.tokenize(b"One day", add_bos=False)[0] != 1
    assert llm.detokenize(llm.tokenize(b"One day, a little dog")) == b"One day, a little dog"
    assert (llm.token_bos(), llm.token_eos(), llm.n_ctx(), llm.n_vocab(), llm.n_embd()) == (1, 2, 512, 512, 64)
    assert llm.metadata["general.architecture"] == "llama"
    assert llm.metadata["llama.block_count"] == "5"


def test_eval_and_scores(llm):
    llm.reset()
    llm.eval([1, 403])
    assert llm.n_tokens == 2
    first = int(np.argmax(llm.scores[0]))
    llm.eval([first])
    assert llm.n_tokens == 3 and list(llm.input_ids[:3]) == [1, 403, first]


def test_constructor_options(stories_gguf):
    with Llama(str(stories_gguf), n_gpu_layers=99, main_gpu=0, tensor_split=None, verbose=False) as m:
        mapped = m("", max_tokens=20, temperature=0)["choices"][0]["text"]
    with Llama(str(stories_gguf), use_mmap=False, verbose=False) as m:
        assert m._gguf.mapping.residency() is None  # a private copy, not the file
        assert m("", max_tokens=20, temperature=0)["choices"][0]["text"] == mapped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a refused mlock warns, never fails
        with Llama(str(stories_gguf), use_mlock=True, verbose=False) as m:
            assert m("", max_tokens=5, temperature=0)["choices"][0]["text"] == mapped[:len(
                m("", max_tokens=5, temperature=0)["choices"][0]["text"])]
    with pytest.raises(TypeError, match="unexpected keyword"):
        Llama(str(stories_gguf), n_gpus=1)
    with Llama(str(stories_gguf), n_ctx=0, verbose=False) as m:
        assert m.n_ctx() == 512  # 0: the model's trained context


def test_verbose_prints_memory_line(stories_gguf, capsys):
    with Llama(str(stories_gguf), verbose=True):
        pass
    err = capsys.readouterr().err
    assert "llamacy: memory: model" in err and "mapped" in err and "resident" in err and "anonymous" in err
