"""MappedFile: the OS mapping, its hints, residency and lifetime, on real files."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from llamacy import MappedFile, MappingError
from llamacy._mmap import AnonymousMemory

LINUX = sys.platform.startswith("linux")
PAGE = 4096


@pytest.fixture
def public_dir():
    """A directory every user may enter (pytest's tmp_path is private to its owner)."""
    d = tempfile.mkdtemp(prefix="llamacy-test-", dir="/tmp" if os.path.isdir("/tmp") else None)
    os.chmod(d, 0o755)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def datafile(public_dir):
    p = public_dir / "data.bin"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 3 * 1024 * 1024 + 123, np.uint8).tobytes())
    return p


def test_bytes_size_address(datafile):
    with MappedFile(datafile) as m:
        assert m.size == datafile.stat().st_size == len(m)
        assert m.path == str(datafile)
        assert m.address != 0
        assert bytes(memoryview(m)) == datafile.read_bytes()
        a = np.frombuffer(m, np.uint8)
        assert a.__array_interface__["data"][0] == m.address
        assert not a.flags.writeable
        del a


def test_read_only(datafile):
    with MappedFile(datafile) as m:
        mv = memoryview(m)
        assert mv.readonly
        with pytest.raises(TypeError):
            mv[0] = 1
        mv.release()
        a = np.frombuffer(m, np.uint8)
        with pytest.raises(ValueError):
            a[0] = 1


def test_hints_and_lock(datafile):
    for prefetch in ("none", "willneed", "populate"):
        with MappedFile(datafile, prefetch=prefetch) as m:
            m.prefetch()
            m.prefetch(5000, 10)
            m.populate(0, 100)
            for pattern in ("random", "sequential", "normal"):
                m.advise(pattern)
            with pytest.raises(ValueError, match="pattern"):
                m.advise("fast")
            with pytest.raises(ValueError, match="outside"):
                m.prefetch(m.size, 1)
            with pytest.raises(ValueError, match="outside"):
                m.residency(-1)
    with pytest.raises(ValueError, match="prefetch"):
        MappedFile(datafile, prefetch="eager")


def test_lock_unlock(datafile):
    with MappedFile(datafile, lock=False) as m:
        import warnings

        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            ok = m.lock()
        if ok:
            assert m.locked
            assert m.residency() in (1.0, None)
            m.unlock()
            assert not m.locked
        else:  # refused: a warning that says what to change
            assert "could not lock" in str(w[0].message)


@pytest.mark.skipif(not LINUX, reason="RLIMIT_MEMLOCK refusal is Linux behaviour")
def test_lock_refused_warns_with_advice(datafile):
    code = textwrap.dedent(f"""
        import os, resource, warnings
        from llamacy import MappedFile
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (4096, 4096))
        if os.geteuid() == 0:
            os.setgid(65534); os.setuid(65534)   # root ignores RLIMIT_MEMLOCK
        m = MappedFile({str(datafile)!r})
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            assert m.lock() is False
        print(w[0].message)
    """)
    os.chmod(datafile, 0o644)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "RLIMIT_MEMLOCK" in r.stdout and "ulimit -l" in r.stdout


