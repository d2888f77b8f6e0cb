"""Write-audit-publish for one date on any fsspec filesystem.

1. ``prepare``: finish what a killed publish left half done, and remove the staging of earlier
   failed runs of this date.
2. The run writes under ``_staging/event_date=D/run_id=R/``; nothing published is touched.
3. ``audit``: every file the tasks reported exists, with the reported row count in its footer.
4. ``publish``: the manifest goes into the staged date directory (after every data file); the
   published date moves to ``_previous/`` and the staged one takes its place. On a local disk
   each move is one directory rename, so readers see the old date or the new one, never a mix
   (for about a millisecond, between the two renames, they see no date). Other dates are never
   touched. Object stores get their own publisher (see the S3 issue).
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
from processing.spec.errors import AuditError

log = logging.getLogger(__name__)


def _move(fs: Any, source: str, target: str) -> None:
    if fs.exists(target):
        raise AuditError(f"cannot publish: {target} exists and would be merged into")
    fs.makedirs(posixpath.dirname(target), exist_ok=True)
    fs.mv(source, target, recursive=True)


def prepare(fs: Any, layout: Layout, date: dt.date, run_id: str) -> None:
    """Recover from a publish killed between its moves; discard stale staging of this date."""
    previous_events = f"{layout.previous(date)}/{EVENTS}"
    if not fs.exists(layout.events_date(date)) and fs.exists(previous_events):
        log.warning("restoring %s: an earlier publish was interrupted", layout.events_date(date))
        _move(fs, previous_events, layout.events_date(date))
        previous_rejected = f"{layout.previous(date)}/{REJECTED}"
        if not fs.exists(layout.rejected_date(date)) and fs.exists(previous_rejected):
            _move(fs, previous_rejected, layout.rejected_date(date))
    staging = layout.staging_date(date)
    if fs.exists(staging):
        for stale in fs.ls(staging, detail=False):
            if posixpath.basename(stale.rstrip("/")) != f"run_id={run_id}":
                log.info("removing staging of an earlier run that did not publish: %s", stale)
                fs.rm(stale, recursive=True)


def staged_dirs(layout: Layout, date: dt.date, run_id: str) -> tuple[str, str]:
    run = layout.staging_run(date, run_id)
    return f"{run}/{EVENTS}", f"{run}/{REJECTED}"


def audit(fs: Any, layout: Layout, date: dt.date, run_id: str, totals: RunTotals) -> None:
    """Check the staged files against what the tasks reported (footers only; no data read)."""
    events_dir, rejected_dir = staged_dirs(layout, date, run_id)
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
    """Replace the date's published events and rejected rows with this run's, manifest last."""
    events_dir, rejected_dir = staged_dirs(layout, date, run_id)
    fs.makedirs(events_dir, exist_ok=True)
    with fs.open(f"{events_dir}/{MANIFEST}", "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=False)
    previous = layout.previous(date)
    if fs.exists(previous):
        fs.rm(previous, recursive=True)
    for staged, published, name in (
        (rejected_dir, layout.rejected_date(date), REJECTED),
        (events_dir, layout.events_date(date), EVENTS),
    ):
        if fs.exists(published):
            _move(fs, published, f"{previous}/{name}")
        if fs.exists(staged):
            _move(fs, staged, published)
    fs.rm(layout.staging_run(date, run_id), recursive=True)
    staging_date = layout.staging_date(date)
    if fs.exists(staging_date) and not fs.ls(staging_date, detail=False):
        fs.rm(staging_date, recursive=True)
    log.info("published %s (run %s)", layout.events_date(date), run_id)
