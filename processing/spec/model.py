"""The Pandera models of the output record, with one named check per rule.

The ``error`` of each check is the rule name from :mod:`processing.spec.rules`, so a failure case
reads directly as a reason (``column`` + ``check``). The date window check depends on the run's
date, so the row model is built per date (and cached).

Two kinds of model, both validated by Pandera's Polars backend (the frames are Arrow's buffers,
not copies: see :mod:`processing.logic.validate`):

- the **row model** checks every row: each column's type and nulls, the date window, the length
  of the user id. The categorical fields (event name, platform, product, SKU) are Polars
  Categoricals in it, as they are dictionary-encoded in the batch and in the files;
- a **value model** per categorical field checks its values once per distinct value (the
  dictionary of the column: a handful of values for a million rows); a failing value fails
  every row that holds it.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import pandera.polars as pa
import polars as pl

from processing.spec import rules as r
from processing.spec import schema as s

_TIMESTAMP = pl.Datetime("us", "UTC")
_NULLABLE: dict[str, bool] = {f.name: f.nullable for f in s.OUTPUT_SCHEMA}


def _max_length(field: str) -> pa.Check:
    return pa.Check.str_length(max_value=r.MAX_LENGTH[field], error=r.TOO_LONG)


def _pattern(field: str) -> pa.Check:
    return pa.Check.str_matches(r.PATTERNS[field], error=r.INVALID_FORMAT)


def _in_window(run_date: dt.date) -> pa.Check:
    start = dt.datetime.combine(run_date, dt.time(), tzinfo=dt.UTC)
    return pa.Check.in_range(
        start, start + dt.timedelta(days=1), include_max=False, error=r.OUTSIDE_RUN_DATE
    )


#: The checks of each categorical field's values (run once per distinct value).
VALUE_CHECKS: dict[str, tuple[pa.Check, ...]] = {
    s.EVENT_NAME: (_pattern(s.EVENT_NAME),),
    s.PLATFORM: (_pattern(s.PLATFORM),),
    s.PRODUCT_NAME: (_max_length(s.PRODUCT_NAME),),
    s.SKU: (_pattern(s.SKU),),
}


@lru_cache(maxsize=8)
def output_model(run_date: dt.date) -> pa.DataFrameSchema:
    """Every row for ``run_date``: the file columns and ``event_name``, their types and nulls,
    the date window and the user id's length.

    ``event_date`` is not checked here: it is derived from ``event_datetime``, which the window
    check pins to ``run_date``.
    """
    categorical = {
        name: pa.Column(pl.Categorical, nullable=_NULLABLE[name]) for name in VALUE_CHECKS
    }
    return pa.DataFrameSchema(
        {
            s.EVENT_DATETIME: pa.Column(_TIMESTAMP, checks=[_in_window(run_date)], nullable=False),
            s.USER_ID: pa.Column(
                pl.String,
                checks=[_max_length(s.USER_ID)],  # empty ids are null by now: "missing"
                nullable=False,
            ),
            **categorical,
        },
        strict=True,
        ordered=False,
        coerce=False,
        name="output_record",
    )


@lru_cache(maxsize=len(VALUE_CHECKS))
def value_model(field: str) -> pa.DataFrameSchema:
    """The distinct values of the categorical ``field`` (its nulls are the row model's)."""
    return pa.DataFrameSchema(
        {field: pa.Column(pl.String, checks=list(VALUE_CHECKS[field]), nullable=True)},
        strict=True,
        coerce=False,
        name=f"{field}_values",
    )
