"""Validate normalised records with the Pandera output models and name every failure.

Lazy validation collects every failure case; each becomes a reason ``"<field>:<rule>"`` on its row.
Defects found before validation (a timestamp that did not parse, a wrong JSON type) win over the
generic "missing" that the same null value would otherwise produce.

Pandera validates Polars frames made from the batch's Arrow buffers without copying them (the
Polars backend: about five times faster here than the pandas one with its conversion). Every row
goes through the row model; each categorical field's distinct values (its dictionary) through
that field's value model, and a value's failure becomes the reason of every row holding it (see
:mod:`processing.spec.model`).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import pandera.errors
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from processing.spec import rules as r
from processing.spec import schema as s
from processing.spec.errors import PipelineError
from processing.spec.model import VALUE_CHECKS, output_model, value_model

_FIELD_ORDER = {name: i for i, name in enumerate((r.RECORD, *s.OUTPUT_COLUMNS))}
_MODEL_COLUMNS = [c for c in s.OUTPUT_COLUMNS if c != s.EVENT_DATE]

#: A failure case: the row (or distinct value) it is about, None for the whole frame (its
#: shape); the column; the check (a rule name, or Pandera's for types and nulls).
Case = tuple[int | None, str, str]


def _sort_key(reason: str) -> tuple[int, str]:
    field = reason.split(":", 1)[0]
    return (_FIELD_ORDER.get(field, len(_FIELD_ORDER)), reason)


def model_frame(table: pa.Table) -> pl.DataFrame:
    """The columns the row model checks, as Polars over the same buffers (dictionary columns
    become Categoricals)."""
    frame = pl.from_arrow(table.select(_MODEL_COLUMNS), rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _cases(schema: Any, frame: pl.DataFrame) -> list[Case]:
    try:
        schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as e:
        cases = e.failure_cases.select("index", "column", "check")
        return [(i, str(c), str(k)) for i, c, k in cases.iter_rows()]
    return []


def _dictionary(column: pa.ChunkedArray) -> pa.DictionaryArray:
    """A dictionary column as one array (chunks with different dictionaries unified)."""
    if column.num_chunks == 1:
        return column.chunk(0)
    unified = pa.table({"v": column}).unify_dictionaries().column("v")
    return unified.combine_chunks() if unified.num_chunks else pa.array([], column.type)


def model_cases(table: pa.Table, run_date: dt.date) -> list[Case]:
    """Every failure case of ``table``'s rows: the row model's, and each categorical field's
    value model's, as the rows holding a failing value."""
    found = _cases(output_model(run_date), model_frame(table))
    for field in VALUE_CHECKS:
        if field not in table.column_names:
            continue  # the row model says it is missing
        column = table.column(field)
        if not pa.types.is_dictionary(column.type):
            found.append((None, field, f"dictionary-encoded (is {column.type})"))
            continue
        encoded = _dictionary(column)
        values = pl.DataFrame({field: pl.from_arrow(encoded.dictionary)})
        failing: dict[str, list[int]] = defaultdict(list)
        for position, _, check in _cases(value_model(field), values):
            if position is None:
                found.append((None, field, check))
            else:
                failing[check].append(position)
        for check, positions in failing.items():
            hit = pc.is_in(encoded.indices, value_set=pa.array(positions, encoded.indices.type))
            found += [(i, field, check) for i in pc.indices_nonzero(hit).to_pylist()]
    return found


def failure_reasons(normalised: pa.Table, run_date: dt.date) -> dict[int, list[str]]:
    """Row position -> sorted reasons, for the rows that fail. Rows that pass are absent."""
    by_row: dict[int, set[str]] = defaultdict(set)
    defects = normalised.column(s.DEFECTS_COLUMN)
    if defects.null_count < len(defects):  # only the rows that have defects become Python
        rows = pc.indices_nonzero(pc.fill_null(pc.list_value_length(defects), 0))
        for i, row_defects in zip(rows.to_pylist(), defects.take(rows).to_pylist(), strict=True):
            by_row[i].update(row_defects)
    cases = model_cases(normalised, run_date)
    shape = [(column, check) for row, column, check in cases if row is None]
    if shape:
        raise PipelineError(
            f"the normalised batch does not have the output model's shape (a bug in normalise): "
            f"{shape}"
        )
    for row, column, check in cases:
        assert row is not None
        rule = r.MISSING if check == "not_nullable" else check
        known = by_row.get(row)
        if known and any(d.startswith(column + ":") for d in known):
            continue  # a specific defect for this field is already recorded
        by_row[row].add(r.reason(column, rule))
    record_level = r.RECORD + ":"
    for row, found in by_row.items():
        if any(f.startswith(record_level) for f in found):  # an unreadable record: say only that
            by_row[row] = {f for f in found if f.startswith(record_level)}
    return {row: sorted(found, key=_sort_key) for row, found in by_row.items()}


def problems(rows: pa.Table, run_date: dt.date) -> list[str]:
    """``rows`` against the output models: each failed check as ``"<column>:<check> (<n>
    cases)"``, or nothing when every row conforms."""
    counts = Counter((column, check) for _, column, check in model_cases(rows, run_date))
    return [f"{column}:{check} ({n} cases)" for (column, check), n in sorted(counts.items())]


def output_problems(rows: pa.Table, event_name: str, run_date: dt.date) -> list[str]:
    """Rows read back from a written events file, against the output models (see
    :func:`problems`). The file holds no ``event_name`` column (it is the partition): it is
    added from the path."""
    codes = pa.array(np.zeros(rows.num_rows, dtype=np.int32))
    names = pa.DictionaryArray.from_arrays(codes, pa.array([event_name]))
    return problems(rows.append_column(s.EVENT_NAME, names), run_date)
