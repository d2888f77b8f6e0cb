"""The run's reports on the destination: the published days they compare with, and the files.

Reports are written into the run's staged events directory (``_reports/``) and listed in its
manifest's ``reports``, so the publish moves them with the data files: the published version's
reports are always the ones of the run the manifest names, a rerun replaces them, a rollback
brings the old ones back.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from typing import Any

from processing.logic import quality
from processing.logic.layout import EVENTS, MANIFEST, Layout, report_file, run_tag
from processing.spec import schema as s

log = logging.getLogger(__name__)

#: Kinds of report, as listed in a manifest's ``reports``.
QUALITY_JSON, QUALITY_HTML, DASK_PERFORMANCE = "quality_json", "quality_html", "dask_performance"
_FILES = {
    QUALITY_JSON: ("quality", "json"),
    QUALITY_HTML: ("quality", "html"),
    DASK_PERFORMANCE: ("dask-performance", "html"),
}
#: Published dates looked at, newest first, to find the history's days.
_CANDIDATES = 2 * quality.HISTORY_DAYS


def relative_path(kind: str, staging_id: str) -> str:
    """Where a report of the run goes, relative to its events date directory."""
    name, suffix = _FILES[kind]
    return report_file(name, run_tag(staging_id), suffix)


def write(
    fs: Any, layout: Layout, date: dt.date, staging_id: str, *, kind: str, data: bytes
) -> dict[str, Any]:
    """Write a report into the run's staging; return its entry for the manifest."""
    events, _ = layout.staged(date, staging_id)
    path = relative_path(kind, staging_id)
    target = f"{events}/{path}"
    if "file" in fs.protocol:
        fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(target, data)
    return {"kind": kind, "dataset": EVENTS, "path": path, "bytes": len(data)}


def entry_of(manifest: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    return next((e for e in manifest.get("reports", []) if e.get("kind") == kind), None)


def read_published(
    fs: Any, layout: Layout, date: dt.date, kind: str = QUALITY_JSON
) -> tuple[dict[str, Any], bytes | None] | None:
    """The date's published manifest and one of its reports (None if the run made none), or
    None if the date is not published."""
    base = layout.events_date(date)
    try:
        manifest = json.loads(fs.cat_file(f"{base}/{MANIFEST}"))
    except FileNotFoundError:
        return None
    entry = entry_of(manifest, kind)
    if entry is None:
        return manifest, None
    try:
        return manifest, fs.cat_file(f"{base}/{entry['path']}")
    except FileNotFoundError:  # listed but gone: the data is still published
        log.warning("the %s report of %s is listed but missing", kind, date)
        return manifest, None


def history(fs: Any, layout: Layout, date: dt.date) -> list[quality.Summary]:
    """Summaries of the (up to seven) latest published days before ``date``, newest first.

    One listing of the events prefix, then the manifests (and quality reports) of the latest
    dates before ``date``: a date listed but without a manifest (a publish in progress, or
    removed) is skipped. A day published before reports existed is summarised from its manifest.
    """
    base = f"{layout.root}/{EVENTS}"
    try:
        entries = fs.ls(base, detail=False)
    except FileNotFoundError:
        return []
    earlier = []
    for entry in entries:
        key, _, value = entry.rstrip("/").rsplit("/", 1)[-1].partition("=")
        if key != s.EVENT_DATE:
            continue
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            continue
        if day < date:
            earlier.append(day)
    found: list[quality.Summary] = []
    for day in sorted(earlier, reverse=True)[:_CANDIDATES]:
        published = read_published(fs, layout, day)
        if published is None:
            continue
        manifest, data = published
        try:  # a report of another version, or damaged: the manifest's counts still serve
            summary = None
            if data is not None:
                report = json.loads(data)
                if report.get("report_version") != quality.REPORT_VERSION:
                    raise ValueError(f"its version is {report.get('report_version')!r}")
                summary = report["day"]
                if summary.get("date") != day.isoformat():
                    raise ValueError(f"it is the report of {summary.get('date')}")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("the quality report of %s is unusable (%s); using its manifest", day, e)
            summary = None
        found.append(summary if summary is not None else quality.summary(manifest, None))
        if len(found) == quality.HISTORY_DAYS:
            break
    return found
