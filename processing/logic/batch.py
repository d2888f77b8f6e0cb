"""One batch of source records in, valid output rows and rejected rows out (pure).

The counts are checked here, per batch: every row read is either valid or rejected.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from processing.logic import profile as prof
from processing.logic.normalise import normalise
from processing.logic.validate import failure_reasons
from processing.spec import schema as s
from processing.spec.errors import AuditError


@dataclass(frozen=True)
class BatchResult:
    """``valid`` has VALID_SCHEMA (categoricals as dictionaries); ``rejected`` REJECTED_SCHEMA."""

    rows_read: int
    valid: pa.Table
    rejected: pa.Table
    reasons: Counter[str] = field(default_factory=Counter)
    #: the batch's counts by hour, platform and reason (see :mod:`processing.logic.profile`)
    profile: prof.Profile = field(default_factory=prof.empty)


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Timestamps as ISO 8601 text (``...T12:34:56.000000Z``), before the rows become Python."""
    if pa.types.is_timestamp(column.type):
        return pc.strftime(column, format="%Y-%m-%dT%H:%M:%SZ")
    return column


def source_records(batch: pa.Table, rows: list[int]) -> list[str]:
    """The original records of ``rows``: the raw text if the source kept it, else JSON."""
    if s.RAW_COLUMN in batch.column_names:
        return [str(v) for v in batch.column(s.RAW_COLUMN).take(rows).to_pylist()]
    names = [n for n in batch.column_names if not n.startswith("_")]
    picked = batch.select(names).take(rows)
    picked = pa.table([_as_text(c) for c in picked.columns], names=names)
    return [orjson.dumps(rec).decode() for rec in picked.to_pylist()]


def split_batch(
    batch: pa.Table | pa.RecordBatch,
    run_date: dt.date,
    piece: str = "",
    first_row: int = 0,
) -> BatchResult:
    """Normalise and validate ``batch``; ``first_row`` is its offset in the piece (for tracing)."""
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    normalised = normalise(table)
    failing = failure_reasons(normalised, run_date)
    n = table.num_rows

    if failing:
        bad_rows = sorted(failing)
        keep = np.ones(n, dtype=bool)
        keep[bad_rows] = False
        valid = normalised.filter(pa.array(keep))
        reasons = [failing[i] for i in bad_rows]
        rejected = pa.table(
            {
                "source_record": pa.array(source_records(table, bad_rows), pa.string()),
                "reasons": pa.array(reasons, pa.list_(pa.string())),
                "reason": pa.array([rs[0] for rs in reasons], pa.string()),
                "piece": pa.array([piece] * len(bad_rows), pa.string()),
                "row_in_piece": pa.array([first_row + i for i in bad_rows], pa.int64()),
            },
            schema=s.REJECTED_SCHEMA,
        )
        counts = Counter(rs[0] for rs in reasons)
        rejected_times = normalised.column(s.EVENT_DATETIME).take(bad_rows)
        first_reasons = [rs[0] for rs in reasons]
    else:
        valid = normalised
        rejected = s.REJECTED_SCHEMA.empty_table()
        counts = Counter()
        rejected_times, first_reasons = pa.array([], pa.timestamp("us", tz="UTC")), []

    valid = valid.select(s.VALID_SCHEMA.names).cast(s.VALID_SCHEMA)
    if valid.num_rows + rejected.num_rows != n:
        raise AuditError(
            f"batch at row {first_row} of {piece}: read {n}, valid {valid.num_rows} + rejected "
            f"{rejected.num_rows} do not add up"
        )
    return BatchResult(
        rows_read=n,
        valid=valid,
        rejected=rejected,
        reasons=counts,
        profile=prof.of_batch(valid, rejected_times, first_reasons),
    )
