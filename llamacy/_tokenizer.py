"""Tokenizers built in memory from a GGUF vocabulary: SentencePiece and byte-level BPE.

- `llama` vocabularies (LLaMA 1/2, Mistral, TinyLlama: tokenizer.ggml.tokens / scores /
  token_type) are the SentencePiece BPE model they were converted from, minus the proto: we refill
  sentencepiece's own ModelProto (BPE, byte fallback, identity normalizer with dummy prefix and
  whitespace escaping, piece types from token_type) and let sentencepiece tokenize exactly as the
  original `tokenizer.model`.
- `gpt2` vocabularies (Llama 3 and its fine-tunes, GPT-2: tokens + tokenizer.ggml.merges, and the
  pre-tokenizer named by tokenizer.ggml.pre) are byte-level BPE: Hugging Face `tokenizers` does
  the merges after splitting the text with llama.cpp's regular expression for that `pre`.

Both share what llama.cpp does around the model: special tokens written in text are matched only
with special=True (user-defined ones always), add_bos/add_eos come from the metadata, the
end-of-generation set (EOS, <|eot_id|>, <|eom_id|>, ...) stops generation, and decoding works on
bytes so that `StreamDecoder` never prints half a UTF-8 character.
"""

from __future__ import annotations

import codecs
import re
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from llamacy._errors import TokenizerError
from llamacy._gguf import GGUFFile

__all__ = ["StreamDecoder", "Tokenizer"]

SPACE = "\u2581"  # ▁
_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")

# GGUF token_type values (== SentencePiece ModelProto.SentencePiece.Type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# Tokens that end generation besides EOS, by their text (llama.cpp finds them the same way)
END_OF_GENERATION = ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                     "<|endoftext|>", "<EOT>", "</s>")

