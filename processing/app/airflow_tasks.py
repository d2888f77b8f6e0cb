"""What each task of the Airflow DAG does (``dags/events_daily.py`` only wires them).

Every task builds its settings from the environment (``PROCESSING_*``, from the ConfigMap), the
date from the run (the ``date`` param of a manual run, else the run's data interval), and the
pipeline's run id from the DAG run (its id and how many times it was cleared: a cleared run is a
new attempt at the date, a retried task is the same one). Tasks exchange small facts only.

A failure that a retry cannot cure (bad configuration, bad input, a failed audit) fails the task
at once instead of spending its retries; transient ones are retried with backoff.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from processing.logic.completeness import Wait
from processing.logic.layout import check_run_id
from processing.spec.errors import DateLockedError, PipelineError
from processing.spec.settings import Settings, parse_date

log = logging.getLogger(__name__)


def run_date(context: Mapping[str, Any]) -> dt.date:
    """The date a run processes: its ``date`` param, else the start of its data interval.

    A scheduled or backfill run's logical date is the start of its data interval (D 02:00 for
    D). A run given another logical date (``airflow dags trigger --logical-date D``, ``airflow
    dags test events_daily D``) has the data interval that ends there, which starts on an
    earlier day: such a run is refused, saying how to name the date, instead of processing a
    day nobody asked for."""
    chosen = (context.get("params") or {}).get("date")
    if chosen:
        return parse_date(str(chosen))
    start = context.get("data_interval_start")
    if start is None:
        raise _fail("a manual run needs a date: trigger it with the param date=YYYY-MM-DD")
    day = start.date()
    logical = context.get("logical_date")
    if logical is not None and logical != start:
        asked = logical.date().isoformat()
        raise _fail(
            f"this run's logical date {logical.isoformat()} is not the start of its data "
            f"interval ({start.isoformat()}): it would process {day}, not {asked}. Name the "
            f'date instead: airflow dags trigger events_daily --conf \'{{"date": "{asked}"}}\' '
            "(or the param date in the UI); a range: airflow backfill create (see the DAG's doc)"
        )
    return day


def pipeline_run_id(context: Mapping[str, Any]) -> str:
    """``<DAG run id>-c<times cleared>``, made safe for paths: stable across a task's retries,
    new when a person clears the run to process the date again."""
    dag_run = context["dag_run"]
    return check_run_id(f"{_dag_run_base(context)}-c{getattr(dag_run, 'clear_number', 0) or 0}")


def _dag_run_base(context: Mapping[str, Any]) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(context["dag_run"].run_id)).strip("-.")
    return (safe or "run")[:70]


def earlier_attempt(context: Mapping[str, Any], holder_run_id: str) -> bool:
    """Whether ``holder_run_id`` is an earlier attempt of this DAG run (cleared since)."""
    base, _, clears = holder_run_id.rpartition("-c")
    return (
        base == _dag_run_base(context)
        and clears.isdigit()
        and holder_run_id != pipeline_run_id(context)
    )


def settings_for(context: Mapping[str, Any]) -> Settings:
    return Settings.load(os.environ, date=run_date(context), run_id=pipeline_run_id(context))


def _fail(message: str) -> Exception:
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(message)


@contextlib.contextmanager
def _outcome() -> Iterator[None]:
    """Errors a retry cannot cure fail the task at once (no retries spent on them)."""
    try:
        yield
    except PipelineError as e:
        if e.retryable or isinstance(e, DateLockedError):  # another run may finish meanwhile
            raise
        raise _fail(f"{type(e).__name__}: {e}") from e


def day_complete(context: Mapping[str, Any]) -> Wait:
    """Whether the run's date is complete in its source (a BigQuery table has a row at its
    watermark; any other source is), and what the DAG's ``wait_for_day`` does next."""
    from processing.adapters.sources.bigquery import BigQuerySource
    from processing.app.context import source_for
    from processing.logic import completeness

    with _outcome():
        settings = settings_for(context)
        date = settings.date
        mark = completeness.watermark(date, settings.day_complete_lateness_seconds)
        complete = True
        if settings.day_complete_check == "watermark":
            source = source_for(settings)
            if isinstance(source, BigQuerySource):
                complete = source.has_rows_from(mark)
    return completeness.next_step(
        date,
        complete,
        dt.datetime.now(dt.UTC),
        lateness_seconds=settings.day_complete_lateness_seconds,
        timeout_seconds=settings.day_complete_timeout_seconds,
        poll_seconds=settings.day_complete_poll_seconds,
    )


