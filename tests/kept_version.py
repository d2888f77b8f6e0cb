"""What a date keeps for a rollback, as tests read it (the pipeline reads it only through
rollback and verify)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fsspec.spec import AbstractFileSystem

from processing.adapters import versions as v
from processing.adapters.lake_store import lake_store
from processing.logic.layout import Layout


def previous_manifest(
    fs: AbstractFileSystem, layout: Layout, date: dt.date
) -> dict[str, Any] | None:
    """The manifest of the version kept for a rollback, or None."""
    return lake_store(fs).read_json(v.previous(layout, date).manifest)
