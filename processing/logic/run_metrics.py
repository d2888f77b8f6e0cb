"""What a run tells Prometheus: samples made from its manifest, or from its failure (pure).

Every sample belongs to the group ``{job="events_lake", date="D"}`` on the Pushgateway, so each
date keeps its own last success. A success replaces the date's group (no stale reason or event
name survives a rerun); a failure adds its own samples beside it, so the date's last success is
still there for the "no publish by the deadline" alert.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JOB = "events_lake"
PREFIX = "events_lake_"


@dataclass(frozen=True)
class Sample:
    name: str
    help: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


def _date(date: dt.date) -> Sample:
    """The date as a number, so alerts can ask for "yesterday" (labels cannot be computed)."""
    midnight = dt.datetime.combine(date, dt.time(), tzinfo=dt.UTC).timestamp()
    return Sample(
        f"{PREFIX}date_timestamp_seconds", "The run's date, midnight UTC (Unix time)", midnight
    )


def success(
    manifest: Mapping[str, Any],
    publish_seconds: float,
    now: float,
    volume_ratios: Mapping[str, float] | None = None,
) -> list[Sample]:
    """The run that published ``manifest``: its counts, sizes, times, and when it succeeded;
    with ``volume_ratios`` (baseline to ratio, from the quality report), the day's rows read
    against the same weekday a week earlier and against the trailing mean."""
    m = manifest
    samples = [
        _date(dt.date.fromisoformat(m["date"])),
        Sample(f"{PREFIX}rows", "Rows of the run by outcome", m["rows_read"], {"outcome": "read"}),
        Sample(
            f"{PREFIX}rows", "Rows of the run by outcome", m["rows_valid"], {"outcome": "valid"}
        ),
        Sample(
            f"{PREFIX}rows",
            "Rows of the run by outcome",
            m["rows_rejected"],
            {"outcome": "rejected"},
        ),
        Sample(
            f"{PREFIX}rejected_share",
            "Share of the rows read that were rejected",
            m.get("rejected_share", 0.0),
        ),
        Sample(f"{PREFIX}bytes_written", "Parquet bytes published", m["bytes_written"]),
        *(
            [Sample(f"{PREFIX}bytes_read", "Bytes of the source read", m["bytes_read"])]
            if m.get("bytes_read") is not None
            else []
        ),
        Sample(f"{PREFIX}files", "Parquet files published", len(m["files"])),
        Sample(
            f"{PREFIX}duration_seconds",
            "From the run's start to its manifest",
            m["duration_seconds"],
        ),
        Sample(f"{PREFIX}rows_per_second", "Rows read per second of the run", m["rows_per_second"]),
        Sample(
            f"{PREFIX}last_success_timestamp_seconds",
            "When the date was last published (Unix time)",
            now,
        ),
        Sample(
            f"{PREFIX}published_run_info",
            "The run published for the date",
            1,
            {"run_id": str(m["run_id"])},
        ),
    ]
    samples += [
        Sample(f"{PREFIX}rejected_rows", "Rejected rows by first reason", n, {"reason": reason})
        for reason, n in sorted(m["rejected_by_reason"].items())
    ]
    samples += [
        Sample(f"{PREFIX}valid_rows", "Valid rows by event name", n, {"event_name": name})
        for name, n in sorted(m["valid_by_event"].items())
    ]
    stages = {**m.get("stage_seconds", {}), "publish": publish_seconds}
    samples += [
        Sample(f"{PREFIX}stage_seconds", "Seconds each stage of the run took", s, {"stage": stage})
        for stage, s in stages.items()
    ]
    samples += [
        Sample(
            f"{PREFIX}volume_ratio",
            "Rows read for the date against a baseline of earlier published days",
            ratio,
            {"baseline": baseline},
        )
        for baseline, ratio in sorted((volume_ratios or {}).items())
    ]
    return samples


def failure(date: dt.date, kind: str, now: float) -> list[Sample]:
    """A run that failed: when, and of what kind (an error class, never its message)."""
    return [
        _date(date),
        Sample(
            f"{PREFIX}last_failure_timestamp_seconds",
            "When a run of the date last failed (Unix time)",
            now,
        ),
        Sample(f"{PREFIX}last_failure_info", "The kind of the last failure", 1, {"error": kind}),
    ]
