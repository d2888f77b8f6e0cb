"""
### events_published_example: a downstream DAG that runs when a date of the lake is published

An example to copy. `events_daily`'s `publish` task emits the lake's Asset (`<dest>/events`,
e.g. `s3://my-lake/events-lake/events`) through the alias `events-lake-published`, with the
date, the run id, the publish id and the row counts as the event's extra. This DAG is scheduled
on that alias, so it runs once per publish (a rerun or a rollback of a date publishes it again).

Its task (`processing/app/asset_consumer.py`) reads the published date through the public readers
only (`processing.read_manifest`,
`processing.events_dataset`): rows per event name, checked against the event's counts. A date
republished since the event (a rerun) is reported as superseded instead of read.
A manual run (or `dag.test()`) reads the newest event of the alias.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, AssetAlias, task

PUBLISHED = AssetAlias("events-lake-published")

with DAG(
    dag_id="events_published_example",
    description="Example consumer of the lake's Asset: rows per event name of each published date",
    schedule=[PUBLISHED],
    start_date=dt.datetime(2023, 10, 1, tzinfo=dt.UTC),
    catchup=False,
    tags=["events-lake", "example", "consumer"],
    doc_md=__doc__,
) as dag:

    @task(inlets=[PUBLISHED])
    def rows_per_event_name(**context):
        from processing.app.asset_consumer import published_events, rows_per_event_name

        return [rows_per_event_name(event) for event in published_events(context, PUBLISHED)]

    rows_per_event_name()
