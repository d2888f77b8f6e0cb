"""Files close to the target size: a piece rolls its files at the target, and a merge rewrites
small files of a partition as one, row for row, in whole row groups (on a local disk)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from processing.adapters.merger import merge_files
from processing.adapters.writer import PieceWriter, WriteOptions
from processing.logic.batch import split_batch
from processing.spec import schema as s
from tests.conftest import random_events

DATE = dt.date(2023, 10, 23)
TAG = "0a1b2c3d"


def _write_piece(root: Path, piece: int, rows: int, options: WriteOptions):
    writer = PieceWriter(
        fsspec.filesystem("file"), f"{root}/events", f"{root}/rejected", piece, options, tag=TAG
    )
    writer.add(split_batch(random_events(rows, piece), DATE, f"p{piece}"))
    return writer.close()


def test_a_piece_starts_its_next_file_once_one_reaches_the_target(tmp_path: Path) -> None:
    target = 2**20
    options = WriteOptions(row_group_rows=10_000, max_file_bytes=target)
    files = _write_piece(tmp_path, 0, 300_000, options)
    assert len(files) >= 3
    assert all(f.bytes >= target for f in files[:-1])  # only the last may be smaller
    assert all(f.bytes < target + 2**19 for f in files)  # past it by at most a row group
    assert sum(f.rows for f in files) == 300_000


def test_a_merge_holds_its_sources_rows_in_row_groups_of_sorted_runs(tmp_path: Path) -> None:
    """The rewrite (sources whose row groups are too small to be copied as they are)."""
    options = WriteOptions(row_group_rows=25_000, min_copied_row_group_rows=20_001)
    sources = [f for piece in range(4) for f in _write_piece(tmp_path, piece, 20_000, options)]
    paths = [f"{tmp_path}/events/{f.path}" for f in sources]
    dest = f"{tmp_path}/events/event_name=view/merged-00000-{TAG}.parquet"

    rows, size = merge_files(fsspec.filesystem("file"), paths, dest, options)

    assert rows == 80_000 and size == Path(dest).stat().st_size
    merged = pq.ParquetFile(dest)
    assert [merged.metadata.row_group(i).num_rows for i in range(4)] == [25_000] * 3 + [5_000]
    for i in range(merged.num_row_groups):  # each, its sources' sorted runs back to back
        times = merged.read_row_group(i).column(s.EVENT_DATETIME).combine_chunks()
        descents = pc.sum(pc.less(times[1:], times[:-1])).as_py() or 0
        assert descents <= 2  # a row group of 25,000 rows spans at most 3 sources of 20,000
    key = [s.EVENT_DATETIME, s.USER_ID]
    before = pa.concat_tables(pq.read_table(p) for p in paths).sort_by(
        [(k, "ascending") for k in key]
    )
    after = pq.read_table(dest).sort_by([(k, "ascending") for k in key])
    assert after.equals(before)
    assert all(Path(p).exists() for p in paths)  # the client deletes them, once all are merged
