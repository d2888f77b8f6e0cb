"""``finish`` (after the run, whatever happened) and ``discard`` (a failed run's leftovers)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from processing.adapters import metrics_push
from processing.adapters.date_lock import DateLock
from processing.adapters.storage_errors import storage_errors
from processing.app.context import date_lock, destination, url_of
from processing.app.stages import publish_stage
from processing.app.stages.records import RunRecords
from processing.app.stages.scope import discard_attempts, holder, stage
from processing.logic import run_metrics
from processing.logic.layout import Layout
from processing.spec.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Kept:
    """What a failed run left for people to look at: its staged rejected rows and its quality
    report (the next run of the date, or gc, removes them)."""

    staging_id: str
    rejected: str
    quality_report: str | None

    def sentence(self) -> str:
        report = f", its quality report {self.quality_report}" if self.quality_report else ""
        return (
            f"kept for inspection until the next run of the date (or gc): its rejected rows "
            f"{self.rejected}{report}"
        )


def discard(
    settings: Settings,
    run_id: str,
    *,
    fs: Any,
    layout: Layout,
    lock: DateLock | None = None,
    keep: bool = True,
) -> Kept | None:
    """Remove a failed run's staging and what its stages kept (best effort: the next run of
    the date, or gc, removes what is left), but for a run that processed its pieces (and
    ``keep``: not on an interrupt, which must end quickly): its rejected rows and its quality
    report stay, for people to see what it found; returns them."""
    kept = _keep_for_inspection(settings, run_id, fs=fs, layout=layout, lock=lock) if keep else None
    try:
        discard_attempts(
            fs, layout, settings.date, run_id, lock, keep=kept.staging_id if kept else None
        )
    except Exception:
        log.warning("could not remove the staging of run %s; the next run will", run_id)
    try:
        RunRecords(fs, layout, settings.date, run_id).forget()
    except Exception:
        log.warning("could not remove what run %s kept; the next run will", run_id)
    if kept is not None:
        log.warning("%s: run %s failed; %s", settings.date, run_id, kept.sentence())
    return kept


def _keep_for_inspection(
    settings: Settings, run_id: str, *, fs: Any, layout: Layout, lock: DateLock | None
) -> Kept | None:
    """Write the quality report of a run that processed its pieces into its staging, and
    remove the staged events (the bulk of the date) but not the rejected rows. Nothing when
    the date's lock is not plainly this run's: lost (another run may be completing a publish
    from this staging), or with a publish open."""
    if lock is None or lock.lost is not None or lock.intent is not None:
        return None
    try:
        done = RunRecords(fs, layout, settings.date, run_id).processed()
        if done is None:  # failed before its pieces were processed: nothing whole to show
            return None
        with stage(settings, run_id, lock) as scope:
            report = publish_stage.report_for_inspection(scope, settings)
        events, rejected = layout.staged(settings.date, done.staging_id)
        pieces = layout.piece_records(settings.date, done.staging_id)
        listed = fs.ls(events, detail=False) if fs.exists(events) else []
        data = [e for e in listed if e.rstrip("/").rsplit("/", 1)[-1].startswith("event_name=")]
        for gone in [*data, pieces]:
            if fs.exists(gone):
                fs.rm(gone, recursive=True)
        return Kept(done.staging_id, url_of(settings.dest, rejected, layout.root), report)
    except Exception as e:
        log.warning("could not keep the failed run's rejected rows for inspection: %s", e)
        return None


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
            kept = discard(settings, run_id, fs=fs, layout=layout, lock=lock)
            if kept is not None:
                return f"removed the run's staging and released the date; {kept.sentence()}"
            return "removed the run's staging and released the date"
        finally:
            lock.release()
