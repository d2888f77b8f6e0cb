"""Move a day of user-action events into a hive-partitioned, validated Parquet lake on Dask.

Entry points: ``python -m processing`` (the CLI), :func:`run` (one date, from Settings), and the
readers for analysts: :func:`events_dataset`, :func:`rejected_dataset`, :func:`read_manifest`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from processing.adapters.lake_reader import (
    events_dataset,
    published_dates,
    read_manifest,
    rejected_dataset,
)
from processing.spec.schema import SCHEMA_VERSION
from processing.spec.settings import Settings

if TYPE_CHECKING:
    from processing.app.pipeline import RunReport

__all__ = [
    "SCHEMA_VERSION",
    "Settings",
    "events_dataset",
    "published_dates",
    "read_manifest",
    "rejected_dataset",
    "run",
]


def run(settings: Settings) -> RunReport:
    """Process and publish one date (imports Dask only when called)."""
    from processing.app.pipeline import run as _run

    return _run(settings)
