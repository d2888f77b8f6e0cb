"""``finish`` (after the run, whatever happened) and ``discard`` (a failed run's leftovers)."""

from __future__ import annotations

import logging
import time
from typing import Any

from processing.adapters import metrics_push
from processing.adapters.date_lock import DateLock
from processing.adapters.storage_errors import storage_errors
from processing.app.context import date_lock, destination
from processing.app.stages.records import RunRecords
from processing.app.stages.scope import discard_attempts, holder
from processing.logic import run_metrics
from processing.logic.layout import Layout
from processing.spec.settings import Settings

log = logging.getLogger(__name__)


def discard(
    settings: Settings, run_id: str, *, fs: Any, layout: Layout, lock: DateLock | None = None
) -> None:
    """Remove a failed run's staging and what its stages kept (best effort: the next run of
    the date, or gc, removes what is left)."""
    try:
        discard_attempts(fs, layout, settings.date, run_id, lock)
    except Exception:
        log.warning("could not remove the staging of run %s; the next run will", run_id)
    try:
        RunRecords(fs, layout, settings.date, run_id).forget()
    except Exception:
        log.warning("could not remove what run %s kept; the next run will", run_id)


def finish(settings: Settings, run_id: str) -> str:
    """After the run, whatever happened: remove a failed run's staging and let go of the date.

    A publish that started is left for the next run of the date to complete. Idempotent, and
    never takes a date another run holds. Returns what it did, in a few words."""
    with storage_errors():
        fs, layout, _ = destination(settings)
        lock = date_lock(settings, fs, layout, run_id, resume=True)
        holding = holder(fs, layout, settings.date)
    if holding is None or holding != run_id:
        return "nothing to release: the date is not this run's"
    with storage_errors():
        lock.acquire()
        try:
            # the task's own error is in its log; the Pushgateway hears that the run failed
            failure = run_metrics.failure(settings.date, "TaskFailed", time.time())
            metrics_push.push(
                settings.pushgateway, settings.date, failure, replace=False,
                password_file=settings.pushgateway_password_file,
            )  # fmt: skip
            if lock.intent is not None:  # released with it: the next run takes it at once
                return "left an interrupted publish for the next run of the date to complete"
            discard(settings, run_id, fs=fs, layout=layout, lock=lock)
            return "removed the run's staging and released the date"
        finally:
            lock.release()
