"""Memory diagnostics: how much of a model file is in the page cache, and what each process
that maps it holds -- the evidence behind "warm loads are fast" and "processes share one copy".

Residency is asked of a fresh mapping that reads nothing (MappedFile.residency_counts, by
platform/: cachestat or mincore on Linux, mincore on macOS, this process's working set on
Windows). Where the OS hides the answer the figure is None: "unknown", never a false 100%.
Process figures come from psutil.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from llamacy._mmap import PAGE_SIZE, MappedFile

__all__ = [
    "FileResidency",
    "MappingShare",
    "ProcessMemory",
    "Region",
    "Report",
    "anonymous_bytes",
    "evict",
    "file_residency",
    "mapping_sharing",
    "prefetch",
    "process_memory",
    "report",
]

STRIP_CELLS = 64


# ---- page-cache residency of a file ------------------------------------------------------------
class _Probe:
    """Residency of byte ranges of one file, through a mapping that never reads a page."""

    def __init__(self, path: str):
        self.map = MappedFile(path)
        self.size = self.map.size
        self.method = self.map.residency_method  # None: the OS will not tell for this file

    def pages(self, off: int, length: int) -> tuple[int, int] | None:
        """(resident pages, total pages) of [off, off+length), or None when unknown."""
        return self.map.residency_counts(off, length)

    def close(self) -> None:
        self.map.close()


@dataclass
class Region:
    name: str
    offset: int
    length: int
    residency: float | None


@dataclass
class FileResidency:
    path: str
    size: int
    residency: float | None  # fraction 0..1, None when the OS will not tell
    resident_bytes: int | None
    method: str
    verdict: str  # cold / partial / warm / unknown
    regions: list[Region] = field(default_factory=list)
    strip: list[float | None] = field(default_factory=list)  # STRIP_CELLS equal slices of the file


def _regions(path: str) -> list[tuple[str, int, int]]:
    """Header+metadata, token embeddings, each block, output: byte ranges from the GGUF index."""
    from llamacy._gguf import GGUFFile

    try:
        f = GGUFFile(path, access="random")  # no read-ahead: only the header's pages are touched
    except (ValueError, OSError):
        return []
    try:
        groups: dict[str, list[int]] = {}
        for t in f.tensors.values():
            parts = t.name.split(".")
            key = ".".join(parts[:2]) if parts[0] == "blk" else ("token embeddings" if t.name.startswith("token_embd")
                                                                 else "output" if t.name.startswith("output")
                                                                 else t.name)
            lo, hi = t.file_offset, t.file_offset + (t.nbytes or 0)
            g = groups.setdefault(key, [lo, hi])
            g[0], g[1] = min(g[0], lo), max(g[1], hi)
        out = [("header+metadata", 0, f.data_offset)]

        def order(k: str) -> tuple:
            if k == "token embeddings":
                return (0, 0)
            if k.startswith("blk."):
                return (1, int(k.split(".")[1]) if k.split(".")[1].isdigit() else 0)
            return (2, 0)

        for k in sorted(groups, key=order):
            out.append((k, groups[k][0], groups[k][1] - groups[k][0]))
        return out
    finally:
        f.close()


def _verdict(r: float | None) -> str:
    return "unknown" if r is None else "cold" if r <= 0.05 else "warm" if r >= 0.95 else "partial"


def file_residency(path: str | os.PathLike, regions: bool = True) -> FileResidency:
    """How much of the file is in memory now, overall, per region and as a strip of 64 cells."""
    path = os.fspath(path)
    named = _regions(path) if regions else []  # parse the header first, so all figures agree
    probe = _Probe(path)
    try:
        size = probe.size
        whole = probe.pages(0, size)
        frac = None if whole is None else (whole[0] / whole[1] if whole[1] else 1.0)
        resident = None if whole is None else min(size, whole[0] * PAGE_SIZE)

        def frac_of(off: int, length: int) -> float | None:
            p = probe.pages(off, length)
            return None if p is None else (p[0] / p[1] if p[1] else 1.0)

        regs = [Region(n, o, ln, frac_of(o, ln)) for n, o, ln in named]
        cell = max(1, -(-size // STRIP_CELLS))
        strip = [frac_of(o, min(cell, size - o)) for o in range(0, size, cell)][:STRIP_CELLS]
        return FileResidency(path, size, frac, resident, probe.method or "hidden", _verdict(frac), regs, strip)
    finally:
        probe.close()


def evict(path: str | os.PathLike) -> bool:
    """Drop the file's pages from the page cache; pages a live process maps may stay.
    False where the OS offers no way (Windows, macOS)."""
    with MappedFile(path) as m:
        return m.evict()


def prefetch(path: str | os.PathLike) -> float:
    """Read the file ahead into the page cache (WILLNEED, then a populate pass); seconds taken."""
    t0 = time.perf_counter()
    with MappedFile(path) as m:
        m.prefetch()
        m.populate()
    return time.perf_counter() - t0


# ---- processes ---------------------------------------------------------------------------------
@dataclass
class ProcessMemory:
    pid: int
    name: str
    rss: int | None
    uss: int | None
    pss: int | None
    anonymous: int | None  # RssAnon (Linux)
    file_backed: int | None  # RssFile (Linux)
    mapping_rss: int | None = None  # this file's mapping, resident
    mapping_pss: int | None = None  # this file's mapping, proportional share
    note: str = ""


def _anon_and_file(info: Any) -> tuple[int | None, int | None]:
    """(resident anonymous, resident file-backed and shared) bytes from psutil's memory_info,
    where the OS tells them apart (Linux: rss = anonymous + shared pages)."""
    shared = getattr(info, "shared", None)
    return (None, None) if shared is None else (info.rss - shared, shared)


def anonymous_bytes(pid: int | None = None) -> int | None:
    """Resident anonymous memory of a process (Linux RssAnon), None where unknown."""
    import psutil

    return _anon_and_file(psutil.Process(pid).memory_info())[0]


def process_memory(pid: int, path: str | os.PathLike | None = None) -> ProcessMemory:
    """RSS/USS/PSS of a process, its anonymous and file-backed resident memory, and -- given a
    path -- the resident and proportional size of its mappings of that file."""
    import psutil

    p = psutil.Process(pid)
    note = ""
    rss = uss = pss = None
    info = p.memory_info()
    rss = info.rss
    try:
        full = p.memory_full_info()
        uss, pss = getattr(full, "uss", None), getattr(full, "pss", None)
    except psutil.AccessDenied:
        note = "USS/PSS need access to the process's maps (same user or root)"
    pm = ProcessMemory(pid, p.name(), rss, uss, pss, *_anon_and_file(info), note=note)
    if path is not None:
        target = os.path.realpath(os.fspath(path))
        try:
            maps = [m for m in p.memory_maps(grouped=True) if m.path and os.path.realpath(m.path) == target]
            if maps:
                pm.mapping_rss = sum(m.rss for m in maps)
                pm.mapping_pss = sum(getattr(m, "pss", 0) for m in maps) if hasattr(maps[0], "pss") else None
            else:
                pm.mapping_rss = pm.mapping_pss = 0
        except (psutil.AccessDenied, NotImplementedError) as e:
            pm.note = pm.note or f"cannot read this process's mappings here ({type(e).__name__})"
    if pm.pss is None and not pm.note:
        pm.note = "this OS reports no PSS" + ("" if pm.uss is None else "; USS is the private working set")
    return pm


def processes_mapping(path: str | os.PathLike) -> list[int]:
    """Pids of this user's processes that map the file."""
    import psutil

    target = os.path.realpath(os.fspath(path))
    me = os.getuid() if hasattr(os, "getuid") else None
    pids = []
    for p in psutil.process_iter(["pid", "uids"]):
        try:
            if me is not None and p.info["uids"] and p.info["uids"].real != me:
                continue
            if any(m.path and os.path.realpath(m.path) == target for m in p.memory_maps(grouped=True)):
                pids.append(p.pid)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess, NotImplementedError, OSError):
            continue
    return pids


