"""Move a day of user-action events into a hive-partitioned, validated Parquet lake on Dask.

Entry points: ``python -m processing`` (the CLI), :func:`run` (one date, from Settings), with
:func:`plan` (how the date would be read) and :func:`summary` (a run's report as the CLI prints
it), and the readers for analysts: :func:`events_dataset`, :func:`rejected_dataset`,
:func:`read_manifest`, :func:`published_dates`. Names are imported on first use, so ``import
processing`` (from a DAG file, or for ``--help``) stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from processing.adapters.lake_reader import (
        events_dataset,
        published_dates,
        read_manifest,
        rejected_dataset,
    )
    from processing.app.cli.lake_commands import summary
    from processing.app.pipeline import RunReport, plan, run
    from processing.spec.schema import SCHEMA_VERSION
    from processing.spec.settings import Settings

_EXPORTS = {
    "SCHEMA_VERSION": "processing.spec.schema",
    "Settings": "processing.spec.settings",
    "RunReport": "processing.app.pipeline",
    "run": "processing.app.pipeline",
    "plan": "processing.app.pipeline",
    "summary": "processing.app.cli.lake_commands",
    "events_dataset": "processing.adapters.lake_reader",
    "published_dates": "processing.adapters.lake_reader",
    "read_manifest": "processing.adapters.lake_reader",
    "rejected_dataset": "processing.adapters.lake_reader",
}

__all__ = [
    "SCHEMA_VERSION",
    "RunReport",
    "Settings",
    "events_dataset",
    "plan",
    "published_dates",
    "read_manifest",
    "rejected_dataset",
    "run",
    "summary",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'processing' has no attribute {name!r}")
