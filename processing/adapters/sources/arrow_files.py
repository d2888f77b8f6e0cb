"""Parquet and Arrow IPC files with the BigQuery shape (nested structs), local or on fsspec.

Pieces are runs of whole row groups (Parquet) or record batches (IPC) of about ``piece_rows``;
reading streams them ``batch_rows`` at a time, projecting only the selected fields.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import ipc

from processing.adapters.sources.base import Piece
from processing.adapters.storage import filesystem
from processing.logic.normalise import text_as_bytes, to_utc_microseconds
from processing.spec import schema as s
from processing.spec.errors import InputError

_EXPECTED_CHILDREN = {
    "user_identifiers": ("platform", "id"),
    "product_information": ("name", "SKU"),
}


def _is_text(typ: pa.DataType) -> bool:
    """Plain, large or dictionary-encoded strings (or all-null): cast to plain strings."""
    if pa.types.is_dictionary(typ):
        typ = typ.value_type
    return bool(pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_null(typ))


def _duplicated(names: list[str], selected: tuple[str, ...]) -> list[str]:
    return [n for n in selected if names.count(n) > 1]


def check_input_schema(schema: pa.Schema, where: str) -> None:
    """Fail with one line naming the field if the file cannot be read as the events table.

    A selected field (or a selected child of one) that appears twice is refused: which of the two
    is the event is anyone's guess. Other fields may repeat: they are not read.
    """
    for name in _duplicated(schema.names, s.SELECTED_FIELDS):
        raise InputError(f"{where}: field {name!r} appears {schema.names.count(name)} times")
    for name in s.SELECTED_FIELDS:
        if name not in schema.names:
            raise InputError(f"{where}: field {name!r} is missing (found {schema.names})")
        typ = schema.field(name).type
        if name in _EXPECTED_CHILDREN and pa.types.is_struct(typ):
            children = [f.name for f in typ]
            for child in _duplicated(children, _EXPECTED_CHILDREN[name]):
                raise InputError(
                    f"{where}: field '{name}.{child}' appears {children.count(child)} times"
                )
        if name == "timestamp":
            ok = pa.types.is_timestamp(typ) or _is_text(typ)
        elif name in _EXPECTED_CHILDREN:
            ok = pa.types.is_struct(typ) and all(
                typ.get_field_index(c) >= 0 and _is_text(typ.field(c).type)
                for c in _EXPECTED_CHILDREN[name]
            )
        else:
            ok = _is_text(typ)
        if not ok:
            expected = s.INPUT_SCHEMA.field(name).type
            raise InputError(f"{where}: field {name!r} has type {typ}, expected {expected}")


_TEXT_DICTIONARY = pa.dictionary(pa.int32(), pa.string())


def _check_buffers(table: pa.Table) -> None:
    """Refuse offsets and indices that point outside their buffers, which Arrow's IPC reader (and
    so a BigQuery stream) passes on unchecked from a corrupt file and a kernel would then read out
    of bounds: ``ArrowInvalid``, which the task reports as a corrupt source. Text is checked as
    bytes: a value that is not UTF-8 is a row's problem (``invalid_utf8``), not the file's."""
    table.validate()
    table.cast(pa.schema([f.with_type(text_as_bytes(f.type)) for f in table.schema])).validate(
        full=True
    )


def _check_indices(values: Any, path: str) -> None:
    """Refuse dictionary indices that point outside their dictionary (Parquet's reader passes
    them on from a corrupt page): ``ArrowInvalid``, which the task reports as a corrupt source."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    for chunk in chunks:
        low, high = pc.min_max(chunk.indices).values()
        if low.is_valid and (low.as_py() < 0 or high.as_py() >= len(chunk.dictionary)):
            raise pa.ArrowInvalid(
                f"field {path!r}: dictionary index {low.as_py()}..{high.as_py()} out of bounds "
                f"for {len(chunk.dictionary)} values (a corrupt page)"
            )


def _text(values: Any, path: str) -> Any:
    """Text as plain strings; categorical fields may stay dictionary-encoded (no re-hashing).

    The bytes are not checked for UTF-8 here: a value that is not is a row's problem
    (``invalid_utf8``, found by the transform), not the file's.
    """
    if pa.types.is_dictionary(values.type):
        _check_indices(values, path)
        if path in s.CATEGORICAL_INPUT:
            return values.cast(_TEXT_DICTIONARY)
    return values.cast(pa.string())


def conform(table: pa.Table, *, check_buffers: bool = True) -> pa.Table:
    """Project the selected fields and cast to the input shape (timestamps to us, UTC).

    ``check_buffers`` checks every offset and index of the selected fields first (see
    :func:`_check_buffers`); Parquet's reader builds its arrays itself, so only dictionary
    indices, which it passes on from the pages, are checked without it.

    Categorical text fields (``schema.CATEGORICAL_INPUT``) that the file dictionary-encodes stay
    dictionaries of strings; every other text field becomes plain strings. Timestamps of a coarser
    unit than microseconds that would overflow are clamped, never wrapped around (see
    :func:`processing.logic.normalise.to_utc_microseconds`): they are rejected as out of range.
    """
    if check_buffers:
        _check_buffers(table.select(list(s.SELECTED_FIELDS)))
    columns = []
    for name in s.SELECTED_FIELDS:
        column = table.column(name)
        if name == "timestamp" and pa.types.is_timestamp(column.type):
            column = to_utc_microseconds(column)
        elif name in _EXPECTED_CHILDREN:
            children = _EXPECTED_CHILDREN[name]
            arrays = [
                pa.StructArray.from_arrays(
                    [_text(pc.struct_field(chunk, c), f"{name}.{c}") for c in children],
                    names=list(children),
                    mask=chunk.is_null(),
                )
                for chunk in column.chunks
            ]
            column = (
                pa.chunked_array(arrays)
                if arrays
                else pa.chunked_array([], s.INPUT_SCHEMA.field(name).type)
            )
        else:  # text (plain, large or dictionary-encoded)
            column = _text(column, name)
        columns.append(column)
    return pa.Table.from_arrays(columns, names=list(s.SELECTED_FIELDS))


