"""Write one piece's valid rows (partitioned by event name) and rejected rows as Parquet files.

Each piece writes its own files with deterministic names, so pieces never touch each other's
files and a retried task overwrites its own. Rows are buffered per event name and written as
whole row groups (sorted, zstd, dictionary-encoded strings, page index); a file is closed and the
next one opened after ``max_file_rows`` rows or ``max_file_bytes`` bytes. Memory is bounded by
``max_buffered_rows`` per task, however large the piece: past it, the largest buffer is written
out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from processing.logic.batch import BatchResult
from processing.logic.layout import file_name, partition_dir
from processing.logic.manifest import FileInfo
from processing.logic.order import time_order
from processing.spec import schema as s

log = logging.getLogger(__name__)

#: The valid rows as the writer gets them (categoricals dictionary-encoded, written as such).
_EVENTS_SCHEMA = s.VALID_SCHEMA.remove(s.VALID_SCHEMA.get_field_index(s.EVENT_NAME))

#: Columns written with Parquet dictionary encoding: the categoricals, and the rejection reasons.
_DICTIONARY_COLUMNS = frozenset({*s.CATEGORICAL, "reason", "reasons", "piece"})

#: Rows are sorted by time within each row group: tight min/max statistics let readers skip row
#: groups and pages for time-range queries, and sorted timestamps delta-encode to a few bits.
SORT_KEY = s.EVENT_DATETIME


@dataclass(frozen=True)
class WriteOptions:
    row_group_rows: int = 1_048_576
    max_file_rows: int = 8_388_608
    max_buffered_rows: int = 1_500_000
    zstd_level: int = 1
    #: a file is closed once it holds this many bytes (the target size of output files)
    max_file_bytes: int | None = None
    #: merging copies the sources' row groups as they are when none has fewer rows (0: never)
    min_copied_row_group_rows: int = 16_384
    #: user ids dictionary-encoded (pseudonyms: random, so they compress only as a dictionary)
    dictionary_user_ids: bool = False

    def parquet_kwargs(self, schema: pa.Schema) -> dict[str, Any]:
        """zstd; dictionary-encoded categoricals; delta-encoded timestamps; page index.

        High-cardinality strings (user ids) are not dictionary-encoded: their dictionary page
        would overflow and fall back to plain encoding anyway, after hashing every value.
        """
        timestamps = [f.name for f in schema if pa.types.is_timestamp(f.type)]
        dictionary = [f.name for f in schema if f.name in _DICTIONARY_COLUMNS]
        limits = {}
        if self.dictionary_user_ids and s.USER_ID in schema.names:
            # a row group's distinct pseudonyms, once each: 16 MiB holds 500k of them (past it,
            # Parquet falls back to plain pages); half the bytes of plain pages, measured
            dictionary.append(s.USER_ID)
            limits["dictionary_pagesize_limit"] = 16 << 20
        return {
            "compression": "zstd",
            "compression_level": self.zstd_level,
            "use_dictionary": dictionary,
            **limits,
            "column_encoding": {name: "DELTA_BINARY_PACKED" for name in timestamps},
            "write_statistics": True,
            "write_page_index": True,
            # no Arrow schema in the footer: readers see plain UTF-8 strings, not dictionaries
            "store_schema": False,
        }


@dataclass
class _Output:
    """One output file series (one partition of one piece)."""

    directory: str  # absolute, in the fs
    relative_dir: str  # relative to the dataset's date directory
    schema: pa.Schema
    event_name: str | None
    buffer: list[pa.Table] = field(default_factory=list)
    buffered: int = 0
    sequence: int = 0
    writer: pq.ParquetWriter | None = None
    handle: Any = None
    path: str = ""
    rows_in_file: int = 0


class PieceWriter:
    """Collects a piece's batch results and writes them under ``events_dir``/``rejected_dir``."""

    def __init__(
        self,
        fs: Any,
        events_dir: str,
        rejected_dir: str,
        piece: int,
        options: WriteOptions,
        *,
        tag: str,
    ) -> None:
        self.fs = fs
        self.events_dir = events_dir
        self.rejected_dir = rejected_dir
        self.piece = piece
        self.tag = tag
        self.options = options
        self._outputs: dict[str | None, _Output] = {}
        self._files: list[FileInfo] = []

    # --- public ---------------------------------------------------------------------------------
    def add(self, result: BatchResult) -> None:
        if result.valid.num_rows:
            names = result.valid.column(s.EVENT_NAME).combine_chunks()
            for code, name in enumerate(names.dictionary.to_pylist()):
                rows = result.valid.filter(pc.equal(names.indices, code))
                if rows.num_rows:
                    self._buffer(self._output(name), rows.drop_columns(s.EVENT_NAME))
        if result.rejected.num_rows:
            self._buffer(self._output(None), result.rejected)
        self._bound_memory()

    def close(self) -> list[FileInfo]:
        """Write what is buffered, close every file, and list them."""
        for output in self._outputs.values():
            self._flush(output)
            self._close_file(output)
        return sorted(self._files, key=lambda f: (f.dataset, f.path))

    def abort(self) -> None:
        """Close and delete the file being written, so no partial file looks complete, and the
        files already written (a piece read again must not find its first attempt's)."""
        for output in self._outputs.values():
            if output.writer is not None:
                try:
                    output.writer.close()
                    output.handle.close()
                    self.fs.rm(output.path)
                except Exception:  # best effort: the staging prefix is discarded anyway
                    log.debug("ignoring error while aborting %s", output.path, exc_info=True)
        for written in self._files:
            directory = self.rejected_dir if written.event_name is None else self.events_dir
            try:
                self.fs.rm(f"{directory}/{written.path}")
            except Exception:  # best effort, as above: the audit refuses a stray file
                log.debug("ignoring error while removing %s", written.path, exc_info=True)
        self._files = []

    # --- internals ------------------------------------------------------------------------------
    def _output(self, event_name: str | None) -> _Output:
        output = self._outputs.get(event_name)
        if output is None:
            if event_name is None:
                output = _Output(self.rejected_dir, "", s.REJECTED_SCHEMA, None)
            else:
                relative = partition_dir(event_name)
                output = _Output(
                    f"{self.events_dir}/{relative}", relative, _EVENTS_SCHEMA, event_name
                )
            self._outputs[event_name] = output
        return output

    def _buffer(self, output: _Output, rows: pa.Table) -> None:
        output.buffer.append(rows)
        output.buffered += rows.num_rows
        if output.buffered >= self.options.row_group_rows:
            self._flush(output)

    def _bound_memory(self) -> None:
        while sum(o.buffered for o in self._outputs.values()) > self.options.max_buffered_rows:
            self._flush(max(self._outputs.values(), key=lambda o: o.buffered))

    def _flush(self, output: _Output) -> None:
        if not output.buffered:
            return
        table = pa.concat_tables(output.buffer).unify_dictionaries().combine_chunks()
        output.buffer, output.buffered = [], 0
        if output.event_name is not None:
            table = table.take(time_order(table.column(SORT_KEY)))
        for start in range(0, table.num_rows, self.options.row_group_rows):
            chunk = table.slice(start, self.options.row_group_rows)
            if output.writer is not None and output.rows_in_file >= self.options.max_file_rows:
                self._close_file(output)
            if output.writer is None:
                self._open_file(output)
            assert output.writer is not None
            output.writer.write_table(chunk.cast(output.schema), row_group_size=chunk.num_rows)
            output.rows_in_file += chunk.num_rows
            if self.options.max_file_bytes and output.handle.tell() >= self.options.max_file_bytes:
                self._close_file(output)

    def _open_file(self, output: _Output) -> None:
        name = file_name(self.piece, output.sequence, self.tag)
        output.path = f"{output.directory}/{name}"
        self.fs.makedirs(output.directory, exist_ok=True)
        output.handle = self.fs.open(output.path, "wb")
        output.writer = pq.ParquetWriter(
            output.handle, output.schema, **self.options.parquet_kwargs(output.schema)
        )
        output.rows_in_file = 0

    def _close_file(self, output: _Output) -> None:
        if output.writer is None:
            return
        output.writer.close()
        size = output.handle.tell()  # the bytes written: no extra request to the store
        output.handle.close()
        relative = f"{output.relative_dir}/{output.path.rsplit('/', 1)[-1]}".lstrip("/")
        self._files.append(
            FileInfo(
                dataset="rejected" if output.event_name is None else "events",
                path=relative,
                rows=output.rows_in_file,
                bytes=int(size),
                event_name=output.event_name,
            )
        )
        log.debug("wrote %s (%d rows)", output.path, output.rows_in_file)
        output.writer, output.handle = None, None
        output.sequence += 1
