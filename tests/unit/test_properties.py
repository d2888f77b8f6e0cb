"""Properties of ``split_batch`` over arbitrary batches (Hypothesis).

Batches are generated in the text shape (``TEXT_INPUT_SCHEMA``): timestamps from a mix of valid
ISO 8601 strings in and out of the date (offsets, separators, fractions), garbage text and None;
names, ids, platforms and SKUs from arbitrary text (whitespace and unicode included) and None;
structs sometimes None.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processing.adapters.sources.jsonl import parse_lines
from processing.logic.batch import BatchResult, split_batch
from processing.logic.normalise import normalise
from processing.logic.validate import problems
from processing.spec import rules as r
from processing.spec import schema as s
from tests.unit.hostile_lines import BAD_NEIGHBOURS, HOSTILE, SELECTED, outcomes, with_raw
from tests.unit.pairs import column_pairs

DATE = dt.date(2023, 10, 23)
DAY_START = dt.datetime(2023, 10, 23, tzinfo=dt.UTC)
DAY_END = DAY_START + dt.timedelta(days=1)

RULES = {
    r.MISSING,
    r.UNPARSEABLE,
    r.WRONG_TYPE,
    r.OUTSIDE_RUN_DATE,
    r.INVALID_FORMAT,
    r.TOO_LONG,
    r.INVALID_JSON,
    r.INVALID_UTF8,
    r.OUT_OF_RANGE,
}
FIELDS = {r.RECORD, *s.OUTPUT_COLUMNS}
REQUIRED = (s.EVENT_DATETIME, s.EVENT_NAME, s.USER_ID, s.PLATFORM)
MODEL_COLUMNS = [c for c in s.OUTPUT_COLUMNS if c != s.EVENT_DATE]

PROPERTY_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- strategies -----------------------------------------------------------------------------------
instants_in = st.datetimes(
    min_value=dt.datetime(2023, 10, 23), max_value=dt.datetime(2023, 10, 23, 23, 59, 59, 999999)
).map(lambda d: d.replace(tzinfo=dt.UTC))
instants_near = st.datetimes(
    min_value=dt.datetime(2023, 10, 20), max_value=dt.datetime(2023, 10, 26)
).map(lambda d: d.replace(tzinfo=dt.UTC))
boundaries = st.sampled_from(
    [
        DAY_START,
        DAY_END,
        DAY_START - dt.timedelta(microseconds=1),
        DAY_END - dt.timedelta(microseconds=1),
    ]
)


@st.composite
def iso_timestamps(draw: st.DrawFn) -> tuple[str, dt.datetime]:
    """An ISO 8601 text and the UTC instant it denotes (to the microsecond)."""
    instant = draw(st.one_of(instants_in, instants_near, boundaries))
    style = draw(st.sampled_from(["Z", "offset", "none", "utc-suffix"]))
    offset = (
        dt.timedelta(minutes=15 * draw(st.integers(-14 * 4, 14 * 4)))
        if style == "offset"
        else dt.timedelta()
    )
    sep = draw(st.sampled_from(["T", " "]))
    fraction = draw(st.sampled_from(["none", "us", "ns", "ms"]))
    if fraction == "none":
        instant = instant.replace(microsecond=0)
        digits = ""
    elif fraction == "ms":
        instant = instant.replace(microsecond=instant.microsecond // 1000 * 1000)
        digits = f".{instant.microsecond // 1000:03d}"
    elif fraction == "us":
        digits = f".{instant.microsecond:06d}"
    else:  # nanoseconds in the text are truncated to microseconds
        digits = f".{instant.microsecond:06d}{draw(st.integers(0, 999)):03d}"
    local = (instant + offset).replace(tzinfo=None)
    text = local.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + digits
    if style == "Z":
        text += "Z"
    elif style == "offset":
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        text += f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    elif style == "utc-suffix":
        text += " UTC"
    return text, instant


garbage_timestamps = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "   ", "yesterday at noon", "2023-10-23", "1698064496", "2023-10-23T"]),
    st.builds(
        lambda prefix, tail: prefix + tail,
        st.sampled_from(["2023-10-23T12:00", "2023-10-23 23:59:59.", "2023-10-23T00:00:00+"]),
        st.text(max_size=8),
    ),
)
timestamps = st.one_of(iso_timestamps().map(lambda pair: pair[0]), garbage_timestamps, st.none())

WHITESPACE = st.sampled_from(["", " ", "  ", "\t", "\n", "\u00a0", "\u3000", " \r\n "])


def noisy(values: list[str]) -> st.SearchStrategy[str]:
    """A plausible value with random case and surrounding whitespace."""
    return st.builds(
        lambda left, value, upper, right: left + (value.upper() if upper else value) + right,
        WHITESPACE,
        st.sampled_from(values),
        st.booleans(),
        WHITESPACE,
    )


def text_or_none(plausible: list[str], max_size: int = 40) -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), noisy(plausible), st.text(max_size=max_size))


event_names = text_or_none(["view", "click", "add to cart", "Add-To-Cart", "purchase", "a/b"])
user_ids = st.one_of(
    text_or_none(["user_1", "User_ABC", "ünï 用户 🙂", "x"]),
    st.text(alphabet="uü ", min_size=250, max_size=262),  # around the 256 limit
)
platforms = text_or_none(["web", "ios", "android", "web phone!", "mobile"])
product_names = st.one_of(
    text_or_none(["Wireless Mouse", "Café 東京 🎉", "x"]),
    st.text(alphabet="pé ", min_size=505, max_size=520),  # around the 512 limit
)
skus = text_or_none(["SKU-1001", "sku-1", "sku with spaces!", "SKU.2_b"])


def struct(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any] | None]:
    return st.one_of(st.none(), st.fixed_dictionaries({}, optional=fields))


records = st.fixed_dictionaries(
    {},
    optional={
        "timestamp": timestamps,
        "event_name": event_names,
        "user_identifiers": struct(platform=platforms, id=user_ids),
        "product_information": struct(name=product_names, SKU=skus),
    },
)
batches = st.lists(records, max_size=25)


# --- helpers -------------------------------------------------------------------------------------
def check_invariants(table: pa.Table, result: BatchResult, first_row: int = 0) -> None:
    n = table.num_rows
    # every row is either valid or rejected
    assert result.rows_read == n
    assert result.valid.num_rows + result.rejected.num_rows == n
    assert sum(result.reasons.values()) == result.rejected.num_rows
    # rejected rows: distinct positions, known reasons, primary reason first
    positions = result.rejected.column("row_in_piece").to_pylist()
    assert len(set(positions)) == len(positions)
    assert all(first_row <= i < first_row + n for i in positions)
    for reasons, primary in zip(
        result.rejected.column("reasons").to_pylist(),
        result.rejected.column("reason").to_pylist(),
        strict=True,
    ):
        assert reasons, "a rejected row has at least one reason"
        assert primary == reasons[0]
        assert len(set(reasons)) == len(reasons)
        for reason in reasons:
            field, _, rule = reason.partition(":")
            assert field in FIELDS, reason
            assert rule in RULES, reason
    # valid rows: pass the output model, no nulls where required, inside the date
    valid = result.valid
    assert problems(valid, DATE) == []  # the row model and every value model
    for column in REQUIRED:
        assert valid.column(column).null_count == 0, column
    for value in valid.column(s.EVENT_DATETIME).to_pylist():
        assert DAY_START <= value < DAY_END
    for name in valid.column(s.EVENT_NAME).to_pylist():
        assert re.fullmatch(r.PATTERNS[s.EVENT_NAME], name)


# --- properties ----------------------------------------------------------------------------------
@PROPERTY_SETTINGS
@given(batches, st.integers(0, 10_000))
def test_split_batch_invariants(rows: list[dict[str, Any]], first_row: int) -> None:
    """Counts add up, valid rows pass the model, rejected rows say why (text shape).

    The same records as JSON Lines, through the JSONL source's parser, split the same way, and each
    rejected row keeps its line exactly.
    """
    table = pa.Table.from_pylist(rows, schema=s.TEXT_INPUT_SCHEMA)
    direct = split_batch(table, DATE, piece="p", first_row=first_row)
    check_invariants(table, direct, first_row)
    if not rows:
        return
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    via_jsonl = split_batch(parse_lines([line.encode() for line in lines]), DATE, "p", first_row)
    assert via_jsonl.valid.equals(direct.valid)
    for column in ("reasons", "reason", "row_in_piece"):
        assert via_jsonl.rejected.column(column).equals(direct.rejected.column(column))
    assert via_jsonl.rejected.column("source_record").to_pylist() == [
        lines[i - first_row] for i in via_jsonl.rejected.column("row_in_piece").to_pylist()
    ]


@PROPERTY_SETTINGS
@given(batches)
def test_event_date_is_utc_date_of_event_datetime(rows: list[dict[str, Any]]) -> None:
    normalised = normalise(pa.Table.from_pylist(rows, schema=s.TEXT_INPUT_SCHEMA))
    assert normalised.num_rows == len(rows)
    for when, day in zip(
        normalised.column(s.EVENT_DATETIME).to_pylist(),
        normalised.column(s.EVENT_DATE).to_pylist(),
        strict=True,
    ):
        assert (when is None) == (day is None)
        if when is not None:
            assert day == when.astimezone(dt.UTC).date()


@PROPERTY_SETTINGS
@given(st.lists(iso_timestamps(), min_size=1, max_size=20))
def test_iso_timestamps_parse_to_their_instant(pairs: list[tuple[str, dt.datetime]]) -> None:
    """A clean record is valid exactly when its instant is in the date, at that instant."""
    rows = [
        {
            "timestamp": text,
            "event_name": "view",
            "user_identifiers": {"platform": "web", "id": f"user_{i}"},
            "product_information": None,
        }
        for i, (text, _) in enumerate(pairs)
    ]
    table = pa.Table.from_pylist(rows, schema=s.TEXT_INPUT_SCHEMA)
    result = split_batch(table, DATE)
    check_invariants(table, result)
    valid = column_pairs(result.valid, s.USER_ID, s.EVENT_DATETIME)
    rejected = column_pairs(result.rejected, "row_in_piece", "reasons")
    for i, (text, instant) in enumerate(pairs):
        if DAY_START <= instant < DAY_END:
            assert valid.get(f"user_{i}") == instant, text
        else:
            assert rejected[i] == [r.reason(s.EVENT_DATETIME, r.OUTSIDE_RUN_DATE)], text


@PROPERTY_SETTINGS
@given(batches)
def test_typed_batches(rows: list[dict[str, Any]]) -> None:
    """The typed shape: timestamps that parse become TIMESTAMP values, the rest null."""
    text_table = pa.Table.from_pylist(rows, schema=s.TEXT_INPUT_SCHEMA)
    parsed = normalise(text_table).column(s.EVENT_DATETIME)
    typed = text_table.set_column(0, s.INPUT_SCHEMA.field(0), parsed)
    result = split_batch(typed, DATE)
    check_invariants(typed, result)
    for reasons in result.rejected.column("reasons").to_pylist():
        assert r.reason(s.EVENT_DATETIME, r.UNPARSEABLE) not in reasons
    for record in result.rejected.column("source_record").to_pylist():
        assert isinstance(json.loads(record), dict)


# --- JSON lines: a line's outcome is its own ------------------------------------------------------
LINES = [
    *(line for _, line in HOSTILE),
    *BAD_NEIGHBOURS,
    *(json.dumps(row).encode() for row in ({"event_name": "view"}, {}, {"timestamp": 5})),
]
_ALONE: dict[bytes, tuple[str, ...]] = {}


def alone(line: bytes) -> tuple[str, ...]:
    """The line's outcome in a batch of its own."""
    if line not in _ALONE:
        _ALONE[line] = outcomes([line], 1)[0]
    return _ALONE[line]


