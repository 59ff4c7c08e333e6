"""Byte-level BPE (Llama 3, GPT-2) and SentencePiece tokenization against llama.cpp itself.

The expected ids are in tests/data/vocab-cases.json, written by llama-cpp-python 0.3.36
(tests/oracle/llama_cpp_tokenize.py) from llama.cpp's vocabulary-only test files, which lie
xz-compressed in tests/data: whitespace runs, digits, contractions, emoji, CJK, invalid UTF-8 and
special-token text, each with and without special-token parsing and BOS.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DATA, llama_vocab, vocab_metadata, write_gguf

from llamacy import GGUFFile, Llama, ModelError, TokenizerError
from llamacy._tokenizer import Tokenizer

CASES = json.loads((DATA / "vocab-cases.json").read_text())
INVALID_UTF8 = {"fffe206162", "e6972068616c66", "7461696c20f09fa6", "c0af206f7665726c6f6e67"}


def _open(path):
    with GGUFFile(path) as f:
        return Tokenizer.from_gguf(f)


@pytest.fixture(scope="module")
def spm_gguf(tmp_path_factory):
    # the LLaMA SentencePiece vocabulary: the same 32000 pieces and types as ggml-vocab-llama-spm.gguf
    return write_gguf(tmp_path_factory.mktemp("spm") / "spm.gguf", {"x": np.zeros(4, np.float32)}, llama_vocab())


@pytest.mark.parametrize("name", ["llama-bpe", "gpt-2"])
def test_bpe_ids_and_bytes_equal_llama_cpp(real_vocab, name):
    tok = _open(real_vocab(name))
    assert tok.kind == "bpe"
    cases = CASES["vocabularies"][name]
    assert len(cases) == 208
    for c in cases:
        text = bytes.fromhex(c["text_hex"])
        assert tok.encode(text, add_bos=c["add_bos"], special=c["special"]) == c["ids"], (text, c)
        # the exact bytes of every piece, with and without special tokens printed
        assert b"".join(tok.token_bytes(t) for t in c["ids"]).hex() == c["pieces_hex"], text
        assert tok.decode_bytes(c["ids"], special=True).hex() == c["special_pieces_hex"], text


def test_sentencepiece_ids_equal_llama_cpp(spm_gguf):
    """Everything but invalid UTF-8, where llama.cpp's own SentencePiece code keeps the raw bytes
    as byte tokens; llamacy (sentencepiece) reads the text with each bad byte as U+FFFD."""
    tok = _open(spm_gguf)
    checked = 0
    for c in CASES["vocabularies"]["llama-spm"]:
        if c["text_hex"] in INVALID_UTF8:
            continue
        text = bytes.fromhex(c["text_hex"])
        assert tok.encode(text, add_bos=c["add_bos"], special=c["special"]) == c["ids"], (text, c)
        assert b"".join(tok.token_bytes(t) for t in c["ids"]).hex() == c["pieces_hex"], text
        checked += 1
    assert checked == 192


def test_llama3_vocabulary_facts(real_vocab):
    tok = _open(real_vocab("llama-bpe"))
    assert tok.n_vocab == 128256 and tok.pre == "llama3"
    assert (tok.bos_id, tok.eos_id, tok.add_bos) == (128000, 128001, True)
    eot = tok.encode("<|eot_id|>", add_bos=False, special=True)
    assert eot == [128009]
    assert tok.eog_ids == {128001, 128009}  # end of text, end of turn: both end generation
    # written in text without special=True, a control token is just text
    assert tok.encode("<|eot_id|>", add_bos=False) != eot
    assert tok.decode(eot) == "" and tok.decode_bytes(eot, special=True) == b"<|eot_id|>"


def test_stream_never_splits_a_character(real_vocab):
    tok = _open(real_vocab("llama-bpe"))
    text = "🦙 llamas 日本語 👩‍👩‍👧"
    ids = tok.encode(text, add_bos=False)
    partial = [i for i in ids if not tok.token_bytes(i).decode("utf-8", errors="ignore")]
    assert partial, "the case must have tokens that are part of a character"
    dec = tok.stream()
    out = [dec.push(i) for i in ids]
    assert "".join(out) + dec.flush() == text
    assert all("\ufffd" not in piece for piece in out)


def test_bad_token_ids_are_refused(real_vocab):
    tok = _open(real_vocab("gpt-2"))
    for bad in ([-1], [tok.n_vocab], [1.0], ["5"], [True]):
        with pytest.raises(TokenizerError):
            tok.decode_bytes(bad)


def test_end_of_generation_tokens_of_llama_3_1(real_vocab, tmp_path):
    """Llama 3.1 names reserved token 128008 <|eom_id|> (end of message, after a tool call), and
    files may name an EOT token in the metadata: all of them end generation."""
    meta = vocab_metadata(real_vocab("llama-bpe"), **{"tokenizer.ggml.eot_token_id": 128002})
    tokens = meta["tokenizer.ggml.tokens"][0]
    tokens[128008] = "<|eom_id|>"
    tok = _open(write_gguf(tmp_path / "v.gguf", {"x": np.zeros(4, np.float32)}, meta))
    assert tok.encode("<|eom_id|>", add_bos=False, special=True) == [128008]
    assert tok.eog_ids == {128001, 128002, 128008, 128009}


def test_add_bos_and_pre_from_metadata(real_vocab, tmp_path):
    src = real_vocab("gpt-2")
    meta = vocab_metadata(src, **{"tokenizer.ggml.add_bos_token": True, "tokenizer.ggml.add_eos_token": True})
    tok = _open(write_gguf(tmp_path / "b.gguf", {"x": np.zeros(4, np.float32)}, meta))
    ids = tok.encode("hi")
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and tok.encode("hi", add_bos=False) == ids[1:-1]
    meta = vocab_metadata(src, **{"tokenizer.ggml.pre": "tekken"})
    with pytest.raises(TokenizerError, match="pre-tokenizer 'tekken' is not supported"):
        _open(write_gguf(tmp_path / "p.gguf", {"x": np.zeros(4, np.float32)}, meta))
    meta = vocab_metadata(src, **{"tokenizer.ggml.eos_token_id": 10**6})
    with pytest.raises(TokenizerError, match="eos_token_id"):
        _open(write_gguf(tmp_path / "e.gguf", {"x": np.zeros(4, np.float32)}, meta))


# ---- vocab_only ------------------------------------------------------------------------------------
def test_vocab_only_tokenizes_and_refuses_evaluation(real_vocab):
    llm = Llama(str(real_vocab("llama-bpe")), vocab_only=True, verbose=False)
    case = next(c for c in CASES["vocabularies"]["llama-bpe"] if c["special"] and c["add_bos"]
                and bytes.fromhex(c["text_hex"]).startswith(b"<|begin_of_text|>"))
    ids = llm.tokenize(bytes.fromhex(case["text_hex"]), add_bos=True, special=True)
    assert ids == case["ids"]
    assert llm.detokenize(ids, special=True).hex() == case["special_pieces_hex"]
    assert (llm.n_vocab(), llm.token_bos(), llm.token_eos()) == (128256, 128000, 128001)
    for call in (lambda: llm("hi"), lambda: llm.eval([1]), lambda: llm.n_embd(),
                 lambda: llm.create_chat_completion([{"role": "user", "content": "hi"}]),
                 lambda: llm.create_completions(["a"])):
        with pytest.raises(ModelError, match="vocab_only"):
            call()
    llm.close()


# ---- chat prompts --------------------------------------------------------------------------------
@pytest.mark.parametrize("vocab", ["llama-bpe", "gpt-2", "llama-spm"])
def test_chat_prompt_tokens_equal_llama_cpp_python(real_vocab, spm_gguf, tmp_path, vocab):
    src = spm_gguf if vocab == "llama-spm" else real_vocab(vocab)
    template = (DATA / "meta-llama-Llama-3.2-3B-Instruct.jinja").read_text()
    with_template = write_gguf(tmp_path / "t.gguf", {"x": np.zeros(4, np.float32)},
                               vocab_metadata(src, **{"tokenizer.chat_template": template}))
    chats = CASES["chat"][vocab]
    assert {c["format"] for c in chats} >= {"llama-2", "llama-3", "chatml"}
    for c in chats:
        if c["format"] == "template":  # the file's own template, chosen by default
            llm = Llama(str(with_template), vocab_only=True, verbose=False)
            assert llm.chat_format == "chat_template.default"
            ids, stop = llm.chat_prompt(c["messages"], date_string="26 Jul 2024")
        else:
            llm = Llama(str(src), vocab_only=True, verbose=False, chat_format=c["format"])
            ids, stop = llm.chat_prompt(c["messages"])
        assert ids == c["ids"], (c["format"], c["messages"])
        assert stop == c["stop"]
        llm.close()


def test_chat_template_names_and_errors(real_vocab, tmp_path):
    template = (DATA / "meta-llama-Llama-3.2-3B-Instruct.jinja").read_text()
    path = write_gguf(tmp_path / "t.gguf", {"x": np.zeros(4, np.float32)},
                      vocab_metadata(real_vocab("llama-bpe"), **{"tokenizer.chat_template": template}))
    llm = Llama(str(path), vocab_only=True, verbose=False)
    ids, _ = llm.chat_prompt([{"role": "user", "content": "hi"}])
    import datetime

    today = datetime.datetime.now().strftime("%d %b %Y")  # strftime_now, as llama.cpp and HF provide it
    assert f"Today Date: {today}" in llm.detokenize(ids, special=True).decode()
    from llamacy import InvalidRequestError

    for bad in ([], [{"role": "wizard", "content": "x"}], [{"role": "user", "content": 5}], "hi", [["user"]]):
        with pytest.raises(InvalidRequestError):
            llm.chat_prompt(bad)
    # a template's raise_exception is the request's error, not the template's crash
    broken = write_gguf(tmp_path / "r.gguf", {"x": np.zeros(4, np.float32)}, vocab_metadata(
        real_vocab("gpt-2"), **{"tokenizer.chat_template": "{{ raise_exception('roles must alternate') }}"}))
    with pytest.raises(InvalidRequestError, match="roles must alternate"):
        Llama(str(broken), vocab_only=True, verbose=False).chat_prompt([{"role": "user", "content": "x"}])
    # the sandbox: a template cannot reach Python internals
    sneaky = write_gguf(tmp_path / "s.gguf", {"x": np.zeros(4, np.float32)}, vocab_metadata(
        real_vocab("gpt-2"), **{"tokenizer.chat_template": "{{ messages.__class__.__mro__[1].__subclasses__() }}"}))
    with pytest.raises(InvalidRequestError):
        Llama(str(sneaky), vocab_only=True, verbose=False).chat_prompt([{"role": "user", "content": "x"}])
    unparsable = write_gguf(tmp_path / "u.gguf", {"x": np.zeros(4, np.float32)}, vocab_metadata(
        real_vocab("gpt-2"), **{"tokenizer.chat_template": "{% for %}"}))
    with pytest.raises(ModelError, match="does not compile"):
        Llama(str(unparsable), vocab_only=True, verbose=False).chat_prompt([{"role": "user", "content": "x"}])
    with pytest.raises(InvalidRequestError, match="chat_format"):
        Llama(str(path), vocab_only=True, verbose=False, chat_format="vicuna-9")
