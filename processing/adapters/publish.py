"""Write-audit-publish for one date on any fsspec filesystem.

1. ``prepare``: complete a publish that was interrupted (its marker is still there), then remove
   all other staging of this date (failed or killed runs, or an earlier attempt of this run id).
2. The run writes under ``_staging/event_date=D/run_id=R/{events,rejected}``; nothing published
   is touched.
3. ``audit``: every file the tasks reported exists, with the reported row count in its footer,
   and no other file is there.
4. ``publish``: the manifest goes into the staged events directory (after every data file); a
   marker ``_publishing`` is written into the run's staging directory; then, for rejected rows and
   then events, the published directory of the date moves to ``_previous/`` and the staged one
   takes its place; last, the staging directory and its marker are removed.

Every step of 4 can be repeated, so a publish killed or failed half way is simply completed by
the next run of the date (``prepare``): the date ends up holding exactly that run's files, never a
mix. On a local disk each move is one directory rename; between the two renames of a dataset a
reader sees no directory for about a millisecond, and between the two datasets it may see the new
rejected rows beside the old events. Readers that go through the manifest (inside the events
directory) see one complete run. Other dates are never touched. Object stores get their own
publisher (see the S3 issue).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import posixpath
from typing import Any

import pyarrow.parquet as pq

from processing.logic.layout import EVENTS, MANIFEST, REJECTED, Layout
from processing.logic.manifest import RunTotals
from processing.spec.errors import AuditError, ConfigError

log = logging.getLogger(__name__)

MARKER = "_publishing"


def _move(fs: Any, source: str, target: str) -> None:
    if fs.exists(target):
        raise AuditError(f"cannot publish: {target} exists and would be merged into")
    fs.makedirs(posixpath.dirname(target), exist_ok=True)
    fs.mv(source, target, recursive=True)


def _swap_in(fs: Any, layout: Layout, date: dt.date, staging_run: str) -> None:
    """Steps that can be repeated: each staged dataset replaces the published one."""
    previous = layout.previous(date)
    for name, published in (
        (REJECTED, layout.rejected_date(date)),
        (EVENTS, layout.events_date(date)),
    ):
        staged = f"{staging_run}/{name}"
        if not fs.exists(staged):
            continue  # already moved in
        if fs.exists(published):
            if fs.exists(f"{previous}/{name}"):
                fs.rm(f"{previous}/{name}", recursive=True)
            _move(fs, published, f"{previous}/{name}")
        _move(fs, staged, published)
    fs.rm(staging_run, recursive=True)


def prepare(fs: Any, layout: Layout, date: dt.date) -> None:
    """Check the destination takes writes; complete an interrupted publish of this date; then
    remove all of its staging."""
    staging = layout.staging_date(date)
    try:
        fs.makedirs(staging, exist_ok=True)
        fs.pipe(f"{staging}/.write-probe", b"")
        fs.rm(f"{staging}/.write-probe")
    except OSError as e:
        raise ConfigError(f"cannot write under the destination {layout.root}: {e}") from e
    for entry in fs.ls(staging, detail=False):
        run_dir = entry.rstrip("/")
        if fs.exists(f"{run_dir}/{MARKER}"):
            log.warning("completing the interrupted publish of %s", run_dir)
            _swap_in(fs, layout, date, run_dir)
    for stale in fs.ls(staging, detail=False):
        log.info("removing staging of a run that did not publish: %s", stale)
    fs.rm(staging, recursive=True)


def publishing_started(fs: Any, layout: Layout, date: dt.date, run_id: str) -> bool:
    return bool(fs.exists(f"{layout.staging_run(date, run_id)}/{MARKER}"))


def audit(fs: Any, layout: Layout, date: dt.date, run_id: str, totals: RunTotals) -> None:
    """Check the staged files against what the tasks reported (footers only; no data read)."""
    events_dir, rejected_dir = layout.staged(date, run_id)
    problems: list[str] = []
    expected = set()
    for f in totals.files:
        path = f"{events_dir if f.dataset == EVENTS else rejected_dir}/{f.path}"
        expected.add(path)
        if not fs.exists(path):
            problems.append(f"missing {path}")
            continue
        with fs.open(path, "rb") as handle:
            rows = pq.ParquetFile(handle).metadata.num_rows
        if rows != f.rows:
            problems.append(f"{path} holds {rows} rows, reported {f.rows}")
    found = {
        p
        for d in (events_dir, rejected_dir)
        if fs.exists(d)
        for p in fs.find(d)
        if p.endswith(".parquet")
    }
    strays = found - expected
    if strays:
        problems.append(f"files no task reported: {sorted(strays)[:5]}")
    if problems:
        raise AuditError(
            "staged files do not match the run's counts, nothing published: "
            + "; ".join(problems[:10])
        )


def publish(fs: Any, layout: Layout, date: dt.date, run_id: str, manifest: dict[str, Any]) -> None:
    """Replace the date's published events and rejected rows with this run's, manifest first in.

    If this fails half way, the marker stays and the next run of the date completes it.
    """
    staging_run = layout.staging_run(date, run_id)
    events_dir, rejected_dir = layout.staged(date, run_id)
    for directory in (events_dir, rejected_dir):  # a run with no rejected rows publishes none
        fs.makedirs(directory, exist_ok=True)
    with fs.open(f"{events_dir}/{MANIFEST}", "w") as f:
        json.dump(manifest, f, indent=2)
    fs.pipe(f"{staging_run}/{MARKER}", run_id.encode())
    _swap_in(fs, layout, date, staging_run)
    staging_date = layout.staging_date(date)
    if fs.exists(staging_date) and not fs.ls(staging_date, detail=False):
        fs.rm(staging_date, recursive=True)
    log.info("published %s (run %s)", layout.events_date(date), run_id)
