"""Logits of llamacy against llama.cpp's on the same file and tokens (a check, not a timing).

    python benchmarks/compare_logits.py MODEL.gguf [--tokens 64] [--text "..."]

Runs llama.cpp through llama-cpp-python from $LLAMA_CPP_PYTHON (default
/opt/llcpp-venv/bin/python) with logits for every position, llamacy in this interpreter, both
with 2 threads and f16 KV caches, and prints the relative L2 error of the logits, per position
and overall, and how often the two argmaxes agree. With --text the prompt is tokenized by each
engine (the ids must be equal); otherwise the tokens are random ids of the vocabulary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

LLAMA_CPP_PYTHON = os.environ.get("LLAMA_CPP_PYTHON", "/opt/llcpp-venv/bin/python")

LLAMA_CPP = """
import json, sys
import numpy as np
from llama_cpp import Llama
path, out, tokens, text = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
m = Llama(model_path=path, n_ctx=len(tokens) + 16 if tokens else 512, logits_all=True, n_threads=2, verbose=False)
if text:
    tokens = m.tokenize(text.encode(), add_bos=True, special=True)
m.eval(tokens)
np.save(out, np.asarray(m.scores[:len(tokens)], np.float32))
print(json.dumps(tokens))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--text", default="")
    a = ap.parse_args()

    from llamacy import Llama

    llm = Llama(a.model, n_ctx=max(a.tokens, 512) + 16, logits_all=True, n_threads=2, verbose=False)
    tokens = [] if a.text else [int(t) for t in np.random.default_rng(0).integers(0, llm.n_vocab(), a.tokens)]
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "logits.npy")
        r = subprocess.run([LLAMA_CPP_PYTHON, "-c", LLAMA_CPP, a.model, out, json.dumps(tokens), a.text],
                           capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"llama.cpp failed: {r.stderr[-2000:]}")
        theirs_tokens = json.loads(r.stdout.strip().splitlines()[-1])
        theirs = np.load(out)
    if a.text:
        tokens = llm.tokenize(a.text.encode(), add_bos=True, special=True)
        print(f"prompt tokens equal: {tokens == theirs_tokens} ({len(tokens)} tokens)")
    llm.eval(tokens)
    ours = np.asarray(llm.scores[:len(tokens)], np.float64)
    theirs = theirs.astype(np.float64)
    per = np.linalg.norm(ours - theirs, axis=1) / np.linalg.norm(theirs, axis=1)
    total = np.linalg.norm(ours - theirs) / np.linalg.norm(theirs)
    agree = float(np.mean(ours.argmax(1) == theirs.argmax(1)))
    print(f"{a.model}: {len(tokens)} positions, relative L2 error {total:.2e} "
          f"(per position median {np.median(per):.2e}, max {per.max():.2e}), argmax agreement {agree:.1%}")


if __name__ == "__main__":
    main()
