"""The DAG file parses cleanly, imports nothing heavy, and wires its tasks as documented."""

from __future__ import annotations

import datetime as dt
import itertools
import subprocess
import sys

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
    assert set(dagbag.dags) == {"events_daily"}


def test_parsing_the_dag_imports_nothing_heavy() -> None:
    code = (
        "import runpy, sys\n"
        f"runpy.run_path({str(DAGS / 'events_daily.py')!r})\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} "
        "or m.startswith('google.cloud')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_schedule_retries_and_limits(events_dag) -> None:
    assert events_dag.tags and {"events-lake", "dask"} <= set(events_dag.tags)
    assert events_dag.catchup is False
    assert events_dag.max_active_runs == 2
    assert events_dag.dagrun_timeout == dt.timedelta(hours=12)
    process = events_dag.task_dict["process"]  # every try of process fits in the run's time
    assert (process.retries + 1) * process.execution_timeout < events_dag.dagrun_timeout
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
    for t in ("process", "audit", "publish"):
        assert not tasks[t].is_setup and not tasks[t].is_teardown
