"""
### events_daily: one day of user-action events, from BigQuery to the S3 lake

Each run processes one UTC date **D** on a Dask cluster of its own:

`wait_for_day` (deferred until D is complete in BigQuery) -> `plan` (take the date's lock,
plan the BigQuery read, pin its snapshot) ->
`create_cluster` (setup: a DaskCluster named after the run, sized from the plan) ->
`process` (read the streams, validate, write Parquet to the run's staging) -> `audit` ->
`publish` (replace exactly date D; the previous version is kept for a rollback) ->
`delete_cluster` and `finish` (teardowns: they run whatever happened; a failed run stays failed);
after a publish, `expire` applies the lake's retention when `PROCESSING_KEEP_DAYS` is set (and
logs that nothing expires when it is not).

**Schedule**: at 02:00 UTC on D+1 for D. `wait_for_day` then waits until the table has a row
from D+1 00:00 plus `PROCESSING_DAY_COMPLETE_LATENESS_SECONDS` (2 h) on, looking every
`PROCESSING_DAY_COMPLETE_POLL_SECONDS` (600) and deferred in between (no worker slot held); if
D is still not complete `PROCESSING_DAY_COMPLETE_TIMEOUT_SECONDS` (12 h) after its end, it fails
and the failure notice is the alert. A rerun of a past date passes at once.

**Rerun a date** (same result as the scheduled run; the previous version stays rollback-able):
- UI: *Trigger DAG* with the param `date` = `YYYY-MM-DD`; or clear the whole run of that date
  (a cleared run is a new attempt at the date: clear it from `plan`, not from `audit` or
  `publish`, whose work depends on the run's own `process`).
- CLI: `airflow dags trigger events_daily --conf '{"date": "2023-10-23"}'`.
- A range, D1 to D2 included: `airflow backfill create --dag-id events_daily --from-date D1
  --to-date D2+1 --max-active-runs 2 --reprocess-behavior completed` (the run of D2 has the
  logical date D2 02:00, which `--to-date D2` would leave out; without the last flag the
  dates that already ran are skipped).
- Always name the date: a run given only a logical date (`--logical-date D`, `airflow dags
  test events_daily D`) would process the day of its data interval instead, and is refused.

**Downstream**: `publish` emits the lake's Asset (`<dest>/events`) through the alias
`events-lake-published`, with the date, run id, publish id and row counts as extra; schedule a
DAG on `AssetAlias("events-lake-published")` (example: `events_published_example`). Tools that
wait for a file find `events/event_date=D/_SUCCESS` once D is published (absent while it is
being replaced).

Undo a publish: `python -m processing rollback --date D --dest s3://...` (see the README).
All logic lives in the `processing` package; this file only wires the tasks.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, AssetAlias, CronDataIntervalTimetable, Param, task

from processing.app.day_sensor import DayCompleteSensor  # light: airflow.sdk only

#: publish emits the lake's Asset (<dest>/events) through this alias, with the date, the run
#: and its row counts as extra: schedule downstream DAGs on it (events_published_example.py)
PUBLISHED = AssetAlias("events-lake-published")


def _notify_failure(context):
    from processing.app import airflow_tasks

    airflow_tasks.notify_failure(context)


def _notify_published(context):
    from processing.app import airflow_tasks

    airflow_tasks.notify_published(context)


DEFAULT_ARGS = {
    "owner": "data-platform",
    "retries": 3,
    "retry_delay": dt.timedelta(minutes=2),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": dt.timedelta(minutes=30),
    "execution_timeout": dt.timedelta(hours=2),
    "on_failure_callback": _notify_failure,  # Slack, e-mail: Airflow connections (README)
}

with DAG(
    dag_id="events_daily",
    description="A day of user-action events from BigQuery to the S3 lake, on its own Dask cluster",
    schedule=CronDataIntervalTimetable("0 2 * * *", timezone="UTC"),
    start_date=dt.datetime(2023, 10, 1, 2, tzinfo=dt.UTC),
    catchup=False,  # past dates: backfill (see above), with its own concurrency limit
    max_active_runs=2,  # runs of different dates side by side; one date is locked by its run
    dagrun_timeout=dt.timedelta(hours=12),  # over 4 tries of process (2 h each) and backoff
    default_args=DEFAULT_ARGS,
    params={
        "date": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Date to (re)process",
            description="UTC date YYYY-MM-DD; empty: the run's data interval",
        )
    },
    tags=["events-lake", "bigquery", "s3", "dask"],
    doc_md=__doc__,
) as dag:
    # another run may hold the date (a rerun, a backfill): plan waits, retrying, up to ~2.5 h
    @task(retries=8, execution_timeout=dt.timedelta(minutes=15))
    def plan(**context):
        from processing.app import airflow_tasks

        return airflow_tasks.plan(context)

    @task(execution_timeout=dt.timedelta(minutes=30))
    def create_cluster(planned, **context):
        from processing.app import airflow_tasks

        return airflow_tasks.create_cluster(context, planned)

    @task
    def process(cluster, **context):
        from processing.app import airflow_tasks

        return airflow_tasks.process(context, cluster)

    @task(execution_timeout=dt.timedelta(minutes=30))
    def audit(**context):
        from processing.app import airflow_tasks

        return airflow_tasks.audit(context)

    @task(
        execution_timeout=dt.timedelta(minutes=30),
        on_success_callback=_notify_published,
        outlets=[PUBLISHED],
    )
    def publish(**context):
        from processing.app import airflow_tasks

        return airflow_tasks.publish(context)

    @task(retries=5, execution_timeout=dt.timedelta(minutes=10))
    def delete_cluster(cluster, **context):
        from processing.app import airflow_tasks

        return airflow_tasks.delete_cluster(context, cluster)

    # the retention (PROCESSING_KEEP_DAYS; nothing without it), on today's UTC cutoff: never the
    # date this run published (a backfill of a date already past retention keeps it until the
    # next run's expire removes it), and a date another run holds is left for the next run
    @task(execution_timeout=dt.timedelta(minutes=30))
    def expire(**context):
        from processing.app import airflow_tasks

        return airflow_tasks.expire(context)

    @task(retries=5, execution_timeout=dt.timedelta(minutes=10))
    def finish(**context):
        from processing.app import airflow_tasks

        return airflow_tasks.finish(context)

    # the day's events have landed: deferred while waiting; its retries are for errors reading
    # the table, the deadline is its own (a late day fails it at once, with the alert)
    waited = DayCompleteSensor(task_id="wait_for_day", execution_timeout=dt.timedelta(minutes=5))
    planned = plan()
    waited >> planned
    cluster = create_cluster(planned)
    published = process(cluster) >> audit() >> publish()
    deleted = delete_cluster(cluster)
    finished = finish()
    published >> deleted >> finished
    published >> expire()
    deleted.as_teardown(setups=cluster)
    finished.as_teardown(setups=planned)
