"""Write generated events to a file: Parquet or Arrow IPC (typed), JSON Lines (optionally gzip)."""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import ipc

from processing.spec import schema as s
from processing.spec.errors import ConfigError

TYPED_SUFFIXES = (".parquet", ".arrow", ".feather")
TEXT_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")


def is_text(path: str) -> bool:
    if path.endswith(TEXT_SUFFIXES):
        return True
    if path.endswith(TYPED_SUFFIXES):
        return False
    raise ConfigError(
        f"cannot tell the format of {path!r}: end it with one of {TYPED_SUFFIXES + TEXT_SUFFIXES}"
    )


def write_chunks(path: str, chunks: Iterable[pa.Table | list[str]]) -> int:
    """Write ``chunks`` (tables for typed formats, lists of lines for text) and count rows.

    The file appears only when complete (written beside it, then renamed): a failed or
    interrupted run leaves no half-written input behind that a later run would read.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        rows = _write(path, partial, chunks)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return rows


def _write(path: str, target: Path, chunks: Iterable[pa.Table | list[str]]) -> int:
    rows = 0
    if is_text(path):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(target, "wt", encoding="utf-8") as f:
            for lines in chunks:
                assert isinstance(lines, list)
                f.writelines(line + "\n" for line in lines)
                rows += len(lines)
        return rows
    if path.endswith(".parquet"):
        with pq.ParquetWriter(target, s.INPUT_SCHEMA, compression="zstd") as writer:
            for table in chunks:
                assert isinstance(table, pa.Table)
                writer.write_table(table, row_group_size=1_000_000)
                rows += table.num_rows
        return rows
    with ipc.new_file(str(target), s.INPUT_SCHEMA) as writer:
        for table in chunks:
            assert isinstance(table, pa.Table)
            writer.write_table(table, max_chunksize=250_000)
            rows += table.num_rows
    return rows
