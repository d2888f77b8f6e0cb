"""``split_batch`` and ``normalise`` on tables of cases, in the text shape (JSON-like, timestamps as
strings: ``TEXT_INPUT_SCHEMA``) and the typed shape (BigQuery TIMESTAMP: ``INPUT_SCHEMA``)."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processing.logic import batch
from processing.logic.batch import BatchResult, split_batch
from processing.logic.normalise import normalise
from processing.spec import rules as r
from processing.spec import schema as s
from tests.unit.pairs import column_pairs

DATE = dt.date(2023, 10, 23)
UTC = dt.UTC


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


BASE: dict[str, Any] = {
    "timestamp": "2023-10-23T12:34:56Z",
    "event_name": "view",
    "user_identifiers": {"platform": "web", "id": "user_12345"},
    "product_information": {"name": "Wireless Mouse", "SKU": "SKU-1001"},
}
BASE_TYPED: dict[str, Any] = {**BASE, "timestamp": utc(2023, 10, 23, 12, 34, 56)}


def record(typed: bool = False, **changes: Any) -> dict[str, Any]:
    """The base record with top-level keys replaced; ``user_id=...`` style keys set nested ones."""
    rec = copy.deepcopy(BASE_TYPED if typed else BASE)
    nested = {
        "platform": ("user_identifiers", "platform"),
        "user_id": ("user_identifiers", "id"),
        "product_name": ("product_information", "name"),
        "sku": ("product_information", "SKU"),
    }
    for key, value in changes.items():
        if key in nested:
            top, child = nested[key]
            rec[top][child] = value
        else:
            rec[key] = value
    return rec


def text_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=s.TEXT_INPUT_SCHEMA)


def typed_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=s.INPUT_SCHEMA)


def split_one(rec: dict[str, Any], typed: bool = False) -> BatchResult:
    table = typed_table([rec]) if typed else text_table([rec])
    result = split_batch(table, DATE)
    assert result.rows_read == 1
    assert result.valid.num_rows + result.rejected.num_rows == 1
    return result


def reasons_of(result: BatchResult) -> list[list[str]]:
    return result.rejected.column("reasons").to_pylist()


OUTSIDE = r.reason(s.EVENT_DATETIME, r.OUTSIDE_RUN_DATE)
UNPARSEABLE = r.reason(s.EVENT_DATETIME, r.UNPARSEABLE)
OUT_OF_RANGE = r.reason(s.EVENT_DATETIME, r.OUT_OF_RANGE)

# --- timestamps as text ---------------------------------------------------------------------------
# (text, expected UTC instant) for values that parse; (text, reason) for values that do not.
TEXT_TIMESTAMPS = [
    pytest.param("2023-10-23T12:34:56Z", utc(2023, 10, 23, 12, 34, 56), id="zulu"),
    pytest.param("2023-10-23T12:34:56+02:00", utc(2023, 10, 23, 10, 34, 56), id="offset-plus-2"),
    pytest.param("2023-10-23T12:34:56-05:00", utc(2023, 10, 23, 17, 34, 56), id="offset-minus-5"),
    pytest.param("2023-10-23T12:34:56+00:00", utc(2023, 10, 23, 12, 34, 56), id="offset-zero"),
    pytest.param("2023-10-23T12:34:56", utc(2023, 10, 23, 12, 34, 56), id="no-zone-is-utc"),
    pytest.param("2023-10-23 12:34:56", utc(2023, 10, 23, 12, 34, 56), id="space-separator"),
    pytest.param("2023-10-23 12:34:56Z", utc(2023, 10, 23, 12, 34, 56), id="space-and-zulu"),
    pytest.param("2023-10-23 12:34:56 UTC", utc(2023, 10, 23, 12, 34, 56), id="utc-suffix"),
    pytest.param(
        "2023-10-23 12:34:56.123456 UTC", utc(2023, 10, 23, 12, 34, 56, 123456), id="bq-text"
    ),
    pytest.param("2023-10-23T12:34:56.5Z", utc(2023, 10, 23, 12, 34, 56, 500000), id="fraction-1"),
    pytest.param(
        "2023-10-23T12:34:56.123Z", utc(2023, 10, 23, 12, 34, 56, 123000), id="fraction-ms"
    ),
    pytest.param(
        "2023-10-23T12:34:56.123456Z", utc(2023, 10, 23, 12, 34, 56, 123456), id="fraction-us"
    ),
    pytest.param(
        "2023-10-23T12:34:56.123456789Z",
        utc(2023, 10, 23, 12, 34, 56, 123456),
        id="nanoseconds-truncated",
    ),
    pytest.param(
        "2023-10-23T23:59:59.9999999Z",
        utc(2023, 10, 23, 23, 59, 59, 999999),
        id="nanoseconds-truncated-not-rounded-into-next-day",
    ),
    pytest.param(
        "2023-10-23T12:34:56.123456+02:00",
        utc(2023, 10, 23, 10, 34, 56, 123456),
        id="fraction-and-offset",
    ),
    pytest.param("  2023-10-23T12:34:56Z\t", utc(2023, 10, 23, 12, 34, 56), id="surrounding-ws"),
    pytest.param("2023-10-23T12:34Z", utc(2023, 10, 23, 12, 34), id="no-seconds"),
    # boundaries of the date
    pytest.param("2023-10-23T00:00:00Z", utc(2023, 10, 23), id="start-of-date-is-in"),
    pytest.param("2023-10-23 00:00:00 UTC", utc(2023, 10, 23), id="start-of-date-bq-text"),
    pytest.param(
        "2023-10-23T23:59:59.999999Z", utc(2023, 10, 23, 23, 59, 59, 999999), id="last-us-is-in"
    ),
    pytest.param("2023-10-24T00:00:00Z", OUTSIDE, id="start-of-next-day-is-out"),
    pytest.param("2023-10-22T23:59:59.999999Z", OUTSIDE, id="last-us-of-day-before-is-out"),
    pytest.param("2023-10-22T12:00:00Z", OUTSIDE, id="day-before"),
    pytest.param("2023-10-25T12:00:00Z", OUTSIDE, id="day-after"),
    pytest.param("2024-10-23T12:00:00Z", OUTSIDE, id="same-day-next-year"),
    # an offset moves the instant into or out of the date
    pytest.param("2023-10-24T01:30:00+02:00", utc(2023, 10, 23, 23, 30), id="offset-into-date"),
    pytest.param("2023-10-22T20:00:00-05:00", utc(2023, 10, 23, 1), id="neg-offset-into-date"),
    pytest.param("2023-10-23T01:30:00+02:00", OUTSIDE, id="offset-out-to-day-before"),
    pytest.param("2023-10-23T22:00:00-05:00", OUTSIDE, id="neg-offset-out-to-next-day"),
    pytest.param("2023-10-24T02:00:00+02:00", OUTSIDE, id="offset-exactly-next-midnight"),
    pytest.param("2023-10-23T02:00:00+02:00", utc(2023, 10, 23), id="offset-exactly-midnight"),
    # not timestamps
    pytest.param("2023-10-23", UNPARSEABLE, id="date-only"),
    pytest.param("2023-10-23T", UNPARSEABLE, id="date-and-T-only"),
    pytest.param("yesterday at noon", UNPARSEABLE, id="garbage"),
    pytest.param("not a timestamp", UNPARSEABLE, id="garbage-words"),
    pytest.param("1698064496", UNPARSEABLE, id="epoch-seconds-as-text"),
    pytest.param("2023-10-23T25:00:00Z", UNPARSEABLE, id="hour-25"),
    pytest.param("2023-02-30T12:00:00Z", UNPARSEABLE, id="february-30"),
    pytest.param("23/10/2023 12:00:00", UNPARSEABLE, id="day-first"),
    pytest.param("12:00:00", UNPARSEABLE, id="time-only"),
    # BigQuery's range: 0001-01-01 to 9999-12-31T23:59:59.999999Z; an offset can leave it
    pytest.param("0001-01-01T00:00:00Z", OUTSIDE, id="first-instant-bigquery-holds"),
    pytest.param("9999-12-31T23:59:59.999999Z", OUTSIDE, id="last-instant-bigquery-holds"),
    pytest.param("9999-12-31T23:59:59-01:00", OUT_OF_RANGE, id="offset-past-year-9999"),
    pytest.param("0001-01-01T00:30:00+01:00", OUT_OF_RANGE, id="offset-before-year-1"),
    pytest.param("0000-06-01T00:00:00Z", OUT_OF_RANGE, id="year-0"),
    pytest.param("0001-01-01T00:00:00.0000001Z", OUTSIDE, id="year-1-with-nanoseconds"),
    pytest.param(
        "2023-10-23T12:34:56.1234567+02:00",
        utc(2023, 10, 23, 10, 34, 56, 123456),
        id="nanoseconds-and-offset",
    ),
]


def _check_timestamp(result: BatchResult, expected: dt.datetime | str) -> None:
    if isinstance(expected, str):
        assert result.valid.num_rows == 0
        assert result.rejected.column("reason").to_pylist() == [expected]
        assert reasons_of(result) == [[expected]]
    else:
        assert result.rejected.num_rows == 0, result.rejected.to_pylist()
        assert result.valid.column(s.EVENT_DATETIME).to_pylist() == [expected]


@pytest.mark.parametrize(("text", "expected"), TEXT_TIMESTAMPS)
def test_text_timestamp(text: str, expected: dt.datetime | str) -> None:
    _check_timestamp(split_one(record(timestamp=text)), expected)


@pytest.mark.parametrize(("text", "expected"), TEXT_TIMESTAMPS)
def test_text_timestamp_normalised(text: str, expected: dt.datetime | str) -> None:
    row = normalise(text_table([record(timestamp=text)])).to_pylist()[0]
    if expected == UNPARSEABLE:
        assert row[s.EVENT_DATETIME] is None
        assert row[s.EVENT_DATE] is None
        assert row[s.DEFECTS_COLUMN] == [UNPARSEABLE]
    elif isinstance(expected, dt.datetime):
        assert row[s.EVENT_DATETIME] == expected
        assert row[s.EVENT_DATE] == expected.date()
        assert not row[s.DEFECTS_COLUMN]


def test_all_text_timestamps_in_one_batch_match_row_by_row() -> None:
    """Mixed formats and offsets in one batch: no row's result depends on its neighbours."""
    texts = [p.values[0] for p in TEXT_TIMESTAMPS]
    expected = [p.values[1] for p in TEXT_TIMESTAMPS]
    rows = [record(timestamp=t, user_id=f"user_{i}") for i, t in enumerate(texts)]
    result = split_batch(text_table(rows), DATE)
    assert result.rows_read == len(rows)
    valid = column_pairs(result.valid, s.USER_ID, s.EVENT_DATETIME)
    rejected = column_pairs(result.rejected, "row_in_piece", "reason")
    for i, want in enumerate(expected):
        if isinstance(want, str):
            assert rejected[i] == want, texts[i]
        else:
            assert valid[f"user_{i}"] == want, texts[i]


