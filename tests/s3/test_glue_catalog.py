"""The lake registered in the Glue Data Catalog (``--glue-database``), against moto's Glue in
the same server as the S3 lake (``AWS_ENDPOINT_URL_GLUE``, as AWS tools read it): the CLI's
``run`` creates the database and the two tables, and makes each date's partitions exactly its
published manifest's; a rerun without an event name updates and removes, a rollback restores,
a second date adds its own; a failed registration leaves the date published and says how to
register it, which ``catalog`` and a retried publish then do."""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from botocore.session import get_session

import processing
from processing.app import stages
from processing.emulator.s3 import S3Server
from processing.spec.errors import ConfigError
from processing.spec.settings import Settings
from tests.conftest import DATA
from tests.s3.conftest import cli_env

pytestmark = pytest.mark.slow

DATE = "2023-10-23"
SAMPLE = DATA / "sample_day.jsonl.gz"
_databases = itertools.count()


@pytest.fixture
def dest(bucket: str) -> str:
    return f"s3://{bucket}/lake"


@pytest.fixture
def database() -> str:
    """A database of the test's own (moto's catalog lives as long as the server)."""
    return f"lake_{os.getpid()}_{next(_databases)}"


@pytest.fixture
def glue(s3_server: S3Server) -> Any:
    return get_session().create_client(
        "glue",
        endpoint_url=s3_server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def env(s3_server: S3Server) -> dict[str, str]:
    """The CLI's environment: the AWS chain, and Glue's endpoint as botocore reads it."""
    return cli_env(s3_server.endpoint_url, AWS_ENDPOINT_URL_GLUE=s3_server.endpoint_url)


@pytest.fixture
def lake(cli, s3_server: S3Server, dest: str, database: str, env: dict[str, str]):
    """``lake(command, *flags, date=..., source=...)``: a CLI command on the S3 lake, registered
    in the test's database (``date=None``: no --date)."""

    def go(command: str, *flags: str | Path, date: str | None = DATE, source: Path = SAMPLE):
        args: list[str | Path] = [command, "--dest", dest]
        if date is not None:
            args += ["--date", date]
        if command == "run":
            args += ["--source", source, "--workers", "1"]
        args += ["--s3-endpoint-url", s3_server.endpoint_url, "--glue-database", database]
        return cli(*args, *flags, env=env)

    return go


def _partitions(glue: Any, database: str, table: str) -> dict[tuple[str, ...], dict[str, Any]]:
    """Every partition of the table, by its values (a duplicate would fail the test)."""
    pages = glue.get_paginator("get_partitions").paginate(DatabaseName=database, TableName=table)
    found = [p for page in pages for p in page["Partitions"]]
    by_values = {tuple(p["Values"]): p for p in found}
    assert len(by_values) == len(found), "a partition is registered twice"
    return by_values


def _manifest(dest: str, endpoint: str, date: str = DATE) -> dict[str, Any]:
    found = processing.read_manifest(dest, dt.date.fromisoformat(date), {"endpoint_url": endpoint})
    assert found is not None
    return found


def _expected(dest: str, manifest: dict[str, Any]) -> dict[str, set[tuple[str, ...]]]:
    """The partitions a manifest's files make, table by table."""
    day = manifest["date"]
    names = {f["path"].split("/", 1)[0].removeprefix("event_name=") for f in manifest["files"]
             if f["dataset"] == "events"}  # fmt: skip
    rejected = any(f["dataset"] == "rejected" for f in manifest["files"])
    return {
        "events": {(day, n) for n in names},
        "rejected": {(day,)} if rejected else set(),
    }


def _of_date(found: dict[tuple[str, ...], Any], date: str) -> set[tuple[str, ...]]:
    return {v for v in found if v[0] == date}


def _check_date(glue: Any, database: str, dest: str, endpoint: str, date: str = DATE) -> None:
    """The date's partitions are exactly its published manifest's, where the layout puts
    them, each saying which version it describes."""
    manifest = _manifest(dest, endpoint, date)
    for table, wanted in _expected(dest, manifest).items():
        found = _partitions(glue, database, table)
        assert _of_date(found, date) == wanted, table
        for values in wanted:
            partition = found[values]
            where = f"{dest}/{table}/event_date={date}/"
            if table == "events":
                where += f"event_name={values[1]}/"
            assert partition["StorageDescriptor"]["Location"] == where
            assert partition["Parameters"]["events_lake.publish_id"] == manifest["publish_id"]


def _without(source: Path, event_name: str, out: Path) -> Path:
    """The sample day without one event name (however its lines spell it; a line that is not
    a JSON object stays, to be rejected)."""
    with gzip.open(source, "rt") as lines, gzip.open(out, "wt") as kept:
        for line in lines:
            try:
                name = json.loads(line).get("event_name")
            except (ValueError, AttributeError):
                name = None
            if not (isinstance(name, str) and name.strip().lower() == event_name):
                kept.write(line)
    return out


def test_runs_a_rerun_a_rollback_and_a_second_date_keep_the_catalog_exact(
    lake, glue, generate, s3_server: S3Server, dest: str, database: str, tmp_path: Path
) -> None:
    endpoint = s3_server.endpoint_url
    first = lake("run")
    assert first.returncode == 0, first.stderr
    tables = {t["Name"]: t for t in glue.get_tables(DatabaseName=database)["TableList"]}
    assert set(tables) == {"events", "rejected"}
    events = tables["events"]
    assert [(k["Name"], k["Type"]) for k in events["PartitionKeys"]] == [
        ("event_date", "date"),
        ("event_name", "string"),
    ]
    assert [(k["Name"], k["Type"]) for k in tables["rejected"]["PartitionKeys"]] == [
        ("event_date", "date")
    ]
    assert events["StorageDescriptor"]["Location"] == f"{dest}/events/"
    assert dict((c["Name"], c["Type"]) for c in events["StorageDescriptor"]["Columns"]) == {
        "event_datetime": "timestamp",
        "user_id": "string",
        "platform": "string",
        "product_name": "string",
        "sku": "string",
    }
    _check_date(glue, database, dest, endpoint)
    names = len(_expected(dest, _manifest(dest, endpoint))["events"])
    assert (
        f"  catalog       glue {database}.events: {names} partitions of {DATE} "
        f"({names} added, 0 updated, 0 removed; table created)\n"
        f"                glue {database}.rejected: 1 partition of {DATE} "
        "(1 added, 0 updated, 0 removed; table created)"
    ) in first.stdout
    before = _partitions(glue, database, "events")

    rerun = lake("run", source=_without(SAMPLE, "purchase", tmp_path / "no-purchase.jsonl.gz"))
    assert rerun.returncode == 0, rerun.stderr
    _check_date(glue, database, dest, endpoint)
    after = _partitions(glue, database, "events")
    assert set(before) - set(after) == {(DATE, "purchase")}
    assert (
        f"glue {database}.events: {names - 1} partitions of {DATE} "
        f"(0 added, {names - 1} updated, 1 removed)"
    ) in rerun.stdout

    back = lake("rollback")
    assert back.returncode == 0, back.stderr
    assert f"glue {database}.events: {names} partitions of {DATE} (1 added," in back.stdout
    _check_date(glue, database, dest, endpoint)
    assert set(_partitions(glue, database, "events")) == set(before)

    first_date = _partitions(glue, database, "events")
    other = generate("other.jsonl.gz", "2023-10-24", 300, bad=0.05, seed=5)
    second = lake("run", date="2023-10-24", source=other)
    assert second.returncode == 0, second.stderr
    _check_date(glue, database, dest, endpoint, "2023-10-24")
    _check_date(glue, database, dest, endpoint)
    now = _partitions(glue, database, "events")
    assert {v: now[v] for v in first_date} == first_date  # the first date's, untouched
    assert _of_date(now, "2023-10-24")

    both = lake("catalog", "--all")
    assert both.returncode == ConfigError.exit_code
    assert "catalog needs --date D or --all (not both)" in both.stderr
    repeat = lake("catalog", "--all", date=None)  # safe to repeat: nothing changes
    assert repeat.returncode == 0, repeat.stderr
    assert repeat.stdout.count("0 added, 0 updated, 0 removed") == 4  # 2 dates, 2 tables
    assert _partitions(glue, database, "events") == now


def test_a_failed_registration_leaves_the_date_published_and_says_how_to_register_it(
    lake, glue, cli, s3_server: S3Server, dest: str, database: str, env, monkeypatch
) -> None:
    endpoint = s3_server.endpoint_url
    glue.create_database(DatabaseInput={"Name": database})
    glue.create_table(  # another lake's table, of the same name: registering must refuse it
        DatabaseName=database,
        TableInput={"Name": "events", "StorageDescriptor": {"Location": "s3://other/events/"}},
    )
    failed = lake("run", "--run-id", "glue-run-1")
    assert failed.returncode == ConfigError.exit_code, failed.stderr
    error = failed.stderr.strip().splitlines()[-1]
    assert f"{DATE} is published (run glue-run-1) and readable" in error
    assert "another lake's" in error
    command = error.split("`")[1]
    assert command == (
        f"python -m processing catalog --date {DATE} --dest {dest} --glue-database {database}"
    )
    assert _manifest(dest, endpoint)["run_id"] == "glue-run-1"  # published all the same

    glue.delete_table(DatabaseName=database, Name="events")
    registered = cli(*command.split()[3:], "--s3-endpoint-url", endpoint, env=env)
    assert registered.returncode == 0, registered.stderr
    assert f"glue {database}.events:" in registered.stdout
    _check_date(glue, database, dest, endpoint)

    # a retried publish (an Airflow task's retry) of the published run registers it again
    glue.delete_table(DatabaseName=database, Name="events")
    monkeypatch.setenv("AWS_ENDPOINT_URL_GLUE", endpoint)
    settings = Settings.load(
        {},
        date=dt.date.fromisoformat(DATE),
        source=str(SAMPLE),
        dest=dest,
        run_id="glue-run-1",
        s3_endpoint_url=endpoint,
        glue_database=database,
    )
    report = stages.publish(settings, "glue-run-1")
    assert report.manifest["run_id"] == "glue-run-1"
    assert [r.table_change for r in report.catalog] == ["created", None]
    assert report.catalog[0].added == len(_expected(dest, report.manifest)["events"])
    _check_date(glue, database, dest, endpoint)


def test_glue_needs_a_lake_on_s3(cli, tmp_path: Path, env) -> None:
    done = cli(
        "run", "--date", DATE, "--source", SAMPLE, "--dest", tmp_path / "lake",
        "--glue-database", "lake_db", env=env,
    )  # fmt: skip
    assert done.returncode == ConfigError.exit_code
    assert done.stderr.strip() == (
        "error: bad setting: glue_database registers a lake on S3, and --dest is a local path: "
        "give an s3:// --dest, or leave --glue-database out (--glue-database or "
        "PROCESSING_GLUE_DATABASE)"
    )
    assert not (tmp_path / "lake").exists()
