"""Memory diagnostics: page-cache residency of a model file, and what processes hold of it."""

from __future__ import annotations

from typing import Any

__all__ = ["anonymous_bytes", "human", "memory_line"]


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n}"


def anonymous_bytes(pid: int | None = None) -> int | None:
    """Resident anonymous memory of a process (Linux RssAnon), None where unknown."""
    path = f"/proc/{pid or 'self'}/status"
    try:
        with open(path, "rb") as fh:
            for line in fh:
                if line.startswith(b"RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def memory_line(llm: Any) -> str:
    """One line after load: mapped bytes, resident bytes of the model, anonymous bytes."""
    m = llm._gguf.mapping
    size = m.size
    r = m.residency()
    res = "unknown" if r is None else f"{human(r * size)} ({100 * r:.0f}%)"
    kind = "mapped" if type(m).__name__ == "MappedFile" else "read into private memory"
    anon = anonymous_bytes()
    extra = f"KV cache {human(llm.model.cache.nbytes)} + scratch {human(llm.model.scratch.nbytes)} reserved"
    anon_s = "unknown" if anon is None else human(anon)
    return f"llamacy: memory: model {human(size)} {kind}, {res} resident; process anonymous {anon_s} ({extra})"