# --- timestamps as typed values ------------------------------------------------------------------
TYPED_TIMESTAMPS = [
    pytest.param(utc(2023, 10, 23, 12, 34, 56, 789), utc(2023, 10, 23, 12, 34, 56, 789), id="utc"),
    pytest.param(utc(2023, 10, 23), utc(2023, 10, 23), id="start-of-date-is-in"),
    pytest.param(
        utc(2023, 10, 23, 23, 59, 59, 999999), utc(2023, 10, 23, 23, 59, 59, 999999), id="last-us"
    ),
    pytest.param(utc(2023, 10, 24), OUTSIDE, id="start-of-next-day-is-out"),
    pytest.param(utc(2023, 10, 22, 23, 59, 59, 999999), OUTSIDE, id="day-before-is-out"),
]


# Note: aware Python datetimes with a non-UTC offset are not used to build typed tables here.
# Importing pandera sets PYARROW_IGNORE_TIMEZONE=1 for the whole process, after which pyarrow
# takes such a datetime's wall-clock time as UTC. Offsets on typed input are tested with Arrow
# timestamp types of another zone instead (test_typed_timestamp_other_arrow_types).


@pytest.mark.parametrize(("value", "expected"), TYPED_TIMESTAMPS)
def test_typed_timestamp(value: dt.datetime, expected: dt.datetime | str) -> None:
    _check_timestamp(split_one(record(typed=True, timestamp=value), typed=True), expected)