@pytest.mark.skipif(not LINUX, reason="eviction through posix_fadvise is tested on Linux")
def test_residency_evict_and_read(datafile):
    with MappedFile(datafile) as m:
        assert m.evict() is True
        r = m.residency()
        assert r is not None and r <= 0.05
        datafile.read_bytes()  # a read pass fills the page cache
        assert m.residency() >= 0.95
        res, tot = m.residency_counts()
        assert tot == -(-m.size // PAGE) and res <= tot
        m.evict()
        assert m.residency(0, PAGE * 4) <= 0.25


def test_close_with_live_views_keeps_memory(datafile):
    m = MappedFile(datafile)
    expected = datafile.read_bytes()[:1000]
    a = np.frombuffer(m, np.uint8)
    assert m.exports >= 1
    m.close()
    assert m.closed
    assert a[:1000].tobytes() == expected  # still mapped: the view keeps it
    with pytest.raises(ValueError, match="closed"):
        m.prefetch()
    with pytest.raises(ValueError, match="closed"):
        memoryview(m)
    del a
    gc.collect()
    assert m.exports == 0
    assert m.address == 0  # unmapped once the last view went
    m.close()  # idempotent


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        MappedFile(tmp_path / "missing.gguf")
    assert "missing.gguf" in str(e.value)
    with pytest.raises(IsADirectoryError):
        MappedFile(tmp_path)
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(MappingError, match="empty"):
        MappedFile(tmp_path / "empty")
    with pytest.raises(ValueError, match="NUL"):
        MappedFile("a\0b")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_permission_denied(public_dir):
    p = public_dir / "secret.bin"
    p.write_bytes(b"x" * 100)
    p.chmod(0o000)
    become = "os.setgid(65534); os.setuid(65534)" if os.geteuid() == 0 else ""
    code = textwrap.dedent(f"""
        import os
        from llamacy import MappedFile
        {become}
        try:
            MappedFile({str(p)!r})
        except PermissionError as e:
            print("PermissionError", e)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("PermissionError") and "secret.bin" in r.stdout


def test_private_copy(datafile):
    """private=True (use_mmap=False): the file's bytes in memory of our own, residency unknown."""
    with MappedFile(datafile) as shared, MappedFile(datafile, private=True) as copy:
        assert copy.private and not shared.private
        assert bytes(memoryview(copy)) == bytes(memoryview(shared)) == datafile.read_bytes()
        assert copy.residency() is None and copy.residency_method is None
        assert shared.residency_method in ("cachestat", "mincore", "QueryWorkingSetEx")
        assert copy.evict() is False
        with pytest.raises(TypeError):
            memoryview(copy)[0] = 1  # read-only, as the mapping
    with pytest.raises(IsADirectoryError):
        MappedFile(datafile.parent, private=True)


def test_anonymous_memory_is_zeroed_writable_and_lives_with_its_views():
    mem = AnonymousMemory(3 * PAGE + 5)
    a = np.frombuffer(mem, dtype=np.uint8)
    assert a.size == 3 * PAGE + 5 and not a.any()
    a[0], a[-1] = 7, 9
    del mem
    gc.collect()
    assert a[0] == 7 and a[-1] == 9  # the array keeps its memory alive


@pytest.mark.skipif(not LINUX or os.geteuid() != 0, reason="needs root to become another user")
def test_residency_unknown_for_foreign_file(datafile):
    """A file the caller neither owns nor may write: mincore would say 100%; we say None."""
    os.chmod(datafile, 0o644)
    code = textwrap.dedent(f"""
        import os
        from llamacy import MappedFile
        os.setgid(65534); os.setuid(65534)
        m = MappedFile({str(datafile)!r})
        print(m.residency())
    """)
    with MappedFile(datafile) as m:
        m.evict()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "None"
    with MappedFile(datafile) as m:
        assert m.residency_method is not None and m.residency() is not None  # root owns it


def _thp_mode() -> str | None:
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return None
    return text.split("[")[1].split("]")[0]


def _fs_type(path: Path) -> str:
    best, kind = "", ""
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mnt, fstype, *_ = line.split()
        if str(path.resolve()).startswith(mnt) and len(mnt) > len(best):
            best, kind = mnt, fstype
    return kind


@pytest.mark.skipif(not LINUX, reason="transparent huge pages are a Linux feature")
def test_weights_are_mapped_with_huge_pages_where_linux_allows(tmp_path):
    """The mapping asks for huge pages before any page is read (MADV_HUGEPAGE): a cold file is
    then read into 2 MiB page-cache folios, each mapped by one PMD (FilePmdMapped in smaps)."""
    if _thp_mode() in (None, "never"):
        pytest.skip("transparent huge pages are off on this kernel")
    if _fs_type(tmp_path) not in ("ext4", "xfs", "btrfs"):
        pytest.skip(f"{_fs_type(tmp_path)} may not cache files in large folios")
    path = tmp_path / "big.bin"
    path.write_bytes(np.random.default_rng(0).integers(0, 255, 16 << 20, dtype=np.uint8).tobytes())
    with MappedFile(path) as m:
        m.evict()
    with MappedFile(path, prefetch="populate") as m:
        start = f"{m.address:x}-"
        smaps = Path("/proc/self/smaps").read_text().split("\n")
        i = next(i for i, line in enumerate(smaps) if line.startswith(start))
        pmd = next(int(line.split()[1]) for line in smaps[i:] if line.startswith("FilePmdMapped:"))
    assert pmd >= 2048, f"only {pmd} kB of 16 MiB mapped by huge pages"
