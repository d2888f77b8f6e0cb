"""``audit``: reconcile the counts, apply the run's limits and check the staged files."""

from __future__ import annotations

import time
from typing import Any

from processing.adapters.audit import audit as audit_staging
from processing.adapters.date_lock import DateLock
from processing.app.piece_task import too_many_event_names
from processing.app.stages.records import AuditRecord, ProcessRecord, RunRecords
from processing.app.stages.scope import stage
from processing.logic.manifest import RunTotals
from processing.spec import rules as r
from processing.spec import schema as s
from processing.spec.errors import AuditError, ConfigError, InputError
from processing.spec.settings import Settings


def audit(settings: Settings, run_id: str, *, lock: DateLock | None = None) -> dict[str, Any]:
    """Reconcile the counts, apply the run's limits and check the staged files. Returns a few
    facts for XCom and logs."""
    began = time.perf_counter()
    with stage(settings, run_id, lock) as scope:
        done = processed(scope.records)
        totals = done.totals()
        check_totals(totals, settings)
        audit_staging(scope.fs, scope.layout, settings.date, done.staging_id, totals)
        scope.records.save(AuditRecord(seconds=round(time.perf_counter() - began, 3)))
    return {
        "rows_read": totals.rows_read,
        "rows_valid": totals.rows_valid,
        "rows_rejected": totals.rows_rejected,
        "files": len(totals.files),
        "bytes": totals.bytes_written,
    }


def processed(records: RunRecords) -> ProcessRecord:
    """What ``process`` staged for the run, or an error saying it has not run."""
    done = records.processed()
    if done is None:
        raise ConfigError(
            f"run {records.run_id} of {records.date} has not processed its pieces (in Airflow, "
            "a cleared run is a new attempt at the date: clear it from plan, or the whole run)"
        )
    return done


def _top_reasons(totals: RunTotals) -> str:
    top = sorted(totals.rejected_by_reason.items(), key=lambda kv: -kv[1])[:3]
    return ", ".join(f"{k}={v}" for k, v in top) or "none"


def _wrong_date_hint(totals: RunTotals, settings: Settings) -> str:
    """When most rows read are of another day than the run's: say so (a wrong --date, or a
    source of another day), instead of letting it look like a day of bad data."""
    outside = totals.rejected_by_reason.get(r.reason(s.EVENT_DATETIME, r.OUTSIDE_RUN_DATE), 0)
    if not totals.rows_read or outside <= totals.rows_read / 2:
        return ""
    return (
        f"{outside:,} of the {totals.rows_read:,} rows read are of another date than "
        f"{settings.date}: check --date (or that the source holds that day)"
    )


def check_totals(totals: RunTotals, settings: Settings) -> None:
    """The run's limits: event names, an empty day, the share of rejected rows."""
    hint = _wrong_date_hint(totals, settings)
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
            f"rejected: {_top_reasons(totals)}); "
            + (
                f"{hint}; nothing published"
                if hint
                else "nothing published (pass --allow-empty to publish an empty day)"
            )
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
            + (f". {hint}" if hint else "")
        )
