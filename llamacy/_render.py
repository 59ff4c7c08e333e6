"""What the `llamacy` command and `Llama(verbose=True)` print: text made from the data the API
returns (GGUF summaries, diagnostics reports, memory figures). Nothing here computes a figure."""

from __future__ import annotations

import math
from typing import Any

from llamacy._diagnostics import Report, anonymous_bytes
from llamacy._gguf import GGUFFile

__all__ = ["human", "info_text", "memory_line", "report_text", "summarize"]

SHADES = " ░▒▓█"


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


_HPARAMS = (
    "context_length",
    "embedding_length",
    "block_count",
    "feed_forward_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.layer_norm_rms_epsilon",
    "rope.dimension_count",
    "rope.freq_base",
    "rope.scaling.type",
    "rope.scaling.factor",
    "vocab_size",
)
_TOKENIZER_IDS = ("bos_token_id", "eos_token_id", "eot_token_id", "eom_token_id", "unknown_token_id",
                  "padding_token_id")


def summarize(f: GGUFFile) -> dict[str, Any]:
    """What ``llamacy info`` shows, as plain JSON-able data."""
    m = f.metadata
    hp = {k: f.arch_value(k) for k in _HPARAMS if f.arch_value(k) is not None}
    tokens = m.get("tokenizer.ggml.tokens")
    tok: dict[str, Any] = {"model": _text(m.get("tokenizer.ggml.model")), "pre": _text(m.get("tokenizer.ggml.pre")),
                           "vocab_size": len(tokens) if isinstance(tokens, (list, tuple)) or hasattr(tokens, "tolist")
                           else None,
                           "chat_template": isinstance(m.get("tokenizer.chat_template"), str)}
    for k in _TOKENIZER_IDS:
        v = m.get(f"tokenizer.ggml.{k}")
        if isinstance(v, int) and not isinstance(v, bool):
            tok[k] = v
    by_type: dict[str, dict[str, int]] = {}
    for t in f.tensors.values():
        e = by_type.setdefault(t.type_name, {"count": 0, "bytes": 0})
        e["count"] += 1
        e["bytes"] += t.nbytes or 0
    hp = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)  # standard JSON: no NaN
          for k, v in hp.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
    return {
        "path": f.path,
        "file_size": f.size,
        "version": f.version,
        "architecture": f.architecture,
        "name": _text(m.get("general.name")),
        "hyperparameters": hp,
        "tokenizer": tok,
        "metadata_keys": len(m),
        "tensor_count": len(f.tensors),
        "tensor_bytes": sum(t.nbytes or 0 for t in f.tensors.values()),
        "tensor_types": dict(sorted(by_type.items(), key=lambda kv: -kv[1]["bytes"])),
        "unsupported_tensors": [t.name for t in f.unsupported_tensors],
        "alignment": f.alignment,
        "data_offset": f.data_offset,
        "residency": f.mapping.residency(),
    }


def _text(v: Any) -> str | None:
    """A metadata string, or None when the key is missing or holds another type."""
    return v if isinstance(v, str) else None


def info_text(s: dict[str, Any]) -> str:
    """`llamacy info`'s text from summarize()'s data."""
    out = [f"file        {s['path']}",
           f"size        {s['file_size']} bytes ({human(s['file_size'])}), GGUF v{s['version']}, "
           f"alignment {s['alignment']}, data at offset {s['data_offset']}",
           f"model       {s['architecture']}" + (f" ({s['name']})" if s["name"] else "")]
    for k, v in s["hyperparameters"].items():
        out.append(f"  {k:34s} {v}")
    t = s["tokenizer"]
    ids = ", ".join(f"{k.removesuffix('_token_id')}={v}" for k, v in t.items() if k.endswith("_id"))
    kind = t["model"] + (f" (pre {t['pre']})" if t.get("pre") else "") if t["model"] else "none"
    out.append(f"tokenizer   {kind}, {t['vocab_size']} tokens" + (f" ({ids})" if ids else "")
               + (", chat template" if t.get("chat_template") else ""))
    out.append(f"tensors     {s['tensor_count']}, {human(s['tensor_bytes'])}")
    for name, e in s["tensor_types"].items():
        out.append(f"  {name:10s} {e['count']:5d} tensors  {human(e['bytes']):>12s}")
    if s["unsupported_tensors"]:
        out.append(f"unsupported {len(s['unsupported_tensors'])} tensors of types llamacy cannot decode: "
                   + ", ".join(s["unsupported_tensors"][:5]))
    r = s["residency"]
    out.append("page cache  " + ("unknown (the OS will not tell for this file)" if r is None
                                 else f"{100 * r:.1f}% resident"))
    out.append(f"system      {s['system']['simd']} kernels, {s['system']['mapping']} mapping, "
               f"{s['system']['threads']} threads")
    return "\n".join(out)


