"""A small GGUF v3 writer (what `llamacy convert` needs): metadata of every value type and
float32 / raw tensors, written to a temporary file and renamed into place when complete."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from llamacy._gguf import DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUFValueType
from llamacy._quants import TRAITS, GGMLType

__all__ = ["GGUFWriter"]

V = GGUFValueType
_FMT = {V.UINT8: "<B", V.INT8: "<b", V.UINT16: "<H", V.INT16: "<h", V.UINT32: "<I", V.INT32: "<i",
        V.FLOAT32: "<f", V.BOOL: "<?", V.UINT64: "<Q", V.INT64: "<q", V.FLOAT64: "<d"}


def _string(s: str) -> bytes:
    b = s.encode("utf-8", errors="surrogateescape")
    return struct.pack("<Q", len(b)) + b


def _value(v: Any, vtype: GGUFValueType, etype: GGUFValueType | None) -> bytes:
    if vtype == V.STRING:
        return _string(v)
    if vtype == V.ARRAY:
        if etype is None:
            raise ValueError("an array value needs its element type")
        head = struct.pack("<IQ", int(etype), len(v))
        if etype == V.STRING:
            return head + b"".join(_string(x) for x in v)
        return head + np.asarray(v, dtype=np.dtype(_FMT[etype])).tobytes()
    return struct.pack(_FMT[vtype], v)


class GGUFWriter:
    def __init__(self, path: str | Path, architecture: str, alignment: int = DEFAULT_ALIGNMENT):
        self.path = Path(path)
        self.alignment = alignment
        self.kv: list[tuple[str, bytes]] = []
        self.tensors: list[tuple[str, tuple[int, ...], GGMLType, np.ndarray]] = []
        self.add("general.architecture", architecture, V.STRING)
        if alignment != DEFAULT_ALIGNMENT:
            self.add("general.alignment", alignment, V.UINT32)

    def add(self, key: str, value: Any, vtype: GGUFValueType, etype: GGUFValueType | None = None) -> None:
        if any(k == key for k, _ in self.kv):
            raise ValueError(f"duplicate metadata key {key!r}")
        self.kv.append((key, _string(key) + struct.pack("<I", int(vtype)) + _value(value, vtype, etype)))

    def add_tensor(self, name: str, data: np.ndarray, ttype: GGMLType = GGMLType.F32,
                   shape: tuple[int, ...] | None = None) -> None:
        """data: float32 array (numpy shape), or raw bytes of `ttype` with its numpy `shape`."""
        if any(n == name for n, *_ in self.tensors):
            raise ValueError(f"duplicate tensor name {name!r}")
        shape = tuple(shape if shape is not None else data.shape)
        if ttype == GGMLType.F32:
            data = np.ascontiguousarray(data, dtype="<f4")
        self.tensors.append((name, shape, ttype, data))

    def write(self) -> Path:
        a = self.alignment
        infos, offset = [], 0
        for name, shape, ttype, data in self.tensors:
            ne = tuple(reversed(shape))
            infos.append(_string(name) + struct.pack(f"<I{len(ne)}QIQ", len(ne), *ne, int(ttype), offset))
            tr = TRAITS[ttype]
            nbytes = int(np.prod(shape)) // tr.block_size * tr.type_size
            if data.nbytes != nbytes:
                raise ValueError(f"tensor {name}: {data.nbytes} bytes given, {nbytes} needed for {ttype.name} {shape}")
            offset += -(-nbytes // a) * a
        tmp = self.path.with_name(self.path.name + ".partial")
        with open(tmp, "wb") as fh:
            fh.write(GGUF_MAGIC + struct.pack("<IQQ", 3, len(self.tensors), len(self.kv)))
            for _, raw in self.kv:
                fh.write(raw)
            for raw in infos:
                fh.write(raw)
            fh.write(b"\0" * (-fh.tell() % a))
            for _, _, _, data in self.tensors:
                fh.write(data.tobytes())
                fh.write(b"\0" * (-data.nbytes % a))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        return self.path
