"""What a BigQuery read of one day looks like, before any call is made (pure).

The table reference from ``bigquery://PROJECT.DATASET.TABLE``, the row restriction for the date
window, how many streams to ask for, and what the read will cost. The adapter
(``processing.adapters.sources.bigquery``) and the emulator share these, so the emulator
understands exactly the restrictions the source writes.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

from processing.spec.bigquery_limits import COMPRESSIONS, MAX_STREAMS, check_column, check_options

__all__ = ["COMPRESSIONS", "MAX_STREAMS", "check_column", "check_options"]

SCHEME = "bigquery://"
#: Pseudo-column of ingestion-time partitioned tables, filtered with a DATE literal.
PARTITION_DATE = "_PARTITIONDATE"
PARTITION_TIME = "_PARTITIONTIME"
#: Streams asked for per worker thread: more than one, so a slow stream does not idle the rest.
STREAMS_PER_SLOT = 4
#: What one worker thread gets through, for the plan's suggestion (measured: ~1.5M rows/s for two
#: threads on the benchmark machine, about 50 MB/s of Arrow from BigQuery).
BYTES_PER_SLOT_SECOND = 25_000_000
TIB = 2**40

_NAME = r"[A-Za-z_][A-Za-z0-9_\-]{0,1023}"
_TABLE_URL = re.compile(
    rf"^{re.escape(SCHEME)}(?P<project>[a-z][a-z0-9\-]*)\.(?P<dataset>{_NAME})\.(?P<table>{_NAME})$"
)


@dataclass(frozen=True)
class TableRef:
    project: str
    dataset: str
    table: str

    @property
    def path(self) -> str:
        """The resource name the Storage API wants."""
        return f"projects/{self.project}/datasets/{self.dataset}/tables/{self.table}"

    def __str__(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"


def parse_table_url(url: str) -> TableRef:
    """``bigquery://project.dataset.table`` -> TableRef; ValueError says what the form is."""
    match = _TABLE_URL.match(url.strip())
    if not match:
        raise ValueError(
            f"{url!r} is not a BigQuery table: expected bigquery://PROJECT.DATASET.TABLE "
            "(e.g. bigquery://my-project.analytics.events)"
        )
    return TableRef(match["project"], match["dataset"], match["table"])


def parse_table_path(path: str) -> TableRef:
    """``projects/p/datasets/d/tables/t`` -> TableRef (what a read session names)."""
    parts = path.split("/")
    if len(parts) != 6 or parts[0::2] != ["projects", "datasets", "tables"]:
        raise ValueError(f"{path!r} is not projects/P/datasets/D/tables/T")
    return TableRef(parts[1], parts[3], parts[5])


def _timestamp_literal(moment: dt.datetime) -> str:
    return f"TIMESTAMP '{moment.strftime('%Y-%m-%d %H:%M:%S')}+00:00'"


def row_restriction(column: str, date: dt.date) -> str:
    """The SQL filter for the UTC day ``date`` on ``column``, in the only forms the emulator knows.

    A TIMESTAMP column (the events' ``timestamp``, ``_PARTITIONTIME``, an ingestion column) gets
    the half-open window ``[D 00:00, D+1 00:00)``; ``_PARTITIONDATE`` gets ``= DATE 'D'``.
    """
    check_column(column)
    if column == PARTITION_DATE:
        return f"{column} = DATE '{date.isoformat()}'"
    start = dt.datetime.combine(date, dt.time(0), tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    return f"`{column}` >= {_timestamp_literal(start)} AND `{column}` < {_timestamp_literal(end)}"


def rows_from(column: str, moment: dt.datetime) -> str:
    """The SQL filter for the rows at or after ``moment`` (whether the table has any tells
    that it has received events that late: a watermark), to the second. A partition column
    holds the partition's start only (midnight): ``moment``'s day is then the mark."""
    check_column(column)
    if column == PARTITION_DATE:
        return f"{column} = DATE '{moment.date().isoformat()}'"
    if column == PARTITION_TIME:
        moment = dt.datetime.combine(moment.date(), dt.time(0), tzinfo=dt.UTC)
    # bounded only because the emulator knows windows alone: any row after the mark will do
    end = moment + dt.timedelta(days=_WATERMARK_SPAN_DAYS)
    return f"`{column}` >= {_timestamp_literal(moment)} AND `{column}` < {_timestamp_literal(end)}"


_WATERMARK_SPAN_DAYS = 3_660


@dataclass(frozen=True)
class Window:
    """A parsed row restriction: ``column`` in ``[start, end)`` (UTC), or on the date ``day``."""

    column: str
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    day: dt.date | None = None


_TS = r"TIMESTAMP '(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})\+00:00'"
_RANGE = re.compile(
    rf"^`(?P<c1>[A-Za-z_][A-Za-z0-9_]*)` >= {_TS} AND `(?P<c2>[A-Za-z_][A-Za-z0-9_]*)` < {_TS}$"
)
_DAY = re.compile(r"^(?P<c>[A-Za-z_][A-Za-z0-9_]*) = DATE '(?P<d>\d{4}-\d{2}-\d{2})'$")


def parse_row_restriction(text: str) -> Window | None:
    """The inverse of :func:`row_restriction` (None for no restriction); ValueError otherwise."""
    text = text.strip()
    if not text:
        return None
    if match := _RANGE.match(text):
        if match["c1"] != match["c2"]:
            raise ValueError("the window's bounds name different columns")
        start, end = (
            dt.datetime.fromisoformat(v).replace(tzinfo=dt.UTC) for v in (match[2], match[4])
        )
        return Window(match["c1"], start=start, end=end)
    if match := _DAY.match(text):
        return Window(match["c"], day=dt.date.fromisoformat(match["d"]))
    raise ValueError(f"unsupported row restriction: {text!r}")


def stream_counts(slots: int, max_streams: int | None) -> tuple[int, int]:
    """(max_stream_count, preferred_min_stream_count) for a cluster of ``slots`` task threads.

    The service returns fewer streams for a small day; each stream is one Dask task.
    """
    slots = max(1, slots)
    most = max_streams if max_streams is not None else slots * STREAMS_PER_SLOT
    most = max(1, min(most, MAX_STREAMS))
    return most, min(slots, most)


def read_cost(estimated_bytes: int, usd_per_tib: float) -> float:
    """What the Storage Read API bills for reading ``estimated_bytes`` (on-demand pricing)."""
    return estimated_bytes / TIB * usd_per_tib


def suggested_slots(estimated_bytes: int, streams: int, target_seconds: float = 900.0) -> int:
    """Worker threads that read the day in about ``target_seconds`` (no more than streams)."""
    needed = math.ceil(estimated_bytes / (BYTES_PER_SLOT_SECOND * target_seconds))
    return max(1, min(max(streams, 1), needed))
