"""``begin``: take the date, clear what failed runs left, plan the read."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

from processing.adapters import publish as wap
from processing.adapters.date_lock import DateLock
from processing.adapters.sources import Source, SourcePlan
from processing.adapters.storage import redact_url
from processing.app.context import source_for, user_id_key_id, utcnow
from processing.app.stages.records import PlanRecord
from processing.app.stages.scope import stage
from processing.spec.errors import ConfigError
from processing.spec.settings import Settings

log = logging.getLogger(__name__)


def begin(
    settings: Settings,
    run_id: str,
    *,
    lock: DateLock | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
) -> tuple[PlanRecord, tuple[Source, SourcePlan]]:
    """Take the date, clear what failed runs left, plan the read (pinning BigQuery's snapshot).

    Returns the plan's record (kept for the later stages) and the source with its plan."""
    began = time.perf_counter()
    refuse_a_partial_day(settings, clock())
    key_id = user_id_key_id(settings)  # a key that is missing or short: before the lock
    if key_id is not None:
        log.info("user ids are pseudonymised with the key of key id %s", key_id)
    with stage(settings, run_id, lock) as scope:
        prepared = wap.prepare(scope.fs, scope.layout, settings.date, run_id, scope.lock)
        for notice in prepared.notices:
            log.warning("%s: %s", settings.date, notice)
        source = source_for(settings)
        plan = source.plan(settings.date, settings.piece_rows)
        record = PlanRecord(
            run_id=run_id,
            date=settings.date.isoformat(),
            started_at=clock().isoformat(),
            source=redact_url(settings.source),
            pieces=len(plan.pieces),
            estimated_rows=plan.estimated_rows,
            estimated_bytes=plan.estimated_bytes,
            snapshot_time=plan.details.get("snapshot_time"),
            source_details=dict(plan.details),
            seconds=round(time.perf_counter() - began, 3),
            notices=tuple(prepared.notices),
            source_state=dict(plan.state),
        )
        scope.records.save(record)
    log.info(
        "run %s: %s -> %s, %d pieces",
        run_id,
        record.source,
        redact_url(settings.dest),
        len(plan.pieces),
    )
    return record, (source, plan)


def refuse_a_partial_day(settings: Settings, now: dt.datetime) -> None:
    """Today (UTC) or a later date is still being written: refused, unless asked for."""
    today = now.astimezone(dt.UTC).date()
    if settings.date >= today and not settings.allow_partial_day:
        when = "today" if settings.date == today else "in the future"
        raise ConfigError(
            f"{settings.date} is {when} (UTC {today}): its events are not all in yet, so it "
            "would be published partial. Run it after the day ends, or pass "
            "--allow-partial-day (PROCESSING_ALLOW_PARTIAL_DAY=true) to publish what is there"
        )
