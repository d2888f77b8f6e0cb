"""Sources of events. ``open_source(url)`` picks the adapter from the URL."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from processing.adapters.sources.arrow_files import plan_ipc, plan_parquet
from processing.adapters.sources.base import Piece, Source, SourcePlan
from processing.adapters.sources.bigquery import BigQueryOptions, BigQuerySource
from processing.adapters.sources.jsonl import plan_jsonl
from processing.adapters.storage import filesystem, on_local_disk
from processing.logic.bigquery_plan import SCHEME
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

log = logging.getLogger(__name__)

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


GLOB_CHARACTERS = "*?["


def _glob_base(pattern: str) -> str:
    """The folder a glob lists: its path up to the folder of the first glob character."""
    first = min(pattern.find(ch) for ch in GLOB_CHARACTERS if ch in pattern)
    return pattern[:first].rsplit("/", 1)[0]


def _dangling(url: str, link: str) -> InputError:
    """The error for a symbolic link that leads to no file, naming the link and its target."""
    target = os.path.realpath(link)
    if os.path.islink(target):  # realpath stops where links go round in a circle
        what = f"is a loop of symbolic links (through {target})"
    else:
        what = f"is a symbolic link to {target}, which does not exist"
    return InputError(f"source {url!r}: {link} {what}: restore the file or remove the link")


def _once(url: str, paths: list[str]) -> list[str]:
    """Local files, each once: paths leading to the same real file (through symbolic links) are
    read once, under the path of the file itself if it is among them. A link to nothing (or a
    loop of links) is an InputError: the source promised data that is not there."""
    by_real: dict[str, list[str]] = {}
    for p in paths:
        if not os.path.exists(p):
            raise _dangling(url, p)
        by_real.setdefault(os.path.realpath(p), []).append(p)
    kept: set[str] = set()
    for same in by_real.values():
        chosen = next((p for p in same if not os.path.islink(p)), same[0])
        kept.add(chosen)
        for other in same:
            if other != chosen:
                log.warning("source %s: %s is the same file as %s: read once", url, other, chosen)
    return [p for p in paths if p in kept]


@dataclass(frozen=True)
class FileSource:
    """A file, a directory of files, or a glob, in any of the formats of ``PLANNERS``.

    A path that exists is read as given, even if its name holds glob characters
    (``day[1].parquet`` is that file); only a path that does not exist is a glob (``*``, ``?``,
    ``[...]``). A directory is read whole, but for hidden and ``_`` files and folders. On a local
    disk, each file is read once however many symbolic links lead to it, and a link to nothing is
    an ``InputError``.

    Files are not filtered by date: rows of other dates are rejected as ``outside_run_date``.
    """

    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def files(self) -> list[str]:
        fs, path = filesystem(self.url, self.storage_options)
        local = on_local_disk(fs)
        if fs.isdir(path):
            found = _visible(fs.find(path), path)
        elif fs.exists(path):
            found = [path]
        elif local and os.path.islink(path):
            raise _dangling(self.url, path)
        elif any(ch in path for ch in GLOB_CHARACTERS):
            found = _visible(fs.glob(path), _glob_base(path))
        else:
            raise InputError(f"source {self.url!r} does not exist")
        usable = [p for p in found if planner_for(p)]
        if local:
            usable = _once(self.url, usable)
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
