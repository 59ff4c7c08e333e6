"""What this build and machine offer: SIMD path, mapping implementation, threads."""

from __future__ import annotations

from llamacy import _mmap

__all__ = ["system_info"]


def system_info() -> dict[str, object]:
    from llamacy._matmul import THREADING, available, simd_path
    from llamacy._model import default_threads

    return {
        "simd": simd_path(),
        "simd_available": available(),
        "threading": THREADING,
        "mapping": _mmap.IMPLEMENTATION,
        "page_size": _mmap.PAGE_SIZE,
        "threads": default_threads(),
    }
