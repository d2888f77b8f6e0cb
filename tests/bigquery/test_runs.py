"""Whole runs from BigQuery: the CLI in a subprocess, the emulator in this process.

The output equals the output of the same day read from files; a worker killed mid-run and a
session that expires mid-run change nothing; each failure exits with its code and one line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from processing.logic.generate import GenerateParams, generate
from tests.bigquery.conftest import DATE, TABLE, URL, events, utc, write
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
D = DATE.isoformat()


def _day(path: Path, rows: int, row_group_rows: int) -> Path:
    [table] = list(generate(GenerateParams(DATE, rows, 0.02, 11, chunk_rows=rows)))
    # rows of the next day too: BigQuery filters them out, the file source rejects them
    late = table.slice(0, 50).set_column(
        0, "timestamp", pa.array([utc(2023, 10, 24, 1)] * 50, pa.timestamp("us", tz="UTC"))
    )
    return write(path, pa.concat_tables([table, late]), row_group_rows)


def _published(dest: Path) -> list[dict]:
    dataset = ds.dataset(dest / "events", format="parquet", partitioning="hive")
    return sorted(dataset.to_table().to_pylist(), key=repr)


def _manifest(dest: Path) -> dict:
    return json.loads((dest / "events" / f"event_date={D}" / "_manifest.json").read_text())


def test_a_day_from_bigquery_equals_the_same_day_from_files(cli, emulator, tmp_path) -> None:
    table = _day(tmp_path / "day.parquet", 30_000, 2_000)
    server = emulator({TABLE: table}, min_rows_per_stream=4_000)
    from_bq, from_files = tmp_path / "bq", tmp_path / "files"
    done = cli(
        "run", "--date", D, "--source", URL, "--bq-endpoint", server.address, "--dest", from_bq
    )
    assert done.returncode == 0, done.stderr
    done = cli("run", "--date", D, "--source", table, "--dest", from_files)
    assert done.returncode == 0, done.stderr

    assert _published(from_bq) == _published(from_files)
    bq, files = _manifest(from_bq), _manifest(from_files)
    assert bq["rows_valid"] == files["rows_valid"]
    assert files["rejected_by_reason"].pop("event_datetime:outside_run_date") >= 50
    source = bq["source_details"]
    assert source["streams"] >= 2 and source["session"].startswith("projects/demo/")
    assert source["snapshot_time"].endswith("Z")
    assert "rows" in done.stdout or done.stdout  # the summary was printed
    # one file per partition whatever the stream count: the streams' small files were merged
    for manifest in (bq, files):
        partitions = {(f["dataset"], f["event_name"]) for f in manifest["files"]}
        assert len(manifest["files"]) == len(partitions) == len(manifest["valid_by_event"]) + 1


def test_a_replay_at_the_recorded_snapshot_reads_what_the_run_read(cli, emulator, tmp_path) -> None:
    folder = tmp_path / "table"
    write(folder / "a.parquet", events([(utc(2023, 10, 23, 9), "view", "web", "u1", None, None)]))
    server = emulator({TABLE: folder})
    first = tmp_path / "first"
    done = cli(
        "run", "--date", D, "--source", URL, "--bq-endpoint", server.address, "--dest", first
    )
    assert done.returncode == 0, done.stderr
    snapshot = _manifest(first)["source_details"]["snapshot_time"]
    write(
        folder / "b.parquet",
        events([(utc(2023, 10, 23, 10), "view", "web", "u2", None, None)]),
        age=0,
    )
    replay = tmp_path / "replay"
    done = cli(
        "run", "--date", D, "--source", URL, "--bq-endpoint", server.address, "--dest", replay,
        "--snapshot-time", snapshot,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _published(replay) == _published(first)
    assert _manifest(replay)["source_details"]["snapshot_time"] == snapshot


def test_a_worker_killed_mid_run_still_yields_every_row_once(cli, emulator, tmp_path) -> None:
    table = _day(tmp_path / "day.parquet", 40_000, 1_000)
    server = emulator({TABLE: table}, min_rows_per_stream=10_000)
    server.faults.delay_seconds = 0.1  # about 1 s per stream: time to kill a worker in one
    expected = tmp_path / "expected"
    assert cli("run", "--date", D, "--source", table, "--dest", expected).returncode == 0

    dest = tmp_path / "lake"
    command = [
        sys.executable, "-m", "processing", "run", "--date", D, "--source", URL,
        "--bq-endpoint", server.address, "--dest", str(dest),
        "--processes", "--workers", "2", "--threads-per-worker", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        if server.servicer.calls["ReadRows"] >= 2:  # both workers are reading a stream
            workers = [
                p
                for p in psutil.Process(proc.pid).children(recursive=True)
                if "dask worker" in " ".join(p.cmdline())  # Dask retitles its workers
            ]
            if workers:
                killed = workers[0].pid
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    _, err = proc.communicate(timeout=300)
    assert killed is not None, "no worker was killed: the run ended too soon"
    assert proc.returncode == 0, err
    assert _published(dest) == _published(expected)
    assert _manifest(dest)["rows_valid"] == _manifest(expected)["rows_valid"]


def test_a_session_that_expires_mid_run_is_planned_again_at_the_same_snapshot(
    cli, emulator, tmp_path
) -> None:
    table = _day(tmp_path / "day.parquet", 10_000, 200)
    server = emulator({TABLE: table}, min_rows_per_stream=2_000)
    # the first session expires while its streams are being read (10 messages of 0.15 s each)
    server.faults.expire_sessions, server.faults.expire_after_seconds = 1, 2.5
    server.faults.delay_seconds = 0.15
    dest, expected = tmp_path / "lake", tmp_path / "expected"
    assert cli("run", "--date", D, "--source", table, "--dest", expected).returncode == 0
    done = cli("run", "--date", D, "--source", URL, "--bq-endpoint", server.address, "--dest", dest)
    assert done.returncode == 0, done.stderr
    assert "planning again at the same snapshot" in done.stderr
    assert server.servicer.calls["CreateReadSession"] == 2
    assert _published(dest) == _published(expected)
    manifest = _manifest(dest)
    assert manifest["run_id"].endswith("-replan")  # staged apart from the first attempt's tasks
    first, second = list(server.servicer.sessions.values())
    assert first.streams != second.streams  # the new session cut the table otherwise


def test_plan_prints_the_session_and_reads_nothing(cli, emulator, tmp_path) -> None:
    table = _day(tmp_path / "day.parquet", 5_000, 1_000)
    server = emulator({TABLE: table}, min_rows_per_stream=1_000)
    done = cli("plan", "--date", D, "--source", URL, "--bq-endpoint", server.address)
    assert done.returncode == 0, done.stderr
    for label in ("session", "snapshot", "streams", "estimated rows", "estimated cost"):
        assert label in done.stdout
    in_window = ds.dataset(table).to_table(
        filter=(ds.field("timestamp") >= utc(2023, 10, 23))
        & (ds.field("timestamp") < utc(2023, 10, 24))
    )
    assert f"estimated rows   {in_window.num_rows:,}" in done.stdout  # not the next day's
    assert server.servicer.calls["ReadRows"] == 0


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        pytest.param(
            ["--source", "bigquery://demo.events.nope"], {}, 2, "not found", id="unknown-table"
        ),
        pytest.param(
            ["--source", URL, "--bq-endpoint", "127.0.0.1:9", "--bq-deadline-seconds", "2"],
            {},
            75,
            "did not answer within 2 s",
            id="emulator-down",
        ),
        pytest.param(
            ["--source", URL, "--bq-endpoint", ""],
            {"GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/key.json"},
            2,
            "GOOGLE_APPLICATION_CREDENTIALS",
            id="bad-credentials",
        ),
        pytest.param(
            ["--source", "bigquery://not a table"], {}, 2, "PROJECT.DATASET.TABLE", id="bad-url"
        ),
    ],
)
def test_failures_exit_with_their_code_and_one_line(
    cli, emulator, tmp_path, args, env, code, message
) -> None:
    server = emulator({TABLE: write(tmp_path / "t.parquet", events([]))})
    args = [a if a != "" else "" for a in args]
    if "--bq-endpoint" not in args:
        args += ["--bq-endpoint", server.address]
    if args[-1] == "":  # bad-credentials: no emulator, Google's endpoint with ADC
        args = args[:-2]
    started = time.monotonic()
    done = cli("run", "--date", D, "--dest", tmp_path / "lake", *args, env=env)
    assert done.returncode == code, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 60
    assert not (tmp_path / "lake" / "events").exists()


def test_schema_drift_fails_before_any_worker_starts(cli, emulator, tmp_path) -> None:
    drifted = events([(utc(2023, 10, 23, 9), "view", "web", "u1", None, None)]).drop_columns(
        ["user_identifiers"]
    )
    server = emulator({TABLE: write(tmp_path / "t.parquet", drifted)})
    done = cli(
        "run", "--date", D, "--source", URL, "--bq-endpoint", server.address,
        "--dest", tmp_path / "lake",
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "'user_identifiers'" in done.stderr
    assert "Dask dashboard" not in done.stderr  # failed at the plan, before the cluster


def test_streams_are_sized_to_an_existing_schedulers_threads(cli, emulator, tmp_path) -> None:
    from distributed import LocalCluster

    table = _day(tmp_path / "day.parquet", 6_000, 500)
    server = emulator({TABLE: table}, min_rows_per_stream=100)
    with LocalCluster(
        n_workers=3, threads_per_worker=1, processes=False, protocol="tcp", dashboard_address=None
    ) as cluster:
        done = cli(
            "run", "--date", D, "--source", URL, "--bq-endpoint", server.address,
            "--dest", tmp_path / "lake", "--scheduler", cluster.scheduler_address,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    details = _manifest(tmp_path / "lake")["source_details"]
    assert details["max_stream_count"] == 12  # 4 per thread of the 3 workers, not of this host
    assert details["streams"] == 12
