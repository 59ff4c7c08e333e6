"""What this build and machine offer: SIMD path, mapping implementation, threads."""

from __future__ import annotations

import os

from llamacy import _mmap

__all__ = ["system_info"]


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def system_info() -> dict[str, object]:
    from llamacy.matmul import THREADING, available, simd_path

    return {
        "simd": simd_path(),
        "simd_available": available(),
        "threading": THREADING,
        "mapping": _mmap.IMPLEMENTATION,
        "residency_method": _mmap.RESIDENCY_METHOD,
        "page_size": _mmap.PAGE_SIZE,
        "threads": _cpu_count(),
    }
