"""The audit's refusals say what to do: a day of another date is told apart from a day of bad
data (pure: the totals the audit reads, and the run's settings)."""

from __future__ import annotations

import pytest

from processing.app.stages.audit_stage import check_totals
from processing.logic.manifest import RunTotals
from processing.spec.errors import AuditError, InputError
from processing.spec.settings import Settings

SETTINGS = Settings.load(
    {"PROCESSING_DATE": "2023-10-23", "PROCESSING_SOURCE": "s", "PROCESSING_DEST": "/lake"}
)
OUTSIDE = "event_datetime:outside_run_date"


def _totals(valid: int, rejected: dict[str, int]) -> RunTotals:
    read = valid + sum(rejected.values())
    return RunTotals(read, valid, read - valid, rejected, {"view": valid} if valid else {}, ())


def test_rows_of_another_date_say_check_the_date() -> None:
    with pytest.raises(AuditError) as refused:
        check_totals(_totals(20, {OUTSIDE: 980}), SETTINGS)
    assert "98.0% of rows were rejected" in str(refused.value)
    assert "980 of the 1,000 rows read are of another date than 2023-10-23: check --date" in str(
        refused.value
    )
    with pytest.raises(InputError, match="check --date") as empty:
        check_totals(_totals(0, {OUTSIDE: 1000}), SETTINGS)
    assert "--allow-empty" not in str(empty.value)


def test_a_day_of_bad_rows_is_not_told_to_check_the_date() -> None:
    with pytest.raises(AuditError) as refused:
        check_totals(_totals(200, {"user_id:missing": 700, OUTSIDE: 100}), SETTINGS)
    assert "check --date" not in str(refused.value)
    with pytest.raises(InputError, match="--allow-empty") as empty:
        check_totals(_totals(0, {}), SETTINGS)
    assert "check --date" not in str(empty.value)
    check_totals(_totals(990, {OUTSIDE: 10}), SETTINGS)  # a few late events: published
