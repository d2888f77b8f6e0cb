"""Airflow in this process: a fresh sqlite metadata database, the repository's dags/ as the DAGs
folder, no examples (the variables are set in tests/conftest.py, before Airflow is imported)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"


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
