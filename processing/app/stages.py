"""The stages of a run: begin, process, audit, publish, and finish (after success or failure).

Each stage can run in its own process (an Airflow task each, on Kubernetes) or all in one (the
CLI's ``run``): what a later stage needs is kept beside the run's staging, in
``_staging/event_date=D/_runs/``, never passed around as data. Each stage holds the date's lock
while it works, resuming the run's own lock (a stage retried in a new process resumes it too),
and returns a few small facts (for XCom and logs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import dask
from distributed import Client, as_completed, performance_report
from distributed.client import FutureCancelledError
from distributed.scheduler import KilledWorker

from processing.adapters import metrics_push, reports
from processing.adapters import publish as wap
from processing.adapters.audit import audit as audit_staging
from processing.adapters.cluster import dashboard_link, dask_client
from processing.adapters.date_lock import DateLock, holder_of
from processing.adapters.sources import BigQuerySource, Piece, Source, SourcePlan
from processing.adapters.storage import put_bytes, redact_url
from processing.adapters.storage_errors import storage_errors
from processing.adapters.writer import WriteOptions
from processing.app import resume
from processing.app.context import date_lock, destination, source_for, url_of, utcnow
from processing.app.piece_task import (
    TaskContext,
    WarmUp,
    merge_task,
    process_piece,
    too_many_event_names,
)
from processing.logic import quality, quality_html, run_metrics
from processing.logic.compaction import Merge, plan_merges, with_merges
from processing.logic.layout import EVENTS, Layout, check_run_id
from processing.logic.manifest import (
    FileInfo,
    PieceResult,
    RunTotals,
    build_manifest,
    piece_result,
    reconcile,
)
from processing.logic.progress import ProgressMeter
from processing.spec.errors import (
    AuditError,
    ConfigError,
    InputError,
    LockLostError,
    SessionExpiredError,
    TransientError,
)
from processing.spec.settings import Settings, parse_instant

log = logging.getLogger(__name__)

Progress = Callable[[int, int, PieceResult], None]


@dataclass(frozen=True)
class RunReport:
    manifest: dict[str, Any]
    events_path: str
    rejected_path: str
    manifest_path: str
    dashboard: str | None
    #: seconds during which a reader listing the date's prefix could see both versions' files
    publish_window_seconds: float = 0.0
    #: the data-quality report (HTML) beside the manifest, and what it found
    quality_report: str | None = None
    findings: tuple[dict[str, str], ...] = ()
    #: what the run found and repaired on its way: a damaged published version it replaced, an
    #: interrupted publish it completed or abandoned (one sentence each)
    notices: tuple[str, ...] = ()


def new_tag() -> str:
    """A new tag for the files of an attempt at staging: no two versions of a date, not even
    two runs given the same run id, ever share a file name (see processing.logic.layout)."""
    return secrets.token_hex(4)


# --- what the stages leave each other --------------------------------------------------------
def _state_path(layout: Layout, date: dt.date, run_id: str, kind: str) -> str:
    return f"{layout.staging_date(date)}/_runs/run_id={check_run_id(run_id)}.{kind}.json"


def _save(fs: Any, path: str, doc: Any) -> None:
    put_bytes(fs, path, json.dumps(doc, default=str).encode())


def _load(fs: Any, layout: Layout, date: dt.date, run_id: str, kind: str) -> Any:
    try:
        return json.loads(fs.cat_file(_state_path(layout, date, run_id, kind)))
    except FileNotFoundError:
        return None


def _forget(fs: Any, layout: Layout, date: dt.date, run_id: str) -> None:
    """Remove what the stages kept for ``run_id`` (and the date's staging, if now empty)."""
    for kind in ("plan", "results", "audit"):
        path = _state_path(layout, date, run_id, kind)
        if fs.exists(path):
            fs.rm_file(path)
    staging = layout.staging_date(date)
    runs = f"{staging}/_runs"
    if fs.exists(runs) and not fs.ls(runs, detail=False):
        fs.rm(runs, recursive=True)
    if fs.exists(staging) and not fs.ls(staging, detail=False):
        fs.rm(staging, recursive=True)


def _merged(doc: dict[str, Any]) -> tuple[Merge, FileInfo]:
    merge = doc["merge"]
    sources = tuple(FileInfo(**f) for f in merge["sources"])
    return Merge(**{**merge, "sources": sources}), FileInfo(**doc["written"])


@contextmanager
def _stage(
    settings: Settings, run_id: str, lock: DateLock | None
) -> Iterator[tuple[Any, Layout, dict[str, Any], DateLock]]:
    """The destination, and the date's lock held for this stage (given, or the run's resumed).

    Storage failures anywhere in the stage become the pipeline's errors (configuration,
    transient, or the destination changed); and a failure of a stage whose lock another run took
    over says so, whatever it tripped on (the files that run removed, usually)."""
    with storage_errors():
        fs, layout, options = destination(settings)
        if lock is not None:
            with _explained_by_lost_lock(lock):
                yield fs, layout, options, lock
            return
        resumed = date_lock(settings, fs, layout, run_id, resume=True)
        with resumed.held(release=False), _explained_by_lost_lock(resumed):
            yield fs, layout, options, resumed


@contextmanager
def _explained_by_lost_lock(lock: DateLock) -> Iterator[None]:
    try:
        yield
    except LockLostError:
        raise
    except Exception as e:
        if lock.lost is None:
            with contextlib.suppress(Exception):  # the store is down: the error says enough
                lock.check()
        if lock.lost is not None:
            raise LockLostError(f"{lock.lost} (the run then failed: {e})") from e
        raise


# --- stages ----------------------------------------------------------------------------------
def begin(
    settings: Settings,
    run_id: str,
    *,
    lock: DateLock | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
) -> tuple[dict[str, Any], tuple[Source, SourcePlan]]:
    """Take the date, clear what failed runs left, plan the read (pinning BigQuery's snapshot).

    Returns the plan's facts (kept for the later stages) and the source with its plan."""
    began = time.perf_counter()
    with _stage(settings, run_id, lock) as (fs, layout, _, held):
        prepared = wap.prepare(fs, layout, settings.date, run_id, held)
        for notice in prepared.notices:
            log.warning("%s: %s", settings.date, notice)
        source = source_for(settings)
        plan = source.plan(settings.date, settings.piece_rows)
        facts = {
            "run_id": run_id,
            "date": settings.date.isoformat(),
            "started_at": clock().isoformat(),
            "source": redact_url(settings.source),
            "pieces": len(plan.pieces),
            "estimated_rows": plan.estimated_rows,
            "estimated_bytes": plan.estimated_bytes,
            "snapshot_time": plan.details.get("snapshot_time"),
            "source_details": dict(plan.details),
            "seconds": round(time.perf_counter() - began, 3),
            "notices": prepared.notices,
        }
        kept = {**facts, "source_state": dict(plan.state)}  # the stream names: not for XCom
        _save(fs, _state_path(layout, settings.date, run_id, "plan"), kept)
    log.info(
        "run %s: %s -> %s, %d pieces",
        run_id,
        facts["source"],
        redact_url(settings.dest),
        len(plan.pieces),
    )
    return facts, (source, plan)


def process(
    settings: Settings,
    run_id: str,
    *,
    scheduler: str | None = None,
    planned: tuple[Source, SourcePlan] | None = None,
    lock: DateLock | None = None,
    on_progress: Progress | None = None,
    attempt: int = 1,
) -> dict[str, Any]:
    """Read every piece and write it to the run's staging, on the run's Dask cluster (the
    scheduler at ``scheduler``, else the settings' one or a LocalCluster). Without ``planned`` (a
    stage of its own), the read is planned again at the snapshot ``begin`` pinned.

    Each ``attempt`` (a retried task) stages under its own id: the tasks of an earlier attempt
    may still be running on a long-lived cluster, and must not write into this one's files."""
    began = time.perf_counter()
    if scheduler:  # size the read for the run's cluster, not for this process's machine
        settings = settings.replace(scheduler=scheduler)
    with _stage(settings, run_id, lock) as (fs, layout, options, _lock):
        facts = _load(fs, layout, settings.date, run_id, "plan")
        if facts is None:
            raise ConfigError(f"run {run_id} of {settings.date} was not begun (or is finished)")
        source, plan = planned or _planned_again(settings, facts)
        staging_id = run_id if attempt <= 1 else check_run_id(f"{run_id[:70]}-a{attempt}")
        earlier = _attempts(fs, layout, settings.date, run_id, _lock)
        if staging_id in earlier:  # this very attempt ran before (a run again after a crash):
            # its tasks may still be writing there, so none of it is kept
            wap.discard_staging(fs, layout, settings.date, staging_id)
            earlier.remove(staging_id)
        completed = resume.completed_pieces(fs, layout, settings.date, earlier, plan.pieces)
        kept = resume.adopt(fs, layout, settings.date, completed, staging_id)
        _discard_attempts(fs, layout, settings.date, run_id, _lock, keep=staging_id)
        if kept:
            log.info(
                "kept %d of %d pieces an earlier attempt completed (%s rows); reading the "
                "other %d", len(kept), len(plan.pieces), f"{sum(r.rows_read for r in kept):,}",
                len(plan.pieces) - len(kept),
            )  # fmt: skip
        done_keys = {c.piece.key for c in completed}
        remaining = [p for p in plan.pieces if p.key not in done_keys]
        ctx = TaskContext(
            date=settings.date,
            run_id=staging_id,
            dest=settings.dest,
            batch_rows=settings.batch_rows,
            write=WriteOptions(
                row_group_rows=settings.row_group_rows,
                max_file_rows=settings.max_file_rows,
                max_buffered_rows=settings.max_buffered_rows,
                zstd_level=settings.zstd_level,
                max_file_bytes=settings.target_file_bytes,
                min_copied_row_group_rows=settings.min_copied_row_group_rows,
            ),
            tag=new_tag(),
            max_event_names=settings.max_event_names,
            retries=settings.task_retries,
            storage_options=options,
        )
        with dask_client(
            scheduler=settings.scheduler,
            workers=settings.workers,
            threads_per_worker=settings.threads_per_worker,
            processes=settings.processes,
            memory_limit=settings.memory_limit,
            worker_failures=settings.task_retries,
        ) as client:
            dashboard = dashboard_link(client)
            if dashboard:
                log.info("Dask dashboard: %s", dashboard)
            try:
                with _performance_report(settings, fs, layout, ctx) as performance:
                    results = kept + _process(client, remaining, ctx, on_progress)
            except SessionExpiredError as e:  # BigQuery sessions last 6 h: read it all again
                if not isinstance(source, BigQuerySource):
                    raise
                log.warning("%s; planning again at the same snapshot and rereading", e)
                # Tasks of the first attempt may still be running (cancelling does not stop
                # them) and the new session cuts its streams differently: the second attempt
                # stages under its own id, which also names its files.
                stale, staging_id = staging_id, check_run_id(f"{staging_id[:72]}-replan")
                ctx = dataclasses.replace(ctx, run_id=staging_id, tag=new_tag())
                source = source.at(parse_instant(plan.details["snapshot_time"]))
                plan = source.plan(settings.date, settings.piece_rows)
                with _performance_report(settings, fs, layout, ctx) as performance:
                    results = _process(client, plan.pieces, ctx, on_progress, attempt=2)
                wap.discard_staging(fs, layout, settings.date, stale)  # best effort
            merges = plan_merges(
                [f for r in results for f in r.files], settings.target_file_bytes, ctx.tag
            )
            merged = _merge(client, fs, layout, merges, ctx)
        done = {
            "staging_id": staging_id,
            "tag": ctx.tag,
            "dashboard": dashboard,
            "reports": performance,
            "pieces": len(plan.pieces),
            "bytes_read": plan.details.get("estimated_bytes", plan.estimated_bytes),
            "source_details": dict(plan.details),
            "results": [asdict(r) for r in results],
            "merges": [{"merge": asdict(m), "written": asdict(f)} for m, f in merged],
            "seconds": round(time.perf_counter() - began, 3),
        }
        _save(fs, _state_path(layout, settings.date, run_id, "results"), done)
    return {
        "staging_id": staging_id,
        "pieces": len(results),
        "rows_read": sum(r.rows_read for r in results),
        "rows_valid": sum(r.rows_valid for r in results),
        "rows_rejected": sum(r.rows_rejected for r in results),
        "files": sum(len(r.files) for r in results) - sum(len(m.sources) - 1 for m in merges),
        "dashboard": dashboard,
    }


def _planned_again(settings: Settings, facts: dict[str, Any]) -> tuple[Source, SourcePlan]:
    """The read ``begin`` planned: BigQuery's session again (its streams are the pieces an
    earlier attempt may have completed), or the files planned again at the pinned snapshot."""
    snapshot = facts.get("snapshot_time")
    pinned = settings.replace(snapshot_time=parse_instant(snapshot)) if snapshot else settings
    source = source_for(pinned)
    state = facts.get("source_state")
    if state and isinstance(source, BigQuerySource):
        return source, source.resume(state, facts.get("source_details") or {})
    return source, source.plan(settings.date, settings.piece_rows)


def _results(fs: Any, layout: Layout, settings: Settings, run_id: str) -> dict[str, Any]:
    done = _load(fs, layout, settings.date, run_id, "results")
    if done is None:
        raise ConfigError(
            f"run {run_id} of {settings.date} has not processed its pieces (in Airflow, a "
            "cleared run is a new attempt at the date: clear it from plan, or the whole run)"
        )
    return done


def _reconciled(done: dict[str, Any]) -> RunTotals:
    totals = reconcile(piece_result(r) for r in done["results"])
    return with_merges(totals, [_merged(m) for m in done.get("merges", ())])


def audit(settings: Settings, run_id: str, *, lock: DateLock | None = None) -> dict[str, Any]:
    """Reconcile the counts, apply the run's limits and check the staged files."""
    began = time.perf_counter()
    with _stage(settings, run_id, lock) as (fs, layout, _, _lock):
        done = _results(fs, layout, settings, run_id)
        totals = _reconciled(done)
        check_totals(totals, settings)
        audit_staging(fs, layout, settings.date, done["staging_id"], totals)
        audited = {"seconds": round(time.perf_counter() - began, 3)}
        _save(fs, _state_path(layout, settings.date, run_id, "audit"), audited)
    return {
        "rows_read": totals.rows_read,
        "rows_valid": totals.rows_valid,
        "rows_rejected": totals.rows_rejected,
        "files": len(totals.files),
        "bytes": totals.bytes_written,
    }


def publish(
    settings: Settings,
    run_id: str,
    *,
    lock: DateLock | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
) -> RunReport:
    """Write the run's quality report, publish the audited staging, then let go of the date.
    Repeatable: a publish interrupted half way is completed; one that already completed is
    reported."""
    report: dict[str, Any] | None = None
    with _stage(settings, run_id, lock) as (fs, layout, _, held):
        facts = _load(fs, layout, settings.date, run_id, "plan")
        kept = _load(fs, layout, settings.date, run_id, "results") or {}
        staging_id, dashboard = kept.get("staging_id", run_id), kept.get("dashboard")
        notices = list((facts or {}).get("notices", []))
        open_intent = held.intent
        if open_intent is not None and open_intent.staging_id == staging_id:
            # a retry after the publish began (this task died, or lost the date and got it
            # back): complete it, or find it abandoned
            notices += wap.resolve(fs, layout, settings.date, held).notices
            manifest = wap.published_manifest(fs, layout, settings.date) or {}
            window = 0.0
            if manifest.get("publish_id") != open_intent.publish_id:
                raise LockLostError(
                    f"the publish of run {staging_id} was abandoned (its staging lost files); "
                    f"{settings.date} holds run {manifest.get('run_id')}"
                )
        else:
            if open_intent is not None:  # an earlier attempt's: resolve it first
                notices += wap.resolve(fs, layout, settings.date, held).notices
            published = wap.published_manifest(fs, layout, settings.date)
            if published and published.get("run_id") in {run_id, staging_id}:
                manifest, window = published, 0.0  # a retry after the publish: report it
            else:
                manifest, window, report, found = _publish_staging(
                    fs, layout, settings, run_id, held, clock=clock
                )
                notices += found
        if report is None:  # a retried publish: the report is the published one
            report = _published_report(fs, layout, settings.date, manifest)
        _forget(fs, layout, settings.date, run_id)
        if lock is None:
            held.release()
    for notice in notices:
        log.warning("%s: %s", settings.date, notice)
    metrics_push.push(
        settings.pushgateway,
        settings.date,
        run_metrics.success(
            manifest,
            window,
            time.time(),
            volume_ratios=quality.volume_ratios(report) if report else None,
        ),
        replace=True,
        password_file=settings.pushgateway_password_file,
    )
    html = reports.entry_of(manifest, reports.QUALITY_HTML)
    events_date = layout.events_date(settings.date)
    return RunReport(
        manifest=manifest,
        events_path=url_of(settings.dest, events_date, layout.root),
        rejected_path=url_of(settings.dest, layout.rejected_date(settings.date), layout.root),
        manifest_path=url_of(settings.dest, layout.manifest(settings.date), layout.root),
        dashboard=dashboard,
        publish_window_seconds=window,
        quality_report=url_of(settings.dest, f"{events_date}/{html['path']}", layout.root)
        if html
        else None,
        findings=tuple(report["findings"]) if report else ((_UNREAD_REPORT,) if html else ()),
        notices=tuple(notices),
    )


def _publish_staging(
    fs: Any,
    layout: Layout,
    settings: Settings,
    run_id: str,
    held: DateLock,
    *,
    clock: Callable[[], dt.datetime],
) -> tuple[dict[str, Any], float, dict[str, Any] | None, list[str]]:
    """Build the run's manifest and quality report, and publish its audited staging. Returns
    the published manifest, the window, the report and what the publish found."""
    facts = _load(fs, layout, settings.date, run_id, "plan")
    done = _results(fs, layout, settings, run_id)
    staging_id = done["staging_id"]
    totals = _reconciled(done)
    audited = _load(fs, layout, settings.date, run_id, "audit") or {}
    manifest = build_manifest(
        run_id=staging_id,
        date=settings.date,
        source=facts["source"] if facts else redact_url(settings.source),
        totals=totals,
        started_at=dt.datetime.fromisoformat(facts["started_at"]) if facts else clock(),
        finished_at=clock(),
        extra={
            "tag": done["tag"],
            "pieces": done["pieces"],
            "bytes_read": done.get("bytes_read"),
            "source_details": done["source_details"],
            "stage_seconds": _stage_seconds(facts, done, audited),
        },
    )
    report, written = _quality_report(
        fs, layout, settings, staging_id, done["tag"], manifest=manifest, totals=totals,
        now=clock(),
    )  # fmt: skip
    manifest["reports"] = [*done.get("reports", []), *written]
    outcome = wap.publish(fs, layout, settings.date, staging_id, manifest, fence=held)
    # what was switched (a report lost on the way is not listed), with its publish id
    published = wap.published_manifest(fs, layout, settings.date) or manifest
    return published, outcome.window, report, outcome.notices


_UNREAD_REPORT = {
    "severity": "info",
    "check": "report",
    "message": "the published quality report could not be read (the log says why)",
}


def _quality_report(
    fs: Any,
    layout: Layout,
    settings: Settings,
    staging_id: str,
    tag: str,
    *,
    manifest: dict[str, Any],
    totals: RunTotals,
    now: dt.datetime,
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The run's data-quality report against the days published before it, written (JSON and
    HTML) into its staging; returns it and the manifest entries of its files. A report that
    cannot be made is a warning: the data is published without it."""
    began = time.perf_counter()
    try:
        history = reports.history(fs, layout, settings.date)
        report = quality.report(manifest, totals.profile, history, now)
        page = quality_html.render(report).encode()
        written = [
            reports.write(fs, layout, settings.date, staging_id, tag=tag, kind=kind, data=data)
            for kind, data in (
                (reports.QUALITY_JSON, json.dumps(report, indent=1).encode()),
                (reports.QUALITY_HTML, page),
            )
        ]
    except Exception as e:
        log.warning("no quality report for %s: %s: %s", settings.date, type(e).__name__, e)
        return None, []
    log.info("quality report of %s in %.2f s", settings.date, time.perf_counter() - began)
    for finding in report["findings"]:
        log.log(
            logging.WARNING if finding["severity"] == "warning" else logging.INFO,
            "quality of %s: %s",
            settings.date,
            finding["message"],
        )
    return report, written


def _published_report(
    fs: Any, layout: Layout, date: dt.date, manifest: dict[str, Any]
) -> dict[str, Any] | None:
    """The quality report published with ``manifest`` (a retried publish reports it), or None
    if it cannot be read: the date is published, a report is never worth failing it."""
    try:
        data = reports.read_report(fs, layout, date, manifest)
        return None if data is None else quality.parse(data, date)
    except Exception as e:
        log.warning("could not read the published quality report of %s: %s", date, e)
        return None


def discard(
    settings: Settings, run_id: str, *, fs: Any, layout: Layout, lock: DateLock | None = None
) -> None:
    """Remove a failed run's staging and what its stages kept (best effort: the next run of
    the date, or gc, removes what is left)."""
    try:
        _discard_attempts(fs, layout, settings.date, run_id, lock)
    except Exception:
        log.warning("could not remove the staging of run %s; the next run will", run_id)
    try:
        _forget(fs, layout, settings.date, run_id)
    except Exception:
        log.warning("could not remove what run %s kept; the next run will", run_id)


def _attempts(
    fs: Any, layout: Layout, date: dt.date, run_id: str, lock: DateLock | None
) -> list[str]:
    """The stagings of the attempts of ``run_id`` (``R``, ``R-a2``, ``R-replan``...), but not
    one that an open publish (the lock's intent) is publishing from."""
    staging = layout.staging_date(date)
    if not fs.exists(staging):
        return []
    publishing = lock.intent.staging_id if lock is not None and lock.intent else None
    names = [e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(staging, detail=False)]
    return sorted(
        name.removeprefix("run_id=")
        for name in names
        if name.startswith("run_id=")
        and name.removeprefix("run_id=") != publishing
        and (name == f"run_id={run_id}" or name.startswith(f"run_id={run_id}-"))
    )


def _discard_attempts(
    fs: Any,
    layout: Layout,
    date: dt.date,
    run_id: str,
    lock: DateLock | None,
    *,
    keep: str | None = None,
) -> None:
    """Remove the staging of every attempt of ``run_id`` but ``keep`` (see :func:`_attempts`)."""
    for name in _attempts(fs, layout, date, run_id, lock):
        if name != keep:
            wap.discard_staging(fs, layout, date, name)


def finish(settings: Settings, run_id: str) -> str:
    """After the run, whatever happened: remove a failed run's staging and let go of the date.

    A publish that started is left for the next run of the date to complete. Idempotent, and
    never takes a date another run holds. Returns what it did, in a few words."""
    with storage_errors():
        fs, layout, _ = destination(settings)
        lock = date_lock(settings, fs, layout, run_id, resume=True)
        holder = _holder(fs, layout, settings.date)
    if holder is None or holder != run_id:
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


def _stage_seconds(
    facts: dict[str, Any] | None, done: dict[str, Any], audited: dict[str, Any]
) -> dict[str, float]:
    """How long each stage before the publish took (the publish's own time is in the run's
    report: the manifest is written before it ends)."""
    found = {
        "plan": (facts or {}).get("seconds"),
        "process": done.get("seconds"),
        "audit": audited.get("seconds"),
    }
    return {stage: float(s) for stage, s in found.items() if s is not None}


def _holder(fs: Any, layout: Layout, date: dt.date) -> str | None:
    holder = holder_of(fs, layout.lock(date))
    return holder.run_id if holder else None


# --- the Dask part ---------------------------------------------------------------------------
@contextmanager
def _performance_report(
    settings: Settings, fs: Any, layout: Layout, ctx: TaskContext
) -> Iterator[list[dict[str, Any]]]:
    """Record Dask's performance report of the block (task stream, worker profiles, bandwidth)
    into the run's staging, as a self-contained HTML page; its manifest entry is added to the
    list yielded. Only a block that succeeds gets one; a report that cannot be made is a
    warning, never a failed run."""
    kept: list[dict[str, Any]] = []
    if not settings.performance_report:
        yield kept
        return
    tmp = None
    try:
        tmp = tempfile.mkdtemp(prefix="events-lake-")
        path = os.path.join(tmp, "dask-performance.html")
        recorder = performance_report(filename=path, mode="inline")
        recorder.__enter__()
    except Exception as e:
        log.warning("no Dask performance report: %s: %s", type(e).__name__, e)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        tmp = None
    if tmp is None:  # outside the handler: the block's own errors are not chained to it
        yield kept
        return
    try:
        yield kept
        began = time.perf_counter()
        try:
            recorder.__exit__(None, None, None)
            with open(path, "rb") as f:
                data = f.read()
            kind = reports.DASK_PERFORMANCE
            kept.append(
                reports.write(
                    fs, layout, settings.date, ctx.run_id, tag=ctx.tag, kind=kind, data=data
                )
            )
            log.info("Dask performance report in %.2f s", time.perf_counter() - began)
        except Exception as e:
            log.warning("no Dask performance report: %s: %s", type(e).__name__, e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _process(
    client: Client,
    pieces: Sequence[Piece],
    ctx: TaskContext,
    on_progress: Progress | None,
    attempt: int = 1,
) -> list[PieceResult]:
    """One lazy task per piece, computed once; progress logged every 10 s and at the end.

    Task keys name the attempt: the scheduler may still hold the failed tasks of an earlier
    attempt under their keys, and would hand back their errors instead of running the new plan.
    """
    client.register_plugin(WarmUp(ctx.date))  # every worker, before its task threads start
    tasks = [
        dask.delayed(process_piece, pure=False)(
            piece, ctx, dask_key_name=f"piece-{piece.index:05d}-{ctx.run_id}-{attempt}"
        )
        for piece in pieces
    ]
    futures = client.compute(tasks)  # a lost worker's task reruns (task_retries)
    results: list[PieceResult] = []
    meter = ProgressMeter(total=len(futures), started=time.monotonic())
    try:
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            if on_progress is not None:
                on_progress(len(results), len(futures), result)
            log.debug(
                "piece %s: %d rows (%d rejected) in %.1f s",
                result.piece,
                result.rows_read,
                result.rows_rejected,
                result.seconds,
            )
            line = meter.add(result.rows_read, time.monotonic())
            if line:
                log.info("%s", line)
    except (KilledWorker, FutureCancelledError) as e:
        raise TransientError(f"a Dask worker was lost: {e}") from e
    finally:
        client.cancel(futures)
    return results


def _merge(
    client: Client, fs: Any, layout: Layout, merges: Sequence[Merge], ctx: TaskContext
) -> list[tuple[Merge, FileInfo]]:
    """Merge the pieces' small files, one task per merged file; then delete the merged ones (a
    process that dies first leaves them behind: its staging is never published, see the audit)."""
    if not merges:
        return []
    began = time.perf_counter()
    tasks = [
        dask.delayed(merge_task, pure=False)(m, ctx, dask_key_name=f"merge-{i:05d}-{ctx.run_id}")
        for i, m in enumerate(merges)
    ]
    futures = client.compute(tasks)
    try:
        written: list[FileInfo] = client.gather(futures)
    except (KilledWorker, FutureCancelledError) as e:
        raise TransientError(f"a Dask worker was lost: {e}") from e
    finally:
        client.cancel(futures)
    events_dir, rejected_dir = layout.staged(ctx.date, ctx.run_id)
    fs.rm(
        [
            f"{events_dir if m.dataset == EVENTS else rejected_dir}/{f.path}"
            for m in merges
            for f in m.sources
        ]
    )
    log.info(
        "merged %d small files into %d in %.1f s",
        sum(len(m.sources) for m in merges),
        len(merges),
        time.perf_counter() - began,
    )
    return list(zip(merges, written, strict=True))


# --- the run's limits --------------------------------------------------------------------------
def _top_reasons(totals: RunTotals) -> str:
    top = sorted(totals.rejected_by_reason.items(), key=lambda kv: -kv[1])[:3]
    return ", ".join(f"{k}={v}" for k, v in top) or "none"


def check_totals(totals: RunTotals, settings: Settings) -> None:
    if len(totals.valid_by_event) > settings.max_event_names:
        raise too_many_event_names(
            settings.date,
            len(totals.valid_by_event),
            settings.max_event_names,
            totals.valid_by_event,
        )
    if totals.rows_valid == 0 and not settings.allow_empty:
        raise InputError(
            f"the source has no valid rows for {settings.date} ({totals.rows_read} read; "
            f"rejected: {_top_reasons(totals)}); nothing published "
            "(pass --allow-empty to publish an empty day)"
        )
    if (
        totals.rows_read
        and totals.rows_rejected / totals.rows_read > settings.max_rejected_fraction
    ):
        share = totals.rows_rejected / totals.rows_read
        raise AuditError(
            f"{share:.1%} of rows were rejected, above max_rejected_fraction "
            f"{settings.max_rejected_fraction:.1%}; nothing published. Top reasons: "
            + _top_reasons(totals)
        )
