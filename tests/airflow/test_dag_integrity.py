"""The DAG files parse cleanly, import nothing heavy, and wire their tasks as documented."""

from __future__ import annotations

import ast
import datetime as dt
import itertools
import re
import subprocess
import sys

import pytest

from tests.airflow.conftest import DAGS, ROOT

HEAVY = (
    "pandas",
    "polars",
    "dask",
    "distributed",
    "pyarrow",
    "pandera",
    "processing",
    "google.cloud",
)


def test_the_dag_folder_imports_without_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == {"events_daily", "events_published_example"}


@pytest.mark.parametrize("name", ["events_daily.py", "events_published_example.py"])
def test_parsing_the_dag_imports_nothing_heavy(name: str) -> None:
    code = (
        "import runpy, sys\n"
        f"runpy.run_path({str(DAGS / name)!r})\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} "
        "or m.startswith('google.cloud')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    # of the package, only the sensor's module, which imports airflow.sdk alone
    assert set(ast.literal_eval(done.stdout)) <= LIGHT, done.stdout


#: What a DAG file may import of the package: the first task's operator, and its parents
LIGHT = {"processing", "processing.app", "processing.app.day_sensor"}


def _worst_case(task) -> dt.timedelta:
    """Every try of ``task`` running to its timeout, with the longest wait between tries."""
    return (task.retries + 1) * task.execution_timeout + task.retries * task.max_retry_delay


def test_schedule_retries_and_limits(events_dag) -> None:
    assert events_dag.tags and {"events-lake", "dask"} <= set(events_dag.tags)
    assert events_dag.catchup is False  # past dates are the backfill's (its doc says how)
    # runs of different dates side by side (a rerun does not wait for the scheduled run), and
    # the documented backfill runs as many at a time as the DAG allows
    assert events_dag.max_active_runs >= 2
    backfill = re.search(r"--max-active-runs (\d+)", events_dag.doc_md)
    assert backfill and int(backfill[1]) == events_dag.max_active_runs
    # the run's timeout never cuts short a try of process that its own limits allow
    process = events_dag.task_dict["process"]
    assert _worst_case(process) <= events_dag.dagrun_timeout
    assert events_dag.doc_md and "Rerun a date" in events_dag.doc_md
    assert "date" in events_dag.params
    for t in events_dag.tasks:
        assert t.retries >= 3, t.task_id
        assert t.retry_exponential_backoff, t.task_id
        assert t.max_retry_delay is not None, t.task_id
        assert t.execution_timeout is not None, t.task_id


def test_the_story_in_the_ui_with_setups_and_teardowns(events_dag) -> None:
    tasks = events_dag.task_dict
    chain = ["plan", "create_cluster", "process", "audit", "publish", "delete_cluster", "finish"]
    for upstream, downstream in itertools.pairwise(chain):
        assert downstream in tasks[upstream].downstream_task_ids, (upstream, downstream)
    assert tasks["plan"].is_setup and tasks["create_cluster"].is_setup
    assert tasks["delete_cluster"].is_teardown and tasks["finish"].is_teardown
    assert "create_cluster" in tasks["delete_cluster"].upstream_task_ids
    assert "plan" in tasks["finish"].upstream_task_ids
    for t in ("process", "audit", "publish", "expire"):
        assert not tasks[t].is_setup and not tasks[t].is_teardown
    # the retention runs after a publish only (a failed run expires nothing), last
    assert tasks["expire"].upstream_task_ids == {"publish"}
    assert not tasks["expire"].downstream_task_ids


def test_publish_emits_the_asset_alias_the_downstream_example_is_scheduled_on(dagbag) -> None:
    from airflow.sdk import AssetAlias

    from processing.app.airflow_tasks import PUBLISHED_ALIAS

    alias = AssetAlias(PUBLISHED_ALIAS)
    assert dagbag.dags["events_daily"].task_dict["publish"].outlets == [alias]
    downstream = dagbag.dags["events_published_example"]
    assert downstream.timetable.asset_condition.objects == (alias,)
    assert downstream.task_dict["rows_per_event_name"].inlets == [alias]