def plan_parquet(
    url: str, path: str, piece_rows: int, storage_options: Mapping[str, Any]
) -> list[Piece]:
    fs, _ = filesystem(url, storage_options)
    try:
        with fs.open(path, "rb") as f:
            meta = pq.ParquetFile(f).metadata
            schema = meta.schema.to_arrow_schema()
    except (OSError, pa.ArrowException, UnicodeError) as e:  # a name that is not UTF-8, too
        raise InputError(f"{path}: cannot read as Parquet: {e}") from e
    check_input_schema(schema, path)
    dictionary_paths = _dictionary_paths(schema)
    groups: list[list[int]] = [[]]
    rows: list[int] = [0]
    sizes: list[int] = [0]
    for i in range(meta.num_row_groups):
        if rows[-1] >= piece_rows:
            groups.append([])
            rows.append(0)
            sizes.append(0)
        groups[-1].append(i)
        rows[-1] += meta.row_group(i).num_rows
        sizes[-1] += meta.row_group(i).total_byte_size
    name = path.rsplit("/", 1)[-1]
    return [
        Piece(
            id=f"{name}#rg{g[0]}-{g[-1]}",
            index=0,
            reader=read_parquet,
            args={
                "url": url,
                "path": path,
                "row_groups": tuple(g),
                "storage_options": storage_options,
                "dictionary_paths": dictionary_paths,
            },
            estimated_rows=n,
            estimated_bytes=b,
        )
        for g, n, b in zip(groups, rows, sizes, strict=True)
        if g
    ]


def _dictionary_paths(schema: pa.Schema) -> tuple[str, ...]:
    """The categorical fields this file holds as strings (readable as dictionaries)."""
    paths: list[str] = []
    for path in s.CATEGORICAL_INPUT:
        name, _, child = path.partition(".")
        if name not in schema.names:
            continue
        typ = schema.field(name).type
        if child:
            if not pa.types.is_struct(typ) or typ.get_field_index(child) < 0:
                continue
            typ = typ.field(child).type
        if pa.types.is_string(typ) or pa.types.is_large_string(typ):
            paths.append(path)
    return tuple(paths)


def read_parquet(
    *,
    url: str,
    path: str,
    row_groups: tuple[int, ...],
    storage_options: Mapping[str, Any],
    batch_rows: int,
    dictionary_paths: tuple[str, ...] = (),
) -> Iterator[pa.Table]:
    fs, _ = filesystem(url, storage_options)
    with fs.open(path, "rb") as f:
        # Parquet stores the categorical fields dictionary-encoded: read them so, not as strings.
        # A batch must not span row groups then (Arrow cannot chunk dictionaries inside structs),
        # so each row group is read on its own and small ones are put together up to batch_rows.
        parquet = pq.ParquetFile(f, read_dictionary=list(dictionary_paths))
        pending: list[pa.Table] = []
        buffered = 0
        for group in row_groups:
            for batch in parquet.iter_batches(
                batch_size=batch_rows, row_groups=[group], columns=list(s.SELECTED_FIELDS)
            ):
                pending.append(conform(pa.Table.from_batches([batch]), check_buffers=False))
                buffered += batch.num_rows
                if buffered >= batch_rows:
                    yield pa.concat_tables(pending)
                    pending, buffered = [], 0
        if pending:
            yield pa.concat_tables(pending)


def plan_ipc(
    url: str, path: str, piece_rows: int, storage_options: Mapping[str, Any]
) -> list[Piece]:
    fs, _ = filesystem(url, storage_options)
    try:
        with fs.open(path, "rb") as f:
            reader = ipc.open_file(f)
            check_input_schema(reader.schema, path)
            counts = [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)]
    except (OSError, pa.ArrowException, UnicodeError) as e:
        raise InputError(f"{path}: cannot read as an Arrow IPC file: {e}") from e
    pieces: list[Piece] = []
    start, rows = 0, 0
    name = path.rsplit("/", 1)[-1]
    for i, n in enumerate([*counts, 0]):
        last = i == len(counts)
        if (rows >= piece_rows or last) and i > start:
            args = {
                "url": url,
                "path": path,
                "batches": (start, i),
                "storage_options": storage_options,
            }
            pieces.append(Piece(f"{name}#b{start}-{i - 1}", 0, read_ipc, args, rows))
            start, rows = i, 0
        rows += n
    return pieces


def read_ipc(
    *,
    url: str,
    path: str,
    batches: tuple[int, int],
    storage_options: Mapping[str, Any],
    batch_rows: int,
) -> Iterator[pa.Table]:
    fs, _ = filesystem(url, storage_options)
    with fs.open(path, "rb") as f:
        reader = ipc.open_file(f)
        for i in range(*batches):
            batch = reader.get_batch(i)
            for offset in range(0, batch.num_rows, batch_rows):
                yield conform(pa.Table.from_batches([batch.slice(offset, batch_rows)]))
