"""The tokenizer built from a GGUF vocabulary against sentencepiece itself and llama.cpp's ids."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MODELS, llama_vocab, write_gguf

from llamacy import GGUFFile, TokenizerError
from llamacy._tokenizer import Tokenizer

spm = pytest.importorskip("sentencepiece")

CORPUS = [
    "Hello world", "The quick brown fox jumps over the lazy dog.", "café naïve résumé Ångström", "über straße",
    "😀 🎉 👩‍👩‍👧 🇫🇷", "日本語のテキスト", "中文字符和标点，。", "한국어", "Ελληνικά и русский",
    "  two  spaces   three", "     ", " leading", "trailing ", "\n", "line1\nline2\n\nline4", "\ttab\t\tx",
    "\r\n windows", "ctrl\x00\x01\x07\x1b chars", "", "a" * 3000, "word " * 700, "<s> not special </s>",
    "1234567890 3.14159 -42", "mixed😀text日本", "\u200b zero width", "emoji at end 🚀",
]


@pytest.fixture(scope="module")
def sp():
    return spm.SentencePieceProcessor(model_file=str(MODELS / "tokenizer.model"))


@pytest.fixture(scope="module")
def llama_tok(tmp_path_factory):
    path = write_gguf(tmp_path_factory.mktemp("vocab") / "v.gguf", {"x": np.zeros(4, np.float32)}, llama_vocab())
    with GGUFFile(path) as f:
        return Tokenizer.from_gguf(f)


@pytest.mark.parametrize("text", CORPUS, ids=range(len(CORPUS)))
def test_ids_equal_sentencepiece(sp, llama_tok, text):
    assert llama_tok.encode(text, add_bos=False) == sp.encode(text)
    assert llama_tok.encode(text) == [1] + sp.encode(text)
    assert llama_tok.decode(sp.encode(text)) == sp.decode(sp.encode(text))


def test_tokenizer_model_file_too(sp):
    t = Tokenizer.from_file(MODELS / "tokenizer.model")
    for text in CORPUS:
        assert t.encode(text, add_bos=False) == sp.encode(text)
    with pytest.raises(FileNotFoundError):
        Tokenizer.from_file(MODELS / "nope.model")


def test_stories260k_ids_equal_llama_cpp(stories_gguf):
    with GGUFFile(stories_gguf) as f:
        t = Tokenizer.from_gguf(f)
    # llama.cpp's ids for this prompt on stories260K
    assert t.encode("One day, a little dog named Max") == [1, 385, 328, 432, 261, 376, 400, 428, 395, 392, 412, 444]
    assert t.decode(t.encode("One day, a little dog named Max")) == "One day, a little dog named Max"


def test_special_tokens_only_when_asked(llama_tok):
    assert llama_tok.encode("<s>hi", add_bos=False, special=False) == llama_tok.sp.encode("<s>hi")
    ids = llama_tok.encode("<s>hi</s>", add_bos=False, special=True)
    assert ids[0] == 1 and ids[-1] == 2
    assert ids[1:-1] == llama_tok.sp.encode("hi")  # text after a special keeps its leading space, as llama.cpp


def test_streaming_never_emits_half_a_character(llama_tok):
    texts = ["😀 🎉 emoji", "日本語のテキスト", "naïve 🇫🇷 flag", "x" + "👩‍👩‍👧" * 3]
    assert sum(llama_tok.types[i] == 6 for i in llama_tok.encode(texts[0])) >= 4  # emoji use byte fallback
    for text in texts:
        ids = llama_tok.encode(text, add_bos=False)
        dec = llama_tok.stream()
        parts = [dec.push(i) for i in ids] + [dec.flush()]
        assert "".join(parts) == text
        assert all("\ufffd" not in p for p in parts)
        # a character split over byte-fallback tokens is held back until complete
        n_bytes = sum(1 for i in ids if llama_tok.types[i] == 6)
        if n_bytes > 1:
            assert sum(1 for p in parts[:-1] if p == "") >= 1


def test_leading_space_as_sentencepiece(llama_tok):
    ids = llama_tok.encode("Hello", add_bos=False)
    assert llama_tok.decode(ids) == "Hello"  # the dummy prefix is dropped at the start
    cont = llama_tok.encode(" world", add_bos=False)
    assert llama_tok.decode_bytes(cont, prev_tokens=ids).startswith(b" ")  # kept mid-text
    dec = llama_tok.stream([1])  # after BOS only: still the start
    assert dec.push(ids[0]) == "Hello"


def test_other_vocabulary_types_are_named(tmp_path):
    meta = {"tokenizer.ggml.model": "t5", "tokenizer.ggml.tokens": ["a", "b"]}
    with GGUFFile(write_gguf(tmp_path / "t.gguf", {"x": np.zeros(4, np.float32)}, meta)) as f:
        with pytest.raises(TokenizerError, match="'t5' is not supported"):
            Tokenizer.from_gguf(f)
    bpe = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": ["a", "b", "ab"], "tokenizer.ggml.merges": ["a b"],
           "tokenizer.ggml.bos_token_id": 0, "tokenizer.ggml.eos_token_id": 1}
    with GGUFFile(write_gguf(tmp_path / "q.gguf", {"x": np.zeros(4, np.float32)},
                             {**bpe, "tokenizer.ggml.pre": "qwen2"})) as f:
        with pytest.raises(TokenizerError, match="pre-tokenizer 'qwen2' is not supported"):
            Tokenizer.from_gguf(f)
    del bpe["tokenizer.ggml.merges"]
    with GGUFFile(write_gguf(tmp_path / "m.gguf", {"x": np.zeros(4, np.float32)}, bpe)) as f:
        with pytest.raises(TokenizerError, match="merges is missing"):
            Tokenizer.from_gguf(f)
    with GGUFFile(write_gguf(tmp_path / "n.gguf", {"x": np.zeros(4, np.float32)}, {})) as f:
        with pytest.raises(TokenizerError, match="no vocabulary"):
            Tokenizer.from_gguf(f)