@dataclass
class MappingShare:
    path: str
    size: int
    processes: list[ProcessMemory]
    total_pss: int | None  # the file mapping's PSS summed over the processes
    sharing_ratio: float | None  # total_pss / size: ~1 when they share one copy of what they touched


def mapping_sharing(path: str | os.PathLike, pids: list[int] | None = None) -> MappingShare:
    path = os.fspath(path)
    pids = processes_mapping(path) if pids is None else pids
    procs = []
    for pid in pids:
        try:
            procs.append(process_memory(pid, path))
        except Exception as e:  # noqa: BLE001 - a vanished process is reported, not fatal
            procs.append(ProcessMemory(pid, "?", None, None, None, None, None, note=f"{type(e).__name__}: {e}"))
    known = [p.mapping_pss for p in procs if p.mapping_pss is not None]
    total = sum(known) if known else None
    size = os.path.getsize(path)
    return MappingShare(path, size, procs, total, None if total is None else total / size)


# ---- the report ----------------------------------------------------------------------------------
@dataclass
class Report:
    file: FileResidency
    sharing: MappingShare | None = None
    evicted: bool | None = None
    prefetch_seconds: float | None = None
    gguf: bool = True  # the file starts with GGUF's magic (mem reports any regular file)

    def to_json(self) -> dict[str, Any]:
        f = self.file
        out: dict[str, Any] = {"path": f.path, "size": f.size, "gguf": self.gguf, "residency": f.residency,
                               "resident_bytes": f.resident_bytes, "method": f.method, "verdict": f.verdict,
                               "regions": [asdict(r) for r in f.regions], "strip": f.strip}
        if self.evicted is not None:
            out["evicted"] = self.evicted
        if self.prefetch_seconds is not None:
            out["prefetch_seconds"] = self.prefetch_seconds
        if self.sharing is not None:
            out["processes"] = [asdict(p) for p in self.sharing.processes]
            out["total_pss"] = self.sharing.total_pss
            out["sharing_ratio"] = self.sharing.sharing_ratio
        return out


def report(path: str | os.PathLike, *, pids: list[int] | None = None, all_processes: bool = False,
           do_evict: bool = False, do_prefetch: bool = False) -> Report:
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "Is a directory, not a model file", path)
    with open(path, "rb") as fh:  # missing or unreadable: the OS's own error, before any report
        is_gguf = fh.read(4) == b"GGUF"
    evicted = evict(path) if do_evict else None
    secs = prefetch(path) if do_prefetch else None
    sharing = mapping_sharing(path, None if all_processes else pids) if (pids or all_processes) else None
    return Report(file_residency(path), sharing, evicted, secs, is_gguf)
