"""The JSON Lines source: line parsing, byte-range pieces, gzip, and data/bad_records.jsonl."""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from processing.adapters.sources import jsonl
from processing.logic.batch import split_batch
from processing.spec import rules as r
from processing.spec import schema as s
from tests.unit.pairs import column_pairs

DATE = dt.date(2023, 10, 23)
BAD_RECORDS = Path(__file__).parents[2] / "data" / "bad_records.jsonl"

GOOD: dict[str, Any] = {
    "timestamp": "2023-10-23T12:34:56Z",
    "event_name": "view",
    "user_identifiers": {"platform": "web", "id": "user_1"},
    "product_information": {"name": "Wireless Mouse", "SKU": "SKU-1001"},
}
EMPTY_RECORD = {
    "timestamp": None,
    "event_name": None,
    "user_identifiers": None,
    "product_information": None,
}


def line(**changes: Any) -> bytes:
    return json.dumps({**GOOD, **changes}, ensure_ascii=False).encode()


def wt(field: str) -> str:
    return r.reason(field, r.WRONG_TYPE)


INVALID_JSON = r.reason(r.RECORD, r.INVALID_JSON)

# --- parse_line: wrong types ---------------------------------------------------------------------
WRONG_TYPES = [
    # (line, expected defects, expected (top, child, value) after coercion)
    pytest.param(line(timestamp=1698064496), [wt(s.EVENT_DATETIME)], id="timestamp-int"),
    pytest.param(line(timestamp=1.5), [wt(s.EVENT_DATETIME)], id="timestamp-float"),
    pytest.param(line(timestamp=True), [wt(s.EVENT_DATETIME)], id="timestamp-bool"),
    pytest.param(line(timestamp={"s": 1}), [wt(s.EVENT_DATETIME)], id="timestamp-object"),
    pytest.param(line(timestamp=["2023"]), [wt(s.EVENT_DATETIME)], id="timestamp-array"),
    pytest.param(line(event_name=42), [wt(s.EVENT_NAME)], id="event-name-int"),
    pytest.param(line(event_name=["view"]), [wt(s.EVENT_NAME)], id="event-name-array"),
    pytest.param(
        line(user_identifiers={"platform": "web", "id": 12345}), [wt(s.USER_ID)], id="user-id-int"
    ),
    pytest.param(
        line(user_identifiers={"platform": 7, "id": "u"}), [wt(s.PLATFORM)], id="platform-int"
    ),
    pytest.param(line(user_identifiers="user_13"), [wt(s.USER_ID)], id="user-identifiers-string"),
    pytest.param(line(user_identifiers=["web", "u"]), [wt(s.USER_ID)], id="user-identifiers-array"),
    pytest.param(line(user_identifiers=5), [wt(s.USER_ID)], id="user-identifiers-number"),
    pytest.param(
        line(product_information={"name": 1, "SKU": "S"}), [wt(s.PRODUCT_NAME)], id="name-int"
    ),
    pytest.param(line(product_information={"name": "n", "SKU": 1001}), [wt(s.SKU)], id="sku-int"),
    pytest.param(
        line(product_information=["Wireless Mouse", "SKU-1001"]),
        [wt(s.PRODUCT_NAME)],
        id="product-information-array",
    ),
    pytest.param(line(product_information="x"), [wt(s.PRODUCT_NAME)], id="product-info-string"),
    pytest.param(
        line(
            timestamp=1,
            event_name=2,
            user_identifiers={"platform": 3, "id": 4},
            product_information={"name": 5, "SKU": 6},
        ),
        [
            wt(s.EVENT_DATETIME),
            wt(s.EVENT_NAME),
            wt(s.PLATFORM),
            wt(s.USER_ID),
            wt(s.PRODUCT_NAME),
            wt(s.SKU),
        ],
        id="everything-wrong",
    ),
]


@pytest.mark.parametrize(("raw", "defects"), WRONG_TYPES)
def test_parse_line_wrong_type(raw: bytes, defects: list[str]) -> None:
    record, found = jsonl.parse_line(raw)
    assert found == defects
    assert set(record) == set(s.TEXT_INPUT_SCHEMA.names)
    # the wrong value became null; the record still fits the text schema
    pa.Table.from_pylist([record], schema=s.TEXT_INPUT_SCHEMA)
    original = json.loads(raw)
    for top, child, out in jsonl._TEXT_FIELDS:
        if wt(out) in found:
            value = record[top] if child is None else (record[top] or {}).get(child)
            assert value is None
        elif child is None:
            assert record[top] == original[top]


