"""``expire``: remove the dates a retention no longer keeps, each under its lock.

Which dates go is :mod:`processing.logic.retention`'s (pure); this module finds the dates the
lake holds anywhere (``events/``, ``rejected/``, ``_previous/``, ``_staging/``, ``_alerts/``,
``_locks/``), then, date by date, takes the date's lock (a date a live run holds is skipped and
reported), lists exactly what goes, and removes it. A dry run takes the same locks and lists the
same files, and removes nothing. ``_erasures/`` (another command's audit log) is never touched.

A date that expires whole
    Everything of the date goes: the published version (data files, reports, manifest,
    ``_SUCCESS``), the version kept for a rollback, the staging of every run (an open publish
    too: its staging goes with the date, so there is nothing to complete), the alert marker and,
    on a local disk, the flock guards of its manifests. The order keeps every reader and every
    command on the safe side: first the published manifest and ``_SUCCESS`` then the kept
    manifest (no reader, no rollback sees a half-removed version as whole), then the staging
    (a late copy from it by a run that lost the date fails, as in the publish), then the data
    files and reports, then the rest; each step after the lock is checked. The lock object goes
    when the lock is released. On a local disk the lock's own flock guard
    (``_locks/event_date=D.json.guard``, empty) stays: deleting a flock file that another
    process may be opening would let two processes take the lock at once.

A date that only loses its rejected rows
    An open publish is completed first (:func:`processing.adapters.publish.resolve`). Then the
    published manifest, and the kept one, are rewritten without their rejected entries, each
    conditional on the ETag read (as a publish switches them), and record
    ``"rejected_expired": {"at": ..., "files": n, "rows": m}``; then the rejected files (and
    the failed runs' staging, which holds rejected rows too) are deleted. The counts of the run
    (``rows_rejected``) stay as they were counted; ``verify`` notes the expiry.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from processing.adapters import date_manifests as manifests
from processing.adapters import publish as wap
from processing.adapters import versions as v
from processing.adapters.date_lock import DateLock
from processing.adapters.lake_store import LakeStore, lake_store
from processing.adapters.storage_errors import storage_errors
from processing.app.context import date_lock, destination, utcnow
from processing.logic import retention
from processing.logic.layout import REJECTED, Layout, entry_date
from processing.spec.errors import DateLockedError
from processing.spec.settings import Settings

__all__ = ["DateExpiry", "Expiry", "dates_present", "expire"]

log = logging.getLogger(__name__)

#: A date long gone, to ask the layout for the directories that hold every date.
_ANY_DATE = dt.date(2000, 1, 1)


@dataclass(frozen=True)
class DateExpiry:
    """What ``expire`` did (or, in a dry run, would do) to one date."""

    date: dt.date
    #: the whole date, or only its rejected rows
    whole: bool
    #: every path removed (or that would be), in the order of removal
    paths: tuple[str, ...] = ()
    #: rejected rows removed from the published version (from its manifest)
    rejected_rows: int = 0
    #: why the date was left alone (a live run holds it)
    skipped: str | None = None
    #: what was found on the way (an open publish, a missing manifest, late strays)
    notes: tuple[str, ...] = ()

    def line(self, dry_run: bool) -> str:
        """The date's summary, for people."""
        if self.skipped:
            return f"{self.date}: skipped, {self.skipped}"
        would = "would " if dry_run else ""
        if self.whole:
            what = f"{self.date}: {would}expire{'' if dry_run else 'd'} whole"
            what += f" ({len(self.paths)} files)"
        else:
            done = "lose" if dry_run else "lost"
            what = f"{self.date}: {would}{done} its rejected rows ({len(self.paths)} files"
            what += f", {self.rejected_rows:,} published rows)" if self.rejected_rows else ")"
        return "; ".join([what, *self.notes])


@dataclass(frozen=True)
class Expiry:
    """What ``expire`` did to the lake."""

    dry_run: bool
    plan: retention.RetentionPlan
    dates: tuple[DateExpiry, ...] = ()
    #: the run's own date, kept although past retention (the DAG's task)
    spared: dt.date | None = None

    @property
    def paths(self) -> list[str]:
        return [p for d in self.dates for p in d.paths]

    @property
    def skipped(self) -> list[DateExpiry]:
        return [d for d in self.dates if d.skipped]

    def lines(self) -> list[str]:
        """One line per path removed (or that would be), then one per date; or why nothing
        expires."""
        acted = [d for d in self.dates if d.paths or d.skipped or d.notes]
        if not acted:
            return [f"nothing expires: {self.describe_retention()}"]
        return [*self.paths, *(d.line(self.dry_run) for d in acted)]

    def describe_retention(self) -> str:
        plan = self.plan
        kept = f"no date before {plan.cutoff} is left" if plan.cutoff else "dates are kept"
        if plan.rejected_cutoff:
            kept += f", and no rejected row of a date before {plan.rejected_cutoff}"
        return kept


