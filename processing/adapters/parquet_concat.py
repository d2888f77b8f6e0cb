"""Concatenate Parquet files into one by copying their row groups' bytes, without decoding them.

A Parquet file is its row groups' pages, then the page indexes, then the footer (a Thrift
``FileMetaData`` that locates every column chunk by its offset in the file). Files written with
the same schema and options concatenate by copying each file's row groups as they are, moving the
page indexes, and writing one footer whose offsets are shifted to where each row group landed
(the ``OffsetIndex`` locates pages by offset too, so it is shifted as well; the ``ColumnIndex``
holds values only and is copied). No page is decompressed, decoded or encoded again: the cost is
the bytes' copy.

Refused (:class:`NotConcatenableError`, the caller rewrites the rows instead): schemas that differ,
encrypted files, bloom filters, column chunks that are not back to back in their row group.
Field numbers are those of parquet.thrift (apache/parquet-format).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from processing.logic import thrift_compact as t

MAGIC = b"PAR1"
_COPY_BLOCK = 8 * 1024 * 1024

# FileMetaData
_VERSION, _SCHEMA, _NUM_ROWS, _ROW_GROUPS, _ENCRYPTION = 1, 2, 3, 4, 8
# RowGroup
_COLUMNS, _RG_NUM_ROWS, _RG_FILE_OFFSET, _RG_ORDINAL = 1, 3, 5, 7
# ColumnChunk
_FILE_PATH, _CC_FILE_OFFSET, _META, _OI_OFFSET, _OI_LENGTH, _CI_OFFSET, _CI_LENGTH = range(1, 8)
_CRYPTO, _ENCRYPTED_META = 8, 9
# ColumnMetaData
_TOTAL_COMPRESSED, _DATA_PAGE, _INDEX_PAGE, _DICTIONARY_PAGE, _BLOOM = 7, 9, 10, 11, 14
# OffsetIndex / PageLocation
_PAGE_LOCATIONS, _PAGE_OFFSET = 1, 1


class NotConcatenableError(ValueError):
    """The files cannot be concatenated as they are (the message says why)."""


@dataclass
class _Source:
    path: str
    size: int
    footer: t.Struct
    #: where the footer starts: pages and page indexes lie in [4, data_end)
    data_end: int


def read_footer(handle: Any, path: str) -> _Source:
    """The decoded footer of the open Parquet file ``handle``."""
    handle.seek(0, 2)
    size = handle.tell()
    if size < 12:
        raise NotConcatenableError(f"{path} is too short to be Parquet")
    handle.seek(size - 8)
    tail = handle.read(8)
    if tail[4:] != MAGIC:
        raise NotConcatenableError(f"{path} does not end in PAR1 (encrypted or not Parquet)")
    length = int.from_bytes(tail[:4], "little")
    if not 0 < length <= size - 12:
        raise NotConcatenableError(f"{path}: a footer of {length} bytes in {size}")
    handle.seek(size - 8 - length)
    try:
        footer = t.decode(handle.read(length))
    except t.ThriftError as e:
        raise NotConcatenableError(f"{path}: unreadable footer: {e}") from e
    groups = footer.get(_ROW_GROUPS)
    if not isinstance(groups, t.List) or not isinstance(footer.get(_SCHEMA), t.List):
        raise NotConcatenableError(f"{path}: the footer has no schema or row groups")
    return _Source(path, size, footer, size - 8 - length)


def row_group_rows(source: _Source) -> list[int]:
    """The rows of each of the file's row groups."""
    return [rg.get(_RG_NUM_ROWS) for rg in source.footer.get(_ROW_GROUPS).items]


def _chunk_range(chunk: t.Struct, path: str) -> tuple[int, int]:
    meta = chunk.get(_META)
    if meta is None or chunk.get(_CRYPTO) is not None or chunk.get(_ENCRYPTED_META) is not None:
        raise NotConcatenableError(f"{path}: an encrypted column chunk")
    if chunk.get(_FILE_PATH) is not None:
        raise NotConcatenableError(f"{path}: a column chunk in another file")
    if meta.get(_BLOOM) is not None:
        raise NotConcatenableError(f"{path}: a bloom filter (not moved)")
    dictionary = meta.get(_DICTIONARY_PAGE)
    start = dictionary if dictionary else meta.get(_DATA_PAGE)
    return start, start + meta.get(_TOTAL_COMPRESSED)


def _row_group_range(group: t.Struct, source: _Source) -> tuple[int, int]:
    """The bytes of a row group's column chunks, checked to lie inside the file's data and back
    to back (a file damaged behind an intact footer is refused, not copied)."""
    path = source.path
    if not group.get(_RG_NUM_ROWS):
        raise NotConcatenableError(f"{path}: an empty row group")
    ranges = sorted(_chunk_range(c, path) for c in group.get(_COLUMNS).items)
    for (_, end), (start, _) in itertools.pairwise(ranges):
        if start != end:
            raise NotConcatenableError(f"{path}: column chunks are not back to back")
    for chunk in group.get(_COLUMNS).items:
        for offset_field, length_field in ((_CI_OFFSET, _CI_LENGTH), (_OI_OFFSET, _OI_LENGTH)):
            offset, length = chunk.get(offset_field), chunk.get(length_field)
            if offset is not None and not (
                offset >= 4 and offset + (length or 0) <= source.data_end
            ):
                raise NotConcatenableError(f"{path}: a page index outside the file's data")
    if not ranges or ranges[0][0] < 4 or ranges[-1][1] > source.data_end:
        raise NotConcatenableError(f"{path}: a row group outside the file's data")
    return ranges[0][0], ranges[-1][1]