@pytest.mark.parametrize(("raw", "defects"), WRONG_TYPES)
def test_parse_lines_wrong_type_becomes_defects(raw: bytes, defects: list[str]) -> None:
    table = jsonl.parse_lines([line(), raw, line()])
    assert table.column(s.DEFECTS_COLUMN).to_pylist() == [None, defects, None]
    assert table.column(s.RAW_COLUMN).to_pylist()[1] == raw.decode()
    result = split_batch(table, DATE)
    assert result.valid.num_rows == 2
    # reasons are ordered by output column (user_id before platform), the defects by input field
    order = [r.RECORD, *s.OUTPUT_COLUMNS]
    by_field = sorted(defects, key=lambda d: order.index(d.split(":")[0]))
    assert result.rejected.column("reasons").to_pylist() == [by_field]


NOT_OBJECTS = [
    pytest.param(b"[1, 2, 3]", id="array"),
    pytest.param(b"not json at all", id="text"),
    pytest.param(b'"a string"', id="string"),
    pytest.param(b"42", id="number"),
    pytest.param(b"true", id="bool"),
    pytest.param(b"null", id="null"),
    pytest.param(b'{"timestamp": "2023-10-23T12:00:00Z", "event_name": "view", ', id="truncated"),
    pytest.param(b"{'single': 'quotes'}", id="single-quotes"),
    pytest.param(b'{"a": 1} {"b": 2}', id="two-objects"),
    pytest.param(b'{"a": 1}}', id="trailing-brace"),
    pytest.param(b"\xff\xfe{}", id="invalid-utf8"),
]


@pytest.mark.parametrize("raw", NOT_OBJECTS)
def test_parse_line_not_an_object(raw: bytes) -> None:
    record, defects = jsonl.parse_line(raw)
    assert record == {}
    assert defects == [INVALID_JSON]


@pytest.mark.parametrize("raw", NOT_OBJECTS)
def test_parse_lines_not_an_object_after_a_good_line(raw: bytes) -> None:
    table = jsonl.parse_lines([line(), raw])
    assert table.num_rows == 2
    assert table.column(s.DEFECTS_COLUMN).to_pylist() == [None, [INVALID_JSON]]
    assert table.column(s.RAW_COLUMN).to_pylist()[1] == raw.decode("utf-8", errors="replace")
    assert table.slice(1).select(s.TEXT_INPUT_SCHEMA.names).to_pylist() == [EMPTY_RECORD]
    rejected = split_batch(table, DATE).rejected
    assert rejected.column("reasons").to_pylist() == [[INVALID_JSON]]


def test_parse_lines_block_starting_with_null_line_does_not_crash() -> None:
    # in a subprocess: pyarrow 26's JSON reader segfaults on a leading `null` line, which
    # would take pytest down with it if the source ever handed such a block to Arrow again
    code = (
        "from processing.adapters.sources.jsonl import parse_lines\n"
        "t = parse_lines([b'null', b'{\"event_name\": \"view\"}'])\n"
        "assert t.column('_defects').to_pylist()[0] == ['record:invalid_json'], t.to_pylist()\n"
    )
    root = Path(__file__).parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, (done.returncode, done.stderr.decode()[-500:])


# --- parse_lines: fast path and fallback agree ---------------------------------------------------
WELL_FORMED = [
    line(),
    line(timestamp="2023-10-23 12:00:00 UTC", event_name="  Add To Cart "),
    line(user_identifiers=None, product_information=None),
    line(user_identifiers={"id": "only-id"}, product_information={}),
    line(product_information={"name": "Café 東京 🎉", "SKU": "sku-1"}),
    b"{}",
    b'{"timestamp": null, "event_name": null}',
    b'{"event_name": "caf\\u00e9 \\"quoted\\" \\n newline", '
    b'"extra": {"deep": [1, 2, {"x": null}]}}',
    line(user_identifiers={"platform": "ios", "id": "u", "email": "a@b.c"}, extra=[1, 2]),
    b'  {"event_name": "leading spaces"}  ',
    b'{"event_name":"compact","user_identifiers":{"platform":"","id":""}}',
]


def test_parse_lines_fast_path_and_fallback_agree() -> None:
    fast = jsonl.parse_lines(WELL_FORMED)
    # a broken last line makes Arrow refuse the block, so every line goes through parse_line
    slow = jsonl.parse_lines([*WELL_FORMED, b"{broken"]).slice(0, len(WELL_FORMED))
    assert fast.schema == slow.schema
    assert fast.to_pylist() == slow.to_pylist()
    assert fast.column(s.DEFECTS_COLUMN).null_count == len(WELL_FORMED)
    assert fast.column(s.RAW_COLUMN).to_pylist() == [x.decode() for x in WELL_FORMED]


