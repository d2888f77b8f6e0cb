"""The Pandera model of the output record, with one named check per rule.

The ``error`` of each check is the rule name from :mod:`processing.spec.rules`, so a failure case
reads directly as a reason (``column`` + ``check``). The date window check depends on the run's
date, so the schema is built per date (and cached).

The categorical fields (event name, platform, product, SKU) are pandas Categoricals of strings
here: each check then runs once per distinct value instead of once per row. In the Parquet files
they are dictionary-encoded strings.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import pandas as pd
import pandera.pandas as pa

from processing.spec import rules as r
from processing.spec import schema as s

_TIMESTAMP = pd.DatetimeTZDtype(unit="us", tz="UTC")
_CATEGORY = "category"


def _max_length(field: str) -> pa.Check:
    return pa.Check.str_length(max_value=r.MAX_LENGTH[field], error=r.TOO_LONG)


def _pattern(field: str) -> pa.Check:
    return pa.Check.str_matches(r.PATTERNS[field], error=r.INVALID_FORMAT)


def _in_window(run_date: dt.date) -> pa.Check:
    start = pd.Timestamp(run_date, tz="UTC")
    return pa.Check.in_range(
        start, start + pd.Timedelta(days=1), include_max=False, error=r.OUTSIDE_RUN_DATE
    )


@lru_cache(maxsize=8)
def output_model(run_date: dt.date) -> pa.DataFrameSchema:
    """The output record for ``run_date``: the file columns and ``event_name``.

    ``event_date`` is not checked here: it is derived from ``event_datetime``, which the window
    check pins to ``run_date``.
    """
    return pa.DataFrameSchema(
        {
            s.EVENT_DATETIME: pa.Column(_TIMESTAMP, checks=[_in_window(run_date)], nullable=False),
            s.EVENT_NAME: pa.Column(_CATEGORY, checks=[_pattern(s.EVENT_NAME)], nullable=False),
            s.USER_ID: pa.Column(
                str,
                checks=[_max_length(s.USER_ID)],  # empty ids are null by now: "missing"
                nullable=False,
            ),
            s.PLATFORM: pa.Column(_CATEGORY, checks=[_pattern(s.PLATFORM)], nullable=False),
            s.PRODUCT_NAME: pa.Column(
                _CATEGORY, checks=[_max_length(s.PRODUCT_NAME)], nullable=True
            ),
            s.SKU: pa.Column(_CATEGORY, checks=[_pattern(s.SKU)], nullable=True),
        },
        strict=True,
        ordered=False,
        coerce=False,
        name="output_record",
    )
