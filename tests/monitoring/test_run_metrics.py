"""Run metrics against a real Pushgateway: a run pushes what its manifest says, a failed run
adds its failure without erasing the date's last success, and a Pushgateway that is down does
not stop a run."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

import processing
from processing.logic.run_metrics import JOB
from tests.conftest import DATA
from tests.monitoring.conftest import scrape

pytestmark = pytest.mark.slow

DATE = "2023-10-23"


def _group(metrics, name: str, **labels: str) -> float:
    key = frozenset({"job": JOB, "date": DATE, "instance": "", **labels}.items())
    return metrics[(name, key)]


def test_a_run_pushes_its_manifest_and_a_failure_keeps_the_last_success(
    cli, pushgateway: str, tmp_path: Path
) -> None:
    dest = tmp_path / "lake"
    before = time.time()
    done = cli("run", "--date", DATE, "--source", DATA / "sample_day.jsonl.gz", "--dest", dest,
               "--workers", "1", "--pushgateway", pushgateway)  # fmt: skip
    assert done.returncode == 0, done.stderr
    m = processing.read_manifest(str(dest), dt.date.fromisoformat(DATE))
    assert m is not None
    metrics = scrape(pushgateway)
    assert _group(metrics, "events_lake_rows", outcome="read") == m["rows_read"]
    assert _group(metrics, "events_lake_rows", outcome="valid") == m["rows_valid"]
    assert _group(metrics, "events_lake_rows", outcome="rejected") == m["rows_rejected"]
    assert _group(metrics, "events_lake_rejected_share") == pytest.approx(m["rejected_share"])
    assert _group(metrics, "events_lake_bytes_written") == m["bytes_written"]
    assert _group(metrics, "events_lake_bytes_read") == m["bytes_read"]
    assert m["bytes_read"] == (DATA / "sample_day.jsonl.gz").stat().st_size
    assert _group(metrics, "events_lake_files") == len(m["files"])
    for reason, n in m["rejected_by_reason"].items():
        assert _group(metrics, "events_lake_rejected_rows", reason=reason) == n
    for name, n in m["valid_by_event"].items():
        assert _group(metrics, "events_lake_valid_rows", event_name=name) == n
    for stage in ("plan", "process", "audit", "publish"):
        assert _group(metrics, "events_lake_stage_seconds", stage=stage) >= 0
    success = _group(metrics, "events_lake_last_success_timestamp_seconds")
    assert before <= success <= time.time()
    assert _group(metrics, "events_lake_published_run_info", run_id=m["run_id"]) == 1

    bad = DATA / "bad_records.jsonl"  # too many rejected rows: the audit fails
    failed = cli("run", "--date", DATE, "--source", bad, "--dest", dest, "--workers", "1",
                 "--pushgateway", pushgateway)  # fmt: skip
    assert failed.returncode == 4, failed.stderr
    metrics = scrape(pushgateway)
    assert _group(metrics, "events_lake_last_failure_timestamp_seconds") >= success
    assert _group(metrics, "events_lake_last_failure_info", error="AuditError") == 1
    assert _group(metrics, "events_lake_last_success_timestamp_seconds") == success  # kept


def test_a_pushgateway_that_is_down_does_not_stop_the_run(cli, tmp_path: Path) -> None:
    done = cli("run", "--date", DATE, "--source", DATA / "sample_day.jsonl.gz",
               "--dest", tmp_path / "lake", "--workers", "1",
               "--pushgateway", "http://127.0.0.1:9")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "could not push the run's metrics" in done.stderr


def test_the_volume_against_the_week_before_is_pushed_as_the_report_says(
    cli, generate, pushgateway: str, tmp_path: Path
) -> None:
    dest = tmp_path / "lake"
    week_ago = (dt.date.fromisoformat(DATE) - dt.timedelta(7)).isoformat()
    for date, rows in ((week_ago, 3_000), (DATE, 1_200)):
        done = cli("run", "--date", date, "--source", generate(f"{date}.jsonl.gz", date, rows),
                   "--dest", dest, "--workers", "1", "--no-performance-report",
                   "--pushgateway", pushgateway)  # fmt: skip
        assert done.returncode == 0, done.stderr
    m = processing.read_manifest(str(dest), dt.date.fromisoformat(DATE))
    assert m is not None
    entry = next(e for e in m["reports"] if e["kind"] == "quality_json")
    report = json.loads((dest / "events" / f"event_date={DATE}" / entry["path"]).read_text())
    metrics = scrape(pushgateway)
    ratio = _group(metrics, "events_lake_volume_ratio", baseline="same_weekday")
    assert ratio == report["comparison"]["volume"]["same_weekday"]["ratio"] == 0.4
    # one day of history is too few for a trailing mean: no sample, rather than a wrong one
    assert not [k for k in metrics if k[0] == "events_lake_volume_ratio"
                and ("baseline", "trailing_mean") in k[1]]  # fmt: skip