def _shift(struct: t.Struct, field_id: int, delta: int) -> None:
    value = struct.get(field_id)
    if value is not None:
        struct.set(field_id, value + delta)


class _Out:
    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.pos = 0

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.pos += len(data)


def _copy(src: Any, start: int, end: int, out: _Out) -> None:
    src.seek(start)
    while start < end:
        block = src.read(min(_COPY_BLOCK, end - start))
        if not block:
            raise NotConcatenableError("a source file ended early")
        out.write(block)
        start += len(block)


def concatenate(
    fs: Any, sources: Sequence[str], dest: str, *, min_row_group_rows: int = 0
) -> tuple[int, int]:
    """Write the row groups of ``sources`` (in order) to ``dest`` as one Parquet file; return its
    rows and bytes. Raises NotConcatenableError, before writing, if they cannot be concatenated or a
    row group has fewer than ``min_row_group_rows`` rows (or, while writing, if a source is
    shorter than its footer says)."""
    if not sources:
        raise NotConcatenableError("no file to concatenate")
    footers: list[_Source] = []
    for path in sources:
        with fs.open(path, "rb") as handle:
            footers.append(read_footer(handle, path))
        smallest = min(row_group_rows(footers[-1]), default=0)
        if smallest < min_row_group_rows:
            raise NotConcatenableError(f"{path} has a row group of {smallest} rows")
    first = footers[0].footer
    if first.get(_ENCRYPTION) is not None:
        raise NotConcatenableError(f"{sources[0]} is encrypted")
    schema = t.encode(t.Struct([[1, t.LIST, first.get(_SCHEMA)]]))
    for other in footers[1:]:
        if t.encode(t.Struct([[1, t.LIST, other.footer.get(_SCHEMA)]])) != schema:
            raise NotConcatenableError(f"{other.path} has another schema than {sources[0]}")
        if other.footer.get(_ENCRYPTION) is not None:
            raise NotConcatenableError(f"{other.path} is encrypted")
    plans = [
        [(group, _row_group_range(group, s)) for group in s.footer.get(_ROW_GROUPS).items]
        for s in footers
    ]

    groups: list[t.Struct] = []
    column_indexes: list[tuple[t.Struct, bytes]] = []
    offset_indexes: list[tuple[t.Struct, bytes]] = []
    with fs.open(dest, "wb") as handle:
        out = _Out(handle)
        out.write(MAGIC)
        for source, plan in zip(footers, plans, strict=True):
            with fs.open(source.path, "rb") as src:
                for group, (start, end) in plan:
                    delta = out.pos - start
                    _copy(src, start, end, out)
                    for chunk in group.get(_COLUMNS).items:
                        meta = chunk.get(_META)
                        for field_id in (_DATA_PAGE, _INDEX_PAGE, _DICTIONARY_PAGE):
                            _shift(meta, field_id, delta)
                        if chunk.get(_CC_FILE_OFFSET):
                            _shift(chunk, _CC_FILE_OFFSET, delta)
                        column_indexes += _index(src, chunk, _CI_OFFSET, _CI_LENGTH)
                        for _, raw in _index(src, chunk, _OI_OFFSET, _OI_LENGTH):
                            offset_indexes.append((chunk, _shifted_offset_index(raw, delta)))
                    _shift(group, _RG_FILE_OFFSET, delta)
                    if group.get(_RG_ORDINAL) is not None:
                        group.set(_RG_ORDINAL, len(groups))
                    groups.append(group)
        for chunk, raw in column_indexes:
            chunk.set(_CI_OFFSET, out.pos)
            out.write(raw)
        for chunk, raw in offset_indexes:
            chunk.set(_OI_OFFSET, out.pos)
            chunk.set(_OI_LENGTH, len(raw))
            out.write(raw)
        rows = sum(g.get(_RG_NUM_ROWS) for g in groups)
        first.set(_NUM_ROWS, rows)
        first.set(_ROW_GROUPS, t.List(t.STRUCT, groups))
        footer = t.encode(first)
        out.write(footer)
        out.write(len(footer).to_bytes(4, "little"))
        out.write(MAGIC)
        size = out.pos
    return rows, size


def _index(
    src: Any, chunk: t.Struct, offset_field: int, length_field: int
) -> list[tuple[t.Struct, bytes]]:
    offset, length = chunk.get(offset_field), chunk.get(length_field)
    if offset is None or length is None:
        return []
    src.seek(offset)
    raw = src.read(length)
    if len(raw) != length:
        raise NotConcatenableError("a page index lies beyond the end of its file")
    return [(chunk, raw)]


def _shifted_offset_index(raw: bytes, delta: int) -> bytes:
    try:
        index = t.decode(raw)
        locations = index.get(_PAGE_LOCATIONS)
        if not isinstance(locations, t.List):
            raise t.ThriftError("no page locations")
        for location in locations.items:
            _shift(location, _PAGE_OFFSET, delta)
    except t.ThriftError as e:
        raise NotConcatenableError(f"an unreadable offset index: {e}") from e
    return t.encode(index)