def strip_text(strip: list[float | None]) -> str:
    return "".join("?" if r is None else SHADES[min(len(SHADES) - 1, round(r * (len(SHADES) - 1)))] for r in strip)


def report_text(r: Report) -> str:
    """`llamacy mem`'s text."""
    f = r.file
    lines = [f"{f.path}  {human(f.size)}" + ("" if r.gguf else "  (not a GGUF file: its pages only)")]
    if r.evicted is not None:
        lines.append("evicted: " + ("pages dropped (pages a live process maps may stay)" if r.evicted
                                    else "this OS cannot drop one file's pages"))
    if r.prefetch_seconds is not None:
        lines.append(f"prefetched in {r.prefetch_seconds:.3f} s")
    if f.residency is None:
        lines.append(f"page cache: unknown -- the OS will not tell for this file ({f.method})")
    else:
        how = f.method + (", this process's working set" if f.method == "QueryWorkingSetEx" else "")
        lines.append(f"page cache: {100 * f.residency:.1f}% resident ({human(f.resident_bytes or 0)}), "
                     f"{f.verdict}  [{how}]")
    lines.append(f"[{strip_text(f.strip)}]")
    if f.regions:
        lines.append(f"{'region':18s} {'size':>11s} {'resident':>9s}")
        for g in f.regions:
            res = "?" if g.residency is None else f"{100 * g.residency:.0f}%"
            lines.append(f"{g.name:18s} {human(g.length):>11s} {res:>9s}")
    if r.sharing is not None:
        s = r.sharing

        def h(v: int | None) -> str:
            return "–" if v is None else human(v)

        lines.append("")
        lines.append(f"{'pid':>7s} {'name':15s} {'rss':>10s} {'uss':>10s} {'pss':>10s} {'anon':>10s} {'file':>10s} "
                     f"{'map rss':>10s} {'map pss':>10s}")
        for p in s.processes:
            lines.append(f"{p.pid:>7d} {p.name[:15]:15s} {h(p.rss):>10s} {h(p.uss):>10s} {h(p.pss):>10s} "
                         f"{h(p.anonymous):>10s} {h(p.file_backed):>10s} {h(p.mapping_rss):>10s} "
                         f"{h(p.mapping_pss):>10s}" + (f"  ({p.note})" if p.note else ""))
        if s.total_pss is not None:
            lines.append(f"total PSS of the file's mappings: {human(s.total_pss)} = {s.sharing_ratio:.2f} x the file "
                         f"over {len(s.processes)} processes (one shared copy of what they touched)")
        elif not s.processes:
            lines.append("no process of this user maps the file")
    return "\n".join(lines)


def memory_line(llm: Any) -> str:
    """One line after load: mapped bytes, resident bytes of the model, anonymous bytes."""
    m = llm._gguf.mapping
    size = m.size
    r = m.residency()
    res = "unknown" if r is None else f"{human(r * size)} ({100 * r:.0f}%)"
    kind = "read into private memory" if m.private else "mapped"
    anon = anonymous_bytes()
    extra = f"KV cache {human(llm.model.cache.nbytes)} + scratch {human(llm.model.scratch.nbytes)} reserved"
    anon_s = "unknown" if anon is None else human(anon)
    return f"llamacy: memory: model {human(size)} {kind}, {res} resident; process anonymous {anon_s} ({extra})"
