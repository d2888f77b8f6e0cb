"""Thrift's compact protocol, read and written without a schema (pure: bytes in, bytes out).

Parquet's footer (``FileMetaData``) and page indexes (``OffsetIndex``) are Thrift structs in the
compact protocol, which describes itself: every field carries its id and type. This module
decodes such bytes into a tree that keeps every field, in order, including the ones it does not
know, and encodes the tree back to the same bytes; :mod:`processing.adapters.parquet_concat`
changes a few offsets in between. Specification:
https://github.com/apache/thrift/blob/master/doc/specs/thrift-compact-protocol.md
"""

from __future__ import annotations

import struct as _struct
from dataclasses import dataclass, field
from typing import Any

# compact type ids
BOOL_TRUE, BOOL_FALSE, I8, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT = range(1, 13)
_INTEGERS = (I16, I32, I64)


class ThriftError(ValueError):
    """Bytes that are not a well-formed compact-protocol struct."""


@dataclass
class Struct:
    """A struct's fields in their order: ``[field id, type, value]`` (a bool's type carries its
    value: BOOL_TRUE or BOOL_FALSE, and ``value`` is the bool)."""

    fields: list[list[Any]] = field(default_factory=list)

    def get(self, field_id: int, default: Any = None) -> Any:
        for fid, _, value in self.fields:
            if fid == field_id:
                return value
        return default

    def set(self, field_id: int, value: Any) -> None:
        """Replace the value of an existing field (its type stays)."""
        for entry in self.fields:
            if entry[0] == field_id:
                entry[2] = value
                return
        raise KeyError(field_id)

    def remove(self, field_id: int) -> None:
        self.fields = [f for f in self.fields if f[0] != field_id]


@dataclass
class List:
    """A list or set: its element type and elements (a bool element is its byte, 1 or 2)."""

    element_type: int
    items: list[Any]
    kind: int = LIST  # LIST or SET


@dataclass
class Map:
    key_type: int
    value_type: int
    items: list[tuple[Any, Any]]


# --- decoding ------------------------------------------------------------------------------------
class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ThriftError("unexpected end of data")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ThriftError("unexpected end of data")
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return out

    def varint(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 70:
                raise ThriftError("varint too long")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)


def _value(r: _Reader, typ: int, depth: int) -> Any:
    if depth > 64:
        raise ThriftError("nesting too deep")
    read = _READERS.get(typ)
    if read is None:
        raise ThriftError(f"unknown type {typ}")
    return read(r, typ, depth)


def _collection(r: _Reader, typ: int, depth: int) -> List:
    header = r.byte()
    size, element = header >> 4, header & 0x0F
    if size == 15:
        size = r.varint()
    return List(element, [_element(r, element, depth + 1) for _ in range(size)], typ)


def _map(r: _Reader, typ: int, depth: int) -> Map:
    size = r.varint()
    if not size:
        return Map(0, 0, [])
    kinds = r.byte()
    k, v = kinds >> 4, kinds & 0x0F
    return Map(k, v, [(_element(r, k, depth + 1), _element(r, v, depth + 1)) for _ in range(size)])


def _signed_byte(b: int) -> int:
    return b - 256 if b > 127 else b


_READERS: dict[int, Any] = {
    I8: lambda r, typ, depth: _signed_byte(r.byte()),
    I16: lambda r, typ, depth: r.zigzag(),
    I32: lambda r, typ, depth: r.zigzag(),
    I64: lambda r, typ, depth: r.zigzag(),
    DOUBLE: lambda r, typ, depth: _struct.unpack("<d", r.take(8))[0],
    BINARY: lambda r, typ, depth: r.take(r.varint()),
    LIST: _collection,
    SET: _collection,
    MAP: _map,
    STRUCT: lambda r, typ, depth: _struct_value(r, depth + 1),
}


def _element(r: _Reader, typ: int, depth: int) -> Any:
    if typ in (BOOL_TRUE, BOOL_FALSE):  # in a collection, a bool is a byte
        return r.byte()
    return _value(r, typ, depth)


def _struct_value(r: _Reader, depth: int) -> Struct:
    out = Struct()
    last = 0
    while True:
        header = r.byte()
        if header == 0:
            return out
        delta, typ = header >> 4, header & 0x0F
        field_id = last + delta if delta else r.zigzag()
        if typ in (BOOL_TRUE, BOOL_FALSE):
            out.fields.append([field_id, typ, typ == BOOL_TRUE])
        else:
            out.fields.append([field_id, typ, _value(r, typ, depth)])
        last = field_id


def decode(data: bytes) -> Struct:
    """One struct from ``data``, which it must fill exactly."""
    r = _Reader(data)
    out = _struct_value(r, 0)
    if r.pos != len(data):
        raise ThriftError(f"{len(data) - r.pos} bytes after the struct")
    return out


def decode_prefix(data: bytes) -> tuple[Struct, int]:
    """The struct at the start of ``data`` and how many bytes it took (e.g. a page header,
    followed by its page)."""
    r = _Reader(data)
    return _struct_value(r, 0), r.pos


# --- encoding ------------------------------------------------------------------------------------
def _varint(n: int, out: bytearray) -> None:
    while True:
        if n < 0x80:
            out.append(n)
            return
        out.append((n & 0x7F) | 0x80)
        n >>= 7


def _zigzag(n: int, out: bytearray) -> None:
    _varint((n << 1) ^ (n >> 63), out)


def _encode_value(value: Any, typ: int, out: bytearray) -> None:
    if typ in _INTEGERS:
        _zigzag(value, out)
    elif typ == BINARY:
        _varint(len(value), out)
        out += value
    elif typ == STRUCT:
        _encode_struct(value, out)
    elif typ in (LIST, SET):
        size = len(value.items)
        if size < 15:
            out.append(size << 4 | value.element_type)
        else:
            out.append(0xF0 | value.element_type)
            _varint(size, out)
        for item in value.items:
            _encode_element(item, value.element_type, out)
    elif typ == MAP:
        _varint(len(value.items), out)
        if value.items:
            out.append(value.key_type << 4 | value.value_type)
            for k, v in value.items:
                _encode_element(k, value.key_type, out)
                _encode_element(v, value.value_type, out)
    elif typ == I8:
        out.append(value & 0xFF)
    elif typ == DOUBLE:
        out += _struct.pack("<d", value)
    else:
        raise ThriftError(f"unknown type {typ}")


def _encode_element(value: Any, typ: int, out: bytearray) -> None:
    if typ in (BOOL_TRUE, BOOL_FALSE):
        out.append(value)
    else:
        _encode_value(value, typ, out)


def _encode_struct(value: Struct, out: bytearray) -> None:
    last = 0
    for field_id, declared, item in value.fields:
        typ = declared
        if typ in (BOOL_TRUE, BOOL_FALSE):
            typ = BOOL_TRUE if item else BOOL_FALSE
        delta = field_id - last
        if 0 < delta <= 15:
            out.append(delta << 4 | typ)
        else:
            out.append(typ)
            _zigzag(field_id, out)
        if typ not in (BOOL_TRUE, BOOL_FALSE):
            _encode_value(item, typ, out)
        last = field_id
    out.append(0)


def encode(value: Struct) -> bytes:
    out = bytearray()
    _encode_struct(value, out)
    return bytes(out)
