"""Which dates a retention expires (the pure plan), and its settings, as tables of cases."""

from __future__ import annotations

import datetime as dt

import pytest

from processing.logic import retention
from processing.spec.errors import ConfigError
from processing.spec.settings import Settings

TODAY = dt.date(2024, 3, 31)


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


DATES = [d("2024-02-28"), d("2024-02-29"), d("2024-03-01"), d("2024-03-30"), d("2024-03-31")]

CASES = [
    # keep, rejected keep, expired whole, rejected rows only
    pytest.param(None, None, [], [], id="no retention: nothing expires"),
    pytest.param(30, None, ["2024-02-28", "2024-02-29"], [], id="30 days: cutoff 03-01 is kept"),
    pytest.param(31, None, ["2024-02-28"], [], id="31 days: 02-29 (leap day) is kept"),
    pytest.param(1, None, DATES[:3], [], id="1 day: yesterday and today kept"),
    pytest.param(1000, None, [], [], id="longer than the lake: nothing"),
    pytest.param(30, 1, DATES[:2], ["2024-03-01"], id="rejected rows of 03-01 go"),
    pytest.param(
        60, 30, [], ["2024-02-28", "2024-02-29"], id="kept dates lose their rejected rows"
    ),
    pytest.param(30, 30, DATES[:2], [], id="same retention: whole dates only"),
    pytest.param(None, 1, [], DATES[:3], id="rejected rows alone (the logic allows it)"),
]


@pytest.mark.parametrize(("keep", "rejected", "whole", "rejected_only"), CASES)
def test_the_plan(keep, rejected, whole, rejected_only) -> None:
    plan = retention.plan(TODAY, keep, rejected, reversed(DATES))
    assert plan.expire == tuple(d(x) if isinstance(x, str) else x for x in whole)
    assert plan.rejected_only == tuple(d(x) if isinstance(x, str) else x for x in rejected_only)
    assert not set(plan.expire) & set(plan.rejected_only)
    assert plan.empty == (not whole and not rejected_only)
    if keep is not None:
        assert plan.cutoff == TODAY - dt.timedelta(days=keep)
        assert all(x < plan.cutoff for x in plan.expire)
        assert all(x >= plan.cutoff for x in set(DATES) - set(plan.expire))


def test_no_date_present_expires_nothing() -> None:
    assert retention.plan(TODAY, 1, 1, []).empty


def test_a_retention_longer_than_the_calendar_keeps_everything() -> None:
    assert retention.cutoff(dt.date(2000, 1, 1), 10**6) == dt.date.min
    assert retention.plan(dt.date(2000, 1, 1), 10**6, None, [dt.date.min]).empty


@pytest.mark.parametrize(("keep", "rejected"), [(0, None), (-1, None), (30, 31)])
def test_the_plan_refuses_what_makes_no_sense(keep, rejected) -> None:
    with pytest.raises(ValueError):
        retention.plan(TODAY, keep, rejected, DATES)


SETTINGS = [
    ({"PROCESSING_KEEP_DAYS": "0"}, "keep_days must be a whole number of days between 1"),
    ({"PROCESSING_KEEP_DAYS": "-3"}, "(--keep-days or PROCESSING_KEEP_DAYS)"),
    ({"PROCESSING_KEEP_DAYS": "36501"}, "between 1 and 36,500"),
    ({"PROCESSING_KEEP_DAYS": "thirty"}, "PROCESSING_KEEP_DAYS='thirty' is not valid"),
    (
        {"PROCESSING_KEEP_DAYS": "30", "PROCESSING_REJECTED_KEEP_DAYS": "31"},
        "rejected_keep_days (31) must be at most keep_days (30)",
    ),
    ({"PROCESSING_REJECTED_KEEP_DAYS": "7"}, "rejected_keep_days needs --keep-days"),
    (
        {"PROCESSING_KEEP_DAYS": "30", "PROCESSING_REJECTED_KEEP_DAYS": "0"},
        "(--rejected-keep-days or PROCESSING_REJECTED_KEEP_DAYS)",
    ),
]


@pytest.mark.parametrize(("env", "message"), SETTINGS)
def test_bad_retention_settings_say_what_to_fix(env, message) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load(env, required=())
    assert message in str(info.value)


def test_retention_settings_default_to_nothing_expiring() -> None:
    settings = Settings.load({}, required=())
    assert settings.keep_days is None and settings.rejected_keep_days is None
    both = Settings.load(
        {"PROCESSING_KEEP_DAYS": "400", "PROCESSING_REJECTED_KEEP_DAYS": "30"}, required=()
    )
    assert (both.keep_days, both.rejected_keep_days) == (400, 30)
