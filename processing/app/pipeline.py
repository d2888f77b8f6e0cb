"""The run for one date: plan, process on Dask, reconcile, audit, publish.

This module composes the pieces; the logic lives in ``processing.logic`` and the I/O in
``processing.adapters``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dask
from distributed import Client, as_completed
from distributed.client import FutureCancelledError
from distributed.scheduler import KilledWorker

from processing.adapters import publish as wap
from processing.adapters.cluster import dashboard_link, dask_client
from processing.adapters.date_lock import DateLock
from processing.adapters.sources import (
    BigQueryOptions,
    BigQuerySource,
    Piece,
    Source,
    open_source,
)
from processing.adapters.storage import (
    S3Options,
    filesystem,
    is_bad_request,
    redact_url,
    storage_options_for,
    transient_storage_errors,
)
from processing.adapters.writer import WriteOptions
from processing.app.piece_task import TaskContext, process_piece, warm_up
from processing.logic.bigquery import SCHEME
from processing.logic.layout import Layout, check_run_id, staged_date
from processing.logic.manifest import PieceResult, RunTotals, build_manifest, reconcile
from processing.spec.errors import (
    AuditError,
    ConfigError,
    DateLockedError,
    InputError,
    LockLostError,
    PipelineError,
    SessionExpiredError,
    TransientError,
)
from processing.spec.settings import Settings, parse_instant

log = logging.getLogger(__name__)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_run_id(date: dt.date, now: dt.datetime) -> str:
    return f"{date.isoformat()}_{now:%Y%m%dT%H%M%SZ}_{secrets.token_hex(3)}"


@dataclass(frozen=True)
class RunReport:
    manifest: dict[str, Any]
    events_path: str
    rejected_path: str
    manifest_path: str
    dashboard: str | None
    #: seconds during which a reader listing the date's prefix could see both versions' files
    publish_window_seconds: float = 0.0


def s3_options(settings: Settings) -> S3Options:
    return S3Options(
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        sse=settings.s3_sse,
        kms_key_id=settings.s3_kms_key_id,
        max_attempts=settings.s3_max_attempts,
    )


def destination(settings: Settings) -> tuple[Any, Layout, dict[str, Any]]:
    """The destination's filesystem, its layout and the fsspec options the workers use."""
    options = storage_options_for(settings.dest, settings.storage_options, s3_options(settings))
    fs, root = filesystem(settings.dest, options)
    return fs, Layout(root), options


def _top_reasons(totals: RunTotals) -> str:
    top = sorted(totals.rejected_by_reason.items(), key=lambda kv: -kv[1])[:3]
    return ", ".join(f"{k}={v}" for k, v in top) or "none"


def _check_totals(totals: RunTotals, settings: Settings) -> None:
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


def task_slots(settings: Settings) -> int:
    """Task threads of the run's cluster: the LocalCluster's, or those an existing scheduler's
    workers have now (an adaptive cluster that has none yet counts as a local one)."""
    cores = os.cpu_count() or 1
    if settings.scheduler:
        threads = _scheduler_threads(settings.scheduler)
        if threads:
            return threads
        log.warning(
            "the scheduler at %s has no workers yet: sizing the read for %d threads "
            "(set --bq-max-streams to choose)",
            settings.scheduler,
            cores,
        )
        return cores
    if settings.processes:
        return (settings.workers or cores) * (settings.threads_per_worker or 1)
    return (settings.workers or 1) * (settings.threads_per_worker or cores)


def _scheduler_threads(address: str) -> int:
    try:
        with Client(address, timeout="30s") as client:
            return sum(client.nthreads().values())
    except ValueError as e:
        raise ConfigError(f"--scheduler {address!r} is not an address: {e}") from e
    except (OSError, TimeoutError) as e:
        raise TransientError(f"cannot reach the Dask scheduler at {address}: {e}") from e


def source_for(settings: Settings) -> Source:
    """The source of ``settings``; a BigQuery one gets its options from the settings."""
    storage = storage_options_for(settings.source, settings.storage_options, s3_options(settings))
    if not settings.source.startswith(SCHEME):
        return open_source(settings.source, storage)
    options = BigQueryOptions(
        endpoint=settings.bq_endpoint,
        billing_project=settings.billing_project,
        time_column=settings.bq_time_column,
        compression=settings.bq_compression,
        max_streams=settings.bq_max_streams,
        slots=task_slots(settings),
        deadline_seconds=settings.bq_deadline_seconds,
        snapshot_time=settings.snapshot_time,
        usd_per_tib=settings.bq_usd_per_tib,
    )
    return open_source(settings.source, settings.storage_options, options)


