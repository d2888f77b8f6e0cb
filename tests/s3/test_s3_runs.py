"""The CLI end to end against moto's S3 server over HTTP: publish, read back with pyarrow and
DuckDB, reruns, a killed run, two runs of one date, rollback, throttling and 5xx, encryption."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest
import s3fs

import processing
from processing.adapters.date_lock import DateLock
from processing.emulator.s3 import S3Server
from processing.logic.layout import retag
from tests.conftest import DATA, ROOT, tree_digest
from tests.s3.conftest import client_fs, objects

pytestmark = pytest.mark.slow

DATE = "2023-10-23"
SAMPLE = DATA / "sample_day.jsonl.gz"


@pytest.fixture
def dest(bucket: str) -> str:
    return f"s3://{bucket}/lake"


@pytest.fixture
def run(cli, s3_server: S3Server):
    """``run(dest, *flags, source=..., date=...)``: the CLI's run against the emulator."""

    def go(dest: str | Path, *flags: str, source: Path = SAMPLE, date: str = DATE, env=None):
        return cli(
            "run", "--date", date, "--source", source, "--dest", dest, "--workers", "1",
            "--s3-endpoint-url", s3_server.endpoint_url, *flags, env=env,
        )  # fmt: skip

    return go


def _rows(dest: str, endpoint: str, date: str = DATE) -> list[dict]:
    options = {"endpoint_url": endpoint} if dest.startswith("s3://") else None
    table = processing.events_dataset(dest, options).to_table(
        filter=ds.field("event_date") == dt.date.fromisoformat(date)
    )
    return sorted(table.to_pylist(), key=lambda r: json.dumps(r, default=str, sort_keys=True))


def _manifest(dest: str, endpoint: str, date: str = DATE) -> dict:
    manifest = processing.read_manifest(
        dest, dt.date.fromisoformat(date), {"endpoint_url": endpoint}
    )
    assert manifest is not None
    return manifest


def _contents(fs: s3fs.S3FileSystem, prefix: str) -> dict[str, str]:
    """Key (relative to prefix) -> sha256 of the bytes."""
    if not fs.exists(prefix):
        return {}
    return {
        p[len(prefix) :].lstrip("/"): hashlib.sha256(fs.cat_file(p)).hexdigest()
        for p in sorted(fs.find(prefix))
    }


def _date_contents(fs: s3fs.S3FileSystem, bucket: str, date: str = DATE) -> dict[str, str]:
    return {
        f"{dataset}/{k}": v
        for dataset in ("events", "rejected")
        for k, v in _contents(fs, f"{bucket}/lake/{dataset}/event_date={date}").items()
    }


def test_sample_day_to_s3_reads_back_with_pyarrow_and_duckdb(
    run, s3_server: S3Server, s3, bucket: str, dest: str, tmp_path: Path
) -> None:
    endpoint = s3_server.endpoint_url
    # no endpoint flag: the standard AWS_ENDPOINT_URL_S3 variable, as AWS tools read it
    done = _without_endpoint_flag(dest, {"AWS_ENDPOINT_URL_S3": endpoint})
    assert done.returncode == 0, done.stderr
    assert f"{dest}/events/event_date={DATE}" in done.stdout
    local = tmp_path / "local-lake"
    assert run(local).returncode == 0

    assert _rows(dest, endpoint) == _rows(str(local), endpoint)
    m = _manifest(dest, endpoint)
    assert m["rows_read"] == m["rows_valid"] + m["rows_rejected"] > 0
    assert {k.split("/", 1)[0] for k in objects(s3, f"{bucket}/lake")} == {"events", "rejected"}
    for f in m["files"]:  # the sizes the writers reported are the stored objects' sizes
        key = f"{bucket}/lake/{f['dataset']}/event_date={DATE}/{f['path']}"
        assert s3.size(key) == f["bytes"], key

    con = duckdb.connect()
    con.register_filesystem(client_fs(endpoint))
    counts = dict(
        con.execute(
            f"select event_name, count(*) from read_parquet('{dest}/events/*/*/*.parquet', "
            f"hive_partitioning = true) where event_date = DATE '{DATE}' group by 1"
        ).fetchall()
    )
    assert counts == m["valid_by_event"]
    rejected = con.execute(
        f"select count(*) from read_parquet('{dest}/rejected/*/*.parquet', hive_partitioning=1)"
    ).fetchone()
    assert rejected == (m["rows_rejected"],)


