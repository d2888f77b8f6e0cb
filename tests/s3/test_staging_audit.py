"""The audit of a run's staging, on a local disk and on S3 (moto's server): what the tasks
reported must be what is staged, row for row, and sampled rows must match the output model."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from processing.adapters import audit as staging_audit
from processing.logic.layout import Layout
from processing.logic.manifest import FileInfo, RunTotals
from processing.spec import schema as s
from processing.spec.errors import AuditError
from tests.s3.conftest import Lake

DATE = dt.date(2023, 10, 23)


# --- audit -----------------------------------------------------------------------------------
def _events_file(fs: Any, path: str, times: list[dt.datetime]) -> FileInfo:
    table = pa.table(
        {
            s.EVENT_DATETIME: pa.array(times, pa.timestamp("us", tz="UTC")),
            s.USER_ID: ["u"] * len(times),
            s.PLATFORM: ["web"] * len(times),
            s.PRODUCT_NAME: pa.array([None] * len(times), pa.string()),
            s.SKU: pa.array([None] * len(times), pa.string()),
        }
    )
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as f:
        pq.write_table(table, f)
    return FileInfo("events", path.split("/events/", 1)[1], len(times), 0, "view")


def _totals(files: list[FileInfo]) -> RunTotals:
    valid = sum(f.rows for f in files)
    return RunTotals(valid, valid, 0, {}, {"view": valid}, tuple(files))


NOON = dt.datetime(2023, 10, 23, 12, tzinfo=dt.UTC)


def test_audit_accepts_what_the_tasks_reported(lake: Lake) -> None:
    fs, root = lake
    layout = Layout(root)
    events, _ = layout.staged(DATE, "r1")
    good = _events_file(fs, f"{events}/event_name=view/part-00000-000-aaaa.parquet", [NOON] * 3)
    staging_audit.audit(fs, layout, DATE, "r1", _totals([good]))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "missing"),
        ("stray", "files no task reported"),
        ("rows", "holds 3 rows, reported 4"),
        ("model", "does not match the output model"),
    ],
)
def test_audit_refuses_staging_that_does_not_match(lake: Lake, case: str, message: str) -> None:
    fs, root = lake
    layout = Layout(root)
    events, _ = layout.staged(DATE, "r1")
    times = [NOON, NOON, NOON + dt.timedelta(days=1)] if case == "model" else [NOON] * 3
    good = _events_file(fs, f"{events}/event_name=view/part-00000-000-aaaa.parquet", times)
    reported = [good]
    if case == "missing":
        absent = "event_name=view/part-00001-000-aaaa.parquet"
        reported.append(FileInfo("events", absent, 1, 0, "view"))
    if case == "stray":
        _events_file(fs, f"{events}/event_name=view/part-00009-000-aaaa.parquet", [NOON])
    if case == "rows":
        reported = [FileInfo(good.dataset, good.path, 4, 0, "view")]
    with pytest.raises(AuditError, match=message):
        staging_audit.audit(fs, layout, DATE, "r1", _totals(reported))


@pytest.mark.parametrize("tail_bytes", [16, 1 << 20], ids=["footer-beyond-the-tail", "whole"])
def test_audit_reads_row_counts_however_the_footer_falls(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, tail_bytes: int
) -> None:
    fs, root = lake
    layout = Layout(root)
    events, _ = layout.staged(DATE, "r1")
    monkeypatch.setattr(staging_audit, "_TAIL_BYTES", tail_bytes)
    good = _events_file(fs, f"{events}/event_name=view/part-00000-000-aaaa.parquet", [NOON] * 5)
    staging_audit.audit(fs, layout, DATE, "r1", _totals([good]))
    with pytest.raises(AuditError, match="holds 5 rows, reported 6"):
        wrong = FileInfo(good.dataset, good.path, 6, 0, "view")
        staging_audit.audit(fs, layout, DATE, "r1", _totals([wrong]))


def test_audit_names_a_staged_file_that_is_not_parquet(lake: Lake) -> None:
    fs, root = lake
    layout = Layout(root)
    events, _ = layout.staged(DATE, "r1")
    good = _events_file(fs, f"{events}/event_name=view/part-00000-000-aaaa.parquet", [NOON] * 3)
    fs.pipe_file(f"{events}/{good.path}", b"PAR1 not really")
    with pytest.raises(AuditError, match="not a readable Parquet file"):
        staging_audit.audit(fs, layout, DATE, "r1", _totals([good]))