def plan(context: Mapping[str, Any]) -> dict[str, Any]:
    """Take the date, clear failed runs' staging, plan the read (and pin the snapshot)."""
    from processing.app import stages

    with _outcome():
        settings = settings_for(context)
        _release_earlier_attempt(context, settings)
        record, _ = stages.begin(settings, pipeline_run_id(context))
    log.info("planned %s: %s pieces, about %s bytes", record.date, record.pieces,
             record.estimated_bytes)  # fmt: skip
    facts = record.facts()
    return {k: facts[k] for k in ("run_id", "date", "pieces", "estimated_bytes", "snapshot_time")}


def _release_earlier_attempt(context: Mapping[str, Any], settings: Settings) -> None:
    """A person cleared this run while an earlier attempt held the date: that attempt is over
    (its tasks were stopped), so its lock and staging go now instead of after its expiry."""
    from processing.adapters.date_lock import holder_of
    from processing.app import stages
    from processing.app.context import destination

    fs, layout, _ = destination(settings)
    holder = holder_of(fs, layout.lock(settings.date))
    if holder is not None and earlier_attempt(context, holder.run_id):
        log.warning("releasing the date from %s, an earlier attempt of this run", holder.run_id)
        stages.finish(settings.replace(run_id=holder.run_id), holder.run_id)


def create_cluster(context: Mapping[str, Any], planned: Mapping[str, Any]) -> dict[str, Any]:
    """The run's Dask cluster: a DaskCluster sized from the plan, or (``--cluster local``)
    none: the process task then starts a LocalCluster of its own."""
    with _outcome():
        settings = settings_for(context)
        if settings.cluster == "local":
            log.info("cluster local: the process task starts a LocalCluster")
            return {"kind": "local", "name": None, "scheduler": None, "dashboard": None}
        from dask.utils import parse_bytes

        from processing.adapters import kube_cluster
        from processing.logic.cluster_plan import cluster_name, workers_for

        assert settings.cluster_spec is not None  # checked by Settings
        name = cluster_name(pipeline_run_id(context), settings.date)
        workers = workers_for(
            int(planned.get("estimated_bytes") or 0),
            parse_bytes(settings.cluster_bytes_per_worker),
            settings.cluster_min_workers,
            settings.cluster_max_workers,
        )
        spec = kube_cluster.cluster_spec(
            kube_cluster.load_spec(settings.cluster_spec),
            name,
            max(workers, 1),
            image=settings.cluster_image,
            labels={"events-lake/date": settings.date.isoformat()},
        )
        from processing.app.context import date_lock, destination

        fs, layout, _ = destination(settings)  # the date stays the run's while the cluster starts
        lock = date_lock(settings, fs, layout, pipeline_run_id(context), resume=True)
        with lock.held(release=False):
            info = kube_cluster.create(
                spec, settings.cluster_namespace, settings.cluster_min_workers, workers
            )
    log.info("Dask dashboard: %s", info.dashboard)
    return {"kind": "kubernetes", **dataclasses.asdict(info)}


def process(context: Mapping[str, Any], cluster: Mapping[str, Any]) -> dict[str, Any]:
    """Read every piece on the run's cluster and write it to the run's staging."""
    from processing.app import stages

    with _outcome():
        ti = context.get("ti")
        done = stages.process(
            settings_for(context),
            pipeline_run_id(context),
            scheduler=cluster.get("scheduler"),
            attempt=int(getattr(ti, "try_number", 1) or 1),
        )
    return done


def audit(context: Mapping[str, Any]) -> dict[str, Any]:
    from processing.app import stages

    with _outcome():
        return stages.audit(settings_for(context), pipeline_run_id(context))


#: The alias through which publish emits the lake's Asset (``<dest>/events``): the lake's
#: location is the task's configuration, known when it runs, not when the DAG file is parsed.
#: Downstream DAGs schedule on ``AssetAlias(PUBLISHED_ALIAS)`` (dags/events_published_example.py).
PUBLISHED_ALIAS = "events-lake-published"


def publish(context: Mapping[str, Any]) -> dict[str, Any]:
    """Publish the date; emit the lake's Asset event (through the task's outlet alias) with the
    date, the run and its row counts as extra."""
    from processing.app import stages

    with _outcome():
        settings = settings_for(context)
        report = stages.publish(settings, pipeline_run_id(context))
    m = report.manifest
    log.info("published %s: %s", m.get("date"), report.manifest_path)
    if report.quality_report:
        log.info("quality report: %s", report.quality_report)
    warnings = [f for f in report.findings if f["severity"] == "warning"]  # logged by publish
    facts = {
        "date": m.get("date"),
        "run_id": m.get("run_id"),
        "publish_id": m.get("publish_id"),
        "manifest": report.manifest_path,
        "quality_report": report.quality_report,
        "quality_warnings": len(warnings),
        "rows_read": m.get("rows_read"),
        "rows_valid": m.get("rows_valid"),
        "rows_rejected": m.get("rows_rejected"),
        "publish_window_seconds": round(report.publish_window_seconds, 3),
    }
    _emit_asset(context, lake_asset_uri(settings.dest), facts)
    return facts


