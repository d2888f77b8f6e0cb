"""Sources of events. ``open_source(url)`` picks the adapter from the URL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from processing.adapters.sources.arrow_files import plan_ipc, plan_parquet
from processing.adapters.sources.base import Piece, Source, SourcePlan
from processing.adapters.sources.bigquery import BigQueryOptions, BigQuerySource
from processing.adapters.sources.jsonl import plan_jsonl
from processing.adapters.storage import filesystem
from processing.logic.bigquery import SCHEME
from processing.spec.errors import InputError

__all__ = [
    "BigQueryOptions",
    "BigQuerySource",
    "FileSource",
    "Piece",
    "Source",
    "SourcePlan",
    "open_source",
]

Planner = Callable[[str, str, int, Mapping[str, Any]], list[Piece]]

PLANNERS: dict[str, Planner] = {
    ".jsonl": plan_jsonl,
    ".ndjson": plan_jsonl,
    ".json": plan_jsonl,
    ".jsonl.gz": plan_jsonl,
    ".ndjson.gz": plan_jsonl,
    ".json.gz": plan_jsonl,
    ".parquet": plan_parquet,
    ".arrow": plan_ipc,
    ".feather": plan_ipc,
}


def planner_for(path: str) -> Planner | None:
    for suffix in sorted(PLANNERS, key=len, reverse=True):
        if path.endswith(suffix):
            return PLANNERS[suffix]
    return None


def _visible(paths: list[str], base: str) -> list[str]:
    """Skip hidden and "_" files and folders under ``base`` (_SUCCESS, _temporary/, .git)."""
    root = base.rstrip("/") + "/"
    return sorted(
        p
        for p in paths
        if not any(part.startswith((".", "_")) for part in p.removeprefix(root).split("/"))
    )


@dataclass(frozen=True)
class FileSource:
    """A file, a directory of files, or a glob, in any of the formats of ``PLANNERS``.

    Files are not filtered by date: rows of other dates are rejected as ``outside_run_date``.
    """

    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def files(self) -> list[str]:
        fs, path = filesystem(self.url, self.storage_options)
        if any(ch in path for ch in "*?["):
            base = path[: min(path.find(ch) for ch in "*?[" if ch in path)].rsplit("/", 1)[0]
            found = _visible(fs.glob(path), base)
        elif fs.isdir(path):
            found = _visible(fs.find(path), path)
        elif fs.exists(path):
            found = [path]
        else:
            raise InputError(f"source {self.url!r} does not exist")
        usable = [p for p in found if planner_for(p)]
        if not usable:
            raise InputError(
                f"source {self.url!r} holds no readable files (expected {', '.join(PLANNERS)})"
            )
        return usable

    def plan(self, date: dt.date, piece_rows: int) -> SourcePlan:
        pieces: list[Piece] = []
        files = self.files()
        for path in files:
            planner = planner_for(path)
            assert planner is not None
            pieces.extend(planner(self.url, path, piece_rows, self.storage_options))
        numbered = tuple(replace(p, index=i) for i, p in enumerate(pieces))
        return SourcePlan(source=self.url, pieces=numbered, details={"files": len(files)})


def open_source(
    url: str,
    storage_options: Mapping[str, Any] | None = None,
    bigquery: BigQueryOptions | None = None,
) -> Source:
    """The source for ``url``: ``bigquery://PROJECT.DATASET.TABLE`` or files (path, glob, URL)."""
    if url.startswith(SCHEME):
        return BigQuerySource(url, bigquery or BigQueryOptions())
    return FileSource(url, dict(storage_options or {}))