@pytest.mark.parametrize("raw", [pytest.param(x, id=f"line{i}") for i, x in enumerate(WELL_FORMED)])
def test_parse_line_matches_fast_path_per_line(raw: bytes) -> None:
    record, defects = jsonl.parse_line(raw)
    assert defects == []
    fast = jsonl.parse_lines([raw]).select(s.TEXT_INPUT_SCHEMA.names).to_pylist()[0]
    assert pa.Table.from_pylist([record], schema=s.TEXT_INPUT_SCHEMA).to_pylist()[0] == fast


def test_parse_lines_output_schema() -> None:
    table = jsonl.parse_lines([line()])
    assert table.schema == jsonl._OUTPUT_SCHEMA
    assert table.schema.names == [*s.TEXT_INPUT_SCHEMA.names, s.RAW_COLUMN, s.DEFECTS_COLUMN]


# --- byte ranges: every line exactly once --------------------------------------------------------
def _numbered_lines(n: int, pad: int = 0) -> list[str]:
    lines = []
    for i in range(n):
        rec = {**GOOD, "user_identifiers": {"platform": "web", "id": f"user_{i}"}}
        rec["product_information"] = {
            "name": "Ünïcödé 東京 " + "x" * ((i * 37 + pad) % 200),
            "SKU": f"SKU-{i}",
        }
        lines.append(json.dumps(rec, ensure_ascii=False))
    return lines


def _write_messy(path: Path, lines: list[str], final_newline: bool = True) -> None:
    """Mixed LF and CRLF endings, blank and whitespace-only lines in between."""
    parts = []
    for i, text in enumerate(lines):
        if i % 5 == 0:
            parts.append("\n")
        if i % 7 == 0:
            parts.append("  \t \r\n")
        if i % 11 == 0:
            parts.append("\r\n")
        parts.append(text + ("\r\n" if i % 3 == 0 else "\n"))
    data = "".join(parts)
    if not final_newline:
        data = data.rstrip("\r\n")
    path.write_bytes(data.encode())


def _read_ids(pieces: list[tuple[int, int | None]], path: Path, batch_rows: int) -> list[str]:
    raws: list[str] = []
    for start, end in pieces:
        for table in jsonl.read_jsonl(
            url=str(path),
            path=str(path),
            start=start,
            end=end,
            storage_options={},
            batch_rows=batch_rows,
        ):
            assert table.num_rows <= batch_rows
            assert table.column(s.DEFECTS_COLUMN).null_count == table.num_rows
            raws.extend(table.column(s.RAW_COLUMN).to_pylist())
    return raws


@pytest.mark.parametrize("final_newline", [True, False], ids=["final-newline", "no-final-newline"])
@pytest.mark.parametrize("step", [1, 2, 3, 7, 50, 211, 4096], ids=lambda n: f"step{n}")
def test_read_jsonl_small_byte_ranges_read_each_line_once(
    tmp_path: Path, step: int, final_newline: bool
) -> None:
    lines = _numbered_lines(30)
    path = tmp_path / "events.jsonl"
    _write_messy(path, lines, final_newline)
    size = path.stat().st_size
    ranges = [(a, min(a + step, size)) for a in range(0, size, step)]
    got = _read_ids(ranges, path, batch_rows=4)
    assert got == lines  # no loss, no duplicate, in order, without "\r"


