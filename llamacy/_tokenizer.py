"""Tokenizer: SentencePiece, built in memory from a GGUF vocabulary (or a tokenizer.model).

A GGUF `llama` vocabulary (tokenizer.ggml.tokens / scores / token_type) is the SentencePiece
BPE model it was converted from, minus the proto: we refill sentencepiece's own ModelProto
(BPE, byte fallback, identity normalizer with dummy prefix and whitespace escaping, piece types
from token_type) and let sentencepiece tokenize exactly as the original `tokenizer.model`.

Decoding works on bytes: "▁" is a space, "<0xNN>" byte-fallback pieces are single bytes, and
`StreamDecoder` holds back incomplete UTF-8 sequences so a stream never prints half a character.
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


class Tokenizer:
    """ids <-> text for a `llama` (SentencePiece BPE) vocabulary."""

    def __init__(self, processor, *, bos_id: int, eos_id: int, add_bos: bool = True,
                 pieces: Sequence[str] | None = None, types: Sequence[int] | None = None):
        self.sp = processor
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.add_bos = add_bos
        n = processor.get_piece_size()
        # a GGUF's pieces stay a StringArray: decoded one by one as tokens are printed
        self.pieces = pieces if pieces is not None else [processor.id_to_piece(i) for i in range(n)]
        if types is None:
            types = [CONTROL if processor.is_control(i) else UNKNOWN if processor.is_unknown(i)
                     else BYTE if processor.is_byte(i) else NORMAL for i in range(n)]
        self.types = np.asarray(types, dtype=np.int64).tolist()
        self._bytes: dict[int, bytes] = {}  # token -> its bytes, filled as tokens are decoded
        # specials written in text are matched only when asked (special=True), longest first
        special_ids = np.flatnonzero(np.isin(np.asarray(self.types), (CONTROL, USER_DEFINED))).tolist()
        self._special_id = {self.pieces[i]: i for i in special_ids if self.pieces[i]}
        specials = sorted(self._special_id, key=len, reverse=True)
        self._special_re = re.compile("(" + "|".join(map(re.escape, specials)) + ")") if specials else None

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_gguf(cls, f: GGUFFile) -> Tokenizer:
        m = f.metadata
        model = m.get("tokenizer.ggml.model")
        if model is None:
            raise TokenizerError(f"{f.path}: the file has no vocabulary (tokenizer.ggml.model is missing)")
        if model != "llama":
            raise TokenizerError(f"{f.path}: tokenizer model {model!r} is not supported (llamacy reads "
                                 "SentencePiece 'llama' vocabularies; pass tokenizer_path= a tokenizer.model)")
        tokens = m.get("tokenizer.ggml.tokens")
        if not tokens:
            raise TokenizerError(f"{f.path}: tokenizer.ggml.tokens is missing or empty")
        n = len(tokens)
        scores = m.get("tokenizer.ggml.scores")
        types = m.get("tokenizer.ggml.token_type")
        scores = np.zeros(n) if scores is None else np.asarray(scores, dtype=np.float64)
        types = np.full(n, NORMAL, np.int64) if types is None else np.asarray(types, dtype=np.int64)
        if len(scores) != n or len(types) != n:
            raise TokenizerError(f"{f.path}: {n} tokens but {len(scores)} scores and {len(types)} token types")
        unk = int(m.get("tokenizer.ggml.unknown_token_id", 0))
        bos = int(m.get("tokenizer.ggml.bos_token_id", 1))
        eos = int(m.get("tokenizer.ggml.eos_token_id", 2))
        sp = _processor_from_vocab(tokens, scores, types, unk=unk, bos=bos, eos=eos)
        return cls(sp, bos_id=bos, eos_id=eos, add_bos=bool(m.get("tokenizer.ggml.add_bos_token", True)),
                   pieces=tokens, types=types)

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
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

    # -- text -> ids ---------------------------------------------------------------------------
    def encode(self, text: str | bytes, add_bos: bool | None = None, special: bool = False) -> list[int]:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        ids: list[int] = []
        if add_bos if add_bos is not None else self.add_bos:
            ids.append(self.bos_id)
        if not special or self._special_re is None:
            return ids + (self.sp.encode(text) if text else [])
        for part in self._special_re.split(text):
            if part in self._special_id:
                ids.append(self._special_id[part])
            elif part:  # every text fragment gets the dummy-prefix space, as llama.cpp does
                ids += self.sp.encode(part)
        return ids

    # -- ids -> text ---------------------------------------------------------------------------
    @staticmethod
    def _piece_bytes(piece: str, ttype: int) -> bytes:
        if ttype == BYTE:
            m = _BYTE.match(piece)
            if m:
                return bytes([int(m.group(1), 16)])
        if ttype in (CONTROL, UNKNOWN, UNUSED):
            return b""
        return piece.replace(SPACE, " ").encode("utf-8", errors="surrogateescape")

    def token_bytes(self, token: int, special: bool = False) -> bytes:
        if special and self.types[token] in (CONTROL, UNKNOWN):
            return self.pieces[token].encode()
        b = self._bytes.get(token)
        if b is None:
            b = self._bytes[token] = self._piece_bytes(self.pieces[token], self.types[token])
        return b

    def decode_bytes(self, tokens: Iterable[int], prev_tokens: Sequence[int] | None = None,
                     special: bool = False) -> bytes:
        """Bytes of `tokens`. At the start of a text (no previous tokens, or only BOS), the
        dummy-prefix space of the first piece is dropped, as sentencepiece does."""
        out = b"".join(self.token_bytes(t, special) for t in tokens)
        at_start = not prev_tokens or all(self.types[t] == CONTROL for t in prev_tokens)
        if at_start and out.startswith(b" "):
            out = out[1:]
        return out

    def decode(self, tokens: Iterable[int], prev_tokens: Sequence[int] | None = None) -> str:
        return self.decode_bytes(tokens, prev_tokens).decode("utf-8", errors="replace")

    def stream(self, prev_tokens: Sequence[int] | None = None) -> StreamDecoder:
        return StreamDecoder(self, prev_tokens)


class StreamDecoder:
    """Token by token to text, never emitting half a UTF-8 character."""

    def __init__(self, tok: Tokenizer, prev_tokens: Sequence[int] | None = None):
        self.tok = tok
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_start = not prev_tokens or all(tok.types[t] == CONTROL for t in prev_tokens)

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
    except RuntimeError as e:
        raise TokenizerError(f"the vocabulary does not make a SentencePiece model: {e}") from None
    return sp
