"""Shared fixtures. Tests are organised by what they need: unit/ (pure logic, no I/O beyond
tmp files), integration/ (the CLI and a LocalCluster, subprocesses, notebooks)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
SAMPLE_DATE = dt.date(2023, 10, 23)


@pytest.fixture(autouse=True)
def _no_processing_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up the developer's own PROCESSING_* settings or cloud config."""
    import os

    for name in list(os.environ):
        if name.startswith(("PROCESSING_", "AWS_", "GOOGLE_APPLICATION_CREDENTIALS")):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sample_date() -> dt.date:
    return SAMPLE_DATE
