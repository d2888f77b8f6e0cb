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

from processing.adapters.storage import put_bytes
from processing.logic import quality
from processing.logic.layout import EVENTS, Layout, entry_date, report_file

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


def relative_path(kind: str, tag: str) -> str:
    """Where a report of the version tagged ``tag`` goes, relative to its events date
    directory."""
    name, suffix = _FILES[kind]
    return report_file(name, tag, suffix)


def write(
    fs: Any, layout: Layout, date: dt.date, staging_id: str, *, tag: str, kind: str, data: bytes
) -> dict[str, Any]:
    """Write a report into the run's staging; return its entry for the manifest."""
    events, _ = layout.staged(date, staging_id)
    path = relative_path(kind, tag)
    target = f"{events}/{path}"
    put_bytes(fs, target, data)
    return {"kind": kind, "dataset": EVENTS, "path": path, "bytes": len(data)}


def entry_of(manifest: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    return next((e for e in manifest.get("reports", []) if e.get("kind") == kind), None)


def read_report(
    fs: Any, layout: Layout, date: dt.date, manifest: Mapping[str, Any], kind: str = QUALITY_JSON
) -> bytes | None:
    """The report of ``kind`` that a published ``manifest`` of ``date`` lists, or None if it
    lists none or it is gone (the data is still published)."""
    entry = entry_of(manifest, kind)
    if entry is None:
        return None
    try:
        return bytes(fs.cat_file(f"{layout.events_date(date)}/{entry['path']}"))
    except FileNotFoundError:
        log.warning("the %s report of %s is listed but missing", kind, date)
        return None


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
    dates = (entry_date(entry) for entry in entries)
    earlier = [day for day in dates if day is not None and day < date]
    found: list[quality.Summary] = []
    for day in sorted(earlier, reverse=True)[:_CANDIDATES]:
        try:
            manifest = json.loads(fs.cat_file(layout.manifest(day)))
        except FileNotFoundError:
            continue
        data = read_report(fs, layout, day, manifest)
        summary = quality.summary(manifest, None)  # a day published before reports existed
        if data is not None:
            try:
                summary = quality.parse(data, day)["day"]
            except ValueError as e:
                log.warning("the quality report of %s is unusable (%s); using its manifest", day, e)
        found.append(summary)
        if len(found) == quality.HISTORY_DAYS:
            break
    return found
