"""When the DAG goes on, looks again or gives up on a day (processing.logic.completeness)."""

from __future__ import annotations

import datetime as dt

import pytest

from processing.logic import completeness as c

DATE = dt.date(2023, 10, 23)
LIMITS = {"lateness_seconds": 7200, "timeout_seconds": 43200, "poll_seconds": 600}


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2023, 10, 24, hour, minute, tzinfo=dt.UTC)


def test_the_watermark_and_the_deadline_count_from_the_days_end() -> None:
    assert c.watermark(DATE, 7200) == at(2)
    assert c.deadline(DATE, 43200) == at(12)


@pytest.mark.parametrize(
    ("complete", "now", "expected"),
    [
        pytest.param(True, at(2), (True, False, 0.0), id="complete"),
        pytest.param(True, at(23), (True, False, 0.0), id="complete-even-past-the-deadline"),
        pytest.param(False, at(2), (False, False, 600.0), id="wait-a-poll"),
        pytest.param(False, at(11, 55), (False, False, 300.0), id="wait-until-the-deadline-only"),
        pytest.param(False, at(12), (False, True, 0.0), id="late-at-the-deadline"),
        pytest.param(False, at(13), (False, True, 0.0), id="late-after-it"),
    ],
)
def test_next_step(complete: bool, now: dt.datetime, expected: tuple) -> None:
    step = c.next_step(DATE, complete, now, **LIMITS)
    assert (step.complete, step.late, step.seconds) == expected


def test_a_late_day_says_what_to_check_and_how_to_rerun() -> None:
    step = c.next_step(DATE, False, at(12), **LIMITS)
    assert "2023-10-23 is not complete" in step.message
    assert "no row from 2023-10-24 02:00 UTC" in step.message
    assert "rerun the date" in step.message


def test_the_watermark_restriction_takes_any_later_row_and_a_partitions_midnight() -> None:
    from processing.logic.bigquery_plan import parse_row_restriction, rows_from

    mark = dt.datetime(2023, 10, 24, 2, tzinfo=dt.UTC)
    window = parse_row_restriction(rows_from("timestamp", mark))
    assert window is not None and window.start == mark
    assert window.end is not None and window.end - mark > dt.timedelta(days=3000)  # any later row
    # an ingestion-time partition column holds midnights: the mark's day counts
    window = parse_row_restriction(rows_from("_PARTITIONTIME", mark))
    assert window is not None and window.start == dt.datetime(2023, 10, 24, tzinfo=dt.UTC)


def test_a_deadline_before_the_watermark_is_refused() -> None:
    from processing.spec.errors import ConfigError
    from processing.spec.settings import Settings

    with pytest.raises(ConfigError, match="PROCESSING_DAY_COMPLETE_TIMEOUT_SECONDS"):
        Settings.load(
            {"PROCESSING_DAY_COMPLETE_TIMEOUT_SECONDS": "3600",
             "PROCESSING_DAY_COMPLETE_LATENESS_SECONDS": "7200"},
            required=(),
        )  # fmt: skip