def _lock(fs: Any, layout: Layout, date: dt.date, run_id: str, settings: Settings) -> DateLock:
    return DateLock(fs, layout.lock(date), run_id, settings.lock_ttl_seconds)


def run(
    settings: Settings,
    *,
    clock: Callable[[], dt.datetime] = _utcnow,
    on_progress: Callable[[int, int, PieceResult], None] | None = None,
) -> RunReport:
    """Process ``settings.date`` from ``settings.source`` into ``settings.dest`` and publish it."""
    started_at = clock()
    run_id = check_run_id(settings.run_id or new_run_id(settings.date, started_at))
    fs, layout, dest_options = destination(settings)
    with _lock(fs, layout, settings.date, run_id, settings).held() as lock:
        _storage(wap.prepare, fs, layout, settings.date, run_id)
        return _run_locked(
            settings,
            run_id=run_id,
            started_at=started_at,
            fs=fs,
            layout=layout,
            dest_options=dest_options,
            lock=lock,
            clock=clock,
            on_progress=on_progress,
        )


def _run_locked(
    settings: Settings,
    *,
    run_id: str,
    started_at: dt.datetime,
    fs: Any,
    layout: Layout,
    dest_options: dict[str, Any],
    lock: DateLock,
    clock: Callable[[], dt.datetime],
    on_progress: Callable[[int, int, PieceResult], None] | None,
) -> RunReport:
    source = source_for(settings)
    plan = source.plan(settings.date, settings.piece_rows)
    source_name, dest_name = redact_url(settings.source), redact_url(settings.dest)
    log.info("run %s: %s -> %s, %d pieces", run_id, source_name, dest_name, len(plan.pieces))
    ctx = TaskContext(
        date=settings.date,
        run_id=run_id,
        dest=settings.dest,
        batch_rows=settings.batch_rows,
        write=WriteOptions(
            row_group_rows=settings.row_group_rows,
            max_file_rows=settings.max_file_rows,
            max_buffered_rows=settings.max_buffered_rows,
            zstd_level=settings.zstd_level,
        ),
        storage_options=dest_options,
    )
    try:
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
                results = _process(client, plan.pieces, ctx, on_progress)
            except SessionExpiredError as e:  # BigQuery sessions last 6 h: read it all again
                if not isinstance(source, BigQuerySource):
                    raise
                log.warning("%s; planning again at the same snapshot and rereading", e)
                # Tasks of the first attempt may still be running (cancelling does not stop
                # them) and the new session cuts its streams differently: the second attempt
                # stages under its own run id, which also names its manifest and files.
                stale, run_id = run_id, check_run_id(f"{run_id[:72]}-replan")
                ctx = dataclasses.replace(ctx, run_id=run_id)
                source = source.at(parse_instant(plan.details["snapshot_time"]))
                plan = source.plan(settings.date, settings.piece_rows)
                results = _process(client, plan.pieces, ctx, on_progress, attempt=2)
                wap.discard_staging(fs, layout, settings.date, stale)  # best effort
        totals = reconcile(results)
        _check_totals(totals, settings)
        _storage(wap.audit, fs, layout, settings.date, run_id, totals)
        manifest = build_manifest(
            run_id=run_id,
            date=settings.date,
            source=source_name,
            totals=totals,
            started_at=started_at,
            finished_at=clock(),
            extra={"pieces": len(plan.pieces), "source_details": dict(plan.details)},
        )
        window = _storage(
            wap.publish, fs, layout, settings.date, run_id, manifest, check=lock.check
        )
    except LockLostError:
        raise  # the date is another run's now: leave everything to it
    except BaseException as e:
        if wap.publishing_started(fs, layout, settings.date, run_id):
            raise TransientError(
                f"the publish of {settings.date} was interrupted ({e}); the next run of the date "
                "completes it"
            ) from e
        wap.discard_staging(fs, layout, settings.date, run_id)
        raise
    root = layout.root
    return RunReport(
        manifest=manifest,
        events_path=_url(settings.dest, layout.events_date(settings.date), root),
        rejected_path=_url(settings.dest, layout.rejected_date(settings.date), root),
        manifest_path=_url(settings.dest, layout.manifest(settings.date), root),
        dashboard=dashboard,
        publish_window_seconds=window,
    )


