"""``reconcile`` (every count checked against every other) and ``build_manifest``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest

from processing.logic.manifest import FileInfo, PieceResult, RunTotals, build_manifest, reconcile
from processing.spec.errors import AuditError
from processing.spec.schema import SCHEMA_VERSION


def events(path: str, rows: int, event_name: str = "view", size: int = 1000) -> FileInfo:
    return FileInfo("events", f"event_name={event_name}/{path}", rows, size, event_name)


def rejected(path: str, rows: int, size: int = 100) -> FileInfo:
    return FileInfo("rejected", path, rows, size)


def piece(
    name: str = "p0",
    read: int = 10,
    valid: int = 8,
    rejected_rows: int = 2,
    *,
    reasons: dict[str, int] | None = None,
    files: tuple[FileInfo, ...] | None = None,
) -> PieceResult:
    if reasons is None:
        reasons = {"event_datetime:missing": rejected_rows} if rejected_rows else {}
    if files is None:
        files = (events(f"part-{name}-000.parquet", valid),)
        if rejected_rows:
            files += (rejected(f"part-{name}-000.parquet", rejected_rows),)
    return PieceResult(name, read, valid, rejected_rows, reasons, files)


GOOD_PIECES = [
    piece(
        "p0",
        10,
        8,
        2,
        reasons={"event_datetime:missing": 1, "user_id:missing": 1},
        files=(
            events("part-00000-000.parquet", 5, "view", 500),
            events("part-00000-000.parquet", 3, "click", 300),
            rejected("part-00000-000.parquet", 2, 50),
        ),
    ),
    piece(
        "p1",
        7,
        4,
        3,
        reasons={"event_datetime:missing": 2, "SKU:invalid_format": 1},
        files=(
            events("part-00001-000.parquet", 4, "view", 400),
            rejected("part-00001-000.parquet", 3, 60),
        ),
    ),
    piece("p2", 0, 0, 0, reasons={}, files=()),
]


def test_totals_of_good_pieces() -> None:
    totals = reconcile(GOOD_PIECES)
    assert totals.rows_read == 17
    assert totals.rows_valid == 12
    assert totals.rows_rejected == 5
    assert totals.rejected_by_reason == {
        "SKU:invalid_format": 1,
        "event_datetime:missing": 3,
        "user_id:missing": 1,
    }
    assert list(totals.rejected_by_reason) == sorted(totals.rejected_by_reason)
    assert totals.valid_by_event == {"click": 3, "view": 9}
    assert sum(totals.valid_by_event.values()) == totals.rows_valid
    assert totals.bytes_written == 500 + 300 + 50 + 400 + 60
    assert len(totals.files) == 5
    assert list(totals.files) == sorted(totals.files, key=lambda f: (f.dataset, f.path))


def test_totals_do_not_depend_on_piece_order() -> None:
    assert reconcile(GOOD_PIECES) == reconcile(list(reversed(GOOD_PIECES)))


def test_reconcile_accepts_a_generator_and_no_pieces() -> None:
    assert reconcile(p for p in GOOD_PIECES).rows_read == 17
    empty = reconcile([])
    assert (empty.rows_read, empty.rows_valid, empty.rows_rejected) == (0, 0, 0)
    assert empty.rejected_by_reason == {}
    assert empty.files == ()
    assert empty.bytes_written == 0


def test_same_file_name_in_events_and_rejected_is_fine() -> None:
    p = piece(
        "p0",
        3,
        2,
        1,
        files=(events("part-00000-000.parquet", 2), rejected("part-00000-000.parquet", 1)),
    )
    # the events path has the partition directory; the rejected path does not
    assert reconcile([p]).rows_read == 3
    p2 = piece(
        "p0",
        3,
        2,
        1,
        files=(
            FileInfo("events", "x.parquet", 2, 1, "view"),
            FileInfo("rejected", "x.parquet", 1, 1),
        ),
    )
    assert reconcile([p2]).rows_valid == 2


MISMATCHES = [
    pytest.param([piece(read=11)], "read 11 != valid 8 + rejected 2", id="read-more-than-split"),
    pytest.param([piece(read=9)], "read 9 != valid 8 + rejected 2", id="read-fewer-than-split"),
    pytest.param(
        [piece(reasons={"event_datetime:missing": 1})],
        "rejected by reason",
        id="reasons-short",
    ),
    pytest.param(
        [piece(reasons={"event_datetime:missing": 2, "user_id:missing": 1})],
        "rejected by reason",
        id="reasons-over",
    ),
    pytest.param(
        [piece(rejected_rows=0, read=8, reasons={"x:y": 1})],
        "rejected by reason",
        id="reasons-without-rejected",
    ),
    pytest.param(
        [piece(files=(events("a.parquet", 7), rejected("a.parquet", 2)))],
        "files hold 7 valid / 2 rejected rows, counted 8 / 2",
        id="events-file-rows-short",
    ),
    pytest.param(
        [piece(files=(events("a.parquet", 8), events("b.parquet", 1), rejected("a.parquet", 2)))],
        "files hold 9 valid",
        id="events-file-rows-over",
    ),
    pytest.param(
        [piece(files=(events("a.parquet", 8), rejected("a.parquet", 1)))],
        "files hold 8 valid / 1 rejected rows",
        id="rejected-file-rows-short",
    ),
    pytest.param(
        [piece(files=(events("a.parquet", 8),))],
        "0 rejected",
        id="rejected-file-missing",
    ),
    pytest.param(
        [piece(files=(rejected("a.parquet", 2),))],
        "files hold 0 valid",
        id="events-file-missing",
    ),
    pytest.param(
        [
            piece(
                files=(
                    FileInfo("events", "a.parquet", 8, 1, "view"),
                    FileInfo("rejected", "a.parquet", 2, 1),
                    FileInfo("events", "a.parquet", 0, 1, "view"),
                )
            )
        ],
        "same file name",
        id="duplicate-file-in-one-piece",
    ),
    pytest.param(
        [
            piece(
                "p0",
                files=(events("part-00000-000.parquet", 8), rejected("part-00000-000.parquet", 2)),
            ),
            piece(
                "p1",
                files=(events("part-00000-000.parquet", 8), rejected("part-00001-000.parquet", 2)),
            ),
        ],
        "same file name",
        id="duplicate-events-file-across-pieces",
    ),
    pytest.param(
        [
            piece("p0", files=(events("a.parquet", 8), rejected("r.parquet", 2))),
            piece("p1", files=(events("b.parquet", 8), rejected("r.parquet", 2))),
        ],
        "same file name",
        id="duplicate-rejected-file-across-pieces",
    ),
]


@pytest.mark.parametrize(("pieces", "message"), MISMATCHES)
def test_mismatch_raises_audit_error(pieces: list[PieceResult], message: str) -> None:
    with pytest.raises(AuditError) as info:
        reconcile([*GOOD_PIECES, *pieces])
    text = str(info.value)
    assert message in text
    assert "nothing published" in text
    assert info.value.exit_code == 4
    assert not info.value.retryable


def test_every_problem_is_reported_with_its_piece() -> None:
    bad = [piece("px", read=99), piece("py", reasons={"a:b": 5})]
    with pytest.raises(AuditError) as info:
        reconcile([*GOOD_PIECES, *bad])
    text = str(info.value)
    assert "px: read 99" in text
    assert "py: rejected by reason" in text
    assert "p0" not in text.replace("part-", "")


# --- the manifest ---------------------------------------------------------------------------------
STARTED = dt.datetime(2023, 10, 24, 1, 0, 0, tzinfo=dt.UTC)
FINISHED = dt.datetime(2023, 10, 24, 1, 0, 8, 500000, tzinfo=dt.UTC)
REQUIRED_KEYS = {
    "run_id",
    "date",
    "source",
    "rows_read",
    "rows_valid",
    "rows_rejected",
    "rejected_by_reason",
    "files",
    "schema_version",
    "started_at",
    "finished_at",
}


def _manifest(totals: RunTotals | None = None, **kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "run_id": "20231024T010000Z-abc",
        "date": dt.date(2023, 10, 23),
        "source": "data/sample_day.jsonl.gz",
        "totals": totals if totals is not None else reconcile(GOOD_PIECES),
        "started_at": STARTED,
        "finished_at": FINISHED,
    }
    return build_manifest(**{**args, **kwargs})


def test_manifest_has_required_keys_and_values() -> None:
    manifest = _manifest()
    assert set(manifest) >= REQUIRED_KEYS
    assert manifest["run_id"] == "20231024T010000Z-abc"
    assert manifest["date"] == "2023-10-23"
    assert manifest["source"] == "data/sample_day.jsonl.gz"
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert (manifest["rows_read"], manifest["rows_valid"], manifest["rows_rejected"]) == (17, 12, 5)
    assert manifest["rows_read"] == manifest["rows_valid"] + manifest["rows_rejected"]
    assert sum(manifest["rejected_by_reason"].values()) == manifest["rows_rejected"]
    assert manifest["valid_by_event"] == {"click": 3, "view": 9}
    assert manifest["started_at"] == "2023-10-24T01:00:00+00:00"
    assert manifest["finished_at"] == "2023-10-24T01:00:08.500000+00:00"
    assert manifest["duration_seconds"] == 8.5
    assert manifest["rows_per_second"] == 2.0
    assert manifest["rejected_share"] == round(5 / 17, 6)
    assert manifest["bytes_written"] == 1310


def test_manifest_files_have_rows_and_bytes() -> None:
    files = _manifest()["files"]
    assert len(files) == 5
    for f in files:
        assert {"dataset", "path", "rows", "bytes", "event_name"} <= set(f)
        assert isinstance(f["rows"], int)
        assert isinstance(f["bytes"], int)
    assert sum(f["rows"] for f in files if f["dataset"] == "events") == 12
    assert sum(f["rows"] for f in files if f["dataset"] == "rejected") == 5
    assert [f["dataset"] for f in files] == ["events"] * 3 + ["rejected"] * 2


def test_manifest_is_json_and_round_trips() -> None:
    manifest = _manifest(extra={"snapshot": "2023-10-24T00:30:00Z", "files_in_source": 1})
    assert json.loads(json.dumps(manifest)) == manifest
    assert manifest["snapshot"] == "2023-10-24T00:30:00Z"
    assert manifest["files_in_source"] == 1


def test_manifest_is_deterministic() -> None:
    assert _manifest() == _manifest()


def test_manifest_of_zero_duration_and_empty_run() -> None:
    manifest = _manifest(totals=reconcile([]), finished_at=STARTED)
    assert manifest["rows_read"] == 0
    assert manifest["files"] == []
    assert manifest["rejected_by_reason"] == {}
    assert manifest["rows_per_second"] == 0.0
    assert manifest["duration_seconds"] == 0.0
    assert manifest["rejected_share"] == 0.0


def test_file_info_is_plain_data() -> None:
    f = events("part-00000-000.parquet", 3)
    assert dataclasses.asdict(f) == {
        "dataset": "events",
        "path": "event_name=view/part-00000-000.parquet",
        "rows": 3,
        "bytes": 1000,
        "event_name": "view",
    }
