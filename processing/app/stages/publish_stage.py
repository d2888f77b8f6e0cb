"""``publish``: the run's quality report, then its audited staging made the date's version."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from processing.adapters import metrics_push, reports
from processing.adapters import publish as wap
from processing.adapters.date_lock import DateLock
from processing.adapters.storage import redact_url
from processing.app.context import register_in_catalog, url_of, user_id_key_id, utcnow
from processing.app.stages.audit_stage import processed
from processing.app.stages.records import AuditRecord, PlanRecord, ProcessRecord
from processing.app.stages.scope import Scope, stage
from processing.logic import quality, quality_html, run_metrics
from processing.logic.glue_catalog import TableRegistration
from processing.logic.manifest import RunTotals, build_manifest
from processing.spec.errors import LockLostError, PipelineError
from processing.spec.settings import Settings

log = logging.getLogger(__name__)


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
    #: Dask's performance report of the run (task stream, worker profiles), beside it
    performance_report: str | None = None
    #: what the run found and repaired on its way: a damaged published version it replaced, an
    #: interrupted publish it completed or abandoned (one sentence each)
    notices: tuple[str, ...] = ()
    #: the version this run replaced (run id and counts), ``{}`` when the date had none, None
    #: when not known (a retried publish); and the command that publishes it again
    replaced: Mapping[str, Any] | None = None
    rollback_command: str | None = None
    #: what registering the date in the Glue Data Catalog did, table by table (none without
    #: ``--glue-database``)
    catalog: tuple[TableRegistration, ...] = ()


def publish(
    settings: Settings,
    run_id: str,
    *,
    lock: DateLock | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
) -> RunReport:
    """Write the run's quality report, publish the audited staging, register the published
    version in the Glue Data Catalog (with ``--glue-database``), then let go of the date.
    Repeatable: a publish interrupted half way is completed; one that already completed is
    reported, and registered again (a retry repairs a failed registration). A registration that
    fails is raised once the date is published and let go of, saying so."""
    report: dict[str, Any] | None = None
    replaced: Mapping[str, Any] | None = None
    catalog: tuple[TableRegistration, ...] = ()
    unregistered: PipelineError | None = None
    with stage(settings, run_id, lock) as scope:
        fs, layout, held, date = scope.fs, scope.layout, scope.lock, settings.date
        facts = scope.records.plan()
        kept = scope.records.processed()
        staging_id = kept.staging_id if kept else run_id
        dashboard = kept.dashboard if kept else None
        notices = list(facts.notices if facts else ())
        open_intent = held.intent
        if open_intent is not None and open_intent.staging_id == staging_id:
            # a retry after the publish began (this task died, or lost the date and got it
            # back): complete it, or find it abandoned
            notices += wap.resolve(fs, layout, date, held).notices
            manifest = wap.published_manifest(fs, layout, date) or {}
            window = 0.0
            if manifest.get("publish_id") != open_intent.publish_id:
                raise LockLostError(
                    f"the publish of run {staging_id} was abandoned (its staging lost files); "
                    f"{date} holds run {manifest.get('run_id')}"
                )
        else:
            if open_intent is not None:  # an earlier attempt's: resolve it first
                notices += wap.resolve(fs, layout, date, held).notices
            published = wap.published_manifest(fs, layout, date)
            if published and published.get("run_id") in {run_id, staging_id}:
                manifest, window = published, 0.0  # a retry after the publish: report it
            else:
                replaced = _facts(published) if published else {}
                manifest, window, report, found = _publish_staging(scope, settings, clock=clock)
                notices += found
        if report is None:  # a retried publish: the report is the published one
            report = _published_report(scope, date, manifest)
        try:  # under the date's lock: no other publish of the date registers meanwhile
            catalog = register_in_catalog(
                settings,
                date,
                manifest,
                done=f"{date} is published (run {manifest.get('run_id')}) and readable",
            )
        except PipelineError as e:
            unregistered = e
        scope.records.forget()
        if lock is None:
            held.release()
    for notice in notices:
        log.warning("%s: %s", date, notice)
    metrics_push.push(
        settings.pushgateway,
        date,
        run_metrics.success(
            manifest,
            window,
            time.time(),
            volume_ratios=quality.volume_ratios(report) if report else None,
        ),
        replace=True,
        password_file=settings.pushgateway_password_file,
    )
    if unregistered is not None:  # the date is published: only the catalog is behind
        raise unregistered
    html = reports.entry_of(manifest, reports.QUALITY_HTML)
    dask = reports.entry_of(manifest, reports.DASK_PERFORMANCE)
    events_date = layout.events_date(date)
    return RunReport(
        manifest=manifest,
        events_path=url_of(settings.dest, events_date, layout.root),
        rejected_path=url_of(settings.dest, layout.rejected_date(date), layout.root),
        manifest_path=url_of(settings.dest, layout.manifest(date), layout.root),
        dashboard=dashboard,
        publish_window_seconds=window,
        quality_report=url_of(settings.dest, f"{events_date}/{html['path']}", layout.root)
        if html
        else None,
        findings=tuple(report["findings"]) if report else ((_UNREAD_REPORT,) if html else ()),
        notices=tuple(notices),
        performance_report=url_of(settings.dest, f"{events_date}/{dask['path']}", layout.root)
        if dask
        else None,
        replaced=replaced,
        rollback_command=f"python -m processing rollback --date {date} --dest "
        + shlex.quote(redact_url(settings.dest)),
        catalog=catalog,
    )


def _facts(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What a summary says of a version it replaced."""
    keys = ("run_id", "rows_read", "rows_valid", "rows_rejected")
    return {k: manifest.get(k) for k in keys}


