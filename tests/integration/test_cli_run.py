"""The CLI end to end on one machine: sample day in, hive-partitioned Parquet out, then reruns,
failures before publish, a killed run, other dates, exit codes."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import processing
from tests.conftest import tree_digest
from tests.integration.conftest import ROOT

pytestmark = pytest.mark.slow

DATE = "2023-10-23"
SAMPLE = ROOT / "data" / "sample_day.jsonl.gz"


def _rows(dest: Path, date: str = DATE) -> list[dict]:
    table = processing.events_dataset(str(dest)).to_table(
        filter=ds.field("event_date") == dt.date.fromisoformat(date)
    )
    return sorted(table.to_pylist(), key=lambda r: json.dumps(r, default=str, sort_keys=True))


def _manifest(dest: Path, date: str = DATE) -> dict:
    manifest = processing.read_manifest(str(dest), dt.date.fromisoformat(date))
    assert manifest is not None
    return manifest


def _parquet_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*.parquet")}


def _untagged(files: set[str]) -> set[str]:
    """File paths without the run's tag."""
    return {re.sub(r"-[0-9a-f]{8}\.parquet$", "", f) for f in files}


def test_sample_day_end_to_end(cli, tmp_path: Path) -> None:
    dest = tmp_path / "lake"
    done = cli("run", "--date", DATE, "--source", SAMPLE, "--dest", dest, "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert "published 2023-10-23" in done.stdout
    assert str(dest / "events" / f"event_date={DATE}") in done.stdout
    assert "Dask dashboard" in done.stderr
    assert " INFO distributed." not in done.stderr  # Dask's own chatter stays at WARNING

    with gzip.open(SAMPLE, "rt") as f:
        lines = sum(1 for line in f if line.strip())
    m = _manifest(dest)
    assert m["rows_read"] == lines == m["rows_valid"] + m["rows_rejected"]
    assert m["rows_rejected"] == sum(m["rejected_by_reason"].values()) > 0
    assert {
        "run_id",
        "date",
        "source",
        "schema_version",
        "files",
        "started_at",
        "finished_at",
    } <= set(m)
    for f in m["files"]:
        base = dest / ("events" if f["dataset"] == "events" else "rejected") / f"event_date={DATE}"
        assert (base / f["path"]).stat().st_size == f["bytes"]
    # Hadoop's marker of a finished output, for tools that wait for one: empty, beside the manifest
    assert (dest / "events" / f"event_date={DATE}" / "_SUCCESS").read_bytes() == b""

    # layout: events/event_date=D/event_name=E/part-*.parquet, no partition columns in the files
    files = sorted((dest / "events").rglob("*.parquet"))
    assert files and all(p.parent.name.startswith("event_name=") for p in files)
    assert all(p.parent.parent.name == f"event_date={DATE}" for p in files)
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(files[0]).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert "event_date" not in pq.read_schema(files[0]).names

    # pyarrow.dataset with hive partitioning: event_date typed as a date
    table = processing.events_dataset(str(dest)).to_table()
    assert table.num_rows == m["rows_valid"]
    assert table.schema.field("event_date").type == pa.date32()
    plain = ds.dataset(dest / "events", format="parquet", partitioning="hive").to_table()
    assert plain.num_rows == m["rows_valid"]

    # DuckDB over the same files
    con = duckdb.connect()
    rows, date_type, names = con.execute(
        "select count(*), any_value(typeof(event_date)), count(distinct event_name) from "
        f"read_parquet('{dest}/events/*/*/*.parquet', hive_partitioning=true, "
        "hive_types={'event_date': 'DATE'})"
    ).fetchone()
    assert (rows, date_type) == (m["rows_valid"], "DATE")
    assert names == len(m["valid_by_event"])
    rejected = con.execute(
        f"select count(*) from read_parquet('{dest}/rejected/*/*.parquet')"
    ).fetchone()[0]
    assert rejected == m["rows_rejected"]


def test_rerun_same_date_is_identical_and_leaves_no_stale_file(cli, tmp_path: Path) -> None:
    dest = tmp_path / "lake"
    args = ("run", "--date", DATE, "--source", SAMPLE, "--dest", dest, "--workers", "1")
    done = cli(*args)
    assert done.returncode == 0 and "replaced      nothing: the date's first version" in done.stdout
    first_rows, first_files, first = _rows(dest), _parquet_files(dest), _manifest(dest)
    done = cli(*args)
    assert done.returncode == 0
    second = _manifest(dest)
    replaced = f"replaced      run {first['run_id']}: rows valid {first['rows_valid']:,} -> "
    assert replaced in done.stdout, done.stdout
    assert second["run_id"] != first["run_id"]
    assert _rows(dest) == first_rows
    assert second["rows_valid"] == first["rows_valid"]
    listed = {
        f"events/event_date={DATE}/{f['path']}" for f in second["files"] if f["dataset"] == "events"
    }
    listed |= {
        f"rejected/event_date={DATE}/{f['path']}"
        for f in second["files"]
        if f["dataset"] == "rejected"
    }
    published = {p for p in _parquet_files(dest) if not p.startswith("_")}
    assert published == listed  # exactly this run's files, nothing stale
    # the same partitions and pieces, named after the new run: a rerun never shares a name
    assert _untagged(first_files) == _untagged(published) and not first_files & published
    assert not (dest / "_staging").exists() or not any((dest / "_staging").rglob("*.parquet"))
    # the summary's rollback command, as printed, puts the first run back
    command = re.search(r"kept for a rollback: (.+)", done.stdout)
    assert command, done.stdout
    words = shlex.split(command[1])
    assert words[:3] == ["python", "-m", "processing"]
    assert cli(*words[3:]).returncode == 0
    assert _manifest(dest)["run_id"] == first["run_id"] and _rows(dest) == first_rows


def test_rerun_with_fewer_rows_removes_old_files(cli, generate, tmp_path: Path) -> None:
    dest = tmp_path / "lake"
    big = generate("big.parquet", DATE, 6000, seed=1)
    small = generate("small.jsonl", DATE, 40, seed=2)
    assert (
        cli("run", "--date", DATE, "--source", big, "--dest", dest, "--workers", "1").returncode
        == 0
    )
    assert (
        cli("run", "--date", DATE, "--source", small, "--dest", dest, "--workers", "1").returncode
        == 0
    )
    m = _manifest(dest)
    assert m["rows_read"] == 40
    assert len(_rows(dest)) == m["rows_valid"]
    published = {p.relative_to(dest).as_posix() for p in (dest / "events").rglob("*.parquet")}
    listed = {
        f"events/event_date={DATE}/{f['path']}" for f in m["files"] if f["dataset"] == "events"
    }
    assert published == listed
    assert processing.events_dataset(str(dest)).count_rows() == m["rows_valid"]


def test_failure_before_publish_leaves_published_date_unchanged(cli, tmp_path: Path) -> None:
    dest = tmp_path / "lake"
    assert (
        cli("run", "--date", DATE, "--source", SAMPLE, "--dest", dest, "--workers", "1").returncode
        == 0
    )
    before = tree_digest(dest / "events") | tree_digest(dest / "rejected")
    bad = ROOT / "data" / "bad_records.jsonl"
    done = cli("run", "--date", DATE, "--source", bad, "--dest", dest, "--workers", "1")
    assert done.returncode == 4, done.stderr  # audit: too many rejected rows
    assert "nothing published" in done.stderr
    assert tree_digest(dest / "events") | tree_digest(dest / "rejected") == before
    # kept for people to see what it found: its rejected rows and quality report, not its events
    staged = list((dest / "_staging").rglob("*.parquet"))
    assert staged and all(p.parent.name == "rejected" for p in staged)
    with bad.open() as f:
        lines = sum(1 for line in f if line.strip())
    rejected = pq.ParquetDataset([str(p) for p in staged]).read()
    assert 0 < rejected.num_rows <= lines
    assert set(rejected.column_names) >= {"source_record", "reason"}
    (report,) = (dest / "_staging").rglob("quality-*.html")
    assert "kept for inspection" in done.stderr
    assert str(staged[0].parent) in done.stderr and str(report) in done.stderr
    assert not (dest / "_locks" / f"event_date={DATE}.json").exists()  # the date is free

    again = cli("run", "--date", DATE, "--source", SAMPLE, "--dest", dest, "--workers", "1")
    assert again.returncode == 0, again.stderr
    assert not any((dest / "_staging").rglob("*"))  # the next run removed them


def test_gc_writes_the_marker_a_published_date_lacks(cli, tmp_path: Path) -> None:
    """A date published before the marker existed (or whose marker a run that lost the date
    deleted late): verify notes it, gc writes it when the listing is the version alone."""
    dest = tmp_path / "lake"
    assert cli("run", "--date", DATE, "--source", SAMPLE, "--dest", dest,
               "--workers", "1").returncode == 0  # fmt: skip
    marker = dest / "events" / f"event_date={DATE}" / "_SUCCESS"
    marker.unlink()
    verified = cli("verify", "--date", DATE, "--dest", dest)
    assert verified.returncode == 0 and "no _SUCCESS marker" in verified.stdout
    gc = cli("gc", "--dest", dest)
    assert gc.returncode == 0, gc.stderr
    assert f"{DATE}: wrote the missing _SUCCESS marker" in gc.stdout
    assert marker.read_bytes() == b""
    assert "nothing to collect" in cli("gc", "--dest", dest).stdout  # once


def test_gc_removes_what_a_failed_run_kept_for_inspection(cli, tmp_path: Path) -> None:
    dest = tmp_path / "lake"
    bad = ROOT / "data" / "bad_records.jsonl"
    done = cli("run", "--date", DATE, "--source", bad, "--dest", dest, "--workers", "1")
    assert done.returncode == 4, done.stderr
    assert any((dest / "_staging").rglob("*.parquet"))
    gc = cli("gc", "--dest", dest)
    assert gc.returncode == 0, gc.stderr
    assert f"{DATE}: removed failed runs' staging" in gc.stdout
    assert not any((dest / "_staging").rglob("*"))


def test_killed_run_leaves_published_date_unchanged_and_next_run_recovers(
    cli, generate, tmp_path: Path
) -> None:
    dest = tmp_path / "lake"
    source = generate("day.parquet", DATE, 400_000, bad=0.01, seed=5)
    assert (
        cli("run", "--date", DATE, "--source", SAMPLE, "--dest", dest, "--workers", "1").returncode
        == 0
    )
    before = tree_digest(dest / "events") | tree_digest(dest / "rejected")

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "processing",
            "run",
            "--date",
            DATE,
            "--source",
            str(source),
            "--dest",
            str(dest),
            "--workers",
            "1",
            "--piece-rows",
            "20000",
            "--batch-rows",
            "20000",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not any((dest / "_staging").rglob("*.parquet")):
        assert proc.poll() is None, "the run ended before it wrote staging files"
        assert time.monotonic() < deadline, "no staging files appeared"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the client, the scheduler and the workers
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert tree_digest(dest / "events") | tree_digest(dest / "rejected") == before

    done = cli("run", "--date", DATE, "--source", SAMPLE, "--dest", dest, "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert not any((dest / "_staging").rglob("*.parquet"))  # the killed run's staging is gone
    assert _manifest(dest)["rows_read"] > 0


def test_a_run_killed_while_merging_its_files_changes_nothing_published(
    cli, generate, tmp_path: Path
) -> None:
    """Stopped (SIGSTOP) before its second merge of small staged files (the first may be half
    written), then killed with its whole process group: nothing published changes, and the next
    run discards that staging and publishes."""
    dest = tmp_path / "lake"
    source = generate("day.jsonl", DATE, 40_000, bad=0.01, seed=5)  # pieces: byte ranges
    assert cli("run", "--date", DATE, "--source", SAMPLE, "--dest", dest).returncode == 0
    before = tree_digest(dest / "events") | tree_digest(dest / "rejected")

    # merges that copy row groups, as a real day's do (these pieces' row groups are small enough
    # to be rewritten by default: the suspended run of tests/s3/test_suspended_runs.py does that)
    args = ["run", "--date", DATE, "--source", source, "--dest", dest, "--piece-rows", "4000"]
    args += ["--min-copied-row-group-rows", "1"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.faults.suspend_at",
            "merge_files",
            "2",
            "--",
            *map(str, args),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            if line.startswith("suspended before merge_files #2"):
                break
        else:
            raise AssertionError(f"the run never reached its second merge (exit {proc.wait()})")
        staged = [p.name for p in (dest / "_staging").rglob("*.parquet")]
        assert sum(n.startswith("part-") for n in staged) > 10  # the pieces' files, not merged
    finally:  # a stopped process is never left behind, whatever failed
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert tree_digest(dest / "events") | tree_digest(dest / "rejected") == before

    done = cli("run", "--date", DATE, "--source", source, "--dest", dest)
    assert done.returncode == 0, done.stderr
    assert not any((dest / "_staging").rglob("*.parquet"))
    manifest = _manifest(dest)
    assert manifest["rows_read"] == 40_000 == manifest["rows_valid"] + manifest["rows_rejected"]


def test_other_dates_are_never_touched(cli, generate, tmp_path: Path) -> None:
    dest = tmp_path / "lake"
    other = generate("other.jsonl.gz", "2023-10-24", 500, bad=0.02, seed=3)
    assert (
        cli(
            "run", "--date", "2023-10-24", "--source", other, "--dest", dest, "--workers", "1"
        ).returncode
        == 0
    )
    other_before = tree_digest(dest / "events" / "event_date=2023-10-24") | tree_digest(
        dest / "rejected" / "event_date=2023-10-24"
    )
    for _ in range(2):
        assert (
            cli(
                "run", "--date", DATE, "--source", SAMPLE, "--dest", dest, "--workers", "1"
            ).returncode
            == 0
        )
    other_after = tree_digest(dest / "events" / "event_date=2023-10-24") | tree_digest(
        dest / "rejected" / "event_date=2023-10-24"
    )
    assert other_after == other_before
    assert processing.published_dates(str(dest)) == [dt.date(2023, 10, 23), dt.date(2023, 10, 24)]


def test_json_parquet_and_arrow_sources_publish_the_same_rows(
    cli, generate, tmp_path: Path
) -> None:
    results = []
    for name in ("day.jsonl", "day.parquet", "day.arrow"):
        source = generate(name, DATE, 3000, seed=11)
        dest = tmp_path / name.replace(".", "_")
        done = cli("run", "--date", DATE, "--source", source, "--dest", dest, "--workers", "1")
        assert done.returncode == 0, done.stderr
        results.append(_rows(dest))
    assert results[0] == results[1] == results[2]
    assert len(results[0]) == 3000


def test_existing_scheduler(cli, tmp_path: Path) -> None:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as c:
        done = cli(
            "run",
            "--date",
            DATE,
            "--source",
            SAMPLE,
            "--dest",
            tmp_path / "lake",
            "--scheduler",
            c.scheduler_address,
        )
    assert done.returncode == 0, done.stderr
    assert _manifest(tmp_path / "lake")["rows_read"] == 5000


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (["--date", DATE, "--source", str(SAMPLE)], {}, 2, "PROCESSING_DEST"),
        (["--source", str(SAMPLE), "--dest", "x"], {}, 2, "PROCESSING_DATE"),
        (["--date", DATE, "--source", "nowhere/day.jsonl", "--dest", "x"], {}, 3, "does not exist"),
        (
            ["--date", DATE, "--dest", "x"],
            {"PROCESSING_SOURCE": "bigquery://p.d.t", "PROCESSING_BQ_COMPRESSION": "gzip"},
            2,
            "bq_compression",
        ),
        (
            ["--date", DATE, "--source", str(SAMPLE), "--dest", "x"],
            {"PROCESSING_WORKERS": "two"},
            2,
            "PROCESSING_WORKERS",
        ),
        (
            ["--date", DATE, "--source", str(SAMPLE), "--dest", "x", "--run-id", "a/b"],
            {},
            2,
            "run id",
        ),
        (["--date", "23/10/2023", "--source", str(SAMPLE), "--dest", "x"], {}, 2, "YYYY-MM-DD"),
        (["--date", DATE, "--source", str(SAMPLE), "--dest", str(SAMPLE)], {}, 2, "cannot write"),
        (
            ["--date", DATE, "--source", str(SAMPLE), "--dest", "x", "--scheduler", "nonsense"],
            {},
            2,
            "not an address",
        ),
        (
            ["--date", DATE, "--source", str(SAMPLE), "--dest", "x"],
            {"PROCESSING_MEMORY_LIMIT": "-5GiB"},
            2,
            "memory_limit",
        ),
    ],
    ids=[
        "no-dest",
        "no-date",
        "missing-source",
        "bad-bigquery-setting",
        "bad-env",
        "bad-run-id",
        "bad-date",
        "dest-is-a-file",
        "bad-scheduler-address",
        "negative-memory-limit",
    ],
)
def test_bad_configuration_fails_fast_with_one_clear_line(
    cli, tmp_path, *, args, env, code, message
) -> None:
    args = [str(tmp_path / "x") if a == "x" else a for a in args]  # never write in the repo
    done = cli("run", *args, env=env, timeout=60)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", "-1"], "--seed"),
        (["--date", "9999-12-31"], "a day on each side"),
        (["--out", "/proc/nowhere/day.parquet"], "cannot write"),
        (["--out", "day.csv"], "cannot tell the format"),
    ],
    ids=["negative-seed", "last-date", "unwritable", "unknown-format"],
)
def test_generate_refuses_bad_arguments_and_leaves_no_file(cli, tmp_path, args, message) -> None:
    defaults = {"--date": DATE, "--rows": "10", "--out": str(tmp_path / "day.parquet")}
    given = dict(zip(args[::2], args[1::2], strict=True))
    flags = [item for k, v in {**defaults, **given}.items() for item in (k, v)]
    done = cli("generate", *flags, timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir())


