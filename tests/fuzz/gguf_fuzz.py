"""Structured GGUF mutation against everything that reads a model file.

Each mutant is a valid seed model (F32, Q4_0, Q8_0, Q4_K; a real SentencePiece vocabulary) with
1-3 mutations: metadata values of the wrong type, NaN/inf or out of range, keys dropped or
duplicated, vocabulary entries corrupted (tokens, types, scores, special ids, byte pieces),
tensor infos changed (shape, type, offset, name), the header's counts and version, truncation at
every region boundary, bit flips. Each mutant runs in a forked child under a memory limit and a
timeout, through four targets: GGUFFile (every tensor's bytes read), `llamacy info --json`,
Llama() and a few generated tokens with a tokenize/detokenize round trip. Outcomes:

    clean     every target finished
    llamacy   a target raised a LlamacyError (the CLI: exit 2 with one line)
    other     any other exception: a bug
    signal    the child died of a signal (segfault, SIGBUS, abort): a bug
    timeout   the child ran past the time limit: a bug

The short fixed-seed campaign runs in the test suite (tests/fuzz/test_fuzz.py). The long one:

    python tests/fuzz/gguf_fuzz.py --mutants 10000 --seed 1 --out fuzz-out

prints the counts per outcome and writes one minimized sample per distinct failure (outcome,
exception type, message shape) to --out, with the mutations that made it.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import math
import os
import re
import resource
import signal
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

# GGUF value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<B", U64: "<Q",
        I64: "<q", F64: "<d"}
_INTS = (U8, I8, U16, I16, U32, I32, U64, I64)


# ---- a GGUF as data: decoded from a valid seed, encoded whatever it holds -----------------------
@dataclass
class KV:
    key: bytes
    vtype: int
    value: object  # int / float / bytes / bool; for ARR: (etype, [values])


@dataclass
class TensorInfo:
    name: bytes
    dims: list[int]
    ttype: int
    offset: int


@dataclass
class Model:
    version: int
    kvs: list[KV]
    tensors: list[TensorInfo]
    data: bytes
    alignment: int = 32
    n_tensors: int | None = None  # header counts when a mutation lies about them
    n_kv: int | None = None
    extra: list[str] = field(default_factory=list)


def decode(raw: bytes) -> Model:
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        pos += n
        return raw[pos - n:pos]

    def unpack(fmt: str):
        return struct.unpack(fmt, take(struct.calcsize(fmt)))[0]

    def string() -> bytes:
        return take(unpack("<Q"))

    def value(vt: int):
        if vt == STR:
            return string()
        if vt == ARR:
            et, n = unpack("<I"), unpack("<Q")
            return et, [value(et) for _ in range(n)]
        v = unpack(_FMT[vt])
        return bool(v) if vt == BOOL else v

    assert take(4) == b"GGUF"
    version, nt, nkv = unpack("<I"), unpack("<Q"), unpack("<Q")
    kvs = []
    for _ in range(nkv):
        key = string()
        vt = unpack("<I")
        kvs.append(KV(key, vt, value(vt)))
    tensors = []
    for _ in range(nt):
        name = string()
        dims = [unpack("<Q") for _ in range(unpack("<I"))]
        tensors.append(TensorInfo(name, dims, unpack("<I"), unpack("<Q")))
    align = next((kv.value for kv in kvs if kv.key == b"general.alignment"), 32)
    start = -(-pos // align) * align
    return Model(version, kvs, tensors, raw[start:], align)


def encode(m: Model) -> bytes:
    out = io.BytesIO()

    def string(b: bytes) -> None:
        out.write(struct.pack("<Q", len(b)) + b)

    def value(vt: int, v) -> None:
        # mutations of one field can leave values of another type in it: coerce, never fail
        if vt == STR:
            string(v if isinstance(v, bytes) else str(v).encode())
        elif vt == ARR:
            et, items = v if isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], list) else (U8, [])
            out.write(struct.pack("<IQ", et, len(items)))
            for x in items:
                value(et, x)
        elif vt in _FMT:
            if not isinstance(v, (int, float, bool)) or (vt in _INTS and isinstance(v, float) and not math.isfinite(v)):
                v = 0
            if vt in (F32, F64):
                v = float(v)
            if vt in _INTS:
                bits = struct.calcsize(_FMT[vt]) * 8
                v = int(v) % (1 << bits)
                if _FMT[vt].islower():  # signed: back into range
                    v = v - (1 << bits) if v >= 1 << (bits - 1) else v
            out.write(struct.pack(_FMT[vt], v))
        else:  # an unknown type tag: write 4 bytes of something
            out.write(b"\x00" * 4)

    out.write(b"GGUF" + struct.pack("<IQQ", m.version, len(m.tensors) if m.n_tensors is None else m.n_tensors,
                                    len(m.kvs) if m.n_kv is None else m.n_kv))
    for kv in m.kvs:
        string(kv.key)
        out.write(struct.pack("<I", kv.vtype))
        value(kv.vtype, kv.value)
    for t in m.tensors:
        string(t.name)
        out.write(struct.pack("<I", len(t.dims)) + b"".join(struct.pack("<Q", d % 2**64) for d in t.dims))
        out.write(struct.pack("<IQ", t.ttype, t.offset % 2**64))
    align = m.alignment if isinstance(m.alignment, int) and 0 < m.alignment < 2**16 else 32
    out.write(b"\x00" * (-out.tell() % align))
    out.write(m.data)
    return out.getvalue()


# ---- mutations ------------------------------------------------------------------------------------
EDGE_INTS = [0, 1, -1, 2, 3, 7, 255, 256, 511, 512, 513, 2**15, 2**16, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40,
             2**53, 2**63 - 1, 2**63, 2**64 - 1]
EDGE_FLOATS = [float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 1e-30, 1e30, -1.0, 0.5, 3.4e38]
TARGET_KEYS = [
    b"llama.context_length", b"llama.embedding_length", b"llama.block_count", b"llama.feed_forward_length",
    b"llama.attention.head_count", b"llama.attention.head_count_kv", b"llama.rope.dimension_count",
    b"llama.rope.freq_base", b"llama.attention.layer_norm_rms_epsilon", b"llama.rope.scaling.type",
    b"llama.rope.scaling.factor", b"general.architecture", b"general.name", b"general.alignment",
    b"tokenizer.ggml.model", b"tokenizer.ggml.pre", b"tokenizer.ggml.tokens", b"tokenizer.ggml.scores",
    b"tokenizer.ggml.token_type", b"tokenizer.ggml.merges", b"tokenizer.ggml.bos_token_id",
    b"tokenizer.ggml.eos_token_id", b"tokenizer.ggml.unknown_token_id", b"tokenizer.ggml.eot_token_id",
    b"tokenizer.ggml.add_bos_token", b"tokenizer.chat_template",
]
BAD_STRINGS = [b"", b"x", b"\xff\xfe", b"<0x4\xff>", b"<0xZZ>", b"<0x41>", b"\xc0\xaf", b"gpt2", b"llama", b"none",
               b"linear", b"yarn", b"\x00", b"{{ raise_exception('x') }}", b"{% for %}", "▁".encode() * 40,
               b"A" * 5000]


def random_value(rng: np.random.Generator, like: KV | None = None) -> tuple[int, object]:
    """A value of a random type (or, half the time, of like's type but an edge value)."""
    if like is not None and rng.random() < 0.5 and like.vtype != ARR:
        vt = like.vtype
    else:
        vt = int(rng.choice([U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64]))
    return vt, edge_value(vt, rng)


def edge_value(vt: int, rng: np.random.Generator):
    if vt in _INTS:
        return int(rng.choice(EDGE_INTS))
    if vt in (F32, F64):
        return float(rng.choice(EDGE_FLOATS))
    if vt == BOOL:
        return bool(rng.integers(2))
    if vt == STR:
        return BAD_STRINGS[rng.integers(len(BAD_STRINGS))]
    et = int(rng.choice([U8, I32, U64, F32, STR, BOOL, ARR]))
    n = int(rng.choice([0, 1, 2, 3, 512, 600]))
    if et == ARR:
        return et, [(I32, [1])] * min(n, 3)
    few = [edge_value(et, rng) for _ in range(min(n, 4))]
    return et, (few * (n // max(1, len(few)) + 1))[:n]


def mutate(m: Model, raw: bytes, rng: np.random.Generator) -> tuple[Model | None, bytes | None, str]:
    """One mutation: a new model (structural) or new bytes (byte-level), and its description."""
    kind = rng.choice(["kv_value", "kv_value", "kv_target", "kv_target", "kv_target", "kv_delete", "kv_dup",
                       "vocab", "vocab", "tensor", "tensor", "header", "truncate", "flip"])
    if (kind in ("kv_value", "kv_delete", "kv_dup") and not m.kvs) or (kind == "tensor" and not m.tensors):
        kind = "kv_target"  # earlier mutations emptied the list this one would pick from
    if kind in ("kv_value", "kv_target"):
        if kind == "kv_target":
            key = TARGET_KEYS[rng.integers(len(TARGET_KEYS))]
            kv = next((k for k in m.kvs if k.key == key), None)
            if kv is None:
                kv = KV(key, U32, 0)
                m.kvs.append(kv)
        else:
            kv = m.kvs[rng.integers(len(m.kvs))]
        vt, v = random_value(rng, kv)
        desc = f"{kv.key.decode()}: type {kv.vtype} -> {vt} = {_short(v)}"
        kv.vtype, kv.value = vt, v
        return m, None, desc
    if kind == "kv_delete":
        kv = m.kvs.pop(rng.integers(len(m.kvs)))
        return m, None, f"delete {kv.key.decode()}"
    if kind == "kv_dup":
        kv = m.kvs[rng.integers(len(m.kvs))]
        vt, v = random_value(rng, kv)
        m.kvs.append(KV(kv.key, vt, v))
        return m, None, f"duplicate {kv.key.decode()} as type {vt}"
    if kind == "vocab":
        return _mutate_vocab(m, rng)
    if kind == "tensor":
        t = m.tensors[rng.integers(len(m.tensors))]
        what = rng.choice(["dims", "type", "offset", "name", "drop", "ndims"])
        if what == "dims":
            i = rng.integers(len(t.dims))
            t.dims[i] = int(rng.choice([0, 1, t.dims[i] * 2, t.dims[i] + 1, t.dims[i] // 2, 2**32, 2**62, 2**64 - 1]))
        elif what == "ndims":
            t.dims = t.dims[:1] if len(t.dims) > 1 else t.dims + [1, 1, 1, 1]
        elif what == "type":
            t.ttype = int(rng.choice([0, 1, 2, 3, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 20, 23, 30, 39, 40, 99, 2**31]))
        elif what == "offset":
            t.offset = int(rng.choice([t.offset + 32, t.offset + 1, len(m.data), len(m.data) - 32, 2**40, 2**64 - 32]))
        elif what == "name":
            other = m.tensors[rng.integers(len(m.tensors))].name
            t.name = rng.choice([other, b"", b"blk.0.attn_q.weight", t.name + b"x", b"\xff"])
        else:
            m.tensors.remove(t)
            return m, None, f"drop tensor {t.name.decode(errors='replace')}"
        return m, None, f"tensor {t.name.decode(errors='replace')} {what} -> {t.dims} {t.ttype} {t.offset}"
    if kind == "header":
        what = rng.choice(["version", "n_tensors", "n_kv"])
        v = int(rng.choice([0, 1, 2, 4, 2**31, len(m.kvs) + 1, len(m.tensors) + 1, 2**63]))
        if what == "version":
            m.version = v % 2**32
        elif what == "n_tensors":
            m.n_tensors = v
        else:
            m.n_kv = v
        return m, None, f"header {what} = {v}"
    data = bytearray(encode(m))
    if kind == "truncate":
        cut = int(rng.choice([rng.integers(len(data)), len(data) - 1, len(data) // 2, len(data) - len(m.data),
                              len(data) - len(m.data) // 2, 24]))
        return None, bytes(data[:cut]), f"truncate to {cut}"
    for _ in range(rng.integers(1, 9)):
        i = rng.integers(len(data))
        data[i] ^= 1 << int(rng.integers(8))
    return None, bytes(data), "bit flips"


def _mutate_vocab(m: Model, rng: np.random.Generator):
    by = {kv.key: kv for kv in m.kvs}
    tokens, types, scores = (by.get(b"tokenizer.ggml." + k) for k in (b"tokens", b"token_type", b"scores"))
    choice = rng.choice(["token", "byte_piece", "type", "score", "shorten", "special_id"])
    if choice in ("token", "byte_piece") and tokens is not None and tokens.vtype == ARR and tokens.value[1]:
        items = list(tokens.value[1])
        i = int(rng.integers(len(items)))
        items[i] = BAD_STRINGS[rng.integers(len(BAD_STRINGS))] if choice == "token" else b"<0x4\xff>"
        tokens.value = (tokens.value[0], items)
        return m, None, f"tokens[{i}] = {_short(items[i])}"
    if choice == "type" and types is not None and types.vtype == ARR and types.value[1]:
        items = list(types.value[1])
        i = int(rng.integers(len(items)))
        items[i] = int(rng.choice([0, 2, 3, 4, 5, 6, 7, 99, -1]))
        types.value = (types.value[0], items)
        return m, None, f"token_type[{i}] = {items[i]}"
    if choice == "score" and scores is not None and scores.vtype == ARR and scores.value[1]:
        items = list(scores.value[1])
        i = int(rng.integers(len(items)))
        items[i] = float(rng.choice(EDGE_FLOATS))
        scores.value = (scores.value[0], items)
        return m, None, f"scores[{i}] = {items[i]}"
    if choice == "shorten" and tokens is not None and tokens.vtype == ARR and len(tokens.value[1]) > 1:
        n = int(rng.choice([1, 3, len(tokens.value[1]) // 2, len(tokens.value[1]) - 1]))
        kv = [tokens, types, scores][rng.integers(3)]
        if kv is not None and kv.vtype == ARR:
            kv.value = (kv.value[0], kv.value[1][:n])
            return m, None, f"{kv.key.decode()} cut to {n}"
    key = [b"tokenizer.ggml.bos_token_id", b"tokenizer.ggml.eos_token_id", b"tokenizer.ggml.unknown_token_id"][
        rng.integers(3)]
    n = len(tokens.value[1]) if tokens is not None and tokens.vtype == ARR else 512
    v = int(rng.choice([n, n - 1, n + 1, 2**31, 2**32 - 1, 0]))
    kv = by.get(key)
    if kv is None:
        kv = KV(key, U32, v)
        m.kvs.append(kv)
    kv.vtype, kv.value = U32, v
    return m, None, f"{key.decode()} = {v}"


def _short(v) -> str:
    s = repr(v)
    return s if len(s) < 60 else s[:57] + "..."


def make_mutant(seed_raw: bytes, rng: np.random.Generator) -> tuple[bytes, list[str]]:
    m = decode(seed_raw)
    descs, raw = [], None
    for _ in range(int(rng.integers(1, 4))):
        if m is None:  # after a byte-level mutation only bytes change
            raw = bytearray(raw)
            i = rng.integers(len(raw)) if raw else 0
            if raw:
                raw[i] ^= 1 << int(rng.integers(8))
            raw = bytes(raw)
            descs.append("bit flip")
            continue
        m, raw, desc = mutate(m, encode(m), rng)
        descs.append(desc)
    return (encode(m) if m is not None else raw), descs


# ---- running one mutant ----------------------------------------------------------------------------
def targets(path: str, n_ctx: int) -> None:
    """Everything that reads a model file, in the child. Raises what it raises."""
    from llamacy import GGUFFile, Llama
    from llamacy._cli import main as cli_main

    with GGUFFile(path) as f:
        for t in f.tensors.values():
            d = t.data
            np.bitwise_xor.reduce(d.reshape(-1).view(np.uint8))
            del d
    sink = io.StringIO()
    real, sys.stdout = sys.stdout, sink
    try:
        code = cli_main(["info", "--json", path])
    finally:
        sys.stdout = real
    if code not in (0, 2):
        raise RuntimeError(f"info exited {code}")
    if code == 0:
        json.loads(sink.getvalue())  # standard JSON (no NaN)
    with Llama(path, n_ctx=n_ctx, verbose=False, n_threads=1) as llm:
        ids = llm.tokenize(b"Once upon a time \xff", add_bos=True)
        llm.detokenize(ids)
        out = llm("Once upon a time", max_tokens=3, temperature=0)
        json.dumps(out, allow_nan=False)
        list(llm("One day", max_tokens=2, temperature=0.8, seed=1, stream=True))


def run_one(path: str, n_ctx: int, timeout: float = 20.0, mem_limit: int = 3 << 30) -> tuple[str, str]:
    """(outcome, detail) of one file in a forked child with a memory limit and a timeout."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(r)
        try:
            import faulthandler

            faulthandler.disable()  # the outcome is classified here; no traceback dumps per crash
            resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
            signal.alarm(int(timeout))
            from llamacy import LlamacyError

            try:
                targets(path, n_ctx)
                msg = ("clean", "")
            except LlamacyError as e:
                msg = ("llamacy", f"{type(e).__name__}: {e}")
            except BaseException as e:  # noqa: BLE001 - the point is to classify it
                import traceback

                tb = traceback.extract_tb(e.__traceback__)[-1]
                msg = ("other", f"{type(e).__name__}: {e} [{Path(tb.filename).name}:{tb.lineno}]")
            os.write(w, json.dumps(msg).encode()[:60000])
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return ("timeout", "SIGALRM") if sig == signal.SIGALRM else ("signal", signal.Signals(sig).name)
    data = b"".join(chunks)
    return tuple(json.loads(data)) if data else ("signal", f"exit {os.WEXITSTATUS(status)} without a result")


def failure_class(outcome: str, detail: str) -> str:
    """Failures grouped by outcome, exception type and where it was raised (numbers masked)."""
    return outcome + " " + re.sub(r"\d+", "N", detail.split(":")[0] + " " + detail.split("[")[-1])[:120]


# ---- seeds -----------------------------------------------------------------------------------------
def write_seeds(folder: Path) -> list[Path]:
    """Four small models with stories260K's real vocabulary: F32, Q4_0, Q8_0 and Q4_K weights."""
    import gguf
    from conftest import DATA, llama_weights, vocab_metadata, write_gguf

    folder.mkdir(parents=True, exist_ok=True)
    vocab = vocab_metadata(DATA / "stories260K.gguf")
    out = []
    Q = gguf.GGMLQuantizationType
    for name, t, dim in (("f32", Q.F32, 64), ("q4_0", Q.Q4_0, 64), ("q8_0", Q.Q8_0, 64), ("q4_k", Q.Q4_K, 256)):
        path = folder / f"seed-{name}.gguf"
        if not path.exists():
            tensors, meta = llama_weights(t, dim=dim, n_layers=2, n_heads=4, n_kv_heads=2, ffn=2 * dim, vocab=512,
                                          seed=1)
            write_gguf(path, tensors, {**meta, **vocab})
        out.append(path)
    return out


def campaign(seeds: list[Path], mutants: int, seed: int, work: Path, out: Path | None = None,
             progress: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    raws = [p.read_bytes() for p in seeds]
    counts: collections.Counter = collections.Counter()
    samples: dict[str, dict] = {}
    work.mkdir(parents=True, exist_ok=True)
    path = str(work / "mutant.gguf")
    t0 = time.monotonic()
    for i in range(mutants):
        k = int(rng.integers(len(raws)))
        data, descs = make_mutant(raws[k], rng)
        n_ctx = int(rng.choice([64, 0]))  # 0: the file's own context length
        Path(path).write_bytes(data)
        outcome, detail = run_one(path, n_ctx)
        counts[outcome] += 1
        if outcome in ("other", "signal", "timeout"):
            cls = failure_class(outcome, detail)
            if cls not in samples or len(data) < samples[cls]["size"]:
                samples[cls] = {"outcome": outcome, "detail": detail, "seed": seeds[k].name, "n_ctx": n_ctx,
                                "mutations": descs, "size": len(data), "index": i}
                if out is not None:
                    out.mkdir(parents=True, exist_ok=True)
                    name = re.sub(r"[^A-Za-z0-9]+", "_", cls)[:80]
                    (out / f"{name}.gguf").write_bytes(data)
                    (out / f"{name}.json").write_text(json.dumps(samples[cls], indent=2))
        if progress and (i + 1) % 500 == 0:
            print(f"{i + 1}/{mutants} {dict(counts)} {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    return {"counts": dict(counts), "failures": samples, "seconds": time.monotonic() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description="structured GGUF fuzzing of llamacy's file readers")
    ap.add_argument("--mutants", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("fuzz-out"))
    a = ap.parse_args()
    seeds = write_seeds(a.out / "seeds")
    r = campaign(seeds, a.mutants, a.seed, a.out / "work", a.out / "failures", progress=True)
    print(json.dumps({"counts": r["counts"], "seconds": round(r["seconds"], 1)}))
    for cls, s in sorted(r["failures"].items()):
        print(f"{cls}\n    {s['detail'][:300]}\n    seed {s['seed']} n_ctx {s['n_ctx']}: {'; '.join(s['mutations'])}")


if __name__ == "__main__":
    main()
