"""The audit of a run's staging before it is published, and the footer reads it shares with
``verify``: every file the tasks reported exists with the reported row count in its Parquet
footer, no other Parquet file is there (reports are not audited: they are not data), every
reported partition is there, and the first 65,536 rows of one file per event name, read back,
conform to the Pandera output model.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from processing.logic.layout import EVENTS, Layout
from processing.logic.manifest import RunTotals
from processing.logic.validate import output_problems
from processing.spec import schema as s
from processing.spec.errors import AuditError

log = logging.getLogger(__name__)

#: Concurrent footer reads and sample validations.
THREADS = 32
#: Bytes read from the end of each file for its footer (larger footers take a second read).
_TAIL_BYTES = 256 * 1024
#: Rows of each sampled file (its first ones) validated again, as read back, by the audit.
_SAMPLE_ROWS = 65_536


def files_under(fs: Any, directories: Iterable[str]) -> dict[str, int]:
    """Every file under the directories, with its size (a prefix listing each; never the whole
    bucket)."""
    found: dict[str, int] = {}
    for directory in directories:
        if fs.exists(directory):
            found.update({p: int(i["size"]) for p, i in fs.find(directory, detail=True).items()})
    return found


def rows_in(fs: Any, path: str, size: int) -> int:
    """Rows in a Parquet file, from its footer: one ranged read of the file's tail. Raises
    ValueError if the file is not a readable Parquet file (truncated, overwritten)."""
    start = max(0, size - _TAIL_BYTES)
    try:
        tail = fs.cat_file(path, start=start, end=size)
        footer = int.from_bytes(tail[-8:-4], "little") + 8 if len(tail) >= 8 else size
        if start == 0 or footer + 4 <= len(tail):
            return int(pq.read_metadata(pa.BufferReader(tail)).num_rows)
        with fs.open(path, "rb") as handle:  # a footer larger than the tail read
            return int(pq.ParquetFile(handle).metadata.num_rows)
    except (pa.ArrowInvalid, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path} is not a readable Parquet file: {e}") from e


def audit(fs: Any, layout: Layout, date: dt.date, staging_id: str, totals: RunTotals) -> None:
    """Check the staged files against what the tasks reported, and sample them against the
    output model. Reads footers, and the first rows of one file per event name."""
    began = time.perf_counter()
    events_dir, rejected_dir = layout.staged(date, staging_id)

    def full(dataset: str, path: str) -> str:
        return f"{events_dir if dataset == EVENTS else rejected_dir}/{path}"

    expected = {full(f.dataset, f.path): f for f in totals.files}
    problems: list[str] = []
    listed = files_under(fs, (events_dir, rejected_dir))
    found = {p: size for p, size in listed.items() if p.endswith(".parquet")}
    missing = sorted(expected.keys() - found.keys())
    problems += [f"missing {p}" for p in missing]
    strays = found.keys() - expected.keys()
    if strays:
        problems.append(f"files no task reported: {sorted(strays)[:5]}")
    partitions = {f.event_name for f in totals.files if f.dataset == EVENTS}
    if partitions != set(totals.valid_by_event):
        problems.append(
            f"event partitions written {sorted(map(str, partitions))} are not those counted "
            f"{sorted(totals.valid_by_event)}"
        )

    def footer(path: str) -> str | None:
        try:
            rows = rows_in(fs, path, found[path])
        except ValueError as e:
            return str(e)
        reported = expected[path].rows
        return None if rows == reported else f"{path} holds {rows} rows, reported {reported}"

    samples: dict[str, str] = {}
    for path, f in sorted(expected.items()):
        if f.dataset == EVENTS and f.event_name is not None and path in found:
            samples.setdefault(f.event_name, path)

    def conforms(item: tuple[str, str]) -> str | None:
        event_name, path = item
        try:
            with fs.open(path, "rb") as handle:
                names = pq.read_schema(handle).names
                handle.seek(0)
                categorical = [c for c in s.CATEGORICAL if c in names]
                parquet = pq.ParquetFile(handle, read_dictionary=categorical)
                first = next(parquet.iter_batches(batch_size=_SAMPLE_ROWS), None)
        except (pa.ArrowInvalid, OSError) as e:
            return f"{path} is not a readable Parquet file: {e}"
        rows = None if first is None else pa.Table.from_batches([first])
        wrong = output_problems(rows, event_name, date) if rows is not None else []
        return f"{path} does not match the output model: {wrong[:5]}" if wrong else None

    with ThreadPoolExecutor(THREADS) as pool:
        checked = [*pool.map(footer, sorted(found.keys() & expected.keys()))]
        checked += [*pool.map(conforms, sorted(samples.items()))]
    problems += [p for p in checked if p]
    log.info(
        "audited %d staged files (%d validated against the output model) in %.2f s",
        len(found),
        len(samples),
        time.perf_counter() - began,
    )
    if problems:
        raise AuditError(
            "staged files do not match the run's counts, nothing published: "
            + "; ".join(problems[:10])
        )
