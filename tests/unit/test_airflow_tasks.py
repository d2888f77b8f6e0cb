"""How a DAG run names its date and its pipeline run (pure functions of the task context)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from processing.app.airflow_tasks import pipeline_run_id, run_date
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