def lake_asset_uri(dest: str) -> str:
    """The Asset of a lake: its ``events`` table, as a URI (``s3://bucket/prefix/events``,
    ``file:///path/events``), without any credentials the destination's URL carries."""
    from processing.adapters.storage import is_local, local_path, redact_url

    if is_local(dest) or dest.startswith("file:"):
        return "file://" + local_path(dest).rstrip("/") + "/events"
    scheme, _, rest = redact_url(dest).rstrip("/").partition("://")
    scheme = "s3" if scheme in {"s3a", "s3n"} else scheme  # one lake, one Asset
    return f"{scheme}://{rest}/events"


def _emit_asset(context: Mapping[str, Any], uri: str, facts: Mapping[str, Any]) -> None:
    """Add the lake's Asset event to the task's outlet alias (nothing outside a task run)."""
    outlet_events = context.get("outlet_events")
    if outlet_events is None:
        return
    from airflow.sdk import Asset, AssetAlias

    extra = {k: facts[k] for k in ("date", "run_id", "publish_id", "manifest", "rows_read",
                                   "rows_valid", "rows_rejected", "quality_warnings")}  # fmt: skip
    outlet_events[AssetAlias(PUBLISHED_ALIAS)].add(Asset(uri), extra=extra)
    log.info("asset event: %s (%s, run %s)", uri, facts["date"], facts["run_id"])


def delete_cluster(context: Mapping[str, Any], cluster: Mapping[str, Any]) -> str:
    """Teardown: delete the run's DaskCluster (idempotent; nothing to do for a local one)."""
    if cluster.get("kind") != "kubernetes" or not cluster.get("name"):
        return "no Dask cluster to delete (local)"
    from processing.adapters import kube_cluster

    with _outcome():
        return kube_cluster.delete(str(cluster["name"]), cluster.get("namespace"))


def finish(context: Mapping[str, Any]) -> str:
    """Teardown: let go of the date; a run that failed leaves no staging behind."""
    from processing.app import stages

    with _outcome():
        outcome = stages.finish(settings_for(context), pipeline_run_id(context))
    log.info("%s", outcome)
    return outcome


def expire(context: Mapping[str, Any]) -> dict[str, Any]:
    """The DAG's last task: the lake's retention (``PROCESSING_KEEP_DAYS``, and
    ``PROCESSING_REJECTED_KEEP_DAYS``), as ``python -m processing expire`` does it; nothing
    without it.

    The cutoff is today's (UTC), not the run's date, and the run's own date is spared: a
    backfill of a date already past retention publishes it, emits its Asset, and keeps it until
    the next run's expire removes it (a warning says so), so a downstream DAG reading it is not
    cut short; raise the retention before backfilling dates older than it. A date another run
    holds (a rerun, the run of the next date expiring the same dates) is skipped and left to
    the next run's expire, without failing this one."""
    from processing.app.retention import expire as expire_dates

    with _outcome():
        settings = settings_for(context)
        if settings.keep_days is None:
            log.info("no retention configured (PROCESSING_KEEP_DAYS is not set): nothing expires")
            return {"configured": False, "expired": [], "rejected_expired": [], "skipped": []}
        done = expire_dates(settings, dry_run=False, spare=settings.date)
    for line in done.lines():
        log.info("%s", line)
    for skipped in done.skipped:
        log.warning("%s: left for the next run's expire", skipped.line(dry_run=False))
    acted = [d for d in done.dates if d.paths and not d.skipped]
    return {
        "configured": True,
        "expired": [str(d.date) for d in acted if d.whole],
        "rejected_expired": [str(d.date) for d in acted if not d.whole],
        "skipped": [str(d.date) for d in done.skipped],
    }


def notify_failure(context: Mapping[str, Any]) -> list[str]:
    """Callback of a task that failed for good: a notice to the channels whose Airflow
    connection is defined (``processing.app.notify``); returns where it went."""
    from processing.app.notify import DateNotifier

    try:
        notifier = DateNotifier("failed", settings_for(context))
        notifier(context)
        return notifier.sent
    except Exception:  # a callback must never hide the task's own failure
        log.warning("could not send the failure notice", exc_info=True)
        return []


def notify_published(context: Mapping[str, Any]) -> list[str]:
    """Callback of publish: a notice if the date had failed before."""
    from processing.app.notify import DateNotifier

    try:
        notifier = DateNotifier("published", settings_for(context))
        notifier(context)
        return notifier.sent
    except Exception:
        log.warning("could not send the recovery notice", exc_info=True)
        return []
