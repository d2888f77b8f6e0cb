"""The run's reports on a real lake: the data-quality report (JSON and HTML) and Dask's
performance report are published beside the manifest, move with the date's version (a rerun
replaces them, a rollback brings them back), compare the day with the days published before it,
and hold no user id."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

import processing
from processing.app.pipeline import rollback
from processing.spec.settings import Settings
from tests.conftest import DATA

pytestmark = pytest.mark.slow

DATE = dt.date(2023, 10, 23)  # the sample day, a Monday
SAMPLE = DATA / "sample_day.jsonl.gz"


def _run(dest: Path, source: Path, date: dt.date = DATE, **more: Any) -> processing.RunReport:
    settings = Settings.load({}, date=date, source=str(source), dest=str(dest), workers=1, **more)
    return processing.run(settings)


def _reports(dest: Path, manifest: dict[str, Any], date: dt.date = DATE) -> dict[str, Path]:
    base = dest / "events" / f"event_date={date}"
    return {e["kind"]: base / e["path"] for e in manifest["reports"]}


def _user_ids(path: Path) -> set[str]:
    ids = set()
    with gzip.open(path, "rt") as f:
        for line in f:
            try:
                user = json.loads(line).get("user_identifiers") or {}
            except (ValueError, AttributeError):
                continue
            if isinstance(user, dict) and isinstance(user.get("id"), str) and len(user["id"]) > 3:
                ids.add(user["id"])
    return ids


def test_a_run_publishes_its_reports_and_they_move_with_the_version(tmp_path: Path) -> None:
    dest = tmp_path / "lake"
    first = _run(dest, SAMPLE)
    m = first.manifest
    files = _reports(dest, m)
    assert set(files) == {"quality_json", "quality_html", "dask_performance"}
    for kind, path in files.items():
        assert path.is_file(), kind
        assert path.parent.name == "_reports"  # beside the manifest, never read as data
        entry = next(e for e in m["reports"] if e["kind"] == kind)
        assert path.stat().st_size == entry["bytes"]
    assert first.quality_report == str(files["quality_html"])

    report = json.loads(files["quality_json"].read_text())
    day = report["day"]
    assert report["run_id"] == m["run_id"]
    for key in ("rows_read", "rows_valid", "rows_rejected", "valid_by_event", "rejected_by_reason"):
        assert day[key] == m[key], key
    assert sum(day["valid_by_hour"]) == m["rows_valid"]
    assert sum(day["valid_by_platform"].values()) == m["rows_valid"]
    assert sum(map(sum, day["rejected_by_hour"].values())) == m["rows_rejected"]
    assert report["history"] == []
    assert [f["check"] for f in report["findings"]] == ["history"]
    page = files["quality_html"].read_text()
    assert "<svg" in page
    dask_page = files["dask_performance"].read_text()  # titled with the date and the run
    assert f"<title>Dask performance report: {DATE}, run {m['run_id']}</title>" in dask_page
    assert "performance_recorded" not in dask_page  # not our own calling code
    assert f"events-lake: {DATE}, run {m['run_id']}" in dask_page
    assert first.performance_report == str(files["dask_performance"])

    ids = _user_ids(SAMPLE)
    assert len(ids) > 100
    for path in (files["quality_json"], files["quality_html"]):
        text = path.read_text()
        leaked = [i for i in ids if i in text]
        assert not leaked, f"{path.name} holds user ids: {leaked[:3]}"
    assert processing.events_dataset(str(dest)).count_rows() == m["rows_valid"]  # not data

    contents = {kind: path.read_bytes() for kind, path in files.items()}
    second = _run(dest, SAMPLE)  # a rerun: new reports, the old ones go with the old version
    again = _reports(dest, second.manifest)
    assert not any(p.exists() for p in files.values())
    assert all(p.exists() for p in again.values())
    on_disk = {p.name for p in (dest / "events" / f"event_date={DATE}" / "_reports").iterdir()}
    assert on_disk == {p.name for p in again.values()}

    restored = rollback(Settings.load({}, date=DATE, dest=str(dest), source=str(SAMPLE))).manifest
    assert restored["run_id"] == m["run_id"]
    back = _reports(dest, restored)  # back, as they were, under the rollback's own names
    assert {kind: path.read_bytes() for kind, path in back.items()} == contents
    assert not any(p.exists() for p in again.values())


def test_the_report_compares_with_the_days_before_and_flags_a_bad_day(
    tmp_path: Path, generate
) -> None:
    dest = tmp_path / "lake"
    week = {DATE - dt.timedelta(days): days for days in (7, 2, 1)}
    for day, seed in week.items():
        _run(dest, generate(f"{day}.jsonl.gz", day.isoformat(), 4_000, bad=0.01, seed=seed), day)
    bad = generate("bad.jsonl.gz", DATE.isoformat(), 1_500, bad=0.4, seed=11)
    done = _run(dest, bad, max_rejected_fraction=0.6, performance_report=False)

    m = done.manifest
    files = _reports(dest, m)
    assert set(files) == {"quality_json", "quality_html"}  # no performance report, as asked
    report = json.loads(files["quality_json"].read_text())
    assert [h["date"] for h in report["history"]] == [
        (DATE - dt.timedelta(d)).isoformat() for d in (1, 2, 7)
    ]
    volume = report["comparison"]["volume"]
    assert volume["same_weekday"] == {
        "date": "2023-10-16",
        "rows_read": 4_000,
        "ratio": round(1_500 / 4_000, 4),
    }
    assert volume["trailing_mean"]["ratio"] == round(1_500 / 4_000, 4)
    warnings = {f["check"] for f in report["findings"] if f["severity"] == "warning"}
    assert {"volume", "rejected"} <= warnings
    assert {f["message"] for f in report["findings"]} >= {f["message"] for f in done.findings}
    page = files["quality_html"].read_text()
    assert page.count("<svg") == 6
    assert "0.38x the same weekday" in page
