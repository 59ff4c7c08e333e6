"""The LLaMA forward pass, over weights that stay in the mapped GGUF file.

Read it top to bottom as the model runs: configuration from metadata, the weights (views, never
copies), the KV cache and scratch buffers, then `forward`: embed -> per layer (RMSNorm,
Q/K/V, RoPE, cache, attention, output projection, residual; RMSNorm, SwiGLU feed-forward,
residual) -> final RMSNorm -> logits.

Shapes: T tokens in a step, D = embedding length, KV = kv heads * head_dim, F = feed-forward
length, V = vocabulary. Files of the `llama` architecture graph are accepted: LLaMA 1/2,
TinyLlama, Mistral-7B (GQA), Llama 3 / 3.1 / 3.2 (GQA, rope_freqs frequency factors, linear rope
scaling, tied embeddings), llama2.c conversions.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from llamacy import _matmul as mm
from llamacy import _matmul_kernels, _ops_kernels
from llamacy._errors import InvalidRequestError, ModelError, ResourceError
from llamacy._gguf import REQUIRED, GGUFFile, TensorInfo
from llamacy._mmap import AnonymousMemory
from llamacy._ops import embedding, rope_angles
from llamacy._quants import GGMLType

__all__ = ["KVCache", "LlamaConfig", "LlamaModel", "default_threads"]

ARCHITECTURES = ("llama",)


def default_threads() -> int:
    """Physical cores available to this process (hyper-threads do not speed up matvec)."""
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or 1
    except ImportError:  # pragma: no cover
        physical = os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return max(1, min(physical, usable))


# ---- configuration ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LlamaConfig:
    dim: int  # D
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_dim: int  # F
    vocab_size: int  # V
    context_length: int  # trained context
    rms_eps: float
    rope_base: float
    n_rot: int  # rotated dimensions per head
    rope_scale: float = 1.0  # positions are multiplied by this (linear rope scaling: 1 / factor)

    @property
    def kv_dim(self) -> int:  # KV
        return self.n_kv_heads * self.head_dim

    @classmethod
    def from_gguf(cls, f: GGUFFile) -> LlamaConfig:
        arch = f.architecture
        if arch not in ARCHITECTURES:
            raise ModelError(f"{f.path}: architecture {arch!r} is not supported "
                             f"(supported: {', '.join(ARCHITECTURES)})")

        def get(key: str, kind: type = int, default=REQUIRED, **kw):
            return f.arch_typed(key, kind, default, error=ModelError, **kw)

        dim, n_heads = get("embedding_length", lo=1, hi=2**20), get("attention.head_count", lo=1, hi=2**14)
        n_kv = get("attention.head_count_kv", int, n_heads, lo=1, hi=n_heads)
        if dim % n_heads or n_heads % n_kv:
            raise ModelError(f"{f.path}: {n_heads} heads / {n_kv} KV heads do not divide embedding length {dim}")
        head_dim = dim // n_heads
        emb = f.tensors.get("token_embd.weight")
        if emb is None:
            raise ModelError(f"{f.path}: tensor token_embd.weight is missing")
        if len(emb.shape) != 2:
            raise ModelError(f"{f.path}: token_embd.weight has shape {emb.shape}, expected (vocabulary, {dim})")
        vocab = emb.shape[0]
        n_rot = get("rope.dimension_count", int, head_dim, lo=2, hi=head_dim)
        if n_rot % 2:
            raise ModelError(f"{f.path}: rope.dimension_count {n_rot} must be even")
        scaling = get("rope.scaling.type", str, "none")
        factor = get("rope.scaling.factor", float, 0.0, lo=0.0, hi=1e6) or get("rope.scale_linear", float, 0.0,
                                                                                lo=0.0, hi=1e6)
        if scaling not in ("none", "linear") or not (factor == 0.0 or factor >= 1.0):
            raise ModelError(f"{f.path}: rope scaling {scaling!r} with factor {factor} is not supported "
                             "(llamacy has linear scaling)")
        return cls(dim=dim, n_layers=get("block_count", lo=1, hi=2**16), n_heads=n_heads, n_kv_heads=n_kv,
                   head_dim=head_dim, ffn_dim=get("feed_forward_length", lo=1, hi=2**24), vocab_size=vocab,
                   context_length=get("context_length", int, 2048, lo=1, hi=2**31 - 1),
                   rms_eps=get("attention.layer_norm_rms_epsilon", float, 1e-5, lo=1e-12, hi=1.0),
                   rope_base=get("rope.freq_base", float, 10000.0, lo=1.0, hi=1e12), n_rot=n_rot,
                   rope_scale=1.0 / factor if scaling == "linear" and factor else 1.0)


# ---- weights: views into the mapping -------------------------------------------------------------
@dataclass
class Matrix:
    """A weight matrix as the kernels take it: raw rows where they lie, and their type."""

    data: np.ndarray  # (rows, bytes per row) uint8 view into the mapped file
    type: GGMLType
    rows: int
    cols: int
    kernel: int  # index into the kernel table (llamacy._matmul.KERNEL_TYPES)


@dataclass
class Layer:
    attn_norm: np.ndarray  # (D,) float32
    wq: Matrix  # (D, D)
    wk: Matrix  # (KV, D)
    wv: Matrix  # (KV, D)
    wo: Matrix  # (D, D)
    ffn_norm: np.ndarray  # (D,)
    w_gate: Matrix  # (F, D)
    w_up: Matrix  # (F, D)
    w_down: Matrix  # (D, F)


def _matrix(f: GGUFFile, name: str, shape: tuple[int, int]) -> Matrix:
    t = _tensor(f, name)
    if t.shape != shape:
        raise ModelError(f"{f.path}: tensor {name} has shape {t.shape}, expected {shape}")
    if t.type not in mm.KERNEL_TYPES:
        raise ModelError(f"{f.path}: tensor {name} is {t.type_name}; llamacy has matrix kernels for "
                         + ", ".join(k.name for k in mm.KERNEL_TYPES))
    return Matrix(mm.as_rows(t.data, t.type, shape[1]), GGMLType(t.type), shape[0], shape[1], mm.kernel_index(t.type))


def _vector(f: GGUFFile, name: str, n: int) -> np.ndarray:
    t = _tensor(f, name)
    if t.shape != (n,):
        raise ModelError(f"{f.path}: tensor {name} has shape {t.shape}, expected ({n},)")
    if t.type == GGMLType.F32:
        return t.data  # a view
    return np.ascontiguousarray(t.dequantize(), np.float32)  # a small copy (n floats) for F16/BF16 norms


def _tensor(f: GGUFFile, name: str) -> TensorInfo:
    t = f.tensors.get(name)
    if t is None:
        raise ModelError(f"{f.path}: tensor {name} is missing")
    return t


# ---- the KV cache ----------------------------------------------------------------------------------
MAX_THREADS = 8 * (os.cpu_count() or 1)


def _check_kv_memory(cfg: LlamaConfig, n_ctx: int, n_seq: int, dtype: str) -> None:
    """A KV cache that could never fit this machine's memory is refused up front, with the
    numbers, instead of failing somewhere in the OS (its pages are only touched as used)."""
    import psutil

    need = 2 * cfg.n_layers * n_seq * n_ctx * cfg.kv_dim * (2 if dtype == "f16" else 4)
    have = psutil.virtual_memory().total
    if need > have:
        raise ResourceError(f"a KV cache for n_ctx {n_ctx} x {n_seq} sequence(s) needs {need / 2**30:.1f} GiB "
                            f"({dtype}), more than this machine's {have / 2**30:.1f} GiB of memory: lower n_ctx "
                            "(-c) or the number of parallel sequences")


def zeros(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A zero array on its own anonymous memory in small pages, resident only where it is written
    (numpy would ask for transparent huge pages on large arrays: a touched row would cost 2 MiB)."""
    count = int(np.prod(shape))
    return np.frombuffer(AnonymousMemory(count * np.dtype(dtype).itemsize), dtype=dtype, count=count).reshape(shape)