@settings(PROPERTY_SETTINGS, max_examples=60)
@given(st.lists(st.sampled_from(LINES), min_size=1, max_size=12), st.integers(1, 13))
def test_a_json_lines_outcome_depends_on_nothing_else(lines: list[bytes], batch_rows: int) -> None:
    """Hostile lines (deep nesting, huge numbers, invalid UTF-8, lone surrogates, NaN, duplicate
    keys, BOM, control characters, trailing garbage) among good and bad neighbours: each line is
    valid, or rejected for the same reasons, whatever the batch size and the neighbours (which
    decide whether Arrow's reader or the line-by-line parser reads it)."""
    assert outcomes(lines, batch_rows) == [alone(line) for line in lines]


@PROPERTY_SETTINGS
@given(
    st.sampled_from([path for path, _ in SELECTED] + [("x",), ("user_identifiers", "x")]),
    st.binary(max_size=12),
)
def test_any_bytes_in_a_json_string_read_alike_by_both_parsers(
    path: tuple[str, ...], content: bytes
) -> None:
    """Arbitrary bytes (invalid UTF-8, quotes, escapes, control characters) inside a string:
    Arrow's reader (the line alone) and the line-by-line parser (after a `null` line) agree."""
    raw = with_raw(path, b'"' + content + b'"')
    assert outcomes([raw], 1) == outcomes([b"null", raw], 2)[1:]