def _publish_staging(
    scope: Scope, settings: Settings, *, clock: Callable[[], dt.datetime]
) -> tuple[dict[str, Any], float, dict[str, Any] | None, list[str]]:
    """Build the run's manifest and quality report, and publish its audited staging. Returns
    the published manifest, the window, the report and what the publish found."""
    fs, layout, date = scope.fs, scope.layout, settings.date
    manifest, report, done = _staged_version(scope, settings, clock=clock)
    outcome = wap.publish(fs, layout, date, done.staging_id, manifest, fence=scope.lock)
    # what was switched (a report lost on the way is not listed), with its publish id
    published = wap.published_manifest(fs, layout, date) or manifest
    return published, outcome.window, report, outcome.notices


def report_for_inspection(
    scope: Scope, settings: Settings, *, clock: Callable[[], dt.datetime] = utcnow
) -> str | None:
    """A run that failed after ``process`` (its audit refused it, or a later stage failed):
    its quality report, written into its staging beside its rejected rows so people can see
    what it found; the report's URL (None if it could not be made)."""
    manifest, _, done = _staged_version(scope, settings, clock=clock)
    html = reports.entry_of(manifest, reports.QUALITY_HTML)
    if html is None:
        return None
    events, _ = scope.layout.staged(settings.date, done.staging_id)
    return url_of(settings.dest, f"{events}/{html['path']}", scope.layout.root)


def _staged_version(
    scope: Scope, settings: Settings, *, clock: Callable[[], dt.datetime]
) -> tuple[dict[str, Any], dict[str, Any] | None, ProcessRecord]:
    """The staged version's manifest, with its quality report written into the staging."""
    date = settings.date
    facts = scope.records.plan()
    done = processed(scope.records)
    totals = done.totals()
    if not done.results and settings.user_id_key_file:  # a day of no piece: still the run's key
        totals = dataclasses.replace(totals, user_id_key_id=user_id_key_id(settings))
    manifest = build_manifest(
        run_id=done.staging_id,
        date=date,
        source=facts.source if facts else redact_url(settings.source),
        totals=totals,
        started_at=dt.datetime.fromisoformat(facts.started_at) if facts else clock(),
        finished_at=clock(),
        extra={
            "tag": done.tag,
            "pieces": done.pieces,
            "bytes_read": done.bytes_read,
            "source_details": dict(done.source_details),
            "stage_seconds": _stage_seconds(facts, done, scope.records.audited()),
        },
    )
    report, written = _quality_report(
        scope, settings, done.staging_id, done.tag, manifest=manifest, totals=totals, now=clock()
    )
    manifest["reports"] = [*map(dict, done.reports), *written]
    return manifest, report, done


def _stage_seconds(
    facts: PlanRecord | None, done: ProcessRecord, audited: AuditRecord | None
) -> dict[str, float]:
    """How long each stage before the publish took (the publish's own time is in the run's
    report: the manifest is written before it ends)."""
    found = {
        "plan": facts.seconds if facts else None,
        "process": done.seconds,
        "audit": audited.seconds if audited else None,
    }
    return {stage: float(s) for stage, s in found.items() if s is not None}


_UNREAD_REPORT = {
    "severity": "info",
    "check": "report",
    "message": "the published quality report could not be read (the log says why)",
}


def _quality_report(
    scope: Scope,
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
    fs, layout, date = scope.fs, scope.layout, settings.date
    try:
        history = reports.history(fs, layout, date)
        report = quality.report(manifest, totals.profile, history, now)
        page = quality_html.render(report).encode()
        written = [
            reports.write(fs, layout, date, staging_id, tag=tag, kind=kind, data=data)
            for kind, data in (
                (reports.QUALITY_JSON, json.dumps(report, indent=1).encode()),
                (reports.QUALITY_HTML, page),
            )
        ]
    except Exception as e:
        log.warning("no quality report for %s: %s: %s", date, type(e).__name__, e)
        return None, []
    log.info("quality report of %s in %.2f s", date, time.perf_counter() - began)
    for finding in report["findings"]:
        log.log(
            logging.WARNING if finding["severity"] == "warning" else logging.INFO,
            "quality of %s: %s",
            date,
            finding["message"],
        )
    return report, written


def _published_report(
    scope: Scope, date: dt.date, manifest: dict[str, Any]
) -> dict[str, Any] | None:
    """The quality report published with ``manifest`` (a retried publish reports it), or None
    if it cannot be read: the date is published, a report is never worth failing it."""
    try:
        data = reports.read_report(scope.fs, scope.layout, date, manifest)
        return None if data is None else quality.parse(data, date)
    except Exception as e:
        log.warning("could not read the published quality report of %s: %s", date, e)
        return None
