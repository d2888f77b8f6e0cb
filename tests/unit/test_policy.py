"""The null/missing policy: one case per row of ``processing.spec.rules.POLICY``.

The README's policy table is generated from ``POLICY``, so these tests check the documented
behaviour: for every field, a record where that field is missing (absent, null, empty or blank,
and the whole struct null for nested fields) gives the outcome the table promises.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from processing.logic.batch import BatchResult, split_batch
from processing.logic.normalise import normalise
from processing.spec import rules as r
from processing.spec import schema as s

DATE = dt.date(2023, 10, 23)

BASE_TEXT: dict[str, Any] = {
    "timestamp": "2023-10-23T12:34:56Z",
    "event_name": "view",
    "user_identifiers": {"platform": "web", "id": "user_12345"},
    "product_information": {"name": "Wireless Mouse", "SKU": "SKU-1001"},
}
BASE_TYPED: dict[str, Any] = {
    **BASE_TEXT,
    "timestamp": dt.datetime(2023, 10, 23, 12, 34, 56, tzinfo=dt.UTC),
}

# Where each output field comes from in the input record: (top-level key, nested key or None).
SOURCE_PATH: dict[str, tuple[str, str | None]] = {
    s.EVENT_DATETIME: ("timestamp", None),
    s.EVENT_NAME: ("event_name", None),
    s.USER_ID: ("user_identifiers", "id"),
    s.PLATFORM: ("user_identifiers", "platform"),
    s.PRODUCT_NAME: ("product_information", "name"),
    s.SKU: ("product_information", "SKU"),
}

# How a field can be missing. Text-only variants do not apply to the typed timestamp.
ABSENT, NULL, EMPTY, BLANK, STRUCT_NULL, STRUCT_ABSENT = (
    "absent",
    "null",
    "empty",
    "blank",
    "struct_null",
    "struct_absent",
)


def _record(field: str, how: str, typed: bool) -> dict[str, Any]:
    record = copy.deepcopy(BASE_TYPED if typed else BASE_TEXT)
    top, child = SOURCE_PATH[field]
    value = {NULL: None, EMPTY: "", BLANK: "  \t "}.get(how)
    if how == STRUCT_NULL:
        record[top] = None
    elif how == STRUCT_ABSENT:
        del record[top]
    elif child is None:
        if how == ABSENT:
            del record[top]
        else:
            record[top] = value
    elif how == ABSENT:
        del record[top][child]
    else:
        record[top][child] = value
    return record


def _split(record: dict[str, Any], typed: bool) -> BatchResult:
    schema = s.INPUT_SCHEMA if typed else s.TEXT_INPUT_SCHEMA
    return split_batch(pa.Table.from_pylist([record], schema=schema), DATE)


def _variants(field: str) -> list[tuple[str, bool]]:
    """(how, typed) pairs that make ``field`` missing."""
    _, child = SOURCE_PATH[field]
    text = [ABSENT, NULL, EMPTY, BLANK]
    if child is not None and field != s.PLATFORM:  # no user_identifiers also means no user id
        text += [STRUCT_NULL, STRUCT_ABSENT]
    typed = [NULL, ABSENT] if field == s.EVENT_DATETIME else text
    return [(how, False) for how in text] + [(how, True) for how in typed]


# --- the expected outcome of each kind of policy row ----------------------------------------------


def _expect_rejected_missing(field: str, how: str, typed: bool) -> None:
    result = _split(_record(field, how, typed), typed)
    assert result.valid.num_rows == 0
    assert result.rejected.num_rows == 1
    row = result.rejected.to_pylist()[0]
    # the policy's reason is the primary reason (the base record has no other problem)
    assert row["reasons"] == [r.reason(field, r.MISSING)]
    assert row["reason"] == r.reason(field, r.MISSING)
    assert result.reasons == {r.reason(field, r.MISSING): 1}


def _expect_valid_with(field: str, expected: Any) -> Callable[[str, str, bool], None]:
    def check(_field: str, how: str, typed: bool) -> None:
        result = _split(_record(field, how, typed), typed)
        assert result.rejected.num_rows == 0, result.rejected.to_pylist()
        assert result.valid.num_rows == 1
        row = result.valid.to_pylist()[0]
        assert row[field] == expected
        # every other field is as in the base record
        assert row[s.EVENT_NAME] == "view"
        assert row[s.USER_ID] == "user_12345"
        assert row[s.EVENT_DATETIME] == BASE_TYPED["timestamp"]

    return check


EXPECTATIONS: dict[str, Callable[[str, str, bool], None]] = {
    s.EVENT_DATETIME: _expect_rejected_missing,
    s.EVENT_NAME: _expect_rejected_missing,
    s.USER_ID: _expect_rejected_missing,
    s.PLATFORM: _expect_valid_with(s.PLATFORM, s.UNKNOWN_PLATFORM),
    s.PRODUCT_NAME: _expect_valid_with(s.PRODUCT_NAME, None),
    s.SKU: _expect_valid_with(s.SKU, None),
}


def _missing_cases() -> list[Any]:
    cases = []
    for policy in r.POLICY:
        if policy.field not in SOURCE_PATH:  # derived: covered by the event_date tests below
            continue
        for how, typed in _variants(policy.field):
            case_id = f"{policy.field}-{how}-{'typed' if typed else 'text'}"
            cases.append(pytest.param(policy, how, typed, id=case_id))
    return cases


@pytest.mark.parametrize(("policy", "how", "typed"), _missing_cases())
def test_missing_field_gives_documented_outcome(
    policy: r.FieldPolicy, how: str, typed: bool
) -> None:
    EXPECTATIONS[policy.field](policy.field, how, typed)


# --- event_date: never missing, always the UTC date of event_datetime -----------------------------

EVENT_DATE_CASES = [
    pytest.param("2023-10-23T00:00:00Z", dt.date(2023, 10, 23), id="start-of-day-utc"),
    pytest.param("2023-10-23T23:59:59.999999Z", dt.date(2023, 10, 23), id="end-of-day-utc"),
    pytest.param("2023-10-24T01:30:00+02:00", dt.date(2023, 10, 23), id="offset-east-back-a-day"),
    pytest.param("2023-10-23T01:30:00+02:00", dt.date(2023, 10, 22), id="offset-east-prev-day"),
    pytest.param("2023-10-22T20:00:00-05:00", dt.date(2023, 10, 23), id="offset-west-next-day"),
    pytest.param("2023-10-23T22:00:00-05:00", dt.date(2023, 10, 24), id="offset-west-out"),
    pytest.param("2023-10-23 12:00:00 UTC", dt.date(2023, 10, 23), id="bigquery-text"),
    pytest.param("2023-10-23T12:00:00", dt.date(2023, 10, 23), id="no-zone-is-utc"),
]


@pytest.mark.parametrize(("timestamp", "utc_date"), EVENT_DATE_CASES)
def test_event_date_is_utc_date_of_event_datetime(timestamp: str, utc_date: dt.date) -> None:
    table = pa.Table.from_pylist(
        [{**BASE_TEXT, "timestamp": timestamp}], schema=s.TEXT_INPUT_SCHEMA
    )
    row = normalise(table).to_pylist()[0]
    assert row[s.EVENT_DATE] == utc_date
    assert row[s.EVENT_DATE] == row[s.EVENT_DATETIME].astimezone(dt.UTC).date()
    result = split_batch(table, DATE)
    assert result.valid.num_rows == (utc_date == DATE)
    if utc_date != DATE:
        assert result.rejected.column("reason").to_pylist() == [
            r.reason(s.EVENT_DATETIME, r.OUTSIDE_RUN_DATE)
        ]


@pytest.mark.parametrize("typed", [False, True], ids=["text", "typed"])
def test_event_date_never_reported_missing(typed: bool) -> None:
    """A missing timestamp is blamed on event_datetime; event_date has no reason of its own."""
    record = _record(s.EVENT_DATETIME, NULL, typed)
    result = _split(record, typed)
    reasons = result.rejected.column("reasons").to_pylist()[0]
    assert reasons == [r.reason(s.EVENT_DATETIME, r.MISSING)]
    assert not any(x.startswith(s.EVENT_DATE + ":") for x in reasons)
    schema = s.INPUT_SCHEMA if typed else s.TEXT_INPUT_SCHEMA
    normalised = normalise(pa.Table.from_pylist([record], schema=schema))
    assert normalised.column(s.EVENT_DATE).to_pylist() == [None]


@pytest.mark.parametrize("how", [STRUCT_NULL, STRUCT_ABSENT])
def test_platform_defaults_when_user_identifiers_missing(how: str) -> None:
    """Without user_identifiers the platform still defaults; only the user id is a reason."""
    record = _record(s.PLATFORM, how, typed=False)
    table = pa.Table.from_pylist([record], schema=s.TEXT_INPUT_SCHEMA)
    assert normalise(table).column(s.PLATFORM).to_pylist() == [s.UNKNOWN_PLATFORM]
    assert split_batch(table, DATE).rejected.column("reasons").to_pylist() == [
        [r.reason(s.USER_ID, r.MISSING)]
    ]


def _check_event_date(policy: r.FieldPolicy) -> None:
    assert policy.source == "derived"
    assert "UTC date of `event_datetime`" in policy.when_missing
    test_event_date_is_utc_date_of_event_datetime("2023-10-24T01:30:00+02:00", DATE)
    test_event_date_never_reported_missing(typed=False)


def _check_missing(policy: r.FieldPolicy) -> None:
    # the documented text matches the tested behaviour
    if policy.required:
        assert r.reason(policy.field, r.MISSING) in policy.when_missing
    elif policy.field == s.PLATFORM:
        assert s.UNKNOWN_PLATFORM in policy.when_missing
    else:
        assert "null" in policy.when_missing
    # and there is at least a null-value case for it, run here as well
    EXPECTATIONS[policy.field](policy.field, NULL, False)


#: One dispatcher per policy row: a new row with no entry here fails the test below.
POLICY_CHECKS: dict[str, Callable[[r.FieldPolicy], None]] = {
    s.EVENT_DATETIME: _check_missing,
    s.EVENT_DATE: _check_event_date,
    s.EVENT_NAME: _check_missing,
    s.USER_ID: _check_missing,
    s.PLATFORM: _check_missing,
    s.PRODUCT_NAME: _check_missing,
    s.SKU: _check_missing,
}


@pytest.mark.parametrize("policy", r.POLICY, ids=[p.field for p in r.POLICY])
def test_every_policy_row_has_a_test_case(policy: r.FieldPolicy) -> None:
    check = POLICY_CHECKS.get(policy.field)
    if check is None:
        pytest.fail(f"POLICY row {policy.field!r} has no test case in tests/unit/test_policy.py")
    check(policy)


def test_policy_covers_every_output_column_once() -> None:
    fields = [p.field for p in r.POLICY]
    assert sorted(fields) == sorted(s.OUTPUT_COLUMNS)
    assert len(fields) == len(set(fields))
    assert set(POLICY_CHECKS) == set(fields)


@pytest.mark.parametrize("policy", r.POLICY, ids=[p.field for p in r.POLICY])
def test_policy_rules_are_known_rule_names(policy: r.FieldPolicy) -> None:
    known = {r.MISSING, r.UNPARSEABLE, r.WRONG_TYPE, r.OUTSIDE_RUN_DATE, r.INVALID_FORMAT}
    known |= {r.TOO_LONG, r.INVALID_JSON, r.INVALID_UTF8, r.OUT_OF_RANGE}
    assert set(policy.rules) <= known
    assert policy.required == (
        policy.field in {s.EVENT_DATETIME, s.EVENT_DATE, s.EVENT_NAME, s.USER_ID}
    )
