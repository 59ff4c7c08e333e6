"""A model larger than the memory a process may use still runs: its weights are clean
file-backed pages the kernel can drop and read again, never private copies."""

from __future__ import annotations

import sys
import textwrap

import memlimit
import pytest
from conftest import write_llama

from llamacy import MappedFile
from llamacy._quants import GGMLType

LIMIT = 96 * 2**20  # far below the 113 MB of weights, above Python + numpy + scratch

GENERATE = textwrap.dedent("""
    import sys
    import numpy as np
    from llamacy import GGUFFile
    from llamacy._model import LlamaModel
    m = LlamaModel(GGUFFile(sys.argv[1]), n_ctx=64, n_threads=2)
    tok, out = 1, []
    logits = m.forward([1, 2, 3, 4], 0)
    for i in range(4):
        tok = int(np.argmax(logits)); out.append(tok)
        logits = m.forward([tok], 4 + i)
    print(" ".join(map(str, out)))
""")

READ_ALL = "import sys; data = open(sys.argv[1], 'rb').read(); print(len(data))"


@pytest.fixture(scope="module")
def big_model(tmp_path_factory):
    return write_llama(tmp_path_factory.mktemp("big") / "m.gguf", GGMLType.Q8_0, dim=1024, n_layers=8,
                       n_heads=16, n_kv_heads=4, ffn=2816, vocab=8000)


def test_generates_inside_a_memory_limit_smaller_than_the_model(big_model):
    why = memlimit.available()
    if why:
        pytest.skip(f"cannot create a memory limit here: {why}")
    assert big_model.stat().st_size > 1.1 * LIMIT
    free = memlimit.run_limited([sys.executable, "-c", GENERATE, str(big_model)], 8 * 2**30)
    assert free.returncode == 0, free.stderr
    with MappedFile(big_model) as mf:  # cached pages are charged elsewhere: start cold
        assert mf.evict()
    limited = memlimit.run_limited([sys.executable, "-c", GENERATE, str(big_model)], LIMIT)
    assert limited.returncode == 0 and not limited.oom_killed, limited.stderr[-2000:]
    assert limited.stdout == free.stdout  # same tokens, just more page-ins
    assert limited.peak_bytes is None or limited.peak_bytes <= LIMIT
    # The control: reading the file into private memory in the same limit is killed.
    with MappedFile(big_model) as mf:
        mf.evict()
    control = memlimit.run_limited([sys.executable, "-c", READ_ALL, str(big_model)], LIMIT)
    assert control.returncode != 0 and control.oom_killed