class KVCache:
    """Keys and values of every layer, for n_seq independent sequences (slots) of positions
    0..n_ctx-1: (n_layers, n_seq, n_ctx, KV) each, float16 (as llama.cpp) or float32. Pages of
    slots never used are never touched, so they cost address space, not memory."""

    def __init__(self, cfg: LlamaConfig, n_ctx: int, dtype: str = "f16", n_seq: int = 1):
        if dtype not in ("f16", "f32"):
            raise InvalidRequestError(f"KV cache type must be 'f16' or 'f32', not {dtype!r}")
        np_type = np.float16 if dtype == "f16" else np.float32
        self.dtype = dtype
        self.n_seq = n_seq
        self.k = zeros((cfg.n_layers, n_seq, n_ctx, cfg.kv_dim), np_type)
        self.v = zeros((cfg.n_layers, n_seq, n_ctx, cfg.kv_dim), np_type)
        # per layer, as the kernels take them: float32, or float16 as its uint16 bits
        bits = (lambda a: a.view(np.uint16)) if dtype == "f16" else (lambda a: a)
        self.kernel_views = [(bits(self.k[i]), bits(self.v[i])) for i in range(cfg.n_layers)]

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes


class _Scratch:
    """Activations for up to n_batch tokens, allocated once and reused every step."""

    def __init__(self, cfg: LlamaConfig, n_batch: int):
        f32 = np.float32
        self.x = zeros((n_batch, cfg.dim), f32)  # (T, D) the residual stream
        self.xb = zeros((n_batch, cfg.dim), f32)  # (T, D) normed input of a sublayer
        self.xb2 = zeros((n_batch, cfg.dim), f32)  # (T, D) sublayer output
        self.q = zeros((n_batch, cfg.dim), f32)  # (T, D) queries
        self.k = zeros((n_batch, cfg.kv_dim), f32)  # (T, KV) new keys
        self.v = zeros((n_batch, cfg.kv_dim), f32)  # (T, KV) new values
        self.att = zeros((n_batch, cfg.dim), f32)  # (T, D) attention output
        self.hb = zeros((n_batch, cfg.ffn_dim), f32)  # (T, F) gate, then silu(gate)*up
        self.hb2 = zeros((n_batch, cfg.ffn_dim), f32)  # (T, F) up

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in vars(self).values())