def expire(
    settings: Settings,
    *,
    dry_run: bool,
    clock: Callable[[], dt.datetime] = utcnow,
    spare: dt.date | None = None,
) -> Expiry:
    """Remove what the retention of ``settings`` (``keep_days``, ``rejected_keep_days``) no
    longer keeps, on the UTC day of ``clock()``; ``dry_run``: list it, remove nothing.
    ``spare``: a date left alone even if past retention (the DAG's own run)."""
    now = clock().astimezone(dt.UTC)
    today = now.date()
    expire_id = f"expire_{now:%Y%m%dT%H%M%SZ}_{secrets.token_hex(3)}"
    with storage_errors():
        fs, layout, _ = destination(settings)
        present, locks = dates_present(fs, layout)
        plan = retention.plan(today, settings.keep_days, settings.rejected_keep_days, present)
        if spare is not None and spare in (*plan.expire, *plan.rejected_only):
            log.warning(
                "%s is past retention but is the date this run published: it is kept now, and "
                "the next expire removes it", spare,
            )  # fmt: skip
        store = lake_store(fs)
        done = []
        for date, whole in sorted(
            [(d, True) for d in plan.expire] + [(d, False) for d in plan.rejected_only]
        ):
            if date == spare or (not whole and not _has_rejected(store, layout, date)):
                continue
            try:
                lock = date_lock(settings.replace(date=date), fs, layout, expire_id)
                with lock.held():
                    if whole:
                        found = _expire_date(store, layout, date, locks, lock, dry_run=dry_run)
                    else:
                        found = _expire_rejected(
                            store, layout, date, lock, now=now, dry_run=dry_run
                        )
            except DateLockedError as e:
                found = DateExpiry(date, whole, skipped=str(e))
            if found.paths and not dry_run:
                log.info("%s: removed %d files", date, len(found.paths))
            done.append(found)
    return Expiry(dry_run, plan, tuple(done), spare)


def dates_present(fs: Any, layout: Layout) -> tuple[set[dt.date], set[str]]:
    """Every date the lake holds anything of (one listing per top directory), and the names
    listed under ``_locks/`` (the flock guards of a local disk among them)."""
    found: set[dt.date] = set()
    locks: set[str] = set()
    tops = [
        (layout.events_date(_ANY_DATE), ""),
        (layout.rejected_date(_ANY_DATE), ""),
        (layout.previous(_ANY_DATE), ""),
        (layout.staging_date(_ANY_DATE), ""),
        (layout.failure_marker(_ANY_DATE), ".failed"),
        (layout.lock(_ANY_DATE), ".json"),
    ]
    for example, suffix in tops:
        top = example.rsplit("/", 1)[0]
        try:
            names = [n.rstrip("/") for n in fs.ls(top, detail=False)]
        except FileNotFoundError:
            continue
        if suffix == ".json":
            locks.update(names)
        for name in names:
            if suffix and not name.endswith(suffix):
                continue  # (a lock's or a manifest's flock guard: not a date of its own)
            date = entry_date(name.removesuffix(suffix))
            if date is not None:
                found.add(date)
    return found, locks


def _has_rejected(store: LakeStore, layout: Layout, date: dt.date) -> bool:
    """Whether a kept date may still hold rejected rows (checked before taking its lock, so
    the dates already done cost no lock): rejected files, staging, a lock (an open publish),
    or a manifest listing rejected files."""
    published, previous = v.published(layout, date), v.previous(layout, date)
    fs = store.fs
    for path in (published.rejected, previous.rejected, layout.staging_date(date)):
        if fs.exists(path) and fs.find(path):
            return True
    if fs.exists(layout.lock(date)):
        return True
    return any(
        _rejected_entries(store.read_json(version.manifest)) for version in (published, previous)
    )


