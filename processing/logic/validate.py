"""Validate normalised records with the Pandera output model and name every failure.

Lazy validation collects every failure case; each becomes a reason ``"<field>:<rule>"`` on its row.
Defects found before validation (a timestamp that did not parse, a wrong JSON type) win over the
generic "missing" that the same null value would otherwise produce.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import numpy as np
import pandas as pd
import pandera.errors
import pyarrow as pa
import pyarrow.compute as pc

from processing.spec import rules as r
from processing.spec import schema as s
from processing.spec.errors import PipelineError
from processing.spec.model import output_model

_FIELD_ORDER = {name: i for i, name in enumerate((r.RECORD, *s.OUTPUT_COLUMNS))}
_MODEL_COLUMNS = [c for c in s.OUTPUT_COLUMNS if c != s.EVENT_DATE]


def _sort_key(reason: str) -> tuple[int, str]:
    field = reason.split(":", 1)[0]
    return (_FIELD_ORDER.get(field, len(_FIELD_ORDER)), reason)


def model_frame(normalised: pa.Table) -> pd.DataFrame:
    """The columns the model checks; dictionary columns become Categoricals (zero-copy)."""
    frame = normalised.select(_MODEL_COLUMNS).to_pandas()
    for column in _MODEL_COLUMNS:
        if column == s.EVENT_DATETIME or isinstance(frame[column].dtype, pd.CategoricalDtype):
            continue
        if frame[column].dtype != "str":
            frame[column] = frame[column].astype("str")
    return frame


def failure_reasons(normalised: pa.Table, run_date: dt.date) -> dict[int, list[str]]:
    """Row position -> sorted reasons, for the rows that fail. Rows that pass are absent."""
    by_row: dict[int, set[str]] = defaultdict(set)
    defects = normalised.column(s.DEFECTS_COLUMN)
    if defects.null_count < len(defects):  # only the rows that have defects become Python
        rows = pc.indices_nonzero(pc.fill_null(pc.list_value_length(defects), 0))
        for i, row_defects in zip(rows.to_pylist(), defects.take(rows).to_pylist(), strict=True):
            by_row[i].update(row_defects)
    try:
        output_model(run_date).validate(model_frame(normalised), lazy=True)
    except pandera.errors.SchemaErrors as e:
        cases = e.failure_cases
        schema_level = cases[cases["index"].isna()]
        if len(schema_level):
            raise PipelineError(
                "the normalised batch does not have the output model's shape (a bug in "
                f"normalise): {schema_level[['column', 'check']].to_dict('records')}"
            ) from e
        columns = cases["column"].astype(str).tolist()
        checks = cases["check"].astype(str).tolist()
        for row, column, check in zip(
            cases["index"].astype(int).tolist(), columns, checks, strict=True
        ):
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


def output_problems(rows: pa.Table, event_name: str, run_date: dt.date) -> list[str]:
    """Rows read back from a written events file, against the output model: each failed check as
    ``"<column>:<check> (<n> cases)"``, or nothing when every row conforms.

    The file holds no ``event_name`` column (it is the partition): it is added from the path.
    """
    codes = pa.array(np.zeros(rows.num_rows, dtype=np.int32))
    names = pa.DictionaryArray.from_arrays(codes, pa.array([event_name]))
    try:
        output_model(run_date).validate(
            model_frame(rows.append_column(s.EVENT_NAME, names)), lazy=True
        )
    except pandera.errors.SchemaErrors as e:
        counts = e.failure_cases.groupby(["column", "check"], dropna=False).size()
        return [f"{column}:{check} ({n} cases)" for (column, check), n in counts.items()]
    return []