# Byte-level BPE pre-tokenizers: tokenizer.ggml.pre -> llama.cpp's regular expressions, applied in
# turn, each splitting every piece into matches and the text between them.
_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
PRE_TOKENIZERS: dict[str, tuple[str, ...]] = {
    "llama3": (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",),
    "gpt2": (_GPT2_SPLIT,),
    "default": (r"[\p{P}\$\+<=>\^~\|]+", _GPT2_SPLIT, r"\p{N}+", "[0-9][0-9][0-9]"),
}
PRE_NAMES = {"llama3": "llama3", "llama-v3": "llama3", "llama-bpe": "llama3", "gpt-2": "gpt2", "default": "default"}


class Tokenizer:
    """ids <-> text for a GGUF vocabulary. Build one with `Tokenizer.from_gguf` (or `from_file`
    for a SentencePiece tokenizer.model); the subclasses differ only in how a run of plain text
    becomes ids and how a piece becomes bytes."""

    kind = ""  # "spm" | "bpe"
    strips_leading_space = False  # SentencePiece's dummy prefix is dropped at the start of a text

    def __init__(self, pieces: Sequence[str], types: Sequence[int], *, bos_id: int, eos_id: int, add_bos: bool,
                 add_eos: bool = False, eog_ids: Iterable[int] = ()):
        n = len(pieces)
        self.pieces = pieces  # a GGUF's pieces stay a StringArray: decoded one by one as tokens are printed
        self.types = np.asarray(types, dtype=np.int64).tolist()
        for name, t in (("bos", bos_id), ("eos", eos_id)):
            if not 0 <= t < n:
                raise TokenizerError(f"{name} token id {t} is not in the vocabulary of {n} tokens")
        self.bos_id, self.eos_id = bos_id, eos_id
        self.add_bos, self.add_eos = add_bos, add_eos
        self._bytes: dict[int, bytes] = {}  # token -> its bytes, filled as tokens are decoded
        types_np = np.asarray(self.types)
        # end of generation: EOS, the ids the metadata names, and control tokens known by their text
        control = np.flatnonzero(types_np == CONTROL).tolist()
        self.eog_ids = frozenset({eos_id, *(int(t) for t in eog_ids if 0 <= int(t) < n),
                                  *(i for i in control if self.pieces[i] in END_OF_GENERATION)})
        # specials written in text, matched longest first: control and unknown ones only with
        # special=True, user-defined ones always (llama.cpp's rule)
        self._special_id: dict[str, int] = {}
        self._user_id: dict[str, int] = {}
        for i in np.flatnonzero(np.isin(types_np, (CONTROL, UNKNOWN, USER_DEFINED))).tolist():
            text = self.pieces[i]
            if text:
                (self._user_id if self.types[i] == USER_DEFINED else self._special_id).setdefault(text, i)
        self._special_id = {**self._special_id, **self._user_id}
        self._split_all = _alternation(self._special_id)
        self._split_user = _alternation(self._user_id)

    @property
    def n_vocab(self) -> int:
        return len(self.pieces)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_gguf(cls, f: GGUFFile) -> Tokenizer:
        if "tokenizer.ggml.model" not in f.metadata:
            raise TokenizerError(f"{f.path}: the file has no vocabulary (tokenizer.ggml.model is missing)")
        model = f.typed("tokenizer.ggml.model", str, error=TokenizerError)
        if model == "llama":
            return SentencePieceTokenizer.from_gguf(f)
        if model == "gpt2":
            return BPETokenizer.from_gguf(f)
        raise TokenizerError(f"{f.path}: tokenizer model {model!r} is not supported (llamacy reads SentencePiece "
                             "'llama' and byte-level BPE 'gpt2' vocabularies)")

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        return SentencePieceTokenizer.from_file(path)

    # -- text -> ids ---------------------------------------------------------------------------
    def encode(self, text: str | bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        """Token ids of text. add_bos adds the vocabulary's own specials, as llama.cpp's
        add_special: BOS if the file says add_bos_token (default true for LLaMA and Llama 3), EOS
        if it says add_eos_token. special=True matches control tokens written in the text."""
        if isinstance(text, bytes):
            text = utf8_text(text)
        ids: list[int] = [self.bos_id] if add_bos and self.add_bos else []
        split = self._split_all if special else self._split_user
        if split is None:
            ids += self._encode_text(text) if text else []
        else:
            for i, part in enumerate(split.split(text)):
                if i % 2:  # a matched special token
                    ids.append(self._special_id[part])
                elif part:  # SentencePiece gives every fragment its dummy prefix, as llama.cpp does
                    ids += self._encode_text(part)
        if add_bos and self.add_eos:
            ids.append(self.eos_id)
        return ids

    def _encode_text(self, text: str) -> list[int]:
        raise NotImplementedError

    # -- ids -> text ---------------------------------------------------------------------------
    def _piece_bytes(self, token: int) -> bytes:
        raise NotImplementedError

    def token_bytes(self, token: int, special: bool = False) -> bytes:
        if not 0 <= token < len(self.types):
            raise TokenizerError(f"token id {token} is not in the vocabulary of {len(self.types)} tokens")
        if special and self.types[token] in (CONTROL, UNKNOWN):
            return self.pieces[token].encode("utf-8", errors="surrogateescape")
        b = self._bytes.get(token)
        if b is None:
            b = self._bytes[token] = self._piece_bytes(token)
        return b

    def _at_start(self, prev_tokens: Sequence[int] | None) -> bool:
        return self.strips_leading_space and (not prev_tokens or all(self.types[t] == CONTROL for t in prev_tokens))

    def decode_bytes(self, tokens: Iterable[int], prev_tokens: Sequence[int] | None = None,
                     special: bool = False) -> bytes:
        """Bytes of `tokens`. For SentencePiece, at the start of a text (no previous tokens, or
        only control tokens), the dummy-prefix space of the first piece is dropped."""
        out = b"".join(self.token_bytes(_token_id(t), special) for t in tokens)
        if self._at_start(prev_tokens) and out.startswith(b" "):
            out = out[1:]
        return out

    def decode(self, tokens: Iterable[int], prev_tokens: Sequence[int] | None = None) -> str:
        return self.decode_bytes(tokens, prev_tokens).decode("utf-8", errors="replace")

    def stream(self, prev_tokens: Sequence[int] | None = None) -> StreamDecoder:
        return StreamDecoder(self, prev_tokens)


def utf8_text(data: bytes) -> str:
    """Bytes to text as llama.cpp reads a prompt: UTF-8, each byte that does not start a complete
    sequence replaced by U+FFFD (Python's "replace" would give one U+FFFD per bad run)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    out, i, n = [], 0, len(data)
    while i < n:
        b = data[i]
        size = 1 if b < 0x80 else 2 if b >> 5 == 0b110 else 3 if b >> 4 == 0b1110 else 4 if b >> 3 == 0b11110 else 0
        chunk = data[i:i + size] if size else b""
        if size and len(chunk) == size and all(c >> 6 == 0b10 for c in chunk[1:]):
            cp = b if size == 1 else (b & (0xFF >> (size + 1))) << 6 * (size - 1)
            for k, c in enumerate(chunk[1:]):
                cp |= (c & 0x3F) << 6 * (size - 2 - k)
            # llama.cpp takes overlong forms as they decode; surrogates and values past U+10FFFF
            # cannot be text here and become U+FFFD
            out.append(chr(cp) if cp <= 0x10FFFF and not 0xD800 <= cp < 0xE000 else "\ufffd")
            i += size
        else:
            out.append("\ufffd")
            i += 1
    return "".join(out)


def _token_id(t: object) -> int:
    """A token id as given: ints (Python or numpy) only -- never a float or a string int()-ed."""
    if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
        return int(t)
    raise TokenizerError(f"token ids must be integers, not {type(t).__name__} {t!r}")


def _alternation(texts: Iterable[str]) -> re.Pattern | None:
    texts = sorted(texts, key=len, reverse=True)
    return re.compile("(" + "|".join(map(re.escape, texts)) + ")") if texts else None


def _special_ids(f: GGUFFile, n: int) -> dict:
    """bos/eos/eot/eom/unknown ids (token ids of the vocabulary) and add_bos/add_eos, where the
    metadata has them; GGUFFile.typed names a key of the wrong type or out of range."""
    out = {}
    for name in ("bos", "eos", "eot", "eom", "unknown"):
        v = f.typed(f"tokenizer.ggml.{name}_token_id", int, None, lo=0, hi=n - 1, error=TokenizerError)
        if v is not None:
            out[name] = v
    for name in ("add_bos_token", "add_eos_token"):
        out[name] = f.typed(f"tokenizer.ggml.{name}", bool, None, error=TokenizerError)
    return out


def _vocab_arrays(f: GGUFFile) -> tuple[Sequence[str], np.ndarray]:
    from llamacy._gguf import StringArray

    m = f.metadata
    tokens = m.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, (StringArray, list)) or not len(tokens) or not all(
            isinstance(t, str) for t in (tokens[:1] if isinstance(tokens, StringArray) else tokens)):
        raise TokenizerError(f"{f.path}: tokenizer.ggml.tokens is missing, empty or not an array of strings")
    n = len(tokens)
    types = m.get("tokenizer.ggml.token_type")
    try:
        types = np.full(n, NORMAL, np.int64) if types is None else np.asarray(types, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise TokenizerError(f"{f.path}: tokenizer.ggml.token_type is not an array of integers") from None
    if types.shape != (n,):
        raise TokenizerError(f"{f.path}: {n} tokens but {types.size} token types")
    return tokens, types


class SentencePieceTokenizer(Tokenizer):
    """A `llama` (SentencePiece BPE with byte fallback) vocabulary, tokenized by sentencepiece."""

    kind = "spm"
    strips_leading_space = True

    def __init__(self, processor, *, bos_id: int, eos_id: int, add_bos: bool = True, add_eos: bool = False,
                 pieces: Sequence[str] | None = None, types: Sequence[int] | None = None, eog_ids: Iterable[int] = ()):
        self.sp = processor
        n = processor.get_piece_size()
        if pieces is None:
            pieces = [processor.id_to_piece(i) for i in range(n)]
        if types is None:
            types = [CONTROL if processor.is_control(i) else UNKNOWN if processor.is_unknown(i)
                     else BYTE if processor.is_byte(i) else NORMAL for i in range(n)]
        super().__init__(pieces, types, bos_id=bos_id, eos_id=eos_id, add_bos=add_bos, add_eos=add_eos,
                         eog_ids=eog_ids)

    @classmethod
    def from_gguf(cls, f: GGUFFile) -> SentencePieceTokenizer:
        m = f.metadata
        tokens, types = _vocab_arrays(f)
        n = len(tokens)
        scores = m.get("tokenizer.ggml.scores")
        try:
            scores = np.zeros(n) if scores is None else np.asarray(scores, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise TokenizerError(f"{f.path}: tokenizer.ggml.scores is not an array of numbers") from None
        if scores.shape != (n,):
            raise TokenizerError(f"{f.path}: {n} tokens but {scores.size} scores")
        ids = _special_ids(f, n)
        unk, bos, eos = ids.get("unknown", 0), ids.get("bos", 1 if n > 1 else 0), ids.get("eos", 2 if n > 2 else 0)
        sp = _processor_from_vocab(tokens, scores, types, unk=unk, bos=bos, eos=eos)
        add_bos = ids["add_bos_token"] if ids.get("add_bos_token") is not None else True
        return cls(sp, bos_id=bos, eos_id=eos, add_bos=add_bos, add_eos=bool(ids.get("add_eos_token")),
                   pieces=tokens, types=types, eog_ids=[ids[k] for k in ("eot", "eom") if k in ids])

    @classmethod
    def from_file(cls, path: str | Path) -> SentencePieceTokenizer:
        import sentencepiece as spm

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(2, "No such file", str(path))
        sp = spm.SentencePieceProcessor()
        try:
            sp.LoadFromFile(str(path))
        except (OSError, RuntimeError) as e:
            raise TokenizerError(f"{path}: not a SentencePiece model ({e})") from None
        return cls(sp, bos_id=sp.bos_id(), eos_id=sp.eos_id())

    def _encode_text(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def _piece_bytes(self, token: int) -> bytes:
        piece, ttype = self.pieces[token], self.types[token]
        if ttype == BYTE:
            m = _BYTE.match(piece)
            if m:
                return bytes([int(m.group(1), 16)])
        if ttype in (CONTROL, UNKNOWN, UNUSED):
            return b""
        return piece.replace(SPACE, " ").encode("utf-8", errors="surrogateescape")


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet, character -> byte: printable Latin-1 bytes stand for
    themselves, the other 68 bytes for the characters from U+0100 on, in order."""
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(0x100 + extra)
            extra += 1
    return {c: b for b, c in chars.items()}


_BYTE_OF = _byte_level_alphabet()


class BPETokenizer(Tokenizer):
    """A byte-level BPE (`gpt2`) vocabulary: Llama 3 (pre `llama-bpe`), GPT-2 (`gpt-2`), and
    files without a `pre` (llama.cpp's `default`). The BPE itself is Hugging Face `tokenizers`,
    built on first use (a Llama 3 vocabulary takes ~0.5 s), so loading a model stays fast."""

    kind = "bpe"

    def __init__(self, pieces: Sequence[str], types: Sequence[int], merges: Sequence[str], pre: str, *, bos_id: int,
                 eos_id: int, add_bos: bool, add_eos: bool = False, eog_ids: Iterable[int] = ()):
        super().__init__(pieces, types, bos_id=bos_id, eos_id=eos_id, add_bos=add_bos, add_eos=add_eos,
                         eog_ids=eog_ids)
        self.pre = pre
        self._merges = merges
        self._hf = None

    @classmethod
    def from_gguf(cls, f: GGUFFile) -> BPETokenizer:
        from llamacy._gguf import StringArray

        m = f.metadata
        tokens, types = _vocab_arrays(f)
        merges = m.get("tokenizer.ggml.merges")
        if not isinstance(merges, (StringArray, list)) or not all(isinstance(x, str) for x in merges[:1]):
            raise TokenizerError(f"{f.path}: tokenizer.ggml.merges is missing or not an array of strings "
                                 "(a byte-level BPE vocabulary needs its merges)")
        pre_name = m.get("tokenizer.ggml.pre", "default")
        pre = PRE_NAMES.get(pre_name) if isinstance(pre_name, str) else None
        if pre is None:
            raise TokenizerError(f"{f.path}: BPE pre-tokenizer {pre_name!r} is not supported (llamacy has "
                                 f"{', '.join(sorted(PRE_NAMES))})")
        ids = _special_ids(f, len(tokens))
        if "bos" not in ids or "eos" not in ids:
            raise TokenizerError(f"{f.path}: tokenizer.ggml.bos_token_id and eos_token_id are required")
        add_bos = ids["add_bos_token"] if ids.get("add_bos_token") is not None else pre == "llama3"
        return cls(tokens, types, merges, pre, bos_id=ids["bos"], eos_id=ids["eos"], add_bos=add_bos,
                   add_eos=bool(ids.get("add_eos_token")), eog_ids=[ids[k] for k in ("eot", "eom") if k in ids])

    def _model(self):
        if self._hf is None:
            try:
                from tokenizers import Regex, models, pre_tokenizers
                from tokenizers import Tokenizer as HFTokenizer
            except ImportError as e:  # pragma: no cover - a dependency
                raise TokenizerError(f"byte-level BPE vocabularies need the 'tokenizers' package: {e}") from None
            pieces = self.pieces.tolist() if hasattr(self.pieces, "tolist") else list(self.pieces)
            vocab = {p: i for i, (p, t) in enumerate(zip(pieces, self.types)) if t == NORMAL}
            merges = []
            for w in (self._merges.tolist() if hasattr(self._merges, "tolist") else self._merges):
                cut = w.find(" ", 1)
                if cut < 0:
                    raise TokenizerError(f"BPE merge {w!r} is not two pieces separated by a space")
                merges.append((w[:cut], w[cut + 1:]))
            try:
                # ignore_merges: a pre-token that is a whole vocabulary entry is taken as it is
                # (llama.cpp does so for Llama 3)
                hf = HFTokenizer(models.BPE(vocab, merges, ignore_merges=self.pre == "llama3"))
            except Exception as e:  # tokenizers raises its own exception type for bad merges
                raise TokenizerError(f"the BPE vocabulary does not build: {e}") from None
            hf.pre_tokenizer = pre_tokenizers.Sequence(
                [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in PRE_TOKENIZERS[self.pre]]
                + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
            self._hf = hf
        return self._hf

    def _encode_text(self, text: str) -> list[int]:
        return self._model().encode(text, add_special_tokens=False).ids

    def _piece_bytes(self, token: int) -> bytes:
        piece, ttype = self.pieces[token], self.types[token]
        if ttype == NORMAL:  # byte-level characters back to the bytes they stand for
            return b"".join(bytes([_BYTE_OF[c]]) if c in _BYTE_OF else c.encode("utf-8", errors="surrogateescape")
                            for c in piece)
        if ttype == USER_DEFINED:
            return piece.encode("utf-8", errors="surrogateescape")
        if ttype == BYTE:
            m = _BYTE.match(piece)
            return bytes([int(m.group(1), 16)]) if m else b""
        return b""  # control, unknown and unused tokens print only with special=True


class StreamDecoder:
    """Token by token to text, never emitting half a UTF-8 character."""

    def __init__(self, tok: Tokenizer, prev_tokens: Sequence[int] | None = None):
        self.tok = tok
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_start = tok._at_start(prev_tokens)

    def push(self, token: int) -> str:
        b = self.tok.token_bytes(token)
        if self._at_start and b:
            if b.startswith(b" "):
                b = b[1:]
            self._at_start = False
        return self._utf8.decode(b)

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)


def _as_string_array(tokens: Sequence[str]):
    """A list of str as the StringArray layout: (u64 length, UTF-8 bytes) per string."""
    from llamacy._gguf import StringArray

    raw = [t.encode("utf-8", errors="surrogateescape") for t in tokens]
    blob = b"".join(struct.pack("<Q", len(r)) + r for r in raw)
    offsets = np.zeros(len(raw) + 1, np.int64)
    np.cumsum([8 + len(r) for r in raw], out=offsets[1:])
    return StringArray(blob, offsets)


def _processor_from_vocab(tokens: Sequence[str], scores: Sequence[float], types: Sequence[int], *, unk: int,
                          bos: int, eos: int):
    """A SentencePieceProcessor for a llama (BPE, byte-fallback) vocabulary, built in memory."""
    import sentencepiece as spm

    try:
        from sentencepiece import sentencepiece_model_pb2 as pb
    except ImportError as e:  # pragma: no cover - protobuf missing
        raise TokenizerError(f"building a tokenizer needs protobuf: {e}") from None
    m = pb.ModelProto()
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.vocab_size = len(tokens)
    m.trainer_spec.byte_fallback = any(t == BYTE for t in types)
    m.trainer_spec.unk_id = unk
    m.trainer_spec.bos_id = bos
    m.trainer_spec.eos_id = eos
    m.trainer_spec.pad_id = -1
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = True
    m.normalizer_spec.escape_whitespaces = True
    m.normalizer_spec.remove_extra_whitespaces = False
    # The pieces are written straight in protobuf's wire format from the GGUF's bytes (no 32000
    # protobuf or str objects); ModelProto.pieces is field 1, so they go before the specs.
    from llamacy._gguf import StringArray
    from llamacy._gguf_scan import sentencepiece_pieces

    if not isinstance(tokens, StringArray):
        tokens = _as_string_array(tokens)
    pieces = sentencepiece_pieces(tokens._raw, tokens._off, np.asarray(scores, dtype=np.float64),
                                  np.asarray(types, dtype=np.int64))
    serialized = pieces + m.SerializeToString()
    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(serialized)
    except (UnicodeDecodeError, RuntimeError) as e:
        # sentencepiece reports a piece that is not UTF-8 as UnicodeDecodeError (0.2.3) or as a
        # RuntimeError with no text (0.2.0, the newest with arm64 Linux wheels): name it either way
        bad = next((i for i in range(len(tokens)) if any("\udc80" <= c <= "\udcff" for c in tokens[i])), None)
        if bad is not None:
            raise TokenizerError(f"tokenizer.ggml.tokens[{bad}] is not valid UTF-8") from None
        raise TokenizerError(f"the vocabulary does not make a SentencePiece model: {e or type(e).__name__}") from None
    return sp
