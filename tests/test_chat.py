"""Chat completions, `llamacy chat` and chat-shaped batch records on a Llama-3-shaped model with
the real Llama 3 vocabulary and chat template (random weights: the texts are arbitrary, so every
check compares two routes to the same tokens)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import DATA

from llamacy import InvalidRequestError, Llama, SamplingParams
from llamacy._generate import Sequence
from llamacy._sampling import Sampler

CASES = json.loads((DATA / "vocab-cases.json").read_text())
HELLO = [{"role": "user", "content": "Hello!"}]


@pytest.fixture(scope="module")
def llm(llama3_model):
    with Llama(str(llama3_model), n_ctx=256, verbose=False, chat_format="llama-3") as m:
        yield m


def test_chat_completion_is_the_completion_of_the_chat_prompt(llm):
    oracle = next(c for c in CASES["chat"]["llama-bpe"] if c["format"] == "llama-3" and c["messages"] == HELLO)
    ids, stops = llm.chat_prompt(HELLO)
    assert ids == oracle["ids"] and stops == ["<|eot_id|>"]  # llama-cpp-python's tokens for these messages
    r = llm.create_chat_completion(HELLO, temperature=0, max_tokens=12)
    assert r["object"] == "chat.completion" and r["id"].startswith("chatcmpl-")
    choice = r["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
    assert r["usage"]["prompt_tokens"] == len(ids)
    plain = llm.create_completion(ids, temperature=0, max_tokens=12, stop=["<|eot_id|>"])
    assert choice["message"]["content"] == plain["choices"][0]["text"]
    assert r["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"] > 0


def test_streamed_chat_equals_the_whole_reply(llm):
    whole = llm.create_chat_completion(HELLO, temperature=0, max_tokens=12)
    chunks = list(llm.create_chat_completion(HELLO, temperature=0, max_tokens=12, stream=True))
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[-1]["choices"][0]["delta"] == {} and chunks[-1]["choices"][0]["finish_reason"] == \
        whole["choices"][0]["finish_reason"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]


def test_chat_options_refused_clearly(llm):
    with pytest.raises(InvalidRequestError, match="response_format"):
        llm.create_chat_completion(HELLO, response_format={"type": "json_object"})
    with pytest.raises(InvalidRequestError, match="role"):
        llm.create_chat_completion([{"role": "robot", "content": "x"}])


def test_chat_logprobs(llama3_model):
    with Llama(str(llama3_model), n_ctx=128, verbose=False, logits_all=True) as m:
        r = m.create_chat_completion(HELLO, temperature=0, max_tokens=4, logprobs=True, top_logprobs=2)
    content = r["choices"][0]["logprobs"]["content"]
    assert len(content) == r["usage"]["completion_tokens"]
    for c in content:
        assert c["logprob"] <= 0 and len(c["top_logprobs"]) == 2
        assert c["logprob"] == pytest.approx(max(t["logprob"] for t in c["top_logprobs"]))  # greedy: the top one


def test_the_files_template_is_the_default(llama3_model):
    with Llama(str(llama3_model), n_ctx=256, verbose=False) as m:
        assert m.chat_format == "chat_template.default"
        ids, stops = m.chat_prompt(HELLO, date_string="26 Jul 2024")
        r = m.create_chat_completion(HELLO, temperature=0, max_tokens=3)
    oracle = next(c for c in CASES["chat"]["llama-bpe"] if c["format"] == "template" and c["messages"] == HELLO)
    assert ids == oracle["ids"] and stops == ["<|end_of_text|>"]
    assert r["usage"]["prompt_tokens"] == len(ids)  # today's date is as long as the fixed one


def test_end_of_turn_tokens_end_generation(llm):
    """A sampled <|eot_id|> (or <|end_of_text|>) ends the reply like EOS, and prints nothing."""
    for end in (128009, 128001):
        seq = Sequence(llm.tokenizer, [128000, 9906], SamplingParams(temperature=0), Sampler(0), 10, [], 256)
        logits = np.zeros(llm.n_vocab(), np.float32)
        logits[end] = 1.0
        tok, text = seq.step(logits)
        assert (tok, text, seq.finish, seq.generated) == (end, "", "stop", [])
    seq = Sequence(llm.tokenizer, [128000, 9906], SamplingParams(temperature=0), Sampler(0), 10, [], 256)
    logits[:] = 0
    logits[1917] = 1.0  # " world": an ordinary token goes on
    assert seq.step(logits) == (1917, " world") and seq.finish is None


def _cli(*args, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llamacy", *args], input=stdin, capture_output=True, text=True,
                          timeout=300)


def test_cli_chat_with_piped_turns_keeps_the_history(llama3_model, llm):
    r = _cli("chat", "-m", str(llama3_model), "-c", "256", "--temp", "0", "-n", "6", "--chat-format", "llama-3",
             "--system", "Be brief.", "--quiet", stdin="Hello!\n\nTell me more.\n/reset\nHello!\n")
    assert r.returncode == 0, r.stderr
    replies = r.stdout.split("\n")[:-1]
    assert len(replies) == 3
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
    first = llm.create_chat_completion(conv, temperature=0, max_tokens=6)["choices"][0]["message"]["content"]
    conv += [{"role": "assistant", "content": first}, {"role": "user", "content": "Tell me more."}]
    second = llm.create_chat_completion(conv, temperature=0, max_tokens=6)["choices"][0]["message"]["content"]
    assert replies == [first, second, first]  # after /reset the same first turn again


def test_batch_messages_records(llama3_model, tmp_path):
    src = tmp_path / "in.jsonl"
    records = [{"id": "a", "messages": HELLO},
               {"id": "b", "messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}]},
               {"id": "c", "prompt": "Once upon a time"},
               {"id": "d", "messages": [{"role": "wizard", "content": "x"}]}]
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out.jsonl"
    r = _cli("batch", "-m", str(llama3_model), str(src), "-o", str(out), "-c", "256", "--temp", "0", "-n", "6",
             "--skip-bad", "--quiet")
    assert r.returncode == 0, r.stderr
    got = {rec["id"]: rec for rec in map(json.loads, out.read_text().splitlines())}
    assert got["d"]["finish_reason"] == "error" and "role" in got["d"]["error"]
    with Llama(str(llama3_model), n_ctx=256, verbose=False) as m:  # the file's template, as batch uses
        for rid in ("a", "b"):
            want = m.create_chat_completion(got[rid]["messages"], temperature=0, max_tokens=6, repeat_penalty=1.1)
            assert got[rid]["text"] == want["choices"][0]["message"]["content"], rid
            assert got[rid]["prompt_tokens"] == want["usage"]["prompt_tokens"]
        assert got["c"]["prompt"] == "Once upon a time" and "messages" not in got["c"]


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal")
def test_cli_chat_on_a_terminal(llama3_model, llm):
    """The interactive loop on a real pseudo-terminal: prompt, streamed reply, /reset, Ctrl-D."""
    import os
    import pty
    import select
    import time

    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "llamacy", "chat", "-m", str(llama3_model), "-c", "256", "--temp", "0",
                          "-n", "6", "--chat-format", "llama-3"], stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    seen = b""

    def read_until(marker: bytes, timeout: float = 60) -> bytes:
        nonlocal seen
        end = time.monotonic() + timeout
        while marker not in seen and time.monotonic() < end:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        assert marker in seen, seen
        out, seen = seen[:seen.index(marker) + len(marker)], seen[seen.index(marker) + len(marker):]
        return out

    try:
        read_until(b"> ")
        os.write(master, b"Hello!\n")
        reply = read_until(b"> ").decode()
        os.write(master, b"/reset\n")
        assert b"conversation reset" in read_until(b"> ")
        os.write(master, b"\x04")  # Ctrl-D
        assert p.wait(timeout=60) == 0
    finally:
        p.kill()
        os.close(master)
    want = llm.create_chat_completion(HELLO, temperature=0, max_tokens=6)["choices"][0]["message"]["content"]
    # the terminal echoes the typed line, then the reply follows (the tty turns \n into \r\n)
    assert reply.replace("\r\n", "\n") == "Hello!\n" + want + "\n> "
