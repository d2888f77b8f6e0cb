"""Read the published lake back: the events and rejected rows as pyarrow datasets, and manifests.

For analysts and tests. Partition columns come from the paths and are typed (``event_date`` is a
date), and ``_``-prefixed files (manifests, staging, previous versions) are never read as data.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import pyarrow.dataset as ds

from processing.adapters.storage import filesystem
from processing.logic.layout import EVENTS, MANIFEST, REJECTED, Layout, entry_date
from processing.spec import schema as s


def _lake(dest: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    """The filesystem and root of ``dest``, seen as it is now: fsspec reuses filesystem objects,
    and an S3 one would otherwise answer from listings cached before the last publish."""
    fs, root = filesystem(dest, storage_options)
    fs.invalidate_cache()
    return fs, root


_REJECTED_PARTITIONING = ds.partitioning(
    s.PARTITION_SCHEMA.remove(s.PARTITION_SCHEMA.get_field_index(s.EVENT_NAME)), flavor="hive"
)


def events_dataset(dest: str, storage_options: Mapping[str, Any] | None = None) -> ds.Dataset:
    """All published events under ``dest`` (every date)."""
    fs, root = _lake(dest, storage_options)
    return ds.dataset(
        f"{root}/{EVENTS}",
        filesystem=fs,
        format="parquet",
        schema=s.OUTPUT_SCHEMA,
        partitioning=ds.partitioning(s.PARTITION_SCHEMA, flavor="hive"),
    )


def rejected_dataset(dest: str, storage_options: Mapping[str, Any] | None = None) -> ds.Dataset:
    """All published rejected rows under ``dest``, with ``event_date`` from the path."""
    fs, root = _lake(dest, storage_options)
    schema = s.REJECTED_SCHEMA.append(s.PARTITION_SCHEMA.field(s.EVENT_DATE))
    return ds.dataset(
        f"{root}/{REJECTED}",
        filesystem=fs,
        format="parquet",
        schema=schema,
        partitioning=_REJECTED_PARTITIONING,
    )


def read_manifest(
    dest: str, date: dt.date, storage_options: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """The manifest of the run that published ``date``, or None if the date is not published."""
    fs, root = _lake(dest, storage_options)
    path = Layout(root).manifest(date)
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as f:
        return json.load(f)


def published_dates(dest: str, storage_options: Mapping[str, Any] | None = None) -> list[dt.date]:
    """Dates with a manifest (complete publishes), oldest first."""
    fs, root = _lake(dest, storage_options)
    base = f"{root}/{EVENTS}"
    if not fs.exists(base):
        return []
    listed = {entry: entry_date(entry) for entry in fs.ls(base, detail=False)}
    return sorted(
        day
        for entry, day in listed.items()
        if day is not None and fs.exists(f"{entry.rstrip('/')}/{MANIFEST}")
    )
