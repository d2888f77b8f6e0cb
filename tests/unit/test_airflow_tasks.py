"""How a DAG run names its date and its pipeline run (pure functions of the task context)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from processing.app.airflow_tasks import lake_asset_uri, pipeline_run_id, run_date
from processing.logic.layout import check_run_id


def _context(run_id: str = "scheduled__2023-10-24T02:00:00+00:00", cleared: int = 0, **extra):
    return {"dag_run": SimpleNamespace(run_id=run_id, clear_number=cleared), **extra}


def test_the_date_is_the_param_else_the_data_interval() -> None:
    start = dt.datetime(2023, 10, 23, 2, tzinfo=dt.UTC)
    assert run_date(_context(data_interval_start=start, params={"date": None})) == dt.date(
        2023, 10, 23
    )
    chosen = _context(data_interval_start=start, params={"date": "2023-09-30"})
    assert run_date(chosen) == dt.date(2023, 9, 30)


@pytest.mark.parametrize(
    "logical",
    [
        dt.datetime(2023, 10, 24, 2, tzinfo=dt.UTC),  # dags trigger --logical-date 2023-10-24T02:00
        dt.datetime(2023, 10, 24, tzinfo=dt.UTC),  # dags test events_daily 2023-10-24
    ],
)
def test_a_logical_date_that_would_process_another_day_is_refused(logical: dt.datetime) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    start = dt.datetime(2023, 10, 23, 2, tzinfo=dt.UTC)  # the interval that ends at or before it
    run = _context(data_interval_start=start, logical_date=logical, params={"date": None})
    with pytest.raises(AirflowFailException) as refused:
        run_date(run)
    assert "it would process 2023-10-23, not 2023-10-24" in str(refused.value)
    assert """--conf '{"date": "2023-10-24"}'""" in str(refused.value)
    named = _context(data_interval_start=start, logical_date=logical, params={"date": "2023-10-24"})
    assert run_date(named) == dt.date(
        2023, 10, 24
    )  # the date given wins, whatever the logical date


def test_a_scheduled_or_backfill_run_processes_its_data_interval() -> None:
    start = dt.datetime(2023, 10, 23, 2, tzinfo=dt.UTC)
    assert run_date(_context(data_interval_start=start, logical_date=start)) == dt.date(
        2023, 10, 23
    )
    no_logical_date = _context(data_interval_start=start, logical_date=None)  # Airflow 3 manual
    assert run_date(no_logical_date) == dt.date(2023, 10, 23)


def test_a_manual_run_without_a_date_fails_saying_how_to_pass_one() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="date=YYYY-MM-DD"):
        run_date(_context(params={}))


@pytest.mark.parametrize(
    "run_id",
    [
        "scheduled__2023-10-24T02:00:00+00:00",
        "manual__2026-11-26T17:00:00.123456+00:00",
        "backfill__2023-10-24T02:00:00+00:00",
        "x" * 250,
        "ünïcode / spaces",
    ],
)
def test_pipeline_run_ids_are_safe_and_change_when_the_run_is_cleared(run_id: str) -> None:
    first = pipeline_run_id(_context(run_id))
    assert check_run_id(first) == first
    assert pipeline_run_id(_context(run_id)) == first  # a retried task: the same run
    assert pipeline_run_id(_context(run_id, cleared=1)) != first  # cleared: a new attempt


def test_an_earlier_attempt_is_this_dag_runs_own_with_fewer_clears() -> None:
    from processing.app.airflow_tasks import earlier_attempt

    now = _context("manual__2023-10-24", cleared=2)
    assert earlier_attempt(now, "manual__2023-10-24-c0")
    assert earlier_attempt(now, "manual__2023-10-24-c1")
    assert not earlier_attempt(now, "manual__2023-10-24-c2")  # itself
    assert not earlier_attempt(now, "manual__2023-10-25-c0")  # another run of the DAG
    assert not earlier_attempt(now, "2023-10-23_20261126T172529Z_8245fe")  # the CLI's


def test_a_cleared_run_takes_the_date_back_from_its_earlier_attempt(tmp_path) -> None:
    import fsspec

    from processing.adapters.date_lock import DateLock, holder_of
    from processing.app import airflow_tasks
    from processing.logic.layout import Layout
    from processing.spec.settings import Settings

    lock_path = Layout(str(tmp_path)).lock(dt.date(2023, 10, 23))
    fs = fsspec.filesystem("file")
    DateLock(fs, lock_path, "manual__2023-10-24-c0", ttl_seconds=3600).acquire()  # then cleared
    settings = Settings.load({}, date=dt.date(2023, 10, 23), source="x", dest=str(tmp_path))
    airflow_tasks._release_earlier_attempt(_context("manual__2023-10-24", cleared=1), settings)
    assert holder_of(fs, lock_path) is None

    DateLock(fs, lock_path, "manual__2023-10-25-c0", ttl_seconds=3600).acquire()  # another run
    airflow_tasks._release_earlier_attempt(_context("manual__2023-10-24", cleared=1), settings)
    holder = holder_of(fs, lock_path)
    assert holder is not None and holder.run_id == "manual__2023-10-25-c0"


@pytest.mark.parametrize(
    ("dest", "uri"),
    [
        ("s3://bucket/lake", "s3://bucket/lake/events"),
        ("s3://bucket/lake/", "s3://bucket/lake/events"),
        ("s3a://bucket/lake", "s3://bucket/lake/events"),  # one lake, one Asset
        ("/data/lake", "file:///data/lake/events"),
        ("file:///data/lake", "file:///data/lake/events"),
        ("file:/data/lake", "file:///data/lake/events"),
    ],
)
def test_the_lakes_asset_is_its_events_table(dest: str, uri: str) -> None:
    from airflow.sdk import Asset

    assert lake_asset_uri(dest) == uri
    assert Asset(uri).uri == uri  # as Airflow keeps it
