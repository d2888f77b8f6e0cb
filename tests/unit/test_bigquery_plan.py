"""The pure side of a BigQuery read: table URLs, the date window, stream counts and cost."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processing.emulator.tables import MatchCounter, Unit, balance
from processing.logic import bigquery_plan as bq


def test_table_url_parses_and_names_the_resource() -> None:
    ref = bq.parse_table_url("bigquery://my-project.analytics.events_v2")
    assert (ref.project, ref.dataset, ref.table) == ("my-project", "analytics", "events_v2")
    assert ref.path == "projects/my-project/datasets/analytics/tables/events_v2"
    assert bq.parse_table_path(ref.path) == ref
    assert str(ref) == "my-project.analytics.events_v2"


@pytest.mark.parametrize(
    "url",
    [
        "bigquery://project.dataset",
        "bigquery://project.dataset.table.extra",
        "bigquery://Project.dataset.table",
        "bq://project.dataset.table",
        "bigquery://project.data set.table",
    ],
)
def test_bad_table_urls_say_the_expected_form(url: str) -> None:
    with pytest.raises(ValueError, match=r"bigquery://PROJECT\.DATASET\.TABLE"):
        bq.parse_table_url(url)


def test_the_window_is_half_open_on_the_utc_day() -> None:
    text = bq.row_restriction("timestamp", dt.date(2023, 10, 23))
    assert text == (
        "`timestamp` >= TIMESTAMP '2023-10-23 00:00:00+00:00' AND "
        "`timestamp` < TIMESTAMP '2023-10-24 00:00:00+00:00'"
    )
    window = bq.parse_row_restriction(text)
    assert window == bq.Window(
        "timestamp",
        start=dt.datetime(2023, 10, 23, tzinfo=dt.UTC),
        end=dt.datetime(2023, 10, 24, tzinfo=dt.UTC),
    )


def test_ingestion_partitioned_tables_filter_on_the_partition_date() -> None:
    text = bq.row_restriction("_PARTITIONDATE", dt.date(2023, 12, 31))
    assert text == "_PARTITIONDATE = DATE '2023-12-31'"
    assert bq.parse_row_restriction(text) == bq.Window("_PARTITIONDATE", day=dt.date(2023, 12, 31))


@given(st.dates(min_value=dt.date(1970, 1, 1), max_value=dt.date(9998, 12, 30)))
def test_every_window_the_source_writes_the_emulator_reads(date: dt.date) -> None:
    for column in ("timestamp", "_PARTITIONTIME", "ingested_at"):
        window = bq.parse_row_restriction(bq.row_restriction(column, date))
        assert window is not None and window.column == column
        assert window.start is not None and window.start.date() == date
        assert window.end is not None and window.end - window.start == dt.timedelta(days=1)


@pytest.mark.parametrize(
    "text",
    [
        "timestamp > '2023-10-23'",
        "`timestamp` >= TIMESTAMP '2023-10-23 00:00:00+00:00' OR 1=1",
        "`a` >= TIMESTAMP '2023-10-23 00:00:00+00:00' AND "
        "`b` < TIMESTAMP '2023-10-24 00:00:00+00:00'",
    ],
)
def test_other_restrictions_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        bq.parse_row_restriction(text)


def test_column_names_cannot_inject_sql() -> None:
    with pytest.raises(ValueError, match="not a column name"):
        bq.row_restriction("timestamp` > 0 OR `x", dt.date(2023, 10, 23))


@pytest.mark.parametrize(
    ("slots", "max_streams", "expected"),
    [
        (2, None, (8, 2)),
        (1, None, (4, 1)),
        (300, None, (1000, 300)),
        (4, 3, (3, 3)),
        (0, None, (4, 1)),
    ],
)
def test_stream_counts_follow_the_cluster(slots, max_streams, expected) -> None:
    assert bq.stream_counts(slots, max_streams) == expected


def test_cost_and_suggested_size() -> None:
    assert bq.read_cost(2 * bq.TIB, 1.1) == pytest.approx(2.2)
    assert bq.suggested_slots(0, 5) == 1
    day = 450 * 2**30  # a 450 GiB day: about 22 threads to read it in 15 minutes
    assert bq.suggested_slots(day, 1000) == 22
    assert bq.suggested_slots(day, 8) == 8  # never more threads than streams


@given(
    st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20),
    st.integers(min_value=1, max_value=40),
)
def test_streams_cover_every_row_once_in_similar_sizes(lengths: list[int], streams: int) -> None:
    units = [Unit(f"f{i}", 0, 0, n) for i, n in enumerate(lengths)]
    assigned = balance(units, streams, MatchCounter(None, None))  # type: ignore[arg-type]
    assert len(assigned) == streams
    covered = [
        (u.file, row) for s in assigned for u in s for row in range(u.offset, u.offset + u.length)
    ]
    assert sorted(covered) == sorted((u.file, r) for u in units for r in range(u.length))
    sizes = [sum(u.length for u in s) for s in assigned]
    per = -(-sum(lengths) // streams)
    assert all(size <= per for size in sizes)
