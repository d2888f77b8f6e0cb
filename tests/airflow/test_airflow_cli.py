"""The rerun commands the docs give, run with Airflow's own CLI against a metadata database of
their own: a backfill of a range reruns every date of it (also those that already ran), a
trigger with the date processes that date, and a trigger with only a logical date is refused
instead of processing another day."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from processing.app.airflow_tasks import run_date
from tests.airflow.conftest import DAGS, ROOT

pytestmark = pytest.mark.slow

DOCS = {
    "the DAG's doc": DAGS / "events_daily.py",
    "README": ROOT / "README.md",
    "deploy guide": ROOT / "deploy" / "README.md",
}

_RUNS = """
import json
from sqlalchemy import select
from airflow.models.dagrun import DagRun
from airflow.utils.session import create_session
with create_session() as session:
    runs = session.scalars(select(DagRun).where(DagRun.dag_id == "events_daily"))
    print(json.dumps([{
        "run_id": r.run_id, "backfill_id": r.backfill_id, "conf": r.conf or {},
        "logical_date": r.logical_date and r.logical_date.isoformat(),
        "data_interval_start": r.data_interval_start and r.data_interval_start.isoformat(),
    } for r in runs]))
"""

_DONE = """
from sqlalchemy import select
from airflow.models.backfill import Backfill
from airflow.models.dagrun import DagRun
from airflow.utils import timezone
from airflow.utils.session import create_session
with create_session() as session:  # what the scheduler records once the runs have succeeded
    for r in session.scalars(select(DagRun).where(DagRun.dag_id == "events_daily")):
        r.state = "success"
    for b in session.scalars(select(Backfill)):
        b.completed_at = b.completed_at or timezone.utcnow()
"""


def _documented(command: str) -> dict[str, str]:
    """The command as each document writes it (between backticks, over line breaks)."""
    found = {}
    for name, path in DOCS.items():
        text = re.sub(r"\s+", " ", path.read_text())
        match = re.search(rf"`({command}[^`]*)`", text)
        assert match, f"{name} gives no `{command} ...`"
        found[name] = match[1]
    return found


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    home = tmp_path_factory.mktemp("airflow-cli")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    }

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
        return done.stdout

    run("-m", "airflow", "db", "migrate")
    run("-m", "airflow", "dags", "reserialize")
    return run


def _runs(airflow: Callable[..., str]) -> list[dict[str, Any]]:
    return json.loads(airflow("-c", _RUNS).strip().splitlines()[-1])


def _context(run: dict[str, Any]) -> dict[str, Any]:
    """What a task of the run is given (the DAG's params with the run's conf over them)."""
    instants = ("logical_date", "data_interval_start")
    return {
        "params": {"date": run["conf"].get("date")},
        **{k: run[k] and dt.datetime.fromisoformat(run[k]) for k in instants},
    }


def _new_runs(airflow: Callable[..., str], before: list[dict[str, Any]]) -> list[dict[str, Any]]:
    known = {r["run_id"] for r in before}
    return [r for r in _runs(airflow) if r["run_id"] not in known]


def test_the_documented_commands_do_what_the_docs_say(airflow: Callable[..., str]) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    backfills = _documented("airflow backfill create")
    assert len(set(backfills.values())) == 1, backfills  # one command, the same everywhere
    backfill = next(iter(backfills.values()))
    triggers = set(_documented("airflow dags trigger events_daily --conf").values())
    assert len(triggers) == 1, triggers
    trigger = next(iter(triggers))

    # 2023-10-24 already ran (and succeeded), as every past date has
    airflow("-m", "airflow", "backfill", "create", "--dag-id", "events_daily",
            "--from-date", "2023-10-24", "--to-date", "2023-10-25")  # fmt: skip
    airflow("-c", _DONE)

    # the backfill of 2023-10-23..2023-10-25 as documented: D1, and D2+1
    args = backfill.replace("D2+1", "2023-10-26").replace("D1", "2023-10-23").split()[1:]
    without_flag = [a for a in args if a not in ("--reprocess-behavior", "completed")]
    skipped = airflow("-m", "airflow", *without_flag, "--dry-run")
    assert "2023-10-23 02:00" in skipped and "2023-10-24 02:00" not in skipped  # why the flag
    airflow("-m", "airflow", *args)
    runs = _runs(airflow)
    latest = max(r["backfill_id"] or 0 for r in runs)
    backfilled = [r for r in runs if r["backfill_id"] == latest]
    assert sorted(run_date(_context(r)) for r in backfilled) == [
        dt.date(2023, 10, 23), dt.date(2023, 10, 24), dt.date(2023, 10, 25),
    ]  # fmt: skip

    # a person reruns a date as documented: that date, whatever the day of the trigger
    before = _runs(airflow)
    assert '{"date": "2023-10-23"}' in trigger
    airflow("-m", "airflow", *shlex.split(trigger)[1:])
    (rerun,) = _new_runs(airflow, before)
    assert run_date(_context(rerun)) == dt.date(2023, 10, 23)

    # only a logical date: the run's data interval is another day's, so it is refused
    before = _runs(airflow)
    airflow("-m", "airflow", "dags", "trigger", "events_daily",
            "--logical-date", "2023-10-28T02:00:00+00:00")  # fmt: skip
    (logical_only,) = _new_runs(airflow, before)
    with pytest.raises(AirflowFailException, match=r"--conf '\{\"date\": \"2023-10-28\"\}'"):
        run_date(_context(logical_only))
