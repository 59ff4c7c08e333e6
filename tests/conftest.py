"""Shared fixtures: where the real model files are, and GGUF files written by the reference writer."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LLAMACY_SHARED", REPO.parent / "shared"))
MODELS = SHARED / "models"
STORIES_GGUF = MODELS / "stories260K.gguf"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: set LLAMACY_SHARED to the shared/ folder")
    return path


@pytest.fixture(scope="session")
def stories_gguf() -> Path:
    return need(STORIES_GGUF)


@pytest.fixture(scope="session")
def shared() -> Path:
    return need(SHARED)


def write_gguf(path: Path, tensors: dict, metadata: dict | None = None, arch: str = "llama",
               alignment: int | None = None) -> Path:
    """Write a GGUF with the reference writer (gguf-py). tensors: name -> float array, or
    (raw uint8 array shaped (rows, row bytes), GGMLQuantizationType) for quantized data."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, value in (metadata or {}).items():
        if isinstance(value, tuple):  # (value, GGUFValueType)
            w.add_key_value(key, value[0], value[1])
        else:
            w.add_key_value(key, value, _vtype(value))
    for name, t in tensors.items():
        if isinstance(t, tuple):
            w.add_tensor(name, t[0], raw_dtype=t[1])
        else:
            w.add_tensor(name, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _vtype(v):
    import gguf

    V = gguf.GGUFValueType
    if isinstance(v, bool):
        return V.BOOL
    if isinstance(v, int):
        return V.INT64 if v < 0 else V.UINT32 if v < 2**32 else V.UINT64
    if isinstance(v, float):
        return V.FLOAT32
    if isinstance(v, str):
        return V.STRING
    return V.ARRAY


def quant_tensor(t, rows: int, cols: int, rng: np.random.Generator):
    """Random well-formed data of llamacy/gguf type t, as the writer's (raw, type) pair."""
    import gguf

    from llamacy.quants import TRAITS, GGMLType, random_blocks

    tr = TRAITS[GGMLType(int(t))]
    raw = random_blocks(t, rows * cols // tr.block_size, rng)
    return raw.reshape(rows, -1), gguf.GGMLQuantizationType(int(t))
