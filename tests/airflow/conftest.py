"""Airflow in this process: a fresh sqlite metadata database, the repository's dags/ as the DAGs
folder, no examples. The variables must be set before Airflow is first imported."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"

_HOME = tempfile.mkdtemp(prefix="events-lake-airflow-")
os.environ.update(
    {
        "AIRFLOW_HOME": _HOME,
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME}/airflow.db",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    }
)
if "airflow" in sys.modules:  # pragma: no cover - a guard for whoever reorders the suite
    raise RuntimeError("Airflow was imported before tests/airflow/conftest.py configured it")


@pytest.fixture(scope="session")
def airflow_db() -> None:
    from airflow.utils import db

    db.resetdb()


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="session")
def events_dag(dagbag):
    return dagbag.dags["events_daily"]