def rollback(settings: Settings, clock: Callable[[], dt.datetime] = _utcnow) -> dict[str, Any]:
    """Publish the date's previous version again; the current one becomes the previous one (so
    a second rollback undoes the first). Returns the restored manifest."""
    rollback_id = f"rollback_{clock():%Y%m%dT%H%M%SZ}_{secrets.token_hex(3)}"
    fs, layout, _ = destination(settings)
    with _lock(fs, layout, settings.date, rollback_id, settings).held():
        return _storage(wap.rollback, fs, layout, settings.date, rollback_id)


def collect_garbage(
    settings: Settings, only: dt.date | None = None, clock: Callable[[], dt.datetime] = _utcnow
) -> list[str]:
    """For every date with staging or a lock (or only ``only``) that no live run holds: complete
    an interrupted publish, remove failed runs' staging, drop the dead run's lock. One line per
    date; dates locked by a live run are skipped."""
    fs, layout, _ = destination(settings)
    gc_id = f"gc_{clock():%Y%m%dT%H%M%SZ}_{secrets.token_hex(3)}"
    dates: set[dt.date] = set()
    for top in (layout.staging(), layout.lock(settings.date).rsplit("/", 1)[0]):
        if fs.exists(top):
            names = [e.removesuffix(".json") for e in fs.ls(top, detail=False)]
            dates.update(d for d in map(staged_date, names) if d is not None)
    if only is not None:
        dates &= {only}
    done = []
    for date in sorted(dates):
        try:
            with _lock(fs, layout, date, gc_id, settings).held():
                completed = _storage(wap.complete_interrupted, fs, layout, date)
                had_staging = _storage(wap.remove_staging, fs, layout, date)
            what = (
                "completed an interrupted publish"
                if completed
                else (
                    "removed failed runs' staging" if had_staging else "released a dead run's lock"
                )
            )
            done.append(f"{date}: {what}")
        except DateLockedError as e:
            done.append(f"{date}: skipped, {e}")
    return done


def _process(
    client: Client,
    pieces: Sequence[Piece],
    ctx: TaskContext,
    on_progress: Callable[[int, int, PieceResult], None] | None,
    attempt: int = 1,
) -> list[PieceResult]:
    """One lazy task per piece, computed once; progress logged as pieces finish.

    Task keys name the attempt: the scheduler may still hold the failed tasks of an earlier
    attempt under their keys, and would hand back their errors instead of running the new plan.
    """
    client.run(warm_up, ctx.date)  # once per worker, before its task threads start at once
    tasks = [
        dask.delayed(process_piece, pure=False)(
            piece, ctx, dask_key_name=f"piece-{piece.index:05d}-{ctx.run_id}-{attempt}"
        )
        for piece in pieces
    ]
    futures = client.compute(tasks)  # a lost worker's task reruns (task_retries)
    results: list[PieceResult] = []
    try:
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            if on_progress:
                on_progress(len(results), len(futures), result)
            log.info(
                "piece %d/%d %s: %d rows (%d rejected) in %.1f s",
                len(results),
                len(futures),
                result.piece,
                result.rows_read,
                result.rows_rejected,
                result.seconds,
            )
    except (KilledWorker, FutureCancelledError) as e:
        raise TransientError(f"a Dask worker was lost: {e}") from e
    finally:
        client.cancel(futures)
    return results


def _storage(step: Callable[..., Any], fs: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a write-audit-publish step; storage failures become one line with an exit code."""
    try:
        return step(fs, *args, **kwargs)
    except PermissionError as e:
        raise ConfigError(
            f"the destination refuses access ({e}): check --dest and its rights"
        ) from e
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
        raise AuditError(f"the destination changed under the run: {e}") from e
    except PipelineError:
        raise
    except Exception as e:
        if is_bad_request(e):
            raise ConfigError(f"the destination refuses the request ({e}): check --s3-*") from e
        if isinstance(e, transient_storage_errors()):
            raise TransientError(f"the destination failed: {e}") from e
        raise


def _url(dest: str, path: str, root: str) -> str:
    if "://" in dest and not dest.startswith("file://"):
        return dest.rstrip("/") + path[len(root.rstrip("/")) :]
    return path