# ---- the model ----------------------------------------------------------------------------------------
class LlamaModel:
    """LLaMA over a mapped GGUF: `forward(tokens, pos)` -> logits (float32)."""

    def __init__(self, gguf: GGUFFile, *, n_ctx: int = 512, n_batch: int = 512, n_threads: int | None = None,
                 kv_type: str = "f16", n_seq: int = 1, rope_freq_base: float = 0.0, rope_freq_scale: float = 0.0):
        cfg = self.config = LlamaConfig.from_gguf(gguf)
        for name, v in (("rope_freq_base", rope_freq_base), ("rope_freq_scale", rope_freq_scale)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise InvalidRequestError(f"{name} must be a finite number >= 0 (0: the file's value), not {v!r}")
        if rope_freq_base or rope_freq_scale:  # llama.cpp's overrides: 0 keeps the file's value
            from dataclasses import replace

            cfg = self.config = replace(cfg, rope_base=rope_freq_base or cfg.rope_base,
                                        rope_scale=rope_freq_scale or cfg.rope_scale)
        for name, v in (("n_ctx", n_ctx), ("n_batch", n_batch), ("n_threads", n_threads or 1), ("n_seq", n_seq)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
                raise InvalidRequestError(f"{name} must be a positive integer, not {v!r}")
        self.gguf = gguf
        self.n_ctx = int(n_ctx)
        self.n_batch = min(int(n_batch), self.n_ctx)
        self.n_threads = int(n_threads or default_threads())
        if self.n_threads > MAX_THREADS:
            raise InvalidRequestError(f"n_threads {self.n_threads} is more than llamacy runs ({MAX_THREADS}: 8 per "
                                      "CPU); matrix products stop speeding up at the number of cores")
        _check_kv_memory(cfg, self.n_ctx, n_seq, kv_type)
        D, KV, F = cfg.dim, cfg.kv_dim, cfg.ffn_dim

        emb = _tensor(gguf, "token_embd.weight")
        if emb.shape != (cfg.vocab_size, D):
            raise ModelError(f"{gguf.path}: token_embd.weight has shape {emb.shape}, expected {(cfg.vocab_size, D)}")
        self.tok_embeddings = (emb.data, emb.type)  # (V, D) rows, read only for the tokens used
        self.layers = [
            Layer(attn_norm=_vector(gguf, f"blk.{i}.attn_norm.weight", D),
                  wq=_matrix(gguf, f"blk.{i}.attn_q.weight", (D, D)),
                  wk=_matrix(gguf, f"blk.{i}.attn_k.weight", (KV, D)),
                  wv=_matrix(gguf, f"blk.{i}.attn_v.weight", (KV, D)),
                  wo=_matrix(gguf, f"blk.{i}.attn_output.weight", (D, D)),
                  ffn_norm=_vector(gguf, f"blk.{i}.ffn_norm.weight", D),
                  w_gate=_matrix(gguf, f"blk.{i}.ffn_gate.weight", (F, D)),
                  w_up=_matrix(gguf, f"blk.{i}.ffn_up.weight", (F, D)),
                  w_down=_matrix(gguf, f"blk.{i}.ffn_down.weight", (D, F)))
            for i in range(cfg.n_layers)
        ]
        self.output_norm = _vector(gguf, "output_norm.weight", D)  # (D,)
        name = "output.weight" if "output.weight" in gguf.tensors else "token_embd.weight"  # tied embeddings
        self.output = _matrix(gguf, name, (cfg.vocab_size, D))  # (V, D)

        # rotary frequencies (n_rot/2,): base^(-2i/n_rot) * scale, divided by the file's frequency
        # factors where it has them (Llama 3.1's long-context rope_freqs); angles are made per step
        factors = _vector(gguf, "rope_freqs.weight", cfg.n_rot // 2) if "rope_freqs.weight" in gguf.tensors else None
        if factors is not None and not (np.all(np.isfinite(factors)) and np.all(factors > 0)):
            raise ModelError(f"{gguf.path}: rope_freqs.weight must be finite and positive")
        self.rope_freqs = (cfg.rope_base ** (-np.arange(0, cfg.n_rot, 2, dtype=np.float64) / cfg.n_rot)
                           * cfg.rope_scale / (1.0 if factors is None else factors.astype(np.float64)))
        self.cache = KVCache(cfg, n_ctx, kv_type, n_seq)
        self.scratch = _Scratch(cfg, self.n_batch)

    def ensure_slots(self, n_seq: int) -> None:
        """Make room for n_seq sequences in the KV cache (a new, empty cache if it grows)."""
        if n_seq > self.cache.n_seq:
            _check_kv_memory(self.config, self.n_ctx, n_seq, self.cache.dtype)
            self.cache = KVCache(self.config, self.n_ctx, self.cache.dtype, n_seq)

    @property
    def weight_bytes(self) -> int:
        return sum(t.nbytes or 0 for t in self.gguf.tensors.values())

    def _mm(self, m: Matrix, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out = x @ W.T. The forward pass calls the kernels directly: its shapes are right by
        construction, so the checks of llamacy._matmul / llamacy._ops are done once, here at load."""
        if mm.THREADING == "openmp":
            _matmul_kernels.matmul(m.data, m.kernel, x, out, self.n_threads)
            return out
        return mm.matmul(m.data, m.type, x, out, self.n_threads)

    def _mm_shared(self, ms: tuple[Matrix, ...], x: np.ndarray, outs: tuple[np.ndarray, ...]) -> None:
        """outs[i] = x @ ms[i].T for matrices reading the same input: with one weight type, x is
        quantized once for all of them (Q, K, V; gate, up)."""
        if mm.THREADING == "openmp" and all(m.kernel == ms[0].kernel for m in ms):
            _matmul_kernels.matmul_shared(tuple(m.data for m in ms), ms[0].kernel, x, outs, self.n_threads)
        else:
            for m, out in zip(ms, outs):
                self._mm(m, x, out)

    def forward(self, tokens: list[int] | np.ndarray, pos: int, *, all_logits: bool = False,
                seq: int = 0) -> np.ndarray:
        """Run tokens at positions pos, pos+1, ... of sequence slot `seq` (chunks of n_batch),
        filling its KV cache. Returns the logits of the last token (V,), or of every token
        (T, V) if all_logits."""
        tokens = self._check(tokens, pos, seq)
        outs = []
        for start in range(0, tokens.size, self.n_batch):
            chunk = tokens[start:start + self.n_batch]
            last = start + self.n_batch >= tokens.size
            want = "all" if all_logits else "last" if last else None
            out = self._forward([(seq, chunk, pos + start)], want)
            if out is not None:
                outs.append(out)
        return np.concatenate(outs) if all_logits else outs[-1][0]

    def forward_batch(self, segments: list[tuple[int, list[int] | np.ndarray, int]]) -> np.ndarray:
        """One pass over the weights for several sequences: segments of (slot, tokens, first
        position), at most n_batch tokens in all. Returns the last logits of each: (S, V).
        Rows are computed independently, so a sequence's logits do not depend on its company."""
        segs = [(seq, self._check(toks, pos, seq), pos) for seq, toks, pos in segments]
        if sum(t.size for _, t, _ in segs) > self.n_batch:
            raise InvalidRequestError(f"{sum(t.size for _, t, _ in segs)} tokens exceed n_batch {self.n_batch}")
        return self._forward(segs, "last")

    def _check(self, tokens: list[int] | np.ndarray, pos: int, seq: int) -> np.ndarray:
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if tokens.size == 0:
            raise InvalidRequestError("no tokens to evaluate")
        if pos < 0 or pos + tokens.size > self.n_ctx:
            raise InvalidRequestError(f"positions {pos}..{pos + tokens.size - 1} do not fit the context of "
                                      f"{self.n_ctx}")
        if tokens.min() < 0 or tokens.max() >= self.config.vocab_size:
            raise InvalidRequestError(f"token ids must be in [0, {self.config.vocab_size})")
        if not 0 <= seq < self.cache.n_seq:
            raise InvalidRequestError(f"sequence slot {seq} is not in [0, {self.cache.n_seq})")
        return tokens

    def _forward(self, segs: list[tuple[int, np.ndarray, int]], want: str | None) -> np.ndarray | None:
        """The forward pass over T rows: the tokens of every segment, stacked."""
        self.gguf.mapping.check_unchanged()  # a file truncated under the mapping: an error, not SIGBUS
        cfg, s = self.config, self.scratch
        tokens = np.concatenate([t for _, t, _ in segs])
        T = tokens.size
        positions = np.concatenate([np.arange(p, p + t.size, dtype=np.int64) for _, t, p in segs])  # (T,)
        slots = np.concatenate([np.full(t.size, seq, np.int64) for seq, t, _ in segs])  # (T,) cache slot of each row
        bounds = np.cumsum([0] + [t.size for _, t, _ in segs])  # rows of segment i: bounds[i]:bounds[i+1]
        x, xb, xb2 = s.x[:T], s.xb[:T], s.xb2[:T]  # (T, D)
        q, att = s.q[:T], s.att[:T]  # (T, D)
        k, v = s.k[:T], s.v[:T]  # (T, KV)
        hb, hb2 = s.hb[:T], s.hb2[:T]  # (T, F)

        cos, sin = rope_angles(positions, self.rope_freqs)  # (T, n_rot/2) each, row t for positions[t]
        rows = np.arange(T, dtype=np.int64)  # (T,) the angle row of each token
        eps, H, KVH, hd, n_thr = cfg.rms_eps, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, self.n_threads

        # token embeddings
        x[:] = embedding(*self.tok_embeddings, tokens)  # (T, D)

        for li, L in enumerate(self.layers):
            # attention: RMSNorm, Q K V projections, rotary positions
            _ops_kernels.rmsnorm(x, L.attn_norm, eps, xb)
            self._mm_shared((L.wq, L.wk, L.wv), xb, (q, k, v))  # (T, D), (T, KV), (T, KV)
            _ops_kernels.rope(q, cos, sin, rows, H, hd, cfg.n_rot)
            _ops_kernels.rope(k, cos, sin, rows, KVH, hd, cfg.n_rot)
            # the KV cache keeps this layer's keys and values for later positions
            kc, vc = self.cache.kernel_views[li]  # (n_seq, n_ctx, KV) each
            _ops_kernels.cache_store(k, kc, slots, positions)
            _ops_kernels.cache_store(v, vc, slots, positions)
            # causal grouped-query attention: each row over positions 0..its own of its sequence
            _ops_kernels.attention(q, kc, vc, slots, positions, H, KVH, hd, att, n_thr)
            self._mm(L.wo, att, xb2)  # (T, D)
            x += xb2  # residual

            # feed-forward: RMSNorm, SwiGLU
            _ops_kernels.rmsnorm(x, L.ffn_norm, eps, xb)
            self._mm_shared((L.w_gate, L.w_up), xb, (hb, hb2))  # (T, F) each
            _ops_kernels.silu_mul(hb, hb2)  # hb = silu(gate) * up
            self._mm(L.w_down, hb, xb2)  # (T, D)
            x += xb2  # residual

        if want is None:
            return None
        # final RMSNorm and the classifier: every row, or the last row of each segment
        xs = x if want == "all" else np.ascontiguousarray(x[bounds[1:] - 1])  # (T or S, D)
        xn = np.empty_like(xs)
        _ops_kernels.rmsnorm(xs, self.output_norm, eps, xn)
        return self._mm(self.output, xn, np.empty((xs.shape[0], cfg.vocab_size), np.float32))  # (., V)
