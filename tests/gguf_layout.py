"""An independent walk over a GGUF header, for the tests: where every field is.

Written from the format description, separately from llamacy._gguf, so the malformed-file tests
can corrupt exactly the field they mean to.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass
class Field:
    kind: str  # magic, version, n_tensors, n_kv, key_len, key, vtype, value, str_len, str,
    #            arr_type, arr_count, n_dims, dim, ttype, toffset, name_len, name, bool
    offset: int
    size: int


_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def walk(data: bytes) -> tuple[list[Field], int, list[tuple[int, int]]]:
    """-> (fields, data_offset, [(tensor data offset relative, n_dims...)]); assumes a valid file."""
    f: list[Field] = []
    pos = 0

    def take(kind, n):
        nonlocal pos
        f.append(Field(kind, pos, n))
        pos += n
        return data[pos - n:pos]

    def string(kind):
        n = struct.unpack("<Q", take(kind + "_len", 8))[0]
        return take(kind, n).decode()

    def value(vt):
        if vt in _SIZES:
            take("bool" if vt == 7 else "value", _SIZES[vt])
        elif vt == 8:
            string("str")
        elif vt == 9:
            et = struct.unpack("<I", take("arr_type", 4))[0]
            n = struct.unpack("<Q", take("arr_count", 8))[0]
            for _ in range(n):
                value(et)
        else:
            raise ValueError(vt)

    take("magic", 4)
    take("version", 4)
    nt = struct.unpack("<Q", take("n_tensors", 8))[0]
    nkv = struct.unpack("<Q", take("n_kv", 8))[0]
    alignment = 32
    for _ in range(nkv):
        key = string("key")
        vt = struct.unpack("<I", take("vtype", 4))[0]
        at = pos
        value(vt)
        if key == "general.alignment":
            alignment = struct.unpack_from("<I", data, at)[0]
    tensors = []
    for _ in range(nt):
        string("name")
        nd = struct.unpack("<I", take("n_dims", 4))[0]
        for _ in range(nd):
            take("dim", 8)
        take("ttype", 4)
        off = struct.unpack("<Q", take("toffset", 8))[0]
        tensors.append(off)
    data_offset = -(-pos // alignment) * alignment
    return f, data_offset, tensors
