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
from typing import Any

from processing.adapters import metrics_push
from processing.adapters import publish as wap
from processing.app import stages
from processing.app.context import (
    date_lock,
    destination,
    new_run_id,
    s3_options,
    source_for,
    storage_step,
    task_slots,
    utcnow,
)
from processing.app.stages import Progress, RunReport
from processing.logic import run_metrics
from processing.logic.layout import check_run_id, entry_date
from processing.spec.errors import DateLockedError, LockLostError, TransientError
from processing.spec.settings import Settings

__all__ = [
    "RunReport",
    "collect_garbage",
    "rollback",
    "run",
    "s3_options",
    "source_for",
    "task_slots",
]

log = logging.getLogger(__name__)


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
        metrics_push.push(settings.pushgateway, settings.date, failure, replace=False)
        raise


def _run(
    settings: Settings,
    run_id: str,
    clock: Callable[[], dt.datetime],
    on_progress: Progress | None,
) -> RunReport:
    fs, layout, _ = destination(settings)
    with date_lock(settings, fs, layout, run_id).held() as lock:
        _, planned = stages.begin(settings, run_id, lock=lock, clock=clock)
        staging_id = run_id
        try:
            done = stages.process(
                settings, run_id, planned=planned, lock=lock, on_progress=on_progress
            )
            staging_id = done["staging_id"]
            stages.audit(settings, run_id, lock=lock)
            return stages.publish(settings, run_id, lock=lock, clock=clock)
        except LockLostError:
            raise  # the date is another run's now: leave everything to it
        except BaseException as e:
            if wap.publishing_started(fs, layout, settings.date, staging_id):
                raise TransientError(
                    f"the publish of {settings.date} was interrupted ({e}); the next run of "
                    "the date completes it"
                ) from e
            stages.discard(settings, run_id, fs=fs, layout=layout)
            raise


def rollback(settings: Settings, clock: Callable[[], dt.datetime] = utcnow) -> dict[str, Any]:
    """Publish the date's previous version again; the current one becomes the previous one (so
    a second rollback undoes the first). Returns the restored manifest."""
    rollback_id = f"rollback_{clock():%Y%m%dT%H%M%SZ}_{secrets.token_hex(3)}"
    fs, layout, _ = destination(settings)
    with date_lock(settings, fs, layout, rollback_id).held():
        return storage_step(wap.rollback, fs, layout, settings.date, rollback_id)


def collect_garbage(
    settings: Settings, only: dt.date | None = None, clock: Callable[[], dt.datetime] = utcnow
) -> list[str]:
    """For every date with staging or a lock (or only ``only``) that no live run holds: complete
    an interrupted publish, remove failed runs' staging, drop the dead run's lock. One line per
    date; dates locked by a live run are skipped."""
    fs, layout, _ = destination(settings)
    gc_id = f"gc_{clock():%Y%m%dT%H%M%SZ}_{secrets.token_hex(3)}"
    dates: set[dt.date] = set()
    for top in (layout.staging(), layout.locks()):
        if fs.exists(top):
            names = [e.removesuffix(".json") for e in fs.ls(top, detail=False)]
            dates.update(d for d in map(entry_date, names) if d is not None)
    if only is not None:
        dates &= {only}
    done = []
    for date in sorted(dates):
        try:
            day = settings.replace(date=date)
            with date_lock(day, fs, layout, gc_id).held():
                completed = storage_step(wap.complete_interrupted, fs, layout, date)
                had_staging = storage_step(wap.remove_staging, fs, layout, date)
            if completed:
                what = "completed an interrupted publish"
            else:
                what = (
                    "removed failed runs' staging" if had_staging else "released a dead run's lock"
                )
            done.append(f"{date}: {what}")
        except DateLockedError as e:
            done.append(f"{date}: skipped, {e}")
    return done
