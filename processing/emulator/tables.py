"""The emulator's tables: local files served as BigQuery tables, cut into streams.

A table is a file, a directory or a glob of Parquet, Arrow IPC or JSON Lines files. Parquet is
read lazily, one row group at a time; Arrow and JSON Lines are loaded once (they are samples).
JSON Lines records are loaded as a BigQuery load job would: a row whose timestamp cannot be a
TIMESTAMP or whose fields have the wrong JSON type is skipped (and counted), since such a row
cannot exist in a typed table. A file is part of a snapshot when it was last modified at or
before the snapshot time, so data appended later is invisible to an earlier snapshot.
"""

from __future__ import annotations

import datetime as dt
import glob
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import ipc

from processing.logic.bigquery_plan import Window
from processing.spec import schema as s

log = logging.getLogger(__name__)

_FORMATS = (".parquet", ".arrow", ".feather", ".jsonl", ".jsonl.gz", ".ndjson", ".json")
_SLICE_ROWS = 65_536  # in-memory tables are cut into units of this many rows


class TableError(Exception):
    """A request the table cannot serve; ``code`` is the gRPC status name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Unit:
    """A slice of rows of one file: a Parquet row group, or rows of an in-memory table."""

    file: str
    row_group: int | None
    offset: int
    length: int


def _files(location: str) -> list[str]:
    if os.path.isdir(location):
        found = [
            os.path.join(root, name)
            for root, _, names in os.walk(location)
            for name in names
            if not name.startswith((".", "_"))
        ]
    else:
        found = glob.glob(location) if glob.has_magic(location) else [location]
    files = sorted(f for f in found if f.endswith(_FORMATS))
    if not files and not glob.has_magic(location) and not os.path.isdir(location):
        raise FileNotFoundError(f"{location}: no such file")
    return files


def _load_jsonl(path: str) -> pa.Table:
    """JSON Lines as a BigQuery load job would load it into the events table."""
    from processing.adapters.sources.jsonl import plan_jsonl
    from processing.logic.normalise import parse_timestamps

    tables = [t for piece in plan_jsonl(path, path, 10**9, {}) for t in piece.read(1_000_000)]
    if not tables:
        return s.INPUT_SCHEMA.empty_table()
    table = pa.concat_tables(tables)
    parsed, failed = parse_timestamps(table.column("timestamp"))
    bad = pc.fill_null(failed, False)
    if s.DEFECTS_COLUMN in table.column_names:
        bad = pc.or_(bad, pc.is_valid(table.column(s.DEFECTS_COLUMN)))
    skipped = pc.sum(bad).as_py() or 0
    if skipped:
        log.warning("%s: skipped %d rows a BigQuery load would refuse", path, skipped)
    table = table.set_column(0, "timestamp", parsed).filter(pc.invert(bad))
    return table.select(list(s.SELECTED_FIELDS)).cast(s.INPUT_SCHEMA)


class Table:
    """One served table: its files, schema and units, as of a snapshot time."""

    def __init__(self, name: str, location: str) -> None:
        self.name = name
        self._memory: dict[str, pa.Table] = {}  # Arrow and JSON Lines files, loaded once
        self.location = location
        _files(location)  # fail at start-up on a missing path

    def files(self, snapshot: dt.datetime) -> list[str]:
        limit = snapshot.timestamp()
        return [f for f in _files(self.location) if os.path.getmtime(f) <= limit]

    def _in_memory(self, path: str) -> pa.Table:
        if path not in self._memory:
            if path.endswith((".arrow", ".feather")):
                with ipc.open_file(path) as reader:
                    self._memory[path] = reader.read_all()
            else:
                self._memory[path] = _load_jsonl(path)
        return self._memory[path]

    def schema(self, files: list[str]) -> pa.Schema:
        for path in files:
            if path.endswith(".parquet"):
                return pq.read_schema(path)
            return self._in_memory(path).schema
        return s.INPUT_SCHEMA  # an empty table still has the table's schema

    def units(self, files: list[str]) -> list[Unit]:
        units: list[Unit] = []
        for path in files:
            if path.endswith(".parquet"):
                meta = pq.ParquetFile(path).metadata
                units.extend(
                    Unit(path, i, 0, meta.row_group(i).num_rows) for i in range(meta.num_row_groups)
                )
            else:
                n = self._in_memory(path).num_rows
                units.extend(
                    Unit(path, None, start, min(_SLICE_ROWS, n - start))
                    for start in range(0, n, _SLICE_ROWS)
                )
        return units

    def read_whole(self, file: str, row_group: int | None, columns: list[str]) -> pa.Table:
        """A whole Parquet row group, or a whole in-memory file."""
        if row_group is not None:
            return pq.ParquetFile(file).read_row_group(row_group, columns=columns)
        return self._in_memory(file).select(columns)

    def read(self, unit: Unit, columns: list[str]) -> pa.Table:
        if unit.row_group is None:
            return self._in_memory(unit.file).select(columns).slice(unit.offset, unit.length)
        parquet = pq.ParquetFile(unit.file)
        if unit.offset == 0 and unit.length == parquet.metadata.row_group(unit.row_group).num_rows:
            return parquet.read_row_group(unit.row_group, columns=columns)
        # part of a row group: decode up to its end only, skipping what comes before it
        parts, position, end = [], 0, unit.offset + unit.length
        for batch in parquet.iter_batches(
            batch_size=_SLICE_ROWS, row_groups=[unit.row_group], columns=columns
        ):
            start, stop = max(unit.offset - position, 0), min(end - position, batch.num_rows)
            if stop > start:
                parts.append(batch.slice(start, stop - start))
            position += batch.num_rows
            if position >= end:
                break
        return pa.Table.from_batches(
            parts, schema=pa.schema([parquet.schema_arrow.field(c) for c in columns])
        )


def window_mask(table: pa.Table, window: Window | None) -> pa.Array | None:
    """Rows of ``table`` inside ``window`` (SQL semantics: a null is outside). None: all rows."""
    if window is None:
        return None
    if window.column not in table.column_names:
        raise TableError("INVALID_ARGUMENT", f"Unrecognized name: {window.column}")
    column = table.column(window.column)
    if window.day is not None:
        days = column.cast(pa.date32()) if not pa.types.is_date32(column.type) else column
        mask = pc.equal(days, pa.scalar(window.day, pa.date32()))
    else:
        if not pa.types.is_timestamp(column.type):
            raise TableError(
                "INVALID_ARGUMENT",
                f"No matching signature for operator >= for argument types: {column.type}, "
                "TIMESTAMP",
            )
        values = column if column.type.tz else pc.assume_timezone(column, "UTC")
        typ = values.type
        mask = pc.and_(
            pc.greater_equal(values, pa.scalar(window.start, typ)),
            pc.less(values, pa.scalar(window.end, typ)),
        )
    return pc.fill_null(mask, False).combine_chunks()


class MatchCounter:
    """Rows of a unit inside the window; the restriction column of each row group (or file)
    is read once, whatever the units cut from it."""

    def __init__(self, table: Table, window: Window | None) -> None:
        self.table = table
        self.window = window
        self._masks: dict[tuple[str, int | None], np.ndarray] = {}

    def _mask(self, unit: Unit) -> np.ndarray | None:
        if self.window is None:
            return None
        key = (unit.file, unit.row_group)
        if key not in self._masks:
            whole = self.table.read_whole(unit.file, unit.row_group, [self.window.column])
            mask = window_mask(whole, self.window)
            assert mask is not None
            self._masks[key] = mask.to_numpy(zero_copy_only=False)
        return self._masks[key]

    def __call__(self, unit: Unit) -> int:
        mask = self._mask(unit)
        if mask is None:
            return unit.length
        return int(np.count_nonzero(mask[unit.offset : unit.offset + unit.length]))

    def cut(self, unit: Unit, start: int, rows: int) -> int:
        """The position in ``unit``'s file just after its ``rows``-th row inside the window,
        counting from ``start``."""
        mask = self._mask(unit)
        if mask is None:
            return start + rows
        inside = np.flatnonzero(mask[start : unit.offset + unit.length])
        return start + int(inside[rows - 1]) + 1


def balance(units: list[Unit], streams: int, counter: MatchCounter) -> list[list[Unit]]:
    """``streams`` contiguous runs holding the same number of rows inside the window (as the
    service's streams), cutting units where a run ends. A stream of a few large units next to one
    of many would make the last task of a run the long one; units with no row in the window go
    with their neighbours, so some streams may be empty, as the service's can be."""
    if streams <= 0:
        return []
    total = sum(counter(u) for u in units)
    per = max(1, -(-total // streams))
    out: list[list[Unit]] = [[] for _ in range(streams)]
    index, room = 0, per
    for unit in units:
        start, end, left = unit.offset, unit.offset + unit.length, counter(unit)
        while start < end:
            if left <= room or index == streams - 1:  # the rest of the unit fits this stream
                out[index].append(Unit(unit.file, unit.row_group, start, end - start))
                room -= left
                start = end
            else:
                cut = counter.cut(unit, start, room)
                out[index].append(Unit(unit.file, unit.row_group, start, cut - start))
                left -= room
                room = 0
                start = cut
            if room <= 0 and index < streams - 1:
                index, room = index + 1, per
    return out


def batches(table: pa.Table, max_bytes: int) -> Iterator[pa.RecordBatch]:
    """``table`` as record batches of about ``max_bytes`` (as the service sends them)."""
    if not table.num_rows:
        return
    per_row = max(1, table.nbytes // table.num_rows)
    rows = max(1, max_bytes // per_row)
    for batch in table.combine_chunks().to_batches(max_chunksize=rows):
        if batch.num_rows:
            yield batch
