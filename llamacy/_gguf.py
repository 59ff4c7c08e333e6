"""A zero-copy GGUF v2/v3 reader on a read-only shared mapping.

Layout of a GGUF file (all little-endian)::

    magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
    n_kv x        (string key, u32 value type, value)
    n_tensors x   (string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset)
    padding to `general.alignment` (default 32)
    tensor data   (each tensor at data_offset + offset, offset a multiple of the alignment)

Everything in the header is validated -- against the file's size, before any tensor byte is
touched -- and every failure raises :class:`GGUFError` naming the field, its offset in the file
and the numbers involved. Tensor data is never copied: ``TensorInfo.data`` is a read-only
numpy view into the mapping.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Sequence
from enum import IntEnum
from typing import Any

import numpy as np

from llamacy._errors import GGUFError
from llamacy._gguf_scan import (
    StringOverrun,
    TensorInfoBadDims,
    TensorInfoOverrun,
    read_strings,
    read_tensor_infos,
    scan_strings,
)
from llamacy._mmap import MappedFile
from llamacy._quants import TRAITS, GGMLType, TypeTraits, dequantize, traits

__all__ = ["GGUFFile", "GGUFValueType", "StringArray", "TensorInfo"]

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
MAX_NESTING = 16


class GGUFValueType(IntEnum):
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


V = GGUFValueType
# value type -> (struct format, numpy dtype) of one scalar
_SCALARS: dict[GGUFValueType, tuple[struct.Struct, str]] = {
    V.UINT8: (struct.Struct("<B"), "u1"),
    V.INT8: (struct.Struct("<b"), "i1"),
    V.UINT16: (struct.Struct("<H"), "<u2"),
    V.INT16: (struct.Struct("<h"), "<i2"),
    V.UINT32: (struct.Struct("<I"), "<u4"),
    V.INT32: (struct.Struct("<i"), "<i4"),
    V.FLOAT32: (struct.Struct("<f"), "<f4"),
    V.BOOL: (struct.Struct("<B"), "u1"),
    V.UINT64: (struct.Struct("<Q"), "<u8"),
    V.INT64: (struct.Struct("<q"), "<i8"),
    V.FLOAT64: (struct.Struct("<d"), "<f8"),
}
_INTEGERS = {V.UINT8, V.INT8, V.UINT16, V.INT16, V.UINT32, V.INT32, V.UINT64, V.INT64}
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")
_TYPES = {int(t): t for t in GGMLType}
# smallest encoding of one element of each kind: bounds any count by the bytes left
_MIN_SIZE = {**{t: s.size for t, (s, _) in _SCALARS.items()}, V.STRING: 8, V.ARRAY: 12}


REQUIRED = object()


def _describe(v: Any) -> str:
    if isinstance(v, (list, StringArray, np.ndarray)):
        return f"an array of {len(v)}"
    text = repr(v)
    return f"{type(v).__name__} {text if len(text) < 40 else text[:37] + '...'}"


class StringArray(Sequence):
    """A metadata array of strings, decoded when read: a vocabulary of 32000 tokens costs a
    copy of its bytes at open, not 32000 str objects. Compares equal to the list it holds."""

    __slots__ = ("_list", "_off", "_raw")

    def __init__(self, raw: bytes, offsets: np.ndarray):
        self._raw = raw  # the array's bytes as in the file: (u64 length, UTF-8 bytes) per string
        self._off = offsets  # (n+1,) start of each string's length field in raw
        self._list: list[str] | None = None

    def __len__(self) -> int:
        return len(self._off) - 1

    def tolist(self) -> list[str]:
        if self._list is None:
            self._list = read_strings(self._raw, 0, len(self))[0]
        return self._list

    def __getitem__(self, i):  # type: ignore[override]
        if self._list is not None or isinstance(i, slice):
            return self.tolist()[i]
        i = range(len(self))[i]
        a, b = int(self._off[i]) + 8, int(self._off[i + 1])
        return self._raw[a:b].decode("utf-8", errors="surrogateescape")

    def __iter__(self):
        return iter(self.tolist())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (StringArray, list, tuple)):
            return self.tolist() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        head = ", ".join(repr(s) for s in self[:3]) if len(self) else ""
        return f"StringArray([{head}{', ...' if len(self) > 3 else ''}], n={len(self)})"


class TensorInfo:
    """One tensor of a GGUF file: where it is, what it is, and a zero-copy view of it."""

    __slots__ = ("_file", "index", "info_offset", "name", "nbytes", "ne", "offset", "shape", "type")

    def __init__(self, file: GGUFFile, index: int, info_offset: int, name: str, ne: tuple[int, ...],
                 type_: GGMLType | int, offset: int, nbytes: int | None):
        self._file = file
        self.index = index
        self.info_offset = info_offset  # where this tensor's header entry starts in the file
        self.name = name
        self.ne = ne  # ggml order: ne[0] is the row length
        self.shape = tuple(reversed(ne))  # numpy order: rows first
        self.type = type_
        self.offset = offset  # relative to the data section
        self.nbytes = nbytes  # None for an unknown type

    @property
    def n_elements(self) -> int:
        return math.prod(self.ne)

    @property
    def file_offset(self) -> int:
        """Absolute offset of the first data byte in the file."""
        return self._file.data_offset + self.offset

    @property
    def type_name(self) -> str:
        return self.type.name if isinstance(self.type, GGMLType) else f"type {self.type} (unknown)"

    @property
    def traits(self) -> TypeTraits:
        return traits(self.type)

    @property
    def data(self) -> np.ndarray:
        """A read-only view into the mapping: the element dtype in numpy order for plain types
        (BF16 as uint16), uint8 blocks shaped (rows, bytes per row) for quantized ones."""
        tr = traits(self.type)  # UnsupportedTypeError for an unknown type
        if self._file.mapping.closed:
            raise ValueError(f"{self._file.path}: the mapping is closed")
        mapping = self._file.mapping
        if tr.dtype is not None:
            a = np.frombuffer(mapping, dtype=tr.dtype, count=self.n_elements, offset=self.file_offset)
            return a.reshape(self.shape)
        rows = self.n_elements // self.ne[0]
        a = np.frombuffer(mapping, dtype=np.uint8, count=self.nbytes, offset=self.file_offset)
        return a.reshape(rows, self.nbytes // rows)

    def dequantize(self) -> np.ndarray:
        """The tensor as float32 in numpy order, by the reference (numpy) dequantizer."""
        return dequantize(self.data, self.type, self.shape)

    def __repr__(self) -> str:
        return f"<TensorInfo {self.name!r} {self.type_name} shape={self.shape} offset={self.offset}>"


class _Header:
    """Bounds-checked little-endian reads from the start of the mapping."""

    __slots__ = ("buf", "path", "pos", "size")

    def __init__(self, buf: memoryview, path: str):
        self.buf = buf
        self.path = path
        self.size = len(buf)
        self.pos = 0

    def fail(self, what: str, at: int | None = None) -> GGUFError:
        at = self.pos if at is None else at
        return GGUFError(f"{self.path}: {what} (at offset {at}, file is {self.size} bytes)")

    def need(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise self.fail(f"truncated file: {what} needs {n} bytes, only {self.size - self.pos} remain")

    def unpack(self, s: struct.Struct, what: str) -> Any:
        self.need(s.size, what)
        v = s.unpack_from(self.buf, self.pos)[0]
        self.pos += s.size
        return v

    def u32(self, what: str) -> int:
        return self.unpack(_U32, what)

    def u64(self, what: str) -> int:
        return self.unpack(_U64, what)

    def overrun(self, e: StringOverrun, what: str) -> GGUFError:
        """The GGUFError for a string (what, or what[i] of an array) running past the end."""
        _, at, n, left = e.args
        return self.fail(f"truncated file: length of {what} needs 8 bytes, only {left} remain" if n < 0
                         else f"length of {what} is {n} bytes, but only {left} bytes remain", at)

    def string(self, what: str) -> str:
        try:
            (out,), self.pos = read_strings(self.buf, self.pos, 1)
        except StringOverrun as e:
            raise self.overrun(e, what) from None
        return out

    def bounded_count(self, count: int, min_size: int, what: str, at: int) -> None:
        if count * min_size > self.size - self.pos:
            raise self.fail(f"{what} is {count}, more than the {self.size - self.pos} bytes left could hold",
                            at)

    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        at = self.pos
        if vtype in _SCALARS:
            vt = GGUFValueType(vtype)
            v = self.unpack(_SCALARS[vt][0], what)
            if vt is V.BOOL:
                if v > 1:
                    raise self.fail(f"{what}: bool value is {v}, must be 0 or 1", at)
                return bool(v)
            return v
        if vtype == V.STRING:
            return self.string(what)
        if vtype == V.ARRAY:
            if depth >= MAX_NESTING:
                raise self.fail(f"{what}: arrays nested deeper than {MAX_NESTING}", at)
            etype = self.u32(f"{what} element type")
            if etype not in _MIN_SIZE:
                raise self.fail(f"{what}: unknown array element type {etype}", at)
            count_at = self.pos
            count = self.u64(f"{what} element count")
            self.bounded_count(count, _MIN_SIZE[GGUFValueType(etype)], f"{what}: element count", count_at)
            return self.array(GGUFValueType(etype), count, what, depth)
        raise self.fail(f"{what}: unknown value type {vtype}", at)

    def array(self, etype: GGUFValueType, count: int, what: str, depth: int) -> Any:
        if etype in _SCALARS:
            s, dtype = _SCALARS[etype]
            a = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos).copy()
            if etype is V.BOOL:
                bad = np.flatnonzero(a > 1)
                if bad.size:
                    raise self.fail(f"{what}[{bad[0]}]: bool value is {a[bad[0]]}, must be 0 or 1",
                                    self.pos + int(bad[0]))
                a = a.view(np.bool_)
            self.pos += count * s.size
            a.flags.writeable = False
            return a
        if etype is V.STRING:
            start = self.pos
            offsets = np.empty(count + 1, np.int64)
            try:
                self.pos = scan_strings(self.buf, self.pos, count, offsets)
            except StringOverrun as e:
                raise self.overrun(e, f"{what}[{e.args[0]}]") from None
            return StringArray(bytes(self.buf[start:self.pos]), offsets)
        return [self.value(V.ARRAY, f"{what}[{i}]", depth + 1) for i in range(count)]


class GGUFFile:
    """A GGUF file, mapped read-only and shared.

    ``GGUFFile(path, *, prefetch="none"|"willneed"|"populate", lock=False, use_mmap=True)``.
    Metadata values are Python scalars and strings; numeric arrays are read-only numpy arrays
    (copied out of the header, so they outlive the file); arrays of strings or arrays are lists.
    """

    def __init__(self, path: str | os.PathLike, *, use_mmap: bool = True, **mapping_options: Any):
        self.path = os.fspath(path)
        if isinstance(self.path, bytes):
            self.path = os.fsdecode(self.path)
        if os.path.isfile(self.path) and os.path.getsize(self.path) == 0:
            raise GGUFError(f"{self.path}: the file is empty (0 bytes), not a GGUF file")
        # use_mmap=False: the whole file read into private memory, llama.cpp's --no-mmap (kept for
        # comparison; residency is then unknown, the copy not being the file)
        self.mapping = MappedFile(self.path, private=not use_mmap, **mapping_options)
        try:
            with memoryview(self.mapping) as buf:
                self._parse(_Header(buf, self.path))
        except BaseException:
            self.mapping.close()
            raise

    # -- parsing ------------------------------------------------------------------------------
    def _parse(self, h: _Header) -> None:
        self.size = h.size
        if h.size < 4 or bytes(h.buf[:4]) != GGUF_MAGIC:
            got = bytes(h.buf[:4])
            raise h.fail(f"not a GGUF file: magic is {got!r}, expected {GGUF_MAGIC!r}", 0)
        h.pos = 4
        version = h.u32("version")
        if version == 1:
            raise h.fail("GGUFv1 is no longer supported; convert the file to GGUF v3", 4)
        if version not in (2, 3):
            swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
            if swapped in (1, 2, 3):
                raise h.fail(f"byte-swapped (big-endian) GGUF v{swapped}: only little-endian files "
                             "are supported", 4)
            raise h.fail(f"unsupported GGUF version {version} (supported: 2, 3)", 4)
        self.version = version
        at = h.pos
        n_tensors = h.u64("tensor count")
        h.bounded_count(n_tensors, 32, "tensor count", at)
        at = h.pos
        n_kv = h.u64("metadata key/value count")
        h.bounded_count(n_kv, 13, "metadata key/value count", at)

        self.metadata: dict[str, Any] = {}
        self.metadata_types: dict[str, GGUFValueType] = {}
        for i in range(n_kv):
            at = h.pos
            key = h.string(f"metadata key #{i}")
            if key in self.metadata:
                raise h.fail(f"duplicate metadata key {key!r}", at)
            vtype = h.u32(f"value type of {key!r}")
            self.metadata[key] = h.value(vtype, f"metadata {key!r}")
            self.metadata_types[key] = GGUFValueType(vtype)

        self.alignment = DEFAULT_ALIGNMENT
        if "general.alignment" in self.metadata:
            a = self.metadata["general.alignment"]
            if self.metadata_types["general.alignment"] not in _INTEGERS or a <= 0 or a & (a - 1):
                raise h.fail(f"general.alignment is {a!r}: must be a positive power of two", 0)
            self.alignment = int(a)

        try:
            entries, end = read_tensor_infos(h.buf, h.pos, n_tensors, MAX_DIMS)
        except TensorInfoOverrun as e:
            i, field, at, need, left = e.args
            raise h.fail(f"truncated file: {field} of tensor #{i} needs {need} bytes, only {left} remain",
                         at) from None
        except TensorInfoBadDims as e:
            i, at, nd = e.args
            raise h.fail(f"tensor #{i}: dimension count is {nd}, must be 1 to {MAX_DIMS}", at) from None
        h.pos = end
        infos = []
        names: set[str] = set()
        align = self.alignment
        for at, name, ne, ttype, offset, dims_at, type_at, offset_at in entries:
            if name in names:
                raise h.fail(f"duplicate tensor name {name!r}", at)
            names.add(name)
            n = math.prod(ne)
            if 0 in ne or n >= 1 << 62:
                raise h.fail(f"tensor {name!r}: dimensions {list(ne)} must be positive with a product "
                             "below 2**62", dims_at)
            if offset % align:
                raise h.fail(f"tensor {name!r}: data offset {offset} is not a multiple of the alignment "
                             f"{align}", offset_at)
            t = _TYPES.get(ttype, ttype)  # unknown: listed; an error only when its data is asked for
            tr = TRAITS.get(t)
            nbytes = None
            if tr is not None:
                if ne[0] % tr.block_size:
                    raise h.fail(f"tensor {name!r}: row length {ne[0]} is not a multiple of the {tr.name} "
                                 f"block size {tr.block_size}", type_at)
                nbytes = n // tr.block_size * tr.type_size
            infos.append((at, name, ne, t, offset, nbytes, offset_at))

        self.data_offset = -(-h.pos // self.alignment) * self.alignment
        if self.data_offset > h.size and infos:
            raise h.fail(f"truncated file: tensor data would start at {self.data_offset}", h.pos)
        self.tensors: dict[str, TensorInfo] = {}
        for i, (at, name, ne, t, offset, nbytes, offset_at) in enumerate(infos):
            end = self.data_offset + offset + (nbytes or 0)
            if end > h.size:
                raise h.fail(f"tensor {name!r}: data [{self.data_offset + offset}, {end}) ends past the "
                             f"end of the file ({h.size} bytes)", offset_at)
            self.tensors[name] = TensorInfo(self, i, at, name, ne, t, offset, nbytes)

    # -- access ---------------------------------------------------------------------------------
    @property
    def architecture(self) -> str | None:
        a = self.metadata.get("general.architecture")
        return a if isinstance(a, str) else None

    def tensor(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor named {name!r}") from None

    def arch_value(self, key: str, default: Any = None) -> Any:
        """metadata[f"{architecture}.{key}"], e.g. arch_value("block_count"), unchecked."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    def typed(self, key: str, kind: type, default: Any = REQUIRED, *, lo: float | None = None,
              hi: float | None = None, error: type[Exception] = GGUFError) -> Any:
        """metadata[key] as `kind` (int, float, str or bool), checked: an int is an integer value
        (not a bool), a float a finite number (integers accepted), both within [lo, hi]. A missing
        key gives `default`, or `error` naming the key when there is none; so does a value of
        another type or out of range. The one reader for every hyper-parameter and vocabulary
        field, so a hostile file fails with an error that names what is wrong."""
        v = self.metadata.get(key)
        if v is None:
            if default is REQUIRED:
                raise error(f"{self.path}: metadata {key} is missing")
            return default
        name = {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}[kind]
        if kind is bool:
            ok = isinstance(v, bool)
        elif kind is int:
            ok = isinstance(v, (int, np.integer)) and not isinstance(v, bool)
        elif kind is float:
            ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) \
                and math.isfinite(v)
            name = "a finite number"
        else:
            ok = isinstance(v, str)
        if not ok:
            raise error(f"{self.path}: metadata {key} must be {name}, not {_describe(v)}")
        v = kind(v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise error(f"{self.path}: metadata {key} = {v} is out of range [{lo}, {hi}]")
        return v

    def arch_typed(self, key: str, kind: type, default: Any = REQUIRED, **kw: Any) -> Any:
        """typed() for f"{architecture}.{key}"."""
        return self.typed(f"{self.architecture}.{key}", kind, default, **kw)

    @property
    def unsupported_tensors(self) -> list[TensorInfo]:
        """Tensors whose type llamacy cannot decode (unknown numbers or no dequantizer)."""
        return [t for t in self.tensors.values() if t.type not in TRAITS or TRAITS[t.type].dequantize is None]

    def close(self) -> None:
        """Close the mapping; live tensor views keep it until they are released."""
        self.mapping.close()

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<GGUFFile {self.path!r} v{self.version} {self.architecture} "
                f"{len(self.tensors)} tensors>")