def test_empty_day_is_refused_unless_allowed(cli, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    dest = tmp_path / "lake"
    done = cli("run", "--date", DATE, "--source", empty, "--dest", dest, "--workers", "1")
    assert done.returncode == 3 and "--allow-empty" in done.stderr
    done = cli(
        "run",
        "--date",
        DATE,
        "--source",
        empty,
        "--dest",
        dest,
        "--workers",
        "1",
        "--processes",
        "--allow-empty",
    )
    assert done.returncode == 0, done.stderr
    assert _manifest(dest)["rows_read"] == 0


def test_today_or_a_later_date_is_refused_unless_a_partial_day_is_asked_for(
    cli, generate, tmp_path: Path
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    source = generate("today.parquet", today.isoformat(), 2000)
    dest = tmp_path / "lake"
    for day, when in ((today, "today"), (today + dt.timedelta(days=1), "in the future")):
        done = cli("run", "--date", day, "--source", source, "--dest", dest, "--workers", "1")
        assert done.returncode == 2, done.stderr
        assert f"{day} is {when}" in done.stderr and "--allow-partial-day" in done.stderr
        assert "Traceback" not in done.stderr
    assert not dest.exists()  # refused before anything was touched, the lock included
    done = cli("run", "--date", today, "--source", source, "--dest", dest, "--workers", "1",
               "--allow-partial-day")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _manifest(dest, today.isoformat())["rows_valid"] > 0


def test_unreadable_or_foreign_input_is_an_input_error(cli, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    truncated = tmp_path / "truncated.jsonl.gz"
    truncated.write_bytes(SAMPLE.read_bytes()[:20_000])  # a gzip stream cut in the middle
    renamed = tmp_path / "renamed.parquet"
    pq.write_table(pa.table({"ts": [1], "event_name": ["view"]}), renamed)
    numeric_ids = tmp_path / "numeric_ids.parquet"
    user = pa.array([{"platform": "web", "id": 42}])
    product = pa.array([{"name": "Mouse", "SKU": "SKU-1"}])
    pq.write_table(
        pa.table({"timestamp": ["2023-10-23T12:00:00Z"], "event_name": ["view"],
                  "user_identifiers": user, "product_information": product}),
        numeric_ids,
    )  # fmt: skip
    corrupt = tmp_path / "corrupt.parquet"
    good = tmp_path / "good.parquet"
    pq.write_table(
        pa.table({"timestamp": ["2023-10-23T12:00:00Z"] * 1000, "event_name": ["view"] * 1000,
                  "user_identifiers": pa.array([{"platform": "web", "id": "u"}] * 1000),
                  "product_information": pa.array([{"name": "M", "SKU": "S"}] * 1000)}),
        good, compression="none",
    )  # fmt: skip
    data = bytearray(good.read_bytes())
    data[100:400] = b"\xff" * 300  # the first column's pages, not the footer
    corrupt.write_bytes(bytes(data))
    for source, message in (
        (truncated, "corrupt"),
        (renamed, "'timestamp' is missing"),
        (numeric_ids, "'user_identifiers' has type"),
        (corrupt, "corrupt"),
    ):
        done = cli("run", "--date", DATE, "--source", source, "--dest", tmp_path / "lake")
        assert done.returncode == 3, done.stderr
        assert message in done.stderr
        assert not (tmp_path / "lake" / "events").exists()


def test_a_source_with_no_row_of_the_date_publishes_nothing(cli, generate, tmp_path: Path) -> None:
    dest = tmp_path / "lake"
    assert cli("run", "--date", DATE, "--source", SAMPLE, "--dest", dest).returncode == 0
    before = tree_digest(dest / "events") | tree_digest(dest / "rejected")
    other_day = generate("other.parquet", "2023-10-24", 300, seed=4)
    done = cli(
        "run", "--date", DATE, "--source", other_day, "--dest", dest,
        "--max-rejected-fraction", "1",
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "no valid rows" in done.stderr and "outside_run_date=300" in done.stderr
    assert "300 of the 300 rows read are of another date than 2023-10-23: check --date" in (
        done.stderr
    )
    assert "--allow-empty" not in done.stderr  # publishing an empty day is not the answer
    assert tree_digest(dest / "events") | tree_digest(dest / "rejected") == before


def test_rerun_with_the_same_run_id_after_a_crash(cli, tmp_path: Path) -> None:
    dest = tmp_path / "lake"
    leftover = dest / "_staging" / f"event_date={DATE}" / "run_id=fixed" / "events"
    (leftover / "event_name=view").mkdir(parents=True)
    (leftover / "event_name=view" / "part-00099-000.parquet").write_bytes(b"partial")
    done = cli("run", "--date", DATE, "--source", SAMPLE, "--dest", dest, "--run-id", "fixed")
    assert done.returncode == 0, done.stderr
    assert _manifest(dest)["run_id"] == "fixed"
    assert not list((dest / "events").rglob("part-00099-*"))
