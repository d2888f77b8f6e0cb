"""The samples a run pushes, as a table: made from the manifest, one per reason and event name,
and a failure that names its kind but never its message."""

from __future__ import annotations

import datetime as dt

from processing.logic import run_metrics

MANIFEST = {
    "run_id": "R",
    "date": "2023-10-23",
    "rows_read": 10,
    "rows_valid": 7,
    "rows_rejected": 3,
    "rejected_share": 0.3,
    "rejected_by_reason": {"user_id:missing": 2, "event_name:invalid_format": 1},
    "valid_by_event": {"view": 5, "click": 2},
    "bytes_written": 1234,
    "files": [{}, {}, {}],
    "duration_seconds": 2.5,
    "rows_per_second": 4.0,
    "stage_seconds": {"plan": 0.1, "process": 2.0, "audit": 0.2},
}


def _by_key(samples):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}


def test_a_success_is_the_manifest_in_samples() -> None:
    found = _by_key(run_metrics.success(MANIFEST, publish_seconds=0.4, now=1_700_000_000.0))
    assert found[("events_lake_rows", (("outcome", "read"),))] == 10
    assert found[("events_lake_rows", (("outcome", "rejected"),))] == 3
    assert found[("events_lake_rejected_rows", (("reason", "user_id:missing"),))] == 2
    assert found[("events_lake_valid_rows", (("event_name", "click"),))] == 2
    assert found[("events_lake_files", ())] == 3
    assert found[("events_lake_stage_seconds", (("stage", "publish"),))] == 0.4
    assert found[("events_lake_last_success_timestamp_seconds", ())] == 1_700_000_000.0
    assert found[("events_lake_published_run_info", (("run_id", "R"),))] == 1
    assert found[("events_lake_date_timestamp_seconds", ())] == 1698019200.0  # 2023-10-23
    assert not any("failure" in name for name, _ in found)


def test_a_failure_names_its_kind_only() -> None:
    samples = run_metrics.failure(dt.date(2023, 10, 23), "AuditError", now=5.0)
    assert _by_key(samples) == {
        ("events_lake_date_timestamp_seconds", ()): 1698019200.0,
        ("events_lake_last_failure_timestamp_seconds", ()): 5.0,
        ("events_lake_last_failure_info", (("error", "AuditError"),)): 1,
    }
