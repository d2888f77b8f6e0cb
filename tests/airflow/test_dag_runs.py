"""The DAG end to end with ``dag.test()``: the BigQuery Storage emulator as the source, moto's
S3 server as the lake, a LocalCluster; then the rerun of the date, and a run that fails in
processing."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import s3fs

import processing
from processing.adapters.sources.bigquery import BigQuerySource
from processing.emulator.bigquery_storage import Emulator
from processing.emulator.s3 import S3Server
from tests.airflow.conftest import ROOT

pytestmark = pytest.mark.slow

DATE = "2023-10-23"
TABLE = "demo.events.events"
BUCKET = "airflow-lake"


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[str, str]]:
    """(BigQuery emulator address, S3 endpoint) serving the sample day, and an empty bucket."""
    bigquery = Emulator(
        {TABLE: str(ROOT / "data" / "sample_day.jsonl.gz")}, min_rows_per_stream=1000
    )
    address = bigquery.start()
    with S3Server() as s3:
        fs = s3fs.S3FileSystem(endpoint_url=s3.endpoint_url, key="k", secret="s")
        fs.call_s3("create_bucket", Bucket=BUCKET)
        yield address, s3.endpoint_url
    bigquery.stop(grace=None)


@pytest.fixture
def pipeline_env(monkeypatch: pytest.MonkeyPatch, services: tuple[str, str]) -> dict[str, str]:
    """What the ConfigMap and the service account give the task pods, pointed at the emulators."""
    address, endpoint = services
    env = {
        "PROCESSING_SOURCE": f"bigquery://{TABLE}",
        "PROCESSING_BQ_ENDPOINT": address,
        "PROCESSING_DEST": f"s3://{BUCKET}/lake",
        "PROCESSING_S3_ENDPOINT_URL": endpoint,
        "PROCESSING_WORKERS": "1",
        "PROCESSING_CLUSTER": "local",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _lake(env: dict[str, str]) -> s3fs.S3FileSystem:
    return s3fs.S3FileSystem(
        endpoint_url=env["PROCESSING_S3_ENDPOINT_URL"], skip_instance_cache=True,
        use_listings_cache=False,
    )  # fmt: skip


def _published(env: dict[str, str]) -> dict[str, str]:
    fs = _lake(env)
    found = {}
    for dataset in ("events", "rejected"):
        prefix = f"{BUCKET}/lake/{dataset}/event_date={DATE}"
        if fs.exists(prefix):
            found |= {p: hashlib.sha256(fs.cat_file(p)).hexdigest() for p in fs.find(prefix)}
    return found


def _rows(env: dict[str, str]) -> list[dict]:
    options = {"endpoint_url": env["PROCESSING_S3_ENDPOINT_URL"]}
    table = processing.events_dataset(env["PROCESSING_DEST"], options).to_table(
        filter=ds.field("event_date") == dt.date.fromisoformat(DATE)
    )
    return sorted(table.to_pylist(), key=lambda r: json.dumps(r, default=str, sort_keys=True))


def _states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def _asset_events(uri: str) -> list[dict]:
    """The extra of every event of the Asset ``uri`` in Airflow's metadata database."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        found = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == uri)
            .order_by(AssetEvent.id)
        ).all()
        return [dict(e.extra) for e in found]


def _downstream_reads_the_published_date(dagbag, env, manifest, monkeypatch) -> None:
    """publish emitted the lake's Asset with the date, run and counts; the example downstream
    DAG, scheduled on it, reads that date's rows per event name."""
    uri = f"{env['PROCESSING_DEST']}/events"
    events = _asset_events(uri)
    assert events, f"no asset event of {uri}"
    assert events[-1]["date"] == DATE and events[-1]["run_id"] == manifest["run_id"]
    assert events[-1]["publish_id"] == manifest["publish_id"]
    counts = ("rows_read", "rows_valid", "rows_rejected")
    assert {k: events[-1][k] for k in counts} == {k: manifest[k] for k in counts}

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", env["PROCESSING_S3_ENDPOINT_URL"])  # the reader's
    downstream = dagbag.dags["events_published_example"]
    run = downstream.test()
    assert str(run.state) == "success", _states(run)
    (ti,) = run.get_task_instances()
    (result,) = ti.xcom_pull(task_ids="rows_per_event_name")
    assert result["date"] == DATE and result["run_id"] == manifest["run_id"]
    assert result["rows"] == manifest["valid_by_event"]


def _leftovers(env: dict[str, str]) -> list[str]:
    fs = _lake(env)
    return [
        p
        for top in ("_staging", "_locks")
        if fs.exists(f"{BUCKET}/lake/{top}")
        for p in fs.find(f"{BUCKET}/lake/{top}")
    ]