def test_plan_jsonl_many_pieces_read_each_line_once(tmp_path: Path) -> None:
    """A file over 1 MiB (the smallest piece) is split into several byte ranges mid-line."""
    lines = _numbered_lines(9000, pad=3)
    path = tmp_path / "big.jsonl"
    _write_messy(path, lines)
    size = path.stat().st_size
    assert size > 2 * (1 << 20)
    pieces = jsonl.plan_jsonl(str(path), str(path), 1, {})
    assert len(pieces) == -(-size // (1 << 20))
    # the ranges tile the file
    bounds = [(p.args["start"], p.args["end"]) for p in pieces]
    assert bounds[0][0] == 0
    assert bounds[-1][1] == size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert sum(p.estimated_bytes for p in pieces) == size
    assert len({p.id for p in pieces}) == len(pieces)
    # at least one boundary falls inside a line (not just after a newline)
    data = path.read_bytes()
    assert any(data[b[0] - 1 : b[0]] != b"\n" for b in bounds[1:])
    raws: list[str] = []
    for piece in pieces:
        for table in piece.read(batch_rows=1000):
            raws.extend(table.column(s.RAW_COLUMN).to_pylist())
    assert raws == lines


def test_plan_jsonl_piece_size_follows_piece_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pieces are piece_rows * _ASSUMED_BYTES_PER_LINE bytes, but never under 1 MiB."""
    path = tmp_path / "events.jsonl"
    _write_messy(path, _numbered_lines(4000))
    size = path.stat().st_size
    monkeypatch.setattr(jsonl, "_ASSUMED_BYTES_PER_LINE", 1)
    assert len(jsonl.plan_jsonl(str(path), str(path), 1, {})) == -(-size // (1 << 20))
    big = jsonl.plan_jsonl(str(path), str(path), size, {})
    assert [(p.args["start"], p.args["end"]) for p in big] == [(0, size)]


@pytest.mark.parametrize("batch_rows", [1, 3, 1000])
def test_gzip_is_one_piece_read_fully(tmp_path: Path, batch_rows: int) -> None:
    lines = _numbered_lines(40)
    plain = tmp_path / "plain.jsonl"
    _write_messy(plain, lines)
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(gzip.compress(plain.read_bytes()))
    pieces = jsonl.plan_jsonl(str(path), str(path), 1, {})
    assert len(pieces) == 1
    assert pieces[0].args["start"] == 0
    assert pieces[0].args["end"] is None
    raws = [
        raw
        for table in pieces[0].read(batch_rows)
        for raw in table.column(s.RAW_COLUMN).to_pylist()
    ]
    assert raws == lines


@pytest.mark.parametrize("content", [b"", b"\n\n\r\n  \n"], ids=["empty", "only-blank-lines"])
def test_file_without_records_reads_nothing(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(content)
    pieces = jsonl.plan_jsonl(str(path), str(path), 10, {})
    assert len(pieces) == 1
    assert [t.num_rows for t in pieces[0].read(batch_rows=10)] == []


# --- end to end: data/bad_records.jsonl ----------------------------------------------------------
# Line number (1-based) -> the expected primary reason, or None for a valid row.
BAD_RECORDS_EXPECTED: dict[int, str | None] = {
    1: r.reason(s.EVENT_DATETIME, r.MISSING),  # no timestamp key
    2: r.reason(s.EVENT_DATETIME, r.MISSING),  # timestamp null
    3: r.reason(s.EVENT_DATETIME, r.UNPARSEABLE),  # "yesterday at noon"
    4: r.reason(s.EVENT_DATETIME, r.UNPARSEABLE),  # date only
    5: r.reason(s.EVENT_DATETIME, r.WRONG_TYPE),  # a number
    6: r.reason(s.EVENT_DATETIME, r.OUTSIDE_RUN_DATE),  # last microsecond of the day before
    7: None,  # 2023-10-24T01:30:00+02:00 is 2023-10-23T23:30Z: valid
    8: r.reason(s.EVENT_DATETIME, r.OUTSIDE_RUN_DATE),  # 00:00 of the next day
    9: r.reason(s.EVENT_NAME, r.MISSING),  # no event_name
    10: r.reason(s.EVENT_NAME, r.MISSING),  # blank
    11: r.reason(s.EVENT_NAME, r.INVALID_FORMAT),  # "view/../../etc"
    12: r.reason(s.EVENT_NAME, r.WRONG_TYPE),  # 42
    13: r.reason(s.USER_ID, r.MISSING),  # no user_identifiers
    14: r.reason(s.USER_ID, r.MISSING),  # user_identifiers null
    15: r.reason(s.USER_ID, r.MISSING),  # no id
    16: r.reason(s.USER_ID, r.MISSING),  # id ""
    17: r.reason(s.USER_ID, r.WRONG_TYPE),  # id 12345
    18: r.reason(s.USER_ID, r.WRONG_TYPE),  # user_identifiers is a string
    19: r.reason(s.USER_ID, r.TOO_LONG),  # 300 characters
    20: r.reason(s.PLATFORM, r.INVALID_FORMAT),  # "web phone!"
    21: r.reason(s.PLATFORM, r.WRONG_TYPE),  # 7
    22: r.reason(s.SKU, r.INVALID_FORMAT),  # "sku with spaces!"
    23: r.reason(s.SKU, r.WRONG_TYPE),  # 1001
    24: r.reason(s.PRODUCT_NAME, r.WRONG_TYPE),  # product_information is an array
    25: r.reason(s.PRODUCT_NAME, r.TOO_LONG),  # 600 characters
    26: INVALID_JSON,  # truncated object
    27: INVALID_JSON,  # [1, 2, 3]
    28: INVALID_JSON,  # not json at all
}


def _split_file(path: Path, batch_rows: int) -> tuple[dict[int, list[str]], list[dict], int]:
    """Line index (0-based) -> reasons, valid rows, rows read; over all pieces and batches."""
    by_line: dict[int, list[str]] = {}
    valid: list[dict] = []
    read = 0
    for piece in jsonl.plan_jsonl(str(path), str(path), 1, {}):
        first = 0
        for table in piece.read(batch_rows):
            result = split_batch(table, DATE, piece.id, first)
            assert result.rows_read == result.valid.num_rows + result.rejected.num_rows
            for row in result.rejected.to_pylist():
                by_line[row["row_in_piece"]] = row["reasons"]
                assert row["reason"] == row["reasons"][0]
                assert row["piece"] == piece.id
            valid.extend(result.valid.to_pylist())
            first += result.rows_read
            read += result.rows_read
    return by_line, valid, read


def test_bad_records_file_has_a_case_per_line() -> None:
    lines = [x for x in BAD_RECORDS.read_bytes().splitlines() if x.strip()]
    assert len(lines) == len(BAD_RECORDS_EXPECTED)


@pytest.mark.parametrize("batch_rows", [1, 4, 1000], ids=lambda n: f"batch{n}")
def test_bad_records_end_to_end(batch_rows: int) -> None:
    """Same reasons whatever the batching (fast path for clean blocks, fallback for others)."""
    by_line, valid, read = _split_file(BAD_RECORDS, batch_rows)
    assert read == len(BAD_RECORDS_EXPECTED)
    expected_rejected = {i - 1 for i, want in BAD_RECORDS_EXPECTED.items() if want is not None}
    assert set(by_line) == expected_rejected
    raw_lines = BAD_RECORDS.read_text(encoding="utf-8").splitlines()
    for number, want in BAD_RECORDS_EXPECTED.items():
        if want is not None:
            assert by_line[number - 1][0] == want, (number, by_line[number - 1])
    assert len(valid) == 1
    assert valid[0][s.USER_ID] == "user_7"
    assert valid[0][s.EVENT_DATETIME] == dt.datetime(2023, 10, 23, 23, 30, tzinfo=dt.UTC)
    assert len(raw_lines) == read


@pytest.mark.parametrize(
    ("number", "want"), [pytest.param(n, w, id=f"line{n}") for n, w in BAD_RECORDS_EXPECTED.items()]
)
def test_bad_records_line_by_line(number: int, want: str | None) -> None:
    """Each line on its own, so a problem in one line cannot hide behind another."""
    raw = BAD_RECORDS.read_bytes().splitlines()[number - 1]
    result = split_batch(jsonl.parse_lines([raw]), DATE)
    if want is None:
        assert result.valid.num_rows == 1
    else:
        assert result.rejected.column("reason").to_pylist() == [want]
        assert result.rejected.column("source_record").to_pylist() == [raw.decode()]


@pytest.mark.parametrize(
    ("raw", "reasons"),
    [
        pytest.param(
            b'{"timestamp": "2023-10-23T12:00:00Z", "event_name": "view", '
            b'"user_identifiers": {"platform": "web", "id": "\\ud800"}}',
            [r.reason(s.USER_ID, r.INVALID_UTF8)],
            id="lone-surrogate-in-a-read-field",
        ),
        pytest.param(
            b'{"timestamp": "2023-10-23T12:00:00Z", "event_name": "view", '
            b'"user_identifiers": {"platform": "web", "id": "u"}, "x": '
            + b"[" * 100_000
            + b"]" * 100_000
            + b"}",
            None,
            id="absurdly-deep-extra-field",
        ),
    ],
)
def test_lines_python_cannot_hold_are_not_fatal(raw: bytes, reasons: list[str] | None) -> None:
    # the `null` line sends the block to the line-by-line parser, where Python's limits apply:
    # the outcome is still the one Arrow's reader gives the line (the deep extra field is
    # ignored), or for a lone surrogate, which Arrow refuses, the field's own reason
    for block in ([line(), raw, b"null"], [raw]):
        result = split_batch(jsonl.parse_lines(block), DATE)
        rejected = column_pairs(result.rejected, "row_in_piece", "reasons")
        assert rejected.get(block.index(raw)) == reasons