def _rejected_entries(manifest: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    return [e for e in (manifest or {}).get("files", []) if e.get("dataset") == REJECTED]


def _expire_date(
    store: LakeStore,
    layout: Layout,
    date: dt.date,
    locks: set[str],
    lock: DateLock,
    *,
    dry_run: bool,
) -> DateExpiry:
    """List, then (unless ``dry_run``) remove, everything of ``date`` (see the module's doc)."""
    published, previous = v.published(layout, date), v.previous(layout, date)
    fs = store.fs
    switches = [published.manifest, published.success_marker, previous.manifest]
    staging = sorted(store.listing([layout.staging_date(date)]))
    # the published version's files first, then the kept version's
    data = sorted(store.listing([published.events, published.rejected]).keys() - {*switches})
    data += sorted(store.listing([layout.previous(date)]).keys() - {*switches})
    guards = [layout.guard(date, which) for which in ("published", "previous")]
    listed_locks = {name.rsplit("/", 1)[-1] for name in locks}
    rest = [layout.failure_marker(date)] if fs.exists(layout.failure_marker(date)) else []
    rest += [g for g in guards if g.rsplit("/", 1)[-1] in listed_locks]
    switches = [p for p in switches if fs.exists(p)]
    notes = []
    if lock.intent is not None:
        notes.append(
            f"the interrupted publish of {lock.intent.staging_id} open in its lock "
            f"{'goes' if dry_run else 'went'} with it"
        )
    paths = (*switches, *staging, *data, *rest)
    if dry_run:
        return DateExpiry(date, True, paths, notes=tuple(notes))
    directories: tuple[str, ...] = (published.events, published.rejected)
    directories += (layout.previous(date), layout.staging_date(date))
    for step in (switches, staging, data, rest):
        if step:
            lock.check()  # listed, the lock checked, exactly those deleted (and checked gone)
            store.delete(step, tuple({p.rsplit("/", 1)[0] for p in step}))
    # what a run that lost the date copied in after the listing (see the module's doc)
    late = sorted(store.listing(directories).keys() - set(paths))
    if late:
        lock.check()
        store.delete(late, directories)
        notes.append(f"also removed {len(late)} files that appeared meanwhile")
        paths += tuple(late)
    store.remove_empty_directories(directories)
    if lock.intent is not None:
        lock.clear()  # its staging is gone: nothing left to complete (and the lock goes)
    return DateExpiry(date, True, paths, notes=tuple(notes))


def _expire_rejected(
    store: LakeStore,
    layout: Layout,
    date: dt.date,
    lock: DateLock,
    *,
    now: dt.datetime,
    dry_run: bool,
) -> DateExpiry:
    """List, then (unless ``dry_run``) remove, the rejected rows of ``date``: its manifests
    rewritten without them first, then their files and the failed runs' staging."""
    notes: list[str] = []
    if lock.intent is not None and dry_run:
        return DateExpiry(
            date,
            False,
            notes=(
                f"the interrupted publish of {lock.intent.staging_id} is open in its lock: "
                "expire completes it first, then removes its rejected rows (run gc first to "
                "see them listed)",
            ),
        )
    if not dry_run:  # an interrupted publish, completed: its rejected rows go too
        notes += wap.resolve(store.fs, layout, date, lock).notices
    day = [v.published(layout, date), v.previous(layout, date)]
    rewrites = []
    rows = 0
    for version, which in zip(day, ("published", "previous"), strict=True):
        switch = manifests.manifest_object(store, layout, date, version, which)
        current, etag, unreadable = manifests.read_versioned(switch)
        if unreadable:
            notes.append(f"the {which} manifest is unreadable: `verify`")
        gone = _rejected_entries(current)
        if current is None or not gone:
            continue
        if which == "published":
            rows = sum(int(e.get("rows") or 0) for e in gone)
        rewrites.append((switch, _without_rejected(current, gone, now), etag, which))
    files = sorted(p for version in day for p in store.listing([version.rejected]))
    staging = sorted(store.listing([layout.staging_date(date)]))
    paths = (*files, *staging)
    if dry_run or not (paths or rewrites):
        return DateExpiry(date, False, paths, rows, notes=tuple(notes))
    for switch, document, etag, which in rewrites:
        lock.check()
        manifests.swap(switch, document, etag, f"{which} manifest of {date}")
    if files:
        lock.check()
        store.delete(files, tuple(version.rejected for version in day))
    if staging:
        lock.check()
        store.delete(staging, (layout.staging_date(date),))
    store.remove_empty_directories([layout.staging_date(date)])
    if rewrites and not paths:
        notes.append("its manifests no longer list rejected files that were gone")
    return DateExpiry(date, False, paths, rows, notes=tuple(notes))


def _without_rejected(
    manifest: Mapping[str, Any], gone: list[Mapping[str, Any]], now: dt.datetime
) -> dict[str, Any]:
    """``manifest`` without its rejected files, saying when they expired and how many (added
    to an earlier expiry's, if any). Its ``publish_id`` stays: it is the same version."""
    earlier = manifest.get("rejected_expired") or {}
    return {
        **manifest,
        "files": [e for e in manifest.get("files", []) if e.get("dataset") != REJECTED],
        "rejected_expired": {
            "at": now.isoformat(timespec="seconds"),
            "files": int(earlier.get("files", 0)) + len(gone),
            "rows": int(earlier.get("rows", 0)) + sum(int(e.get("rows") or 0) for e in gone),
        },
    }
