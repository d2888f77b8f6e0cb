"""``process``: read every piece and write it to the run's staging, on the run's Dask cluster."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from processing.adapters import publish as wap
from processing.adapters.cluster import dashboard_link, dask_client
from processing.adapters.date_lock import DateLock
from processing.adapters.sources import BigQuerySource, Source, SourcePlan
from processing.app import resume
from processing.app.context import source_for, user_id_key_id, write_options
from processing.app.piece_task import TaskContext
from processing.app.stages.dask_work import (
    Progress,
    merge_small_files,
    performance_recorded,
    process_pieces,
)
from processing.app.stages.records import PlanRecord, ProcessRecord
from processing.app.stages.scope import attempts, discard_attempts, new_tag, stage
from processing.logic.compaction import plan_merges
from processing.logic.layout import check_run_id
from processing.spec.errors import ConfigError, SessionExpiredError
from processing.spec.settings import Settings, parse_instant

log = logging.getLogger(__name__)


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
    may still be running on a long-lived cluster, and must not write into this one's files.
    Returns a few facts for XCom and logs."""
    began = time.perf_counter()
    if scheduler:  # size the read for the run's cluster, not for this process's machine
        settings = settings.replace(scheduler=scheduler)
    with stage(settings, run_id, lock) as scope:
        fs, layout, date = scope.fs, scope.layout, settings.date
        facts = scope.records.plan()
        if facts is None:
            raise ConfigError(f"run {run_id} of {date} was not begun (or is finished)")
        source, plan = planned or _planned_again(settings, facts)
        staging_id = run_id if attempt <= 1 else check_run_id(f"{run_id[:70]}-a{attempt}")
        earlier = attempts(fs, layout, date, run_id, scope.lock)
        if staging_id in earlier:  # this very attempt ran before (a run again after a crash):
            # its tasks may still be writing there, so none of it is kept
            wap.discard_staging(fs, layout, date, staging_id)
            earlier.remove(staging_id)
        completed = resume.completed_pieces(fs, layout, date, earlier, plan.pieces)
        kept = resume.adopt(fs, layout, date, completed, staging_id)
        discard_attempts(fs, layout, date, run_id, scope.lock, keep=staging_id)
        if kept:
            log.info(
                "kept %d of %d pieces an earlier attempt completed (%s rows); reading the "
                "other %d", len(kept), len(plan.pieces), f"{sum(r.rows_read for r in kept):,}",
                len(plan.pieces) - len(kept),
            )  # fmt: skip
        done_keys = {c.piece.key for c in completed}
        remaining = [p for p in plan.pieces if p.key not in done_keys]
        ctx = _task_context(settings, staging_id, scope.options)
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
            recording = settings.performance_report
            try:
                with performance_recorded(recording, fs, layout, ctx) as performance:
                    results = kept + process_pieces(client, remaining, ctx, on_progress)
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
                plan = source.plan(date, settings.piece_rows)
                with performance_recorded(recording, fs, layout, ctx) as performance:
                    results = process_pieces(client, plan.pieces, ctx, on_progress, attempt=2)
                wap.discard_staging(fs, layout, date, stale)  # best effort
            merges = plan_merges(
                [f for r in results for f in r.files], settings.target_file_bytes, ctx.tag
            )
            merged = merge_small_files(client, fs, layout, merges, ctx)
        scope.records.save(
            ProcessRecord(
                staging_id=staging_id,
                tag=ctx.tag,
                pieces=len(plan.pieces),
                results=tuple(results),
                merges=tuple(merged),
                source_details=dict(plan.details),
                seconds=round(time.perf_counter() - began, 3),
                dashboard=dashboard,
                reports=tuple(performance),
                bytes_read=plan.details.get("estimated_bytes", plan.estimated_bytes),
            )
        )
    return {
        "staging_id": staging_id,
        "pieces": len(results),
        "rows_read": sum(r.rows_read for r in results),
        "rows_valid": sum(r.rows_valid for r in results),
        "rows_rejected": sum(r.rows_rejected for r in results),
        "files": sum(len(r.files) for r in results) - sum(len(m.sources) - 1 for m in merges),
        "dashboard": dashboard,
    }


def _task_context(settings: Settings, staging_id: str, options: dict[str, Any]) -> TaskContext:
    """What every task of the attempt needs (plain, picklable settings)."""
    return TaskContext(
        date=settings.date,
        run_id=staging_id,
        dest=settings.dest,
        batch_rows=settings.batch_rows,
        write=write_options(settings, dictionary_user_ids=settings.user_id_key_file is not None),
        tag=new_tag(),
        max_event_names=settings.max_event_names,
        retries=settings.task_retries,
        storage_options=options,
        user_id_key_file=settings.user_id_key_file,
        user_id_key_id=user_id_key_id(settings),
    )


def _planned_again(settings: Settings, facts: PlanRecord) -> tuple[Source, SourcePlan]:
    """The read ``begin`` planned: BigQuery's session again (its streams are the pieces an
    earlier attempt may have completed), or the files planned again at the pinned snapshot."""
    snapshot = facts.snapshot_time
    pinned = settings.replace(snapshot_time=parse_instant(snapshot)) if snapshot else settings
    source = source_for(pinned)
    if facts.source_state and isinstance(source, BigQuerySource):
        return source, source.resume(facts.source_state, facts.source_details)
    return source, source.plan(settings.date, settings.piece_rows)
