"""Run in a subprocess by test_malformed.py: open each GGUF named on stdin (one path per line)
and read every byte of every tensor. Prints one line per file: START, then the outcome, so a
crash (segfault, SIGBUS) shows which file did it instead of killing pytest."""

import sys

import numpy as np

from llamacy import GGUFError, GGUFFile


def probe(path: str) -> str:
    try:
        with GGUFFile(path) as f:
            for t in f.tensors.values():
                d = t.data
                np.bitwise_xor.reduce(d.reshape(-1).view(np.uint8))
                del d
        return "ok"
    except GGUFError as e:
        return "GGUFError " + str(e).replace("\n", " ")
    except Exception as e:  # noqa: BLE001 - reported to the test as a failure
        return f"other {type(e).__name__}: {e}".replace("\n", " ")


for line in sys.stdin:
    path = line.strip()
    print("START", path, flush=True)
    print("RESULT", path, probe(path), flush=True)