@pytest.mark.parametrize(
    ("arrow_type", "expected"),
    [
        pytest.param(pa.timestamp("us"), utc(2023, 10, 23, 23, 30), id="no-zone-is-utc"),
        pytest.param(pa.timestamp("ms", tz="UTC"), utc(2023, 10, 23, 23, 30), id="ms-utc"),
        pytest.param(
            pa.timestamp("us", tz="America/New_York"), utc(2023, 10, 23, 23, 30), id="other-zone"
        ),
        pytest.param(
            pa.timestamp("us", tz="+02:00"), utc(2023, 10, 23, 23, 30), id="offset-into-date"
        ),
        pytest.param(
            pa.timestamp("us", tz="-05:00"), utc(2023, 10, 24, 3), id="offset-out-of-date"
        ),
    ],
)
def test_typed_timestamp_other_arrow_types(arrow_type: pa.DataType, expected: dt.datetime) -> None:
    """A timestamp column of another unit/zone is the same instant; a zone-less one is UTC.

    The instant is given as microseconds since the epoch, so for ``+02:00`` it is
    2023-10-24T01:30+02:00 (in the date) and for ``-05:00`` 2023-10-23T22:00-05:00 (out of it).
    """
    micros = int(expected.timestamp() * 1_000_000)
    unit_div = 1000 if arrow_type.unit == "ms" else 1
    column = pa.array([micros // unit_div], pa.int64()).cast(arrow_type)
    table = typed_table([BASE_TYPED]).set_column(0, pa.field("timestamp", arrow_type), column)
    result = split_batch(table, DATE)
    if expected.date() == DATE:
        assert result.valid.column(s.EVENT_DATETIME).to_pylist() == [expected]
    else:
        assert result.rejected.column("reason").to_pylist() == [OUTSIDE]
    assert normalise(table).column(s.EVENT_DATE).to_pylist() == [expected.date()]


# --- case and whitespace normalisation -----------------------------------------------------------
NORMALISATION = [
    # (input key, input value, output field, expected output value)
    pytest.param("event_name", "  Add To Cart ", s.EVENT_NAME, "add_to_cart", id="event-spaces"),
    pytest.param("event_name", "VIEW", s.EVENT_NAME, "view", id="event-upper"),
    pytest.param("event_name", "Add-To-Cart", s.EVENT_NAME, "add_to_cart", id="event-hyphens"),
    pytest.param("event_name", "add  -  to--cart", s.EVENT_NAME, "add_to_cart", id="event-runs"),
    pytest.param("event_name", "add\tto\ncart", s.EVENT_NAME, "add_to_cart", id="event-tab-nl"),
    pytest.param("event_name", "add_to_cart", s.EVENT_NAME, "add_to_cart", id="event-already"),
    pytest.param("event_name", "page_view2", s.EVENT_NAME, "page_view2", id="event-digits"),
    pytest.param("platform", " WEB ", s.PLATFORM, "web", id="platform-upper-ws"),
    pytest.param("platform", "iOS", s.PLATFORM, "ios", id="platform-mixed"),
    pytest.param("platform", "\tandroid\n", s.PLATFORM, "android", id="platform-tab-nl"),
    pytest.param("sku", "sku-1", s.SKU, "SKU-1", id="sku-lower"),
    pytest.param("sku", "  sku-1001.b_2  ", s.SKU, "SKU-1001.B_2", id="sku-ws-dots"),
    pytest.param(
        "product_name", "  Wireless Mouse  ", s.PRODUCT_NAME, "Wireless Mouse", id="pn-ws"
    ),
    pytest.param("product_name", "iPhone 15 PRO", s.PRODUCT_NAME, "iPhone 15 PRO", id="pn-case"),
    pytest.param("product_name", "a  b", s.PRODUCT_NAME, "a  b", id="pn-inner-ws-kept"),
    pytest.param("user_id", "  User_ABC ", s.USER_ID, "User_ABC", id="user-id-trim-case-kept"),
    pytest.param("user_id", "a b", s.USER_ID, "a b", id="user-id-inner-space-kept"),
    pytest.param("user_id", "x" * 256, s.USER_ID, "x" * 256, id="user-id-max-length"),
    pytest.param("product_name", "p" * 512, s.PRODUCT_NAME, "p" * 512, id="pn-max-length"),
    pytest.param("event_name", "e" * 64, s.EVENT_NAME, "e" * 64, id="event-max-length"),
    # unicode survives unchanged where the field allows it
    pytest.param(
        "product_name", "Café crème brûlée", s.PRODUCT_NAME, "Café crème brûlée", id="pn-accents"
    ),
    pytest.param("product_name", "東京タワー 模型", s.PRODUCT_NAME, "東京タワー 模型", id="pn-cjk"),
    pytest.param("product_name", "Party Hat 🎉😀", s.PRODUCT_NAME, "Party Hat 🎉😀", id="pn-emoji"),
    pytest.param("product_name", "Cafe\u0301", s.PRODUCT_NAME, "Cafe\u0301", id="pn-combining"),
    pytest.param("product_name", "مرحبا بالعالم", s.PRODUCT_NAME, "مرحبا بالعالم", id="pn-rtl"),
    pytest.param("product_name", "👨‍👩‍👧 Family", s.PRODUCT_NAME, "👨‍👩‍👧 Family", id="pn-zwj"),
    pytest.param("user_id", "Ünïcödé_用户_🙂", s.USER_ID, "Ünïcödé_用户_🙂", id="user-id-unicode"),
    pytest.param("user_id", "\u00a0user\u3000", s.USER_ID, "user", id="user-id-unicode-ws"),
    # empty strings
    pytest.param("platform", "", s.PLATFORM, s.UNKNOWN_PLATFORM, id="platform-empty"),
    pytest.param("platform", "   ", s.PLATFORM, s.UNKNOWN_PLATFORM, id="platform-blank"),
    pytest.param("product_name", "", s.PRODUCT_NAME, None, id="pn-empty"),
    pytest.param("product_name", " \t ", s.PRODUCT_NAME, None, id="pn-blank"),
    pytest.param("sku", "", s.SKU, None, id="sku-empty"),
    pytest.param("sku", "  ", s.SKU, None, id="sku-blank"),
]


@pytest.mark.parametrize(("key", "value", "field", "expected"), NORMALISATION)
def test_normalisation_valid(key: str, value: str, field: str, expected: str | None) -> None:
    for typed in (False, True):
        result = split_one(record(typed=typed, **{key: value}), typed=typed)
        assert result.rejected.num_rows == 0, result.rejected.to_pylist()
        assert result.valid.column(field).to_pylist() == [expected]
        normalised = normalise(
            (typed_table if typed else text_table)([record(typed=typed, **{key: value})])
        )
        assert normalised.column(field).to_pylist() == [expected]


REJECTIONS = [
    # (input key, input value, expected reasons)
    pytest.param("event_name", "", [f"{s.EVENT_NAME}:{r.MISSING}"], id="event-empty"),
    pytest.param("event_name", "  \t", [f"{s.EVENT_NAME}:{r.MISSING}"], id="event-blank"),
    pytest.param(
        "event_name", "view/../../etc", [f"{s.EVENT_NAME}:{r.INVALID_FORMAT}"], id="event-path"
    ),
    pytest.param("event_name", "a=b", [f"{s.EVENT_NAME}:{r.INVALID_FORMAT}"], id="event-equals"),
    pytest.param(
        "event_name", "1st_view", [f"{s.EVENT_NAME}:{r.INVALID_FORMAT}"], id="event-digit-first"
    ),
    pytest.param(
        "event_name", "_view", [f"{s.EVENT_NAME}:{r.INVALID_FORMAT}"], id="event-underscore-first"
    ),
    pytest.param("event_name", "café", [f"{s.EVENT_NAME}:{r.INVALID_FORMAT}"], id="event-accent"),
    pytest.param(
        "event_name", "e" * 65, [f"{s.EVENT_NAME}:{r.INVALID_FORMAT}"], id="event-too-long"
    ),
    pytest.param("user_id", "", [f"{s.USER_ID}:{r.MISSING}"], id="user-id-empty"),
    pytest.param("user_id", "   ", [f"{s.USER_ID}:{r.MISSING}"], id="user-id-blank"),
    pytest.param("user_id", "x" * 257, [f"{s.USER_ID}:{r.TOO_LONG}"], id="user-id-too-long"),
    pytest.param("user_id", "🙂" * 257, [f"{s.USER_ID}:{r.TOO_LONG}"], id="user-id-too-long-emoji"),
    pytest.param(
        "platform", "web phone!", [f"{s.PLATFORM}:{r.INVALID_FORMAT}"], id="platform-space"
    ),
    pytest.param(
        "platform", "w" * 33, [f"{s.PLATFORM}:{r.INVALID_FORMAT}"], id="platform-too-long"
    ),
    pytest.param("sku", "sku with spaces!", [f"{s.SKU}:{r.INVALID_FORMAT}"], id="sku-spaces"),
    pytest.param("sku", "-SKU", [f"{s.SKU}:{r.INVALID_FORMAT}"], id="sku-hyphen-first"),
    pytest.param("product_name", "p" * 513, [f"{s.PRODUCT_NAME}:{r.TOO_LONG}"], id="pn-too-long"),
    # case is changed for ASCII letters only: other letters are never folded into ASCII ones
    pytest.param(
        "event_name", "\u212aeypress", [f"{s.EVENT_NAME}:{r.INVALID_FORMAT}"], id="event-kelvin"
    ),
    pytest.param(
        "event_name", "V\u0130EW", [f"{s.EVENT_NAME}:{r.INVALID_FORMAT}"], id="event-dotted-I"
    ),
    pytest.param(
        "event_name", "add\u00a0to", [f"{s.EVENT_NAME}:{r.INVALID_FORMAT}"], id="event-nbsp"
    ),
    pytest.param(
        "platform", "\u212aindle", [f"{s.PLATFORM}:{r.INVALID_FORMAT}"], id="platform-kelvin"
    ),
    pytest.param("sku", "stra\u00dfe-1", [f"{s.SKU}:{r.INVALID_FORMAT}"], id="sku-sharp-s"),
    pytest.param("sku", "\ufb00-1", [f"{s.SKU}:{r.INVALID_FORMAT}"], id="sku-ff-ligature"),
    pytest.param("sku", "sku-\u0131", [f"{s.SKU}:{r.INVALID_FORMAT}"], id="sku-dotless-i"),
    pytest.param("sku", "\u017fku-1", [f"{s.SKU}:{r.INVALID_FORMAT}"], id="sku-long-s"),
]


@pytest.mark.parametrize(("key", "value", "expected"), REJECTIONS)
def test_rejection(key: str, value: str, expected: list[str]) -> None:
    for typed in (False, True):
        result = split_one(record(typed=typed, **{key: value}), typed=typed)
        assert reasons_of(result) == [expected]
        assert result.rejected.column("reason").to_pylist() == [expected[0]]


def test_several_reasons_first_is_primary() -> None:
    """Reasons are ordered by field (event_datetime first); ``reason`` is the first of them."""
    rec = record(timestamp="2023-10-24T00:00:00Z", event_name="a/b", sku="bad sku", user_id=" ")
    result = split_one(rec)
    assert reasons_of(result) == [
        [
            OUTSIDE,
            f"{s.EVENT_NAME}:{r.INVALID_FORMAT}",
            f"{s.USER_ID}:{r.MISSING}",
            f"{s.SKU}:{r.INVALID_FORMAT}",
        ]
    ]
    assert result.rejected.column("reason").to_pylist() == [OUTSIDE]
    assert result.reasons == {OUTSIDE: 1}


def test_unparseable_timestamp_wins_over_missing() -> None:
    result = split_one(record(timestamp="garbage", event_name=None))
    assert reasons_of(result) == [[UNPARSEABLE, f"{s.EVENT_NAME}:{r.MISSING}"]]


# --- missing structs -----------------------------------------------------------------------------
@pytest.mark.parametrize("typed", [False, True], ids=["text", "typed"])
def test_user_identifiers_null_is_user_id_missing(typed: bool) -> None:
    result = split_one(record(typed=typed, user_identifiers=None), typed=typed)
    assert reasons_of(result) == [[f"{s.USER_ID}:{r.MISSING}"]]


@pytest.mark.parametrize("typed", [False, True], ids=["text", "typed"])
def test_product_information_null_is_valid_with_nulls(typed: bool) -> None:
    result = split_one(record(typed=typed, product_information=None), typed=typed)
    assert result.rejected.num_rows == 0
    row = result.valid.to_pylist()[0]
    assert row[s.PRODUCT_NAME] is None
    assert row[s.SKU] is None
    assert row[s.PLATFORM] == "web"


# --- extra fields --------------------------------------------------------------------------------
def test_extra_fields_are_ignored() -> None:
    users = pa.struct([("platform", pa.string()), ("id", pa.string()), ("email", pa.string())])
    schema = pa.schema(
        [
            ("timestamp", pa.string()),
            ("session", pa.string()),
            ("event_name", pa.string()),
            ("user_identifiers", users),
            ("product_information", s.PRODUCT_INFORMATION),
            ("price", pa.float64()),
        ]
    )
    rows = [
        {**record(), "session": "abc", "price": 9.99},
        {**record(timestamp="2023-10-24T00:00:00Z"), "session": "def", "price": 1.0},
    ]
    rows[0]["user_identifiers"]["email"] = "a@example.com"
    table = pa.Table.from_pylist(rows, schema=schema)
    result = split_batch(table, DATE)
    expected = split_batch(text_table([record(), record(timestamp="2023-10-24T00:00:00Z")]), DATE)
    assert result.valid.equals(expected.valid)
    assert result.valid.column_names == [s.EVENT_NAME, *s.FILE_SCHEMA.names]
    # the rejected row keeps the whole original record, extra fields included
    kept = json.loads(result.rejected.column("source_record")[0].as_py())
    assert kept["session"] == "def"
    assert kept["price"] == 1.0


def test_extra_keys_in_pylist_are_dropped_by_schema() -> None:
    result = split_one({**record(), "unexpected": {"nested": [1, 2]}})
    assert result.valid.num_rows == 1


# --- rejected rows keep the original record -------------------------------------------------------
def test_typed_rejected_row_keeps_original_record_as_json() -> None:
    original = record(
        typed=True,
        timestamp=utc(2023, 10, 24, 0, 0, 0, 5),
        event_name="  View ",
        product_name="Café 東京 🎉",
    )
    result = split_one(original, typed=True)
    kept = json.loads(result.rejected.column("source_record")[0].as_py())
    assert kept == {**original, "timestamp": "2023-10-24T00:00:00.000005Z"}
    assert dt.datetime.fromisoformat(kept["timestamp"]) == original["timestamp"]


def test_typed_rejected_row_with_null_timestamp_and_structs() -> None:
    original = record(typed=True, timestamp=None, user_identifiers=None, product_information=None)
    kept = json.loads(split_one(original, typed=True).rejected.column("source_record")[0].as_py())
    assert kept == original


def test_text_rejected_row_without_raw_keeps_record_as_json() -> None:
    original = record(timestamp="garbage", event_name="  View ")
    kept = json.loads(split_one(original).rejected.column("source_record")[0].as_py())
    assert kept == original


def test_rejected_row_keeps_raw_column_when_source_has_one() -> None:
    lines = [
        '{"timestamp": "2023-10-23T12:00:00Z", "event_name": "view", "user_identifiers": '
        '{"platform": "web", "id": "u1"}}',
        '{ "timestamp" : "garbage" ,"event_name":"view","user_identifiers":{"id":"u2"}, "x": 1}',
        '{"timestamp": "2023-10-24T00:00:00Z", "event_name": "view", "user_identifiers": '
        '{"platform": "web", "id": "caf\\u00e9"}}',
    ]
    rows = [record(user_id="u1"), record(timestamp="garbage", user_id="u2"), record(timestamp="x")]
    table = text_table(rows).append_column(s.RAW_COLUMN, pa.array(lines, pa.string()))
    result = split_batch(table, DATE, piece="f.jsonl@0-99", first_row=10)
    assert result.rejected.column("source_record").to_pylist() == lines[1:]
    assert result.rejected.column("piece").to_pylist() == ["f.jsonl@0-99"] * 2
    assert result.rejected.column("row_in_piece").to_pylist() == [11, 12]
    assert s.RAW_COLUMN not in result.valid.column_names


def test_source_defects_column_becomes_reasons() -> None:
    table = text_table([record(event_name=None), record()]).append_column(
        s.DEFECTS_COLUMN,
        pa.array([[f"{s.EVENT_NAME}:{r.WRONG_TYPE}"], None], pa.list_(pa.string())),
    )
    result = split_batch(table, DATE)
    # the specific defect wins over the generic "missing" of the null it left behind
    assert reasons_of(result) == [[f"{s.EVENT_NAME}:{r.WRONG_TYPE}"]]
    assert result.valid.num_rows == 1


# --- counts and shapes ----------------------------------------------------------------------------
BATCHES = [
    pytest.param([], 0, id="empty"),
    pytest.param([record()], 1, id="one-valid"),
    pytest.param([record(timestamp=None)], 0, id="one-rejected"),
    pytest.param(
        [record(timestamp=None, event_name=None, user_identifiers=None)] * 3, 0, id="all-bad"
    ),
    pytest.param(
        [record(), record(timestamp="x"), record(user_id=""), record(sku="sku-9"), record()],
        3,
        id="mixed",
    ),
]


@pytest.mark.parametrize(("rows", "n_valid"), BATCHES)
@pytest.mark.parametrize("typed", [False, True], ids=["text", "typed"])
def test_counts_add_up(rows: list[dict[str, Any]], n_valid: int, typed: bool) -> None:
    if typed:
        rows = [
            {
                **row,
                "timestamp": BASE_TYPED["timestamp"]
                if row["timestamp"] == BASE["timestamp"]
                else None,
            }
            for row in rows
        ]
    table = (typed_table if typed else text_table)(rows)
    result = split_batch(table, DATE)
    assert result.rows_read == len(rows)
    assert result.rows_read == result.valid.num_rows + result.rejected.num_rows
    assert result.valid.num_rows == n_valid
    assert sum(result.reasons.values()) == result.rejected.num_rows
    assert result.rejected.schema == s.REJECTED_SCHEMA
    assert result.valid.schema == s.VALID_SCHEMA
    for reasons, primary in zip(
        reasons_of(result), result.rejected.column("reason").to_pylist(), strict=True
    ):
        assert reasons
        assert primary == reasons[0]


def test_record_batch_and_multi_chunk_table() -> None:
    rows = [record(), record(timestamp="garbage"), record(user_id=" ")]
    table = text_table(rows)
    from_batch = split_batch(table.to_batches()[0], DATE)
    chunked = split_batch(pa.concat_tables([table, table]), DATE)
    assert from_batch.rows_read == 3
    assert from_batch.rejected.num_rows == 2
    assert chunked.rows_read == 6
    assert chunked.valid.num_rows == 2
    assert chunked.rejected.column("row_in_piece").to_pylist() == [1, 2, 4, 5]


def test_normalise_output_columns() -> None:
    out = normalise(text_table([record()]))
    assert out.column_names == [*s.OUTPUT_COLUMNS, s.DEFECTS_COLUMN]
    assert out.schema.field(s.EVENT_DATETIME).type == pa.timestamp("us", tz="UTC")
    assert out.schema.field(s.EVENT_DATE).type == pa.date32()


# --- the rejected rows' JSON: Polars writes it as orjson would ---------------------------------
_ANY_TEXT = st.one_of(
    st.none(), st.text(max_size=12), st.sampled_from(["\x00\x7f", "\u2028", 'a"\\/'])
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "timestamp": st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))),
                "event_name": _ANY_TEXT,
                "user_identifiers": st.one_of(
                    st.none(), st.fixed_dictionaries({"platform": _ANY_TEXT, "id": _ANY_TEXT})
                ),
                "product_information": st.one_of(
                    st.none(), st.fixed_dictionaries({"name": _ANY_TEXT, "SKU": _ANY_TEXT})
                ),
            }
        ),
        min_size=1,
        max_size=20,
    ),
    st.booleans(),
)
def test_source_records_from_polars_are_those_of_orjson(
    rows: list[dict[str, Any]], dictionaries: bool
) -> None:
    """Records of text, nulls and structs are written by Polars (fast); anything else by orjson,
    one dict per row: both spell every record alike, control characters and all."""
    table = pa.Table.from_pylist(rows, schema=s.INPUT_SCHEMA)
    if dictionaries:
        table = table.set_column(1, "event_name", table.column("event_name").dictionary_encode())
    picked = list(range(0, table.num_rows, 2))
    fast = batch.source_records(table, picked)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch, "_text_only", lambda typ: False)
        assert fast == batch.source_records(table, picked)
