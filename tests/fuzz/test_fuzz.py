"""The short fixed-seed fuzzing campaign CI runs (tests/fuzz/gguf_fuzz.py has the long one):
every mutant must end clean or with a LlamacyError -- no other exception, signal or hang."""

from __future__ import annotations

import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork and resource limits")

MUTANTS = 1200  # ~40 s here; the documented long campaign runs 10,000+


def test_short_campaign_has_no_failures(tmp_path):
    import gguf_fuzz

    seeds = gguf_fuzz.write_seeds(tmp_path / "seeds")
    r = gguf_fuzz.campaign(seeds, MUTANTS, seed=20261130, work=tmp_path / "work", out=tmp_path / "failures")
    counts = r["counts"]
    assert sum(counts.values()) == MUTANTS
    assert counts.get("clean", 0) > MUTANTS // 20 and counts.get("llamacy", 0) > MUTANTS // 2  # it reaches deep
    failures = {cls: f"{s['detail'][:200]} <- {'; '.join(s['mutations'])}" for cls, s in r["failures"].items()}
    assert not failures, failures


def test_the_harness_sees_a_crash(tmp_path):
    """The classifier itself: a child that dies of a signal or hangs is reported as such."""
    import gguf_fuzz

    seeds = gguf_fuzz.write_seeds(tmp_path / "seeds")
    path = tmp_path / "m.gguf"
    path.write_bytes(seeds[0].read_bytes())
    assert gguf_fuzz.run_one(str(path), 64) == ("clean", "")
    original = gguf_fuzz.targets
    try:
        gguf_fuzz.targets = lambda p, n: __import__("os").kill(__import__("os").getpid(), 11)
        assert gguf_fuzz.run_one(str(path), 64)[0] == "signal"
        gguf_fuzz.targets = lambda p, n: __import__("time").sleep(10)
        assert gguf_fuzz.run_one(str(path), 64, timeout=1) == ("timeout", "SIGALRM")
        gguf_fuzz.targets = lambda p, n: {}["x"]
        assert gguf_fuzz.run_one(str(path), 64)[0] == "other"
    finally:
        gguf_fuzz.targets = original