_PATHS = [path for path, _ in SELECTED] + [("x",), ("user_identifiers", "x")]
# JSON values, with the literals only Arrow's reader takes, text of any bytes, and mistakes.
_LITERALS = [
    *(b"NaN", b"Infinity", b"-Infinity", b"Inf", b"-Inf", b"-NaN", b"true", b"false", b"null"),
    *(b"1e5", b"-0", b"0.5", b"1e999", b"9" * 30, b'"\\ud800"', b'"\\u00e9"'),
]
_MISTAKES = [b"+Inf", b"nan", b"Infinit", b"01", b"1.", b",", b":", b"[", b"}", b'"']
_leaves = st.one_of(
    st.sampled_from(_LITERALS),
    st.binary(max_size=6).map(lambda b: b'"' + b + b'"'),  # any bytes as text
)
_values = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: b"[" + b",".join(xs) + b"]"),
        st.lists(st.tuples(st.sampled_from([b'"k"', b'"id"', b'"\xe9"']), inner), max_size=3).map(
            lambda kv: b"{" + b",".join(k + b":" + v for k, v in kv) + b"}"
        ),
    ),
    max_leaves=6,
)
json_values = st.one_of(
    _values,
    st.builds(
        lambda v, m, at: v[:at] + m + v[at:],
        _values,
        st.sampled_from(_MISTAKES),
        st.integers(0, 20),
    ),
)


@PROPERTY_SETTINGS
@given(st.sampled_from(_PATHS), json_values)
def test_any_value_read_alike_by_both_parsers(path: tuple[str, ...], value: bytes) -> None:
    """Any value, nested, with Arrow's own literals or text of any bytes, valid JSON or not:
    Arrow's reader (the line alone) and the line-by-line parser (after a `null` line) agree."""
    raw = with_raw(path, value)
    assert outcomes([raw], 1) == outcomes([b"null", raw], 2)[1:]