def _without_endpoint_flag(dest: str, env: dict[str, str]):
    return subprocess.run(
        [sys.executable, "-m", "processing", "run", "--date", DATE, "--source", str(SAMPLE),
         "--dest", dest, "--workers", "1"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_reruns_replace_exactly_the_date(
    run, generate, s3_server: S3Server, s3, bucket: str, dest: str
) -> None:
    endpoint = s3_server.endpoint_url
    other = generate("other.jsonl.gz", "2023-10-24", 500, bad=0.02, seed=3)
    assert run(dest, source=other, date="2023-10-24").returncode == 0
    other_before = _date_contents(s3, bucket, "2023-10-24")
    assert run(dest).returncode == 0
    first_rows, first = _rows(dest, endpoint), _date_contents(s3, bucket)

    assert run(dest).returncode == 0  # the same source again
    assert _rows(dest, endpoint) == first_rows
    again = _date_contents(s3, bucket)
    m = _manifest(dest, endpoint)
    listed = {f"{f['dataset']}/{f['path']}" for f in [*m["files"], *m["reports"]]}
    listed |= {"events/_manifest.json", "events/_SUCCESS"}  # no stale file, nor report
    assert set(again) == listed  # no stale object
    assert set(again) & set(first) == {"events/_manifest.json", "events/_SUCCESS"}  # new names
    assert _contents(s3, f"{bucket}/lake/_previous/event_date={DATE}")  # kept for a rollback

    fewer = generate("fewer.parquet", DATE, 300, seed=9)
    assert run(dest, source=fewer).returncode == 0
    m = _manifest(dest, endpoint)
    assert m["rows_read"] == 300
    assert len(_rows(dest, endpoint)) == m["rows_valid"]
    listed = {f"{f['dataset']}/{f['path']}" for f in [*m["files"], *m["reports"]]}
    listed |= {"events/_manifest.json", "events/_SUCCESS"}  # no stale file, nor report
    assert set(_date_contents(s3, bucket)) == listed
    assert _date_contents(s3, bucket, "2023-10-24") == other_before
    assert not s3.exists(f"{bucket}/lake/_staging/event_date={DATE}")
    assert not s3.exists(f"{bucket}/lake/_locks/event_date={DATE}.json")


def _slow_run(dest: str, endpoint: str, source: Path, run_id: str) -> subprocess.Popen:
    """A run of many small pieces on one thread, in its own process group."""
    return subprocess.Popen(
        [sys.executable, "-m", "processing", "run", "--date", DATE, "--source", str(source),
         "--dest", dest, "--workers", "1", "--threads-per-worker", "1", "--piece-rows", "15000",
         "--batch-rows", "15000", "--s3-endpoint-url", endpoint, "--run-id", run_id],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for(condition, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.05)


def test_a_killed_run_changes_nothing_published_and_the_next_run_recovers(
    run, generate, s3_server: S3Server, s3, bucket: str, dest: str
) -> None:
    endpoint = s3_server.endpoint_url
    big = generate("big.parquet", DATE, 400_000, bad=0.01, seed=5)
    assert run(dest).returncode == 0
    before = _date_contents(s3, bucket)

    proc = _slow_run(dest, endpoint, big, "killed-run")
    staging = f"{bucket}/lake/_staging/event_date={DATE}"
    _wait_for(
        lambda: s3.exists(staging) and any(p.endswith(".parquet") for p in s3.find(staging)),
        proc,
        "staged files",
    )
    os.killpg(proc.pid, signal.SIGKILL)  # the client, the scheduler and the workers
    proc.wait()
    assert _date_contents(s3, bucket) == before
    assert s3.exists(f"{bucket}/lake/_locks/event_date={DATE}.json")  # left by the dead run

    done = run(dest)  # takes over the dead process's lock, removes its staging, publishes
    assert done.returncode == 0, done.stderr
    assert "took over the lock" in done.stderr
    assert not s3.exists(staging)
    assert _manifest(dest, endpoint)["rows_read"] > 0
    _only_versions_remain(s3, bucket)  # nothing of the killed run


def _only_versions_remain(s3: s3fs.S3FileSystem, bucket: str) -> None:
    """Every object of the lake belongs to the published version or the kept one (what their
    manifests list), but the locks' own objects."""
    lake = f"{bucket}/lake"
    expected = set()
    for place, top in (("", ""), ("_previous/", f"_previous/event_date={DATE}/")):
        events = f"{top}events/event_date={DATE}/" if not place else f"{top}events/"
        rejected = f"{top}rejected/event_date={DATE}/" if not place else f"{top}rejected/"
        if not s3.exists(f"{lake}/{events}_manifest.json"):
            continue
        manifest = json.loads(s3.cat_file(f"{lake}/{events}_manifest.json"))
        expected.add(f"{events}_manifest.json")
        if not place:  # the published date's marker
            expected.add(f"{events}_SUCCESS")
        for entry in [*manifest["files"], *manifest.get("reports", [])]:
            base = events if entry["dataset"] == "events" else rejected
            expected.add(f"{base}{entry['path']}")
    found = {k for k in objects(s3, lake) if not k.startswith("_locks/")}
    assert found == expected


def test_of_two_runs_of_one_date_one_publishes_the_other_exits_naming_it(
    run, generate, s3_server: S3Server, s3, bucket: str, dest: str
) -> None:
    endpoint = s3_server.endpoint_url
    big = generate("big.parquet", DATE, 600_000, bad=0.01, seed=6)
    first = _slow_run(dest, endpoint, big, "first-run")
    _wait_for(lambda: s3.exists(f"{bucket}/lake/_locks/event_date={DATE}.json"), first, "the lock")

    second = run(dest, "--run-id", "second-run")
    assert second.returncode == 5, second.stderr
    assert "another run is writing this date: run first-run on" in second.stderr
    assert first.poll() is None, "the first run must still be running for this test to mean much"

    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    m = _manifest(dest, endpoint)
    assert m["run_id"] == "first-run" and m["rows_read"] == 600_000
    _only_versions_remain(s3, bucket)  # nothing of the refused run
    assert len(_rows(dest, endpoint)) == m["rows_valid"]


def test_rollback_restores_the_previous_version_exactly(
    cli, run, generate, s3_server: S3Server, s3, bucket: str, dest: str
) -> None:
    endpoint = s3_server.endpoint_url
    assert run(dest).returncode == 0
    version_a, rows_a = _date_contents(s3, bucket), _rows(dest, endpoint)
    other = generate("b.parquet", DATE, 700, bad=0.05, seed=11)
    assert run(dest, source=other).returncode == 0
    version_b = _date_contents(s3, bucket)
    assert version_b != version_a

    done = cli("rollback", "--date", DATE, "--dest", dest, "--s3-endpoint-url", endpoint)
    assert done.returncode == 0, done.stderr
    assert "is published again" in done.stdout
    assert _files(_date_contents(s3, bucket)) == _files(version_a)  # same bytes, new names
    assert _rows(dest, endpoint) == rows_a

    done = cli("rollback", "--date", DATE, "--dest", dest, "--s3-endpoint-url", endpoint)
    assert done.returncode == 0, done.stderr
    assert _files(_date_contents(s3, bucket)) == _files(version_b)  # the second undoes the first


def _files(contents: dict[str, str]) -> dict[str, str]:
    """A version's files by name without their tag (a rollback publishes them under a new
    one), and their bytes' hashes; manifests left out (a restored one records its rollback)."""
    return {
        retag(path, "0" * 8): digest
        for path, digest in contents.items()
        if not path.endswith("_manifest.json")
    }


def test_throttling_and_server_errors_are_retried_to_an_exact_result(
    run, s3_server: S3Server, s3, dest: str, tmp_path: Path
) -> None:
    endpoint = s3_server.endpoint_url
    local = tmp_path / "local-lake"
    assert run(local).returncode == 0
    s3_server.faults.every = 4  # every 4th request: 503 SlowDown, then 500 InternalError, ...
    done = run(dest)
    injected = s3_server.faults.injected
    s3_server.faults.every = 0
    assert done.returncode == 0, done.stderr
    assert injected >= 10
    assert _rows(dest, endpoint) == _rows(str(local), endpoint)
    assert (
        _manifest(dest, endpoint)["rows_read"]
        == processing.read_manifest(str(local), dt.date.fromisoformat(DATE))["rows_read"]
    )


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--s3-sse", "AES256"], {"ServerSideEncryption": "AES256"}),
        (
            ["--s3-sse", "aws:kms", "--s3-kms-key-id", "alias/events-lake"],
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/events-lake"},
        ),
    ],
    ids=["AES256", "aws-kms"],
)
def test_encryption_settings_reach_every_object(
    run, s3, bucket: str, dest: str, flags: list[str], expected: dict[str, str]
) -> None:
    assert run(dest, *flags).returncode == 0
    assert run(dest, *flags).returncode == 0  # copies into place and into _previous too
    keys = list(objects(s3, f"{bucket}/lake"))
    assert any(k.startswith("_previous/") for k in keys) and any(k.endswith(".json") for k in keys)
    for key in keys:
        head = s3.call_s3("head_object", Bucket=bucket, Key=f"lake/{key}")
        assert head.get("ServerSideEncryption") == expected["ServerSideEncryption"], key
        if "SSEKMSKeyId" in expected:  # S3 may answer with the key's full ARN
            assert expected["SSEKMSKeyId"] in head.get("SSEKMSKeyId", ""), key


def test_a_missing_bucket_fails_fast_with_what_to_fix(run, tmp_path: Path) -> None:
    done = run("s3://no-such-bucket-anywhere/lake")
    assert done.returncode == 2, done.stderr
    assert "bucket does not exist" in done.stderr


def test_gc_removes_dead_staging_and_locks_but_skips_a_live_run(
    cli, s3_server: S3Server, s3, bucket: str, dest: str
) -> None:
    endpoint = s3_server.endpoint_url
    lake = f"{bucket}/lake"
    s3.pipe_file(f"{lake}/_staging/event_date=2023-10-21/run_id=failed/events/x.parquet", b"x")
    expired = {
        "run_id": "dead-run", "host": "elsewhere", "pid": 1,
        "acquired_at": "2023-10-22T00:00:00+00:00", "expires_at": "2023-10-22T01:00:00+00:00",
    }  # fmt: skip
    s3.pipe_file(f"{lake}/_locks/event_date=2023-10-22.json", json.dumps(expired).encode())
    s3.pipe_file(f"{lake}/_staging/event_date=2023-10-23/run_id=live/events/y.parquet", b"y")
    live = DateLock(s3, f"{lake}/_locks/event_date=2023-10-23.json", "live", ttl_seconds=600)
    live.acquire()

    done = cli("gc", "--dest", dest, "--s3-endpoint-url", endpoint)
    assert done.returncode == 0, done.stderr
    assert "2023-10-21: removed failed runs' staging" in done.stdout
    assert "2023-10-22: released a dead run's lock" in done.stdout
    assert "2023-10-23: skipped, another run is writing this date: run live" in done.stdout
    assert not s3.exists(f"{lake}/_staging/event_date=2023-10-21")
    assert not s3.exists(f"{lake}/_locks/event_date=2023-10-22.json")
    assert s3.exists(f"{lake}/_staging/event_date=2023-10-23/run_id=live/events/y.parquet")
    live.release()


def test_local_destination_still_has_the_same_layout(run, tmp_path: Path) -> None:
    local = tmp_path / "lake"
    assert run(local).returncode == 0
    assert set(tree_digest(local)) >= {f"events/event_date={DATE}/_manifest.json"}
    assert not (local / "_staging" / f"event_date={DATE}").exists()


def test_an_unreachable_endpoint_is_transient_and_credentials_in_urls_are_refused(
    run, tmp_path: Path
) -> None:
    done = run(
        "s3://lake-nowhere/lake",
        "--s3-endpoint-url",
        "http://127.0.0.1:9",
        "--s3-max-attempts",
        "1",
    )
    assert done.returncode == 75, done.stderr
    assert "Traceback" not in done.stderr and "taking the lock" in done.stderr

    done = run("s3://AKIAEXAMPLE:sEcReT@bucket/lake")
    assert done.returncode == 2, done.stderr
    assert "credentials do not belong in the URL" in done.stderr
    assert "sEcReT" not in done.stderr + done.stdout
