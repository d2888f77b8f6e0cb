"""One batch of source records in, valid output rows and rejected rows out (pure).

The counts are checked here, per batch: every row read is either valid or rejected.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from processing.logic import profile as prof
from processing.logic.normalise import normalise, replace_invalid_utf8, to_utc_microseconds
from processing.logic.pseudonymise import Pseudonymiser, pseudonymise_records
from processing.logic.validate import failure_reasons
from processing.spec import rules as r
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


def _as_text(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, dict[int, int]]:
    """Timestamps as ISO 8601 text (``...T12:34:56.000000Z``), before the rows become Python,
    and the rows whose instant is out of BigQuery's range (years 1-9999, which ISO 8601 text and
    Python cannot always hold), as their integer microseconds since the epoch."""
    if not pa.types.is_timestamp(column.type):
        return column, {}
    column = to_utc_microseconds(column)
    counts = column.cast(pa.int64())
    outside = pc.or_(pc.less(counts, r.MIN_INSTANT_US), pc.greater(counts, r.MAX_INSTANT_US))
    rows = pc.indices_nonzero(pc.fill_null(outside, False))
    if not len(rows):
        return pc.strftime(column, format="%Y-%m-%dT%H:%M:%SZ"), {}
    column = pc.if_else(outside, pa.scalar(None, column.type), column)
    text = pc.strftime(column, format="%Y-%m-%dT%H:%M:%SZ")
    return text, dict(zip(rows.to_pylist(), counts.take(rows).to_pylist(), strict=True))


def source_records(batch: pa.Table, rows: list[int]) -> list[str]:
    """The original records of ``rows``: the raw text if the source kept it, else JSON.

    Text that is not valid UTF-8 has each invalid sequence replaced by U+FFFD (as the JSON Lines
    source does for its raw lines); a timestamp out of BigQuery's range is its integer
    microseconds since the epoch.
    """
    if s.RAW_COLUMN in batch.column_names:
        return [str(v) for v in batch.column(s.RAW_COLUMN).take(rows).to_pylist()]
    names = [n for n in batch.column_names if not n.startswith("_")]
    picked = batch.select(names).take(rows)
    columns, outside = [], {}
    for name, column in zip(names, picked.columns, strict=True):
        text, outside[name] = _as_text(column)
        columns.append(text)
    picked = pa.table(columns, names=names)
    try:
        picked.validate(full=True)
    except pa.ArrowInvalid:  # text that is not UTF-8
        picked = pa.table(
            [pa.chunked_array(map(replace_invalid_utf8, c.chunks), c.type) for c in picked.columns],
            names=names,
        )
    special = sorted({row for by_row in outside.values() for row in by_row})
    if all(_text_only(f.type) for f in picked.schema):
        # Polars writes JSON from the columns (as orjson would: tests/unit/test_transform.py):
        # ten times faster than a Python dict per row
        frame = pl.from_arrow(picked, rechunk=False)
        assert isinstance(frame, pl.DataFrame)
        texts: list[str] = frame.to_struct().struct.json_encode().to_list()
    else:
        texts = [orjson.dumps(rec).decode() for rec in picked.to_pylist()]
    for row in special:  # an instant out of range: its integer microseconds
        record = picked.slice(row, 1).to_pylist()[0]
        for name, by_row in outside.items():
            if row in by_row:
                record[name] = by_row[row]
        texts[row] = orjson.dumps(record).decode()
    return texts


def _text_only(typ: pa.DataType) -> bool:
    """Text, nulls, and structs of them: Polars' JSON and orjson's agree on them (numbers differ
    in their spelling: those records are written by orjson)."""
    if pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_null(typ):
        return True
    if pa.types.is_dictionary(typ):
        return _text_only(typ.value_type)
    if pa.types.is_struct(typ):
        return all(_text_only(f.type) for f in typ)
    return False


def split_batch(
    batch: pa.Table | pa.RecordBatch,
    run_date: dt.date,
    piece: str = "",
    first_row: int = 0,
    pseudonymiser: Pseudonymiser | None = None,
) -> BatchResult:
    """Normalise and validate ``batch``; ``first_row`` is its offset in the piece (for tracing).
    With a ``pseudonymiser``, user ids are pseudonymised once validated: the valid rows'
    ``user_id`` and the id in each rejected row's source record
    (:mod:`processing.logic.pseudonymise`)."""
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
        records = source_records(table, bad_rows)
        if pseudonymiser is not None:
            records = pseudonymise_records(records, pseudonymiser)
        rejected = pa.table(
            {
                "source_record": pa.array(records, pa.string()),
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
    if pseudonymiser is not None:
        position = valid.schema.get_field_index(s.USER_ID)
        hashed = pseudonymiser(valid.column(position))
        valid = valid.set_column(position, valid.schema.field(position), hashed)
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


def event_names(valid: pa.Table) -> set[str]:
    """The distinct event names of a batch's valid rows (its dictionary-encoded partition
    column): one per partition the batch writes to."""
    if valid.num_rows == 0:
        return set()
    names = valid.column(s.EVENT_NAME).combine_chunks()
    return set(names.dictionary.take(pc.unique(names.indices)).to_pylist())
