"""Regenerates tests/data/vocab-cases.json: token ids and bytes as llama.cpp gives them, and chat
prompts as llama-cpp-python renders and tokenizes them.

Run with llama-cpp-python (0.3.36 was used; its own venv), never by the test suite:

    /opt/llcpp-venv/bin/python tests/oracle/llama_cpp_tokenize.py VOCAB_DIR > tests/data/vocab-cases.json

VOCAB_DIR holds llama.cpp's vocabulary-only test files (vendor/llama.cpp/models/ggml-vocab-*.gguf of
the llama-cpp-python sdist). Each case is tokenized with and without special-token parsing and
BOS, and the ids are detokenized back with and without special tokens.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import llama_cpp
from llama_cpp import llama_chat_format as chat

HARD_CASES = [
    # whitespace runs
    "", " ", "   ", "\n", "\n\n\n", "\t \t", "a  \n  b", "  leading and trailing  ", "x\u00a0nbsp", "\u3000wide space",
    "line1\r\nline2\r\n\r\n", "tabs\t\t\tend\t",
    # digits
    "1234567890", "3.14159 -42 +7", "12,345,678.90", "۱۲۳ ٣ १२३", "2024-11-30T07:23:35Z", "0x1F 0b1010",
    # contractions
    "I'm you're he'll they've we'd it's", "DON'T SHE'LL THEY'RE", "O'Neil's rock'n'roll", "'s 't 're",
    # emoji, flags, combining
    "🦙", "👩‍👩‍👧 family", "🇫🇷🇯🇵", "❤️ 👍🏽", "e\u0301 cafe\u0301", "😀😃😄😁😆",
    # CJK and other scripts
    "日本語のテキスト", "中文字符和标点，。！", "한국어 문장", "Ελληνικά и русский", "עברית العربية", "ไทย",
    # invalid-looking text
    "\ufffd replacement", "\u200b zero width \u200d joiner", "ctrl\x00\x01\x07\x1b chars", "\U0010ffff private",
    # specials written in text
    "<|begin_of_text|>Hello<|eot_id|>", "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
    "<|eot_id", "<|reserved_special_token_5|>x", "<|endoftext|> end", "<s> [INST] hi [/INST] </s>",
    # mixed and long
    "Hello, world! 🎉 3.14 — «quotes» “curly” ‘single’", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "def f(x):\n    return x**2  # comment\n", "https://example.com/path?q=1&r=two#frag",
]
CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a llama fact."}],
    [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "Tell me a story 🦙."}],
]
TEMPLATE = Path(__file__).resolve().parents[1] / "data" / "meta-llama-Llama-3.2-3B-Instruct.jinja"
DATE = "26 Jul 2024"  # the template's date_string, fixed so the prompt does not change with the day
INVALID_UTF8 = [b"\xff\xfe ab", b"\xe6\x97 half", b"tail \xf0\x9f\xa6", b"\xc0\xaf overlong"]


def main(vocab_dir: str) -> None:
    out = {"llama_cpp_python": llama_cpp.__version__, "vocabularies": {}}
    for name in ("llama-bpe", "gpt-2", "llama-spm"):
        llm = llama_cpp.Llama(str(Path(vocab_dir) / f"ggml-vocab-{name}.gguf"), vocab_only=True, verbose=False)
        cases = []
        for text in [t.encode() for t in HARD_CASES] + INVALID_UTF8:
            for special in (False, True):
                for add_bos in (False, True):
                    ids = llm.tokenize(text, add_bos=add_bos, special=special)
                    # the pieces as llama.cpp prints them, concatenated (llama-cpp-python's detokenize
                    # then drops a leading space after BOS, a LLaMA-1 workaround we do not copy)
                    pieces = b"".join(llm.detokenize([t]) for t in ids)
                    special_pieces = b"".join(llm.detokenize([t], special=True) for t in ids)
                    cases.append({"text_hex": text.hex(), "special": special, "add_bos": add_bos, "ids": ids,
                                  "pieces_hex": pieces.hex(), "special_pieces_hex": special_pieces.hex()})
        out["vocabularies"][name] = cases
        # chat prompts: llama-cpp-python's formatter for each format, then its tokenize call
        # (add_bos unless the format wrote BOS itself, special tokens parsed), as its handler does
        formats = {"llama-2": chat.format_llama2, "llama-3": chat.format_llama3, "chatml": chat.format_chatml}
        if name == "llama-bpe":
            eos = llm._model.token_get_text(llm.token_eos())
            bos = llm._model.token_get_text(llm.token_bos())
            formats["template"] = chat.Jinja2ChatFormatter(TEMPLATE.read_text(), eos_token=eos, bos_token=bos)
        chats = []
        for fmt, formatter in formats.items():
            for messages in CONVERSATIONS:
                r = formatter(messages=messages, date_string=DATE) if fmt == "template" else formatter(messages)
                ids = llm.tokenize(r.prompt.encode(), add_bos=not r.added_special, special=True)
                stop = r.stop if isinstance(r.stop, list) else [r.stop] if r.stop else []
                chats.append({"format": fmt, "messages": messages, "prompt": r.prompt, "ids": ids, "stop": stop})
        out.setdefault("chat", {})[name] = chats
    json.dump(out, sys.stdout, separators=(",", ":"))


if __name__ == "__main__":
    main(sys.argv[1])
