"""Check published dates against their manifests: every listed file present, of the size the
manifest says, with the row count of its Parquet footer; nothing else in the date's directories
(what readers listing the prefix would see); and the same for the version kept for a rollback.

Read-only: it takes no lock. A date being published while it is checked can show a file that is
gone or not yet listed; the check is then made again once, and a date whose lock is held says so.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from processing.adapters import versions as v
from processing.adapters.audit import THREADS, rows_in
from processing.adapters.date_lock import holder_of
from processing.logic.layout import EVENTS, Layout, entry_date

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DateCheck:
    """What ``verify`` found for one date."""

    date: dt.date
    #: the published run, or None if the date has no (readable) manifest
    run_id: str | None
    files: int = 0
    rows_valid: int = 0
    rows_rejected: int = 0
    #: what is wrong with the published version (empty: it matches its manifest)
    problems: list[str] = field(default_factory=list)
    #: what is wrong with the version kept for a rollback
    previous_problems: list[str] = field(default_factory=list)
    #: facts that are not damage: an open publish, a run holding the date, stray kept files
    notes: list[str] = field(default_factory=list)

    @property
    def damaged(self) -> bool:
        return bool(self.problems or self.previous_problems)

    def lines(self) -> list[str]:
        """One line for the date, then one per problem and note (for people)."""
        if self.run_id is None and not self.problems:
            head = f"{self.date}: not published"
        elif self.damaged:
            head = f"{self.date}: DAMAGED (run {self.run_id or '?'})"
        else:
            head = (
                f"{self.date}: ok (run {self.run_id}, {self.files} files, "
                f"{self.rows_valid:,} valid + {self.rows_rejected:,} rejected rows)"
            )
        found = [f"  - {p}" for p in self.problems]
        found += [f"  - previous version: {p}" for p in self.previous_problems]
        found += [f"  - note: {n}" for n in self.notes]
        return [head, *found]


def _manifest(fs: Any, path: str) -> tuple[dict[str, Any] | None, bool]:
    """The manifest at ``path`` and whether it is unreadable."""
    try:
        document = json.loads(fs.cat_file(path))
    except FileNotFoundError:
        return None, False
    except ValueError:
        return None, True
    if not isinstance(document, dict) or not isinstance(document.get("files"), list):
        return None, True
    return document, False


def _footers(
    fs: Any, version: v.Version, manifest: Mapping[str, Any], listed: Mapping[str, int]
) -> list[str]:
    """Files whose footer does not hold the row count the manifest says (or no footer)."""

    def check(entry: Mapping[str, Any]) -> str | None:
        path = version.file(entry)
        shown = f"{entry['dataset']}/{entry['path']}"
        try:
            rows = rows_in(fs, path, listed[path])
        except FileNotFoundError:
            return f"{shown} is missing"
        except ValueError as e:
            return f"{shown} has no readable Parquet footer ({e})"
        if entry.get("rows") is not None and rows != entry["rows"]:
            return f"{shown} holds {rows} rows, its manifest says {entry['rows']}"
        return None

    present = [
        e
        for e in manifest.get("files", [])
        if version.file(e) in listed and listed[version.file(e)] == e.get("bytes", -1)
    ]
    with ThreadPoolExecutor(THREADS) as pool:
        return [p for p in pool.map(check, present) if p]


def _version_problems(
    fs: Any, version: v.Version, manifest: Mapping[str, Any], *, footers: bool
) -> tuple[list[str], list[str]]:
    """(damage, files the manifest does not list) of one version."""
    listed = version.listing(fs)
    problems = v.damage(manifest, listed, version)
    if footers:
        problems += _footers(fs, version, manifest, listed)
    live = version.live(manifest)
    strays = sorted(p for p in listed if p not in live)
    return problems, strays


def check_date(fs: Any, layout: Layout, date: dt.date, *, footers: bool = True) -> DateCheck:
    """Check ``date`` (and its kept version); checked again once if a publish moved it."""
    found = _check(fs, layout, date, footers=footers)
    if found.damaged:
        again = _check(fs, layout, date, footers=footers)
        if again.run_id != found.run_id or not again.damaged:
            return again
    return found


def _check(fs: Any, layout: Layout, date: dt.date, *, footers: bool) -> DateCheck:
    published, previous = v.published(layout, date), v.previous(layout, date)
    manifest, unreadable = _manifest(fs, published.manifest)
    problems: list[str] = []
    notes: list[str] = []
    holder = holder_of(fs, layout.lock(date))
    if holder is not None and holder.publishing is not None:
        notes.append(
            f"the publish of {holder.publishing.staging_id} is open in the date's lock: the next "
            "run of the date (or gc) completes it"
        )
    elif holder is not None:
        notes.append(f"{holder.describe()} holds the date: a publish may be under way")
    if manifest is None:
        listed = published.listing(fs)
        if unreadable:
            problems.append("the manifest is unreadable")
        elif listed:
            problems.append(f"{len(listed)} files are published but there is no manifest")
        return DateCheck(date, None, problems=problems, notes=notes)
    problems, strays = _version_problems(fs, published, manifest, footers=footers)
    if strays:
        problems.append(
            f"{len(strays)} files the manifest does not list (readers listing the date see "
            f"them), e.g. {strays[0].rsplit('/', 1)[-1]}"
        )
    if holder is None and not fs.exists(published.success_marker):
        notes.append(
            "no _SUCCESS marker (tools waiting for it do not see the date): the next publish "
            "or rollback of the date writes it"
        )
    lost_reports = [
        r["path"] for r in manifest.get("reports", []) if not fs.exists(published.file(r))
    ]
    if lost_reports:
        notes.append(f"listed reports are missing: {', '.join(lost_reports)}")
    expired = manifest.get("rejected_expired")
    if isinstance(expired, dict):  # (`expire`: the manifest no longer lists them, by design)
        notes.append(
            f"its {expired.get('rows', 0):,} rejected rows ({expired.get('files', 0)} files) "
            f"expired at {expired.get('at')} (retention): not missing"
        )
    previous_problems: list[str] = []
    kept, kept_unreadable = _manifest(fs, previous.manifest)
    if kept_unreadable:
        previous_problems.append("its manifest is unreadable")
    elif kept is not None:
        previous_problems, kept_strays = _version_problems(fs, previous, kept, footers=footers)
        if kept_strays:
            notes.append(
                f"{len(kept_strays)} stray files beside the kept version (the next publish of "
                "the date removes them)"
            )
    files = manifest.get("files", [])
    return DateCheck(
        date,
        str(manifest.get("run_id")),
        files=len(files),
        rows_valid=int(manifest.get("rows_valid") or 0),
        rows_rejected=_rows_rejected_left(manifest),
        problems=problems,
        previous_problems=[f"(run {kept.get('run_id')}) {p}" for p in previous_problems]
        if kept
        else previous_problems,
        notes=notes,
    )


def _rows_rejected_left(manifest: Mapping[str, Any]) -> int:
    """The rejected rows the version still holds: those its run counted, less those a
    retention expired (the manifest keeps the run's own count; ``rejected_expired`` says how
    many went)."""
    expired = manifest.get("rejected_expired")
    gone = int(expired.get("rows") or 0) if isinstance(expired, dict) else 0
    return max(int(manifest.get("rows_rejected") or 0) - gone, 0)


def published_dates(fs: Any, layout: Layout) -> list[dt.date]:
    """Every date with a directory under ``events/`` (published, or damaged), oldest first:
    one listing of the events prefix."""
    try:
        listed = fs.ls(f"{layout.root}/{EVENTS}", detail=False)
    except FileNotFoundError:
        return []
    return sorted({d for d in map(entry_date, listed) if d is not None})
