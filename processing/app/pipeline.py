"""The run for one date in one process (the CLI's ``run``), rollback and garbage collection.

A run is the stages of :mod:`processing.app.stages` under one hold of the date's lock; Airflow
runs the same stages as separate tasks. The logic lives in ``processing.logic``, the I/O in
``processing.adapters``.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from processing.adapters import metrics_push
from processing.adapters import publish as wap
from processing.adapters.sources import SourcePlan
from processing.adapters.storage_errors import storage_errors
from processing.adapters.verify import DateCheck, check_date
from processing.adapters.verify import published_dates as verify_dates
from processing.app import stages
from processing.app.context import (
    date_lock,
    destination,
    glue_catalog,
    new_run_id,
    register_in_catalog,
    s3_options,
    source_for,
    task_slots,
    user_id_key_id,
    utcnow,
)
from processing.app.stages import Progress, RunReport
from processing.app.stages.plan_stage import refuse_a_partial_day
from processing.logic import run_metrics
from processing.logic.glue_catalog import TableRegistration
from processing.logic.layout import check_run_id, entry_date
from processing.spec.errors import (
    ConfigError,
    DateLockedError,
    Interrupted,
    LockLostError,
    Terminated,
    TransientError,
    signal_of,
)
from processing.spec.settings import Settings

__all__ = [
    "DateCheck",
    "Registered",
    "RolledBack",
    "RunReport",
    "collect_garbage",
    "register_dates",
    "rollback",
    "run",
    "s3_options",
    "source_for",
    "task_slots",
    "verify",
]

log = logging.getLogger(__name__)


def plan(settings: Settings) -> SourcePlan:
    """How ``settings.date`` would be read from ``settings.source`` (a BigQuery read session
    with its streams and snapshot, or the files and their pieces); nothing is read."""
    return source_for(settings).plan(settings.date, settings.piece_rows)


def run(
    settings: Settings,
    *,
    clock: Callable[[], dt.datetime] = utcnow,
    on_progress: Progress | None = None,
) -> RunReport:
    """Process ``settings.date`` from ``settings.source`` into ``settings.dest`` and publish it."""
    run_id = check_run_id(settings.run_id or new_run_id(settings.date, clock()))
    try:
        return _run(settings, run_id, clock, on_progress)
    except BaseException as e:  # any failure of the run: the Pushgateway hears of it
        failure = run_metrics.failure(settings.date, type(e).__name__, time.time())
        metrics_push.push(
            settings.pushgateway,
            settings.date,
            failure,
            replace=False,
            password_file=settings.pushgateway_password_file,
        )
        raise


def _run(
    settings: Settings,
    run_id: str,
    clock: Callable[[], dt.datetime],
    on_progress: Progress | None,
) -> RunReport:
    refuse_a_partial_day(settings, clock())  # before the date's lock: nothing is touched
    user_id_key_id(settings)  # likewise a missing or short key
    with storage_errors():
        fs, layout, _ = destination(settings)
        lock = date_lock(settings, fs, layout, run_id)
    with storage_errors(), lock.held():
        try:
            _, planned = stages.begin(settings, run_id, lock=lock, clock=clock)
            stages.process(settings, run_id, planned=planned, lock=lock, on_progress=on_progress)
            stages.audit(settings, run_id, lock=lock)
            return stages.publish(settings, run_id, lock=lock, clock=clock)
        except LockLostError:
            raise  # the date is another run's now: leave everything to it
        except BaseException as e:
            publishing = lock.intent is not None and lock.lost is None
            if not publishing:  # an interrupt ends at once: nothing kept for inspection
                stages.discard(
                    settings, run_id, fs=fs, layout=layout, lock=lock,
                    keep=isinstance(e, Exception),
                )  # fmt: skip
            if isinstance(e, KeyboardInterrupt | Terminated):
                raise Interrupted(signal_of(e), publishing=publishing) from e
            if publishing and isinstance(e, Exception):
                raise TransientError(
                    f"the publish of {settings.date} was interrupted ({e}); the next run of "
                    "the date completes it"
                ) from e
            raise


class RolledBack(NamedTuple):
    """What ``rollback`` did: the manifest published again, what it found and repaired on the
    way, and what registering it in the Glue Data Catalog did (none without
    ``--glue-database``)."""

    manifest: dict[str, Any]
    notices: list[str]
    catalog: tuple[TableRegistration, ...] = ()


def rollback(settings: Settings, clock: Callable[[], dt.datetime] = utcnow) -> RolledBack:
    """Publish the date's previous version again; the current one becomes the previous one (so
    a second rollback undoes the first); then register the restored version in the Glue Data
    Catalog (with ``--glue-database``), under the same lock."""
    rollback_id = f"rollback_{clock():%Y%m%dT%H%M%SZ}_{secrets.token_hex(3)}"
    with storage_errors():
        fs, layout, _ = destination(settings)
        lock = date_lock(settings, fs, layout, rollback_id)
        with lock.held():
            try:
                manifest, outcome = wap.rollback(
                    fs, layout, settings.date, rollback_id, tag=stages.new_tag(), fence=lock
                )
            except (KeyboardInterrupt, Terminated) as e:
                raise Interrupted(signal_of(e), lock.intent is not None) from e
            done = (
                f"{settings.date} is rolled back (run {manifest.get('run_id')} is published "
                "again; do not roll back again, that would undo it)"
            )
            catalog: tuple[TableRegistration, ...] = ()
            if manifest:  # (unreadable after a completed interrupted rollback: verify says so)
                catalog = register_in_catalog(settings, settings.date, manifest, done=done)
    return RolledBack(manifest, outcome.notices, catalog)


class Registered(NamedTuple):
    """What ``catalog`` did for one date: its registration table by table, or why it was
    skipped."""

    date: dt.date
    catalog: tuple[TableRegistration, ...] = ()
    skipped: str | None = None


def register_dates(
    settings: Settings, only: dt.date | None = None, clock: Callable[[], dt.datetime] = utcnow
) -> list[Registered]:
    """Register the published version of ``only`` (or of every published date) in the Glue
    Data Catalog of ``--glue-database``: what a publish does after it switched, for dates
    published before the catalog was configured, or whose registration failed. Each date under
    its lock (a publish left open is completed first); a date a live run holds is skipped."""
    catalog = glue_catalog(settings)
    if catalog is None:
        raise ConfigError("catalog needs --glue-database (or PROCESSING_GLUE_DATABASE)")
    catalog_id = f"catalog_{clock():%Y%m%dT%H%M%SZ}_{secrets.token_hex(3)}"
    done = []
    with storage_errors():
        fs, layout, _ = destination(settings)
        dates = [only] if only is not None else verify_dates(fs, layout)
        for date in dates:
            try:
                lock = date_lock(settings.replace(date=date), fs, layout, catalog_id)
                with lock.held():
                    wap.resolve(fs, layout, date, lock)  # an interrupted publish, completed
                    manifest = wap.published_manifest(fs, layout, date)
                    if manifest is None and only is not None:
                        raise ConfigError(f"{date} is not published: there is nothing to register")
                    if manifest is None:  # a damaged date (`verify` says more): the others go on
                        done.append(Registered(date, skipped="not published (damaged?)"))
                        continue
                    registered = register_in_catalog(
                        settings, date, manifest, done=f"{date} is published", catalog=catalog
                    )
                done.append(Registered(date, registered))
            except DateLockedError as e:
                done.append(Registered(date, skipped=str(e)))
    return done


def collect_garbage(
    settings: Settings, only: dt.date | None = None, clock: Callable[[], dt.datetime] = utcnow
) -> tuple[list[str], list[DateCheck]]:
    """For every date with staging or a lock (or only ``only``) that no live run holds: complete
    an interrupted publish, remove failed runs' staging, drop the dead run's lock. One line per
    date; dates locked by a live run are skipped. Then every published date (or ``only``) is
    checked against its manifest's listing (no footer reads): the damaged ones are returned."""
    with storage_errors():
        fs, layout, _ = destination(settings)
        gc_id = f"gc_{clock():%Y%m%dT%H%M%SZ}_{secrets.token_hex(3)}"
        dates: set[dt.date] = set()
        for top in (layout.staging(), layout.locks()):
            if fs.exists(top):
                names = [e.removesuffix(".json") for e in fs.ls(top, detail=False)]
                dates.update(d for d in map(entry_date, names) if d is not None)
        leftovers = set(dates)
        published = set(verify_dates(fs, layout))
        unmarked = {d for d in published if not fs.exists(layout.success_marker(d))}
        dates |= unmarked
        if only is not None:
            dates &= {only}
        done = []
        for date in sorted(dates):
            try:
                lock = date_lock(settings.replace(date=date), fs, layout, gc_id)
                with lock.held():
                    resolved = wap.resolve(fs, layout, date, lock)
                    had_staging = wap.remove_staging(fs, layout, date, lock)
                    marked = date in unmarked and wap.restore_marker(fs, layout, date, lock)
                if resolved.completed:
                    what = "completed an interrupted publish"
                elif resolved.notices:
                    what = "; ".join(resolved.notices)
                elif had_staging:
                    what = "removed failed runs' staging"
                elif marked:
                    what = "wrote the missing _SUCCESS marker"
                elif date in unmarked and date not in leftovers:
                    what = "no _SUCCESS marker, and its listing is not its version alone: `verify`"
                else:
                    what = "released a dead run's lock"
                if marked and (resolved.completed or resolved.notices or had_staging):
                    what += "; wrote the missing _SUCCESS marker"
                done.append(f"{date}: {what}")
            except DateLockedError as e:
                done.append(f"{date}: skipped, {e}")
        checked = [only] if only is not None else sorted(published)
        damaged = [c for c in _check(fs, layout, checked, footers=False) if c.damaged]
    return done, damaged


def verify(settings: Settings, only: dt.date | None = None) -> list[DateCheck]:
    """Check ``only`` (or every published date) against its manifest, footers included."""
    with storage_errors():
        fs, layout, _ = destination(settings)
        dates = [only] if only is not None else verify_dates(fs, layout)
        return _check(fs, layout, dates, footers=True)


def _check(fs: Any, layout: Any, dates: list[dt.date], *, footers: bool) -> list[DateCheck]:
    return [check_date(fs, layout, date, footers=footers) for date in dates]