def test_a_date_end_to_end_then_its_rerun_then_a_failed_run(
    airflow_db,
    dagbag,
    events_dag,
    pipeline_env,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    webhook,
) -> None:
    slack = {"conn_type": "slackwebhook", "password": webhook.url}  # the notices' channel
    monkeypatch.setenv("AIRFLOW_CONN_EVENTS_LAKE_SLACK", json.dumps(slack))
    # a logical date that is not its data interval's start would process another day: refused
    # (dag.test, like dags trigger --logical-date, gives the run the interval ending there)
    refused = events_dag.test(logical_date=dt.datetime(2023, 10, 24, 2, tzinfo=dt.UTC))
    assert str(refused.state) == "failed", _states(refused)
    assert _states(refused)["wait_for_day"] == "failed"  # its first task
    assert _published(pipeline_env) == {} and _leftovers(pipeline_env) == []

    first = events_dag.test(run_conf={"date": DATE})  # the date named, as the docs say
    assert str(first.state) == "success", _states(first)
    assert set(_states(first).values()) == {"success"}
    manifest = processing.read_manifest(
        pipeline_env["PROCESSING_DEST"], dt.date.fromisoformat(DATE),
        {"endpoint_url": pipeline_env["PROCESSING_S3_ENDPOINT_URL"]},
    )  # fmt: skip
    assert manifest is not None
    assert manifest["rows_read"] == manifest["rows_valid"] + manifest["rows_rejected"] > 4000
    assert manifest["source"] == f"bigquery://{TABLE}"
    assert manifest["source_details"]["snapshot_time"]
    kinds = {e["kind"] for e in manifest["reports"]}  # published beside it, from the tasks
    assert kinds == {"quality_json", "quality_html", "dask_performance"}
    rows = _rows(pipeline_env)
    assert len(rows) == manifest["rows_valid"]
    assert _leftovers(pipeline_env) == []  # no staging, the date's lock released
    _downstream_reads_the_published_date(dagbag, pipeline_env, manifest, monkeypatch)

    rerun = events_dag.test(run_conf={"date": DATE})  # a person reruns the date
    assert str(rerun.state) == "success", _states(rerun)
    assert _rows(pipeline_env) == rows
    before = _published(pipeline_env)

    bad = tmp_path / "corrupt.jsonl.gz"
    bad.write_bytes(gzip.compress(b'{"timestamp": "2023-10-23T01:00:00Z"}\n')[:-12] + b"garbage!")
    monkeypatch.setenv("PROCESSING_SOURCE", str(bad))  # the process task cannot read it
    failed = events_dag.test(run_conf={"date": DATE})
    states = _states(failed)
    assert str(failed.state) == "failed", states
    assert states["process"] == "failed"
    assert states["audit"] == states["publish"] == "upstream_failed"
    assert states["delete_cluster"] == states["finish"] == "success"  # teardowns still ran
    assert _published(pipeline_env) == before  # the published date is untouched
    assert _leftovers(pipeline_env) == []
    assert [t for t in webhook.texts() if "process failed" in t]  # the on-call hears of it
    assert all("SECRET" not in t for t in webhook.texts())

    monkeypatch.setenv("PROCESSING_SOURCE", pipeline_env["PROCESSING_SOURCE"])
    fixed = events_dag.test(run_conf={"date": DATE})  # the fix, rerun
    assert str(fixed.state) == "success", _states(fixed)
    assert "published again after a failure" in webhook.texts()[-1]


def test_a_day_not_complete_in_bigquery_is_waited_for_deferred_then_alerted(
    airflow_db,
    events_dag,
    pipeline_env,
    monkeypatch: pytest.MonkeyPatch,
    webhook,
) -> None:
    """wait_for_day: the table has no row of the day after yesterday, so yesterday is not
    complete; the sensor defers (the triggerer keeps time) and looks again until its deadline,
    then fails at once, and the failure notice says why. Nothing is planned or locked."""
    slack = {"conn_type": "slackwebhook", "password": webhook.url}
    monkeypatch.setenv("AIRFLOW_CONN_EVENTS_LAKE_SLACK", json.dumps(slack))
    now = dt.datetime.now(dt.UTC)
    yesterday = now.date() - dt.timedelta(days=1)
    since_its_end = now - dt.datetime.combine(now.date(), dt.time(0), tzinfo=dt.UTC)
    # the watermark at the day's end (the table has no row from today on), the deadline
    # seconds from now, looking every second
    timeout = int(since_its_end.total_seconds()) + 20  # dag.test() takes seconds to start
    monkeypatch.setenv("PROCESSING_DAY_COMPLETE_LATENESS_SECONDS", "0")
    monkeypatch.setenv("PROCESSING_DAY_COMPLETE_TIMEOUT_SECONDS", str(timeout))
    monkeypatch.setenv("PROCESSING_DAY_COMPLETE_POLL_SECONDS", "1")
    looks: list[dt.datetime] = []  # each look at the table (the tasks run in this process)
    real = BigQuerySource.has_rows_from

    def look(self, moment):
        looks.append(moment)
        return real(self, moment)

    monkeypatch.setattr(BigQuerySource, "has_rows_from", look)
    run = events_dag.test(run_conf={"date": yesterday.isoformat()})
    states = _states(run)
    assert states["wait_for_day"] == "failed", states
    assert states["plan"] == "upstream_failed", states
    # deferred between looks, then past its deadline
    assert len(looks) >= 3, looks
    assert set(looks) == {dt.datetime.combine(now.date(), dt.time(0), tzinfo=dt.UTC)}
    assert [t for t in webhook.texts() if "is not complete in the source" in t], webhook.texts()
    assert _leftovers(pipeline_env) == []

    # a rerun of a past date whose next day has landed passes at once
    assert _states(events_dag.test(run_conf={"date": DATE}))["wait_for_day"] == "success"
