"""`llamacy serve` live: a real server process on 127.0.0.1, driven by httpx and by the official
openai client. Greedy results must equal Llama.create_completion for the same prompt."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import STORIES_GGUF, llama_weights, vocab_metadata, write_gguf

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from llamacy import Llama  # noqa: E402
from llamacy._quants import GGMLType  # noqa: E402

GREEDY = {"temperature": 0, "repeat_penalty": 1.0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model: Path, *args: str):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "llamacy", "serve", "-m", str(model), "--host", "127.0.0.1",
                                      "--port", str(self.port), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    # the model loads in each worker's lifespan: wait until a request is served
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read()}")
            time.sleep(0.1)
        raise RuntimeError("server did not come up")

    def pids(self) -> list[int]:
        import psutil

        return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)] or [self.proc.pid]

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return self.proc.stderr.read()


@pytest.fixture(scope="module")
def server():
    s = Server(STORIES_GGUF, "--workers", "2", "--parallel", "4", "-c", "512")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def llm():
    with Llama(str(STORIES_GGUF), n_ctx=512, verbose=False) as m:
        yield m


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory):
    """A random model slow enough that a long generation takes seconds: ~390 tokens/s here, so
    4000 tokens are over 10 s and the 2 s windows below can tell a freed slot from a finished one."""
    tensors, meta = llama_weights(GGMLType.Q8_0, dim=1024, n_layers=6, n_heads=8, n_kv_heads=4, ffn=2816, vocab=512)
    meta["llama.context_length"] = 4096
    return write_gguf(tmp_path_factory.mktemp("slow") / "slow.gguf", tensors, {**meta, **vocab_metadata(STORIES_GGUF)})


def test_completion_equals_the_library(server, llm):
    r = httpx.post(server.url + "/v1/completions", json={"prompt": "Once upon a time", "max_tokens": 40, **GREEDY})
    assert r.status_code == 200, r.text
    body = r.json()
    want = llm.create_completion("Once upon a time", max_tokens=40, **GREEDY)
    assert body["object"] == "text_completion" and body["choices"][0]["text"] == want["choices"][0]["text"]
    assert body["usage"] == want["usage"] and body["choices"][0]["finish_reason"] == "length"


def test_streamed_completion_is_sse_ending_in_done(server, llm):
    with httpx.stream("POST", server.url + "/v1/completions",
                      json={"prompt": "One day", "max_tokens": 30, "stream": True, **GREEDY}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in r.iter_lines() if ln]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(ln[6:]) for ln in lines[:-1]]
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert text == llm.create_completion("One day", max_tokens=30, **GREEDY)["choices"][0]["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_the_openai_client(server, llm):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list().data] == ["stories260K.gguf"]
    c = client.completions.create(model="stories260K.gguf", prompt="Lily went", max_tokens=24, temperature=0,
                                  extra_body={"repeat_penalty": 1.0})
    assert c.choices[0].text == llm.create_completion("Lily went", max_tokens=24, **GREEDY)["choices"][0]["text"]
    messages = [{"role": "user", "content": "Tell me a story."}]
    chat = client.chat.completions.create(model="x", messages=messages, max_tokens=20, temperature=0,
                                          extra_body={"repeat_penalty": 1.0})
    want = llm.create_chat_completion(messages, max_tokens=20, temperature=0, repeat_penalty=1.0)
    assert chat.choices[0].message.content == want["choices"][0]["message"]["content"]
    assert chat.choices[0].message.role == "assistant" and chat.usage.prompt_tokens == want["usage"]["prompt_tokens"]
    stream = client.chat.completions.create(model="x", messages=messages, max_tokens=20, temperature=0, stream=True,
                                            extra_body={"repeat_penalty": 1.0})
    pieces = [c.choices[0].delta.content or "" for c in stream]
    assert "".join(pieces) == want["choices"][0]["message"]["content"]


def test_concurrent_clients_each_get_their_own_text(server, llm):
    prompts = [f"{w} went to the" for w in ("Lily", "Tom", "Ben", "Sue", "Max", "Anna", "Tim", "Sam")]
    want = {p: llm.create_completion(p, max_tokens=32, **GREEDY)["choices"][0]["text"] for p in prompts}
    got: dict[str, str] = {}

    def ask(p: str) -> None:
        r = httpx.post(server.url + "/v1/completions", json={"prompt": p, "max_tokens": 32, **GREEDY}, timeout=60)
        got[p] = r.json()["choices"][0]["text"]

    threads = [threading.Thread(target=ask, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == want


BAD = [
    (b"{not json", 400, None),
    (json.dumps({"prompt": "x", "max_tokens": "ten"}), 400, "max_tokens"),
    (json.dumps({"prompt": "x", "temperature": "hot"}), 400, "temperature"),
    (json.dumps({"prompt": "x", "top_p": 3}), 400, "top_p"),
    (json.dumps({"prompt": 5}), 400, "prompt"),
    (json.dumps({"prompt": "x", "n": 2}), 400, "n"),
    (json.dumps({"prompt": "x", "stop": 7}), 400, "stop"),
    (json.dumps({"prompt": "x", "stream": "yes"}), 400, "stream"),
    (json.dumps({"prompt": "x", "max_tokens": 600}), 400, "max_tokens"),  # beyond the 512 context
    (json.dumps({"prompt": "word " * 700}), 400, "messages"),  # longer than the context
    (json.dumps([1, 2]), 400, None),
]


@pytest.mark.parametrize("payload,status,param", BAD, ids=range(len(BAD)))
def test_bad_requests_get_openai_errors(server, payload, status, param):
    r = httpx.post(server.url + "/v1/completions", content=payload, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"] == "invalid_request_error" and err["param"] == param


def test_bad_chat_requests_and_huge_bodies(server):
    for body in ({"messages": "hi"}, {"messages": [{"role": "alien", "content": "x"}]},
                 {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}):
        r = httpx.post(server.url + "/v1/chat/completions", json=body)
        assert r.status_code == 400 and r.json()["error"]["param"] in ("messages", "response_format"), r.text
    r = httpx.post(server.url + "/v1/completions", content=b'{"prompt": "' + b"a" * (2 << 20) + b'"}')
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


def test_workers_survive_and_share_one_copy(server):
    before = sorted(server.pids())
    for payload, _, _ in BAD:
        httpx.post(server.url + "/v1/completions", content=payload)
    r = httpx.post(server.url + "/v1/completions", json={"prompt": "Once", "max_tokens": 4})
    assert r.status_code == 200
    assert sorted(server.pids()) == before and len(before) >= 2  # no worker died or was replaced


def test_disconnect_frees_the_slot_and_a_full_queue_is_503(slow_model):
    s = Server(slow_model, "--parallel", "1", "--max-queue", "1", "-c", "4096")
    try:
        # a long stream, abandoned after a few chunks: its slot is idle again at the next step
        # (greedy from [1, 2, 3] would run 1941 tokens, ~7 s, before its end of text)
        with httpx.stream("POST", s.url + "/v1/completions",
                          json={"prompt": [1, 2, 3], "max_tokens": 4000, "stream": True, "temperature": 0}) as r:
            it = r.iter_lines()
            for _ in range(4):
                next(it)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            if all(x["state"] == "idle" for x in httpx.get(s.url + "/slots").json()["slots"]):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the abandoned stream still holds its slot")
        # one request decoding, one waiting, the third is refused with Retry-After; greedy from
        # [1, 2, 3] runs 1941 tokens (~7 s here) before its end of text, so the first is still busy
        with httpx.Client(timeout=60) as c1, httpx.Client(timeout=60) as c2:
            body = {"prompt": [1, 2, 3], "max_tokens": 3000, "stream": True, "temperature": 0}
            with c1.stream("POST", s.url + "/v1/completions", json=body) as r1:
                lines1 = r1.iter_lines()  # kept: dropping the iterator would close the stream
                next(lines1)
                with c2.stream("POST", s.url + "/v1/completions", json=body) as r2:
                    assert r2.status_code == 200
                    deadline = time.monotonic() + 2
                    while httpx.get(s.url + "/slots").json()["waiting"] < 1 and time.monotonic() < deadline:
                        time.sleep(0.02)
                    r = httpx.post(s.url + "/v1/completions", json={"prompt": [1], "max_tokens": 5})
                    assert r.status_code == 503 and r.headers["retry-after"] == "1"
                    assert r.json()["error"]["code"] == "overloaded"
        # both abandoned: the server notices the closed connections within 2 s (not instantly: on a
        # loaded machine a request sent at once raced them and got a 503), then serves again
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            st = httpx.get(s.url + "/slots").json()
            if st["waiting"] == 0 and all(x["state"] == "idle" for x in st["slots"]):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the abandoned streams still hold the slot or the queue")
        r = httpx.post(s.url + "/v1/completions", json={"prompt": [1], "max_tokens": 5}, timeout=30)
        assert r.status_code == 200
    finally:
        s.stop()


def test_api_key(tmp_path):
    s = Server(STORIES_GGUF, "--api-key", "sesame")
    try:
        assert httpx.get(s.url + "/health").status_code == 200  # no key needed
        r = httpx.post(s.url + "/v1/completions", json={"prompt": "x", "max_tokens": 2})
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        assert httpx.get(s.url + "/v1/models").status_code == 401
        r = httpx.post(s.url + "/v1/completions", json={"prompt": "x", "max_tokens": 2},
                       headers={"Authorization": "Bearer sesame"})
        assert r.status_code == 200
        openai = pytest.importorskip("openai")
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="sesame", max_retries=0)
        assert client.completions.create(model="m", prompt="Once", max_tokens=3).choices[0].text is not None
        bad = openai.OpenAI(base_url=s.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.completions.create(model="m", prompt="Once", max_tokens=3)
    finally:
        s.stop()


def test_mapping_is_shared_between_workers(slow_model):
    from llamacy import mapping_sharing

    s = Server(slow_model, "--workers", "2", "-c", "256")
    try:
        for _ in range(6):  # requests reach both workers
            httpx.post(s.url + "/v1/completions", json={"prompt": [1, 2, 3], "max_tokens": 8})
        pids = [p for p in s.pids() if p != s.proc.pid]
        share = mapping_sharing(slow_model, pids)
        touched = [p for p in share.processes if p.mapping_rss]
        assert len(touched) == 2, share
        assert share.total_pss <= 1.1 * os.path.getsize(slow_model), share  # one copy between them
    finally:
        s.stop()


def test_without_the_server_extra_serve_says_how_to_install():
    code = ("import sys; sys.modules['starlette'] = None\n"  # an environment without Starlette
            "from llamacy._cli import main\n"
            f"sys.exit(main(['serve', '-m', {str(STORIES_GGUF)!r}, '--port', '1']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and 'pip install "llamacy[server]"' in r.stderr and r.stderr.count("\n") == 1
