"""One bad row must never fail a day: text that is not UTF-8, instants BigQuery cannot hold,
hostile JSON lines and corrupt bytes, from every source.

Every row is either published or rejected with a reason of its own, and the same whatever its
neighbours and the batch size; a file whose bytes cannot be decoded is an ``InputError`` that
names it.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import ipc

from processing.adapters.sources import jsonl, open_source
from processing.adapters.sources.arrow_files import conform
from processing.app.piece_task import _read
from processing.logic.batch import BatchResult, source_records, split_batch
from processing.spec import rules as r
from processing.spec import schema as s
from processing.spec.errors import InputError
from tests.unit.hostile_lines import BAD_NEIGHBOURS, HOSTILE, LATIN1, SELECTED, outcomes, with_raw
from tests.unit.pairs import column_pairs

DATE = dt.date(2023, 10, 23)
NOON = dt.datetime(2023, 10, 23, 12, tzinfo=dt.UTC)
NOON_US = 1_698_062_400_000_000
INT64_MIN, INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
OUT_OF_RANGE = r.reason(s.EVENT_DATETIME, r.OUT_OF_RANGE)
OUTSIDE = r.reason(s.EVENT_DATETIME, r.OUTSIDE_RUN_DATE)
INVALID_JSON = r.reason(r.RECORD, r.INVALID_JSON)
GOOD_LINE = with_raw(("event_name",), b'"view"')


def utf8(field: str) -> tuple[str, ...]:
    return (r.reason(field, r.INVALID_UTF8),)


def wrong_type(field: str) -> tuple[str, ...]:
    return (r.reason(field, r.WRONG_TYPE),)


def by_row(result: BatchResult) -> dict[int, list[str]]:
    return column_pairs(result.rejected, "row_in_piece", "reasons")


def read_all(path: Path, batch_rows: int = 1000) -> list[pa.Table]:
    plan = open_source(str(path)).plan(DATE, 10**6)
    return [batch for piece in plan.pieces for batch in _read(piece, batch_rows)]


def split_file(path: Path, batch_rows: int = 1000) -> BatchResult:
    """The file's rows, as one batch (the source's batches put together)."""
    return split_batch(pa.concat_tables(read_all(path, batch_rows)), DATE)


# --- JSON lines: what every hostile line becomes, whatever its neighbours ------------------------
#: The outcome of each line of hostile_lines.HOSTILE: () valid, else its reasons.
EXPECTED: dict[str, tuple[str, ...]] = {
    "good": (),
    "deep-ignored-array": (),  # extra fields are ignored, however deep (Arrow has no limit)
    "deep-ignored-object": (),
    "very-deep-ignored": (),
    # deeper than Python reads and refused by Arrow's reader: not readable as an event
    "deep-event-name": (INVALID_JSON,),
    "deep-user-id": (INVALID_JSON,),
    "deep-user-identifiers": (INVALID_JSON,),
    "deep-ignored-and-wrong-type": (INVALID_JSON,),
    "deep-ignored-and-latin1-id": utf8(s.USER_ID),
    "huge-int-ignored": (),  # no limit on digits (Python's 4,300 does not apply)
    "huge-negative-int-ignored": (),
    "huge-int-event-name": wrong_type(s.EVENT_NAME),
    "huge-int-user-id": wrong_type(s.USER_ID),
    "huge-fraction-ignored": (),
    "huge-exponent-ignored": (),
    **{f"latin1-{out}": utf8(out) for _, out in SELECTED},
    "latin1-ignored": (),
    "latin1-key": (),
    "latin1-child-key": (),
    "overlong-slash-event-name": utf8(s.EVENT_NAME),
    "encoded-surrogate-sku": utf8(s.SKU),
    "truncated-sequence-name": utf8(s.PRODUCT_NAME),
    "latin1-outside-a-string": (INVALID_JSON,),
    # a lone surrogate escape is JSON, but not text: the field's own reason, as invalid UTF-8
    "lone-high-user-id": utf8(s.USER_ID),
    "lone-low-event-name": utf8(s.EVENT_NAME),
    "reversed-pair-platform": utf8(s.PLATFORM),
    "lone-surrogate-ignored": (),
    "lone-surrogate-key": (),
    "surrogate-pair-name": (),
    "NaN-ignored": (),
    "Infinity-ignored": (),
    "-Infinity-ignored": (),
    "Inf-ignored": (),  # not JSON, but Arrow's reader takes it: so does the line-by-line parser
    "-Inf-ignored": (),
    "-NaN-ignored": (),
    "NaN-event-name": wrong_type(s.EVENT_NAME),
    "Infinity-user-id": wrong_type(s.USER_ID),
    "duplicate-event-name": (),  # the last one counts, as in Python and JavaScript
    "duplicate-event-name-number": wrong_type(s.EVENT_NAME),
    "duplicate-user-id": (),
    "duplicate-ignored": (),
    "duplicate-ignored-child": (),
    "duplicate-struct": (),
    "bom-first": (),
    "bom-in-event-name": (r.reason(s.EVENT_NAME, r.INVALID_FORMAT),),
    "raw-control-in-name": (INVALID_JSON,),
    "raw-tab-in-event-name": (INVALID_JSON,),
    "raw-nul-ignored": (INVALID_JSON,),
    "escaped-nul-event-name": (r.reason(s.EVENT_NAME, r.INVALID_FORMAT),),
    "escaped-nul-user-id": (),
    "carriage-return-between-tokens": (),
    "form-feed-between-tokens": (INVALID_JSON,),
    "leading-tab": (),
    "trailing-garbage": (INVALID_JSON,),
    "trailing-brace": (INVALID_JSON,),
    "trailing-comma": (INVALID_JSON,),
    "two-objects": (INVALID_JSON,),
    "trailing-comma-inside": (INVALID_JSON,),
    "null": (INVALID_JSON,),
    "array": (INVALID_JSON,),
    "long-and-deep-ignored": (),
}
HOSTILE_PARAMS = [pytest.param(line, EXPECTED[name], id=name) for name, line in HOSTILE]


def test_every_hostile_line_has_an_expected_outcome() -> None:
    assert [name for name, _ in HOSTILE] == list(EXPECTED)


@pytest.mark.parametrize(("raw", "expected"), HOSTILE_PARAMS)
def test_hostile_line_outcome_does_not_depend_on_its_neighbours(
    raw: bytes, expected: tuple[str, ...]
) -> None:
    """Alone (Arrow's reader, or the line-by-line parser if Arrow refuses it), among good lines
    (the same), and after a line that makes Arrow refuse the block (always line by line)."""
    assert outcomes([raw], 1) == [expected]
    assert outcomes([GOOD_LINE, raw, GOOD_LINE], 3) == [(), expected, ()]
    for bad in BAD_NEIGHBOURS:
        assert outcomes([bad, raw], 2)[1] == expected, bad
    record, defects = jsonl.parse_line(raw)  # the line-by-line parser on its own
    table = pa.Table.from_pylist(
        [{**record, s.DEFECTS_COLUMN: defects or None}],
        schema=s.TEXT_INPUT_SCHEMA.append(pa.field(s.DEFECTS_COLUMN, pa.list_(pa.string()))),
    )
    assert tuple(by_row(split_batch(table, DATE)).get(0, ())) == expected


@pytest.mark.parametrize("batch_rows", [1, 2, 3, 7, 1000], ids=lambda n: f"batch{n}")
def test_hostile_lines_outcomes_do_not_depend_on_the_batch_size(
    tmp_path: Path, batch_rows: int
) -> None:
    lines = [line for _, line in HOSTILE]
    mixed = [x for pair in zip(lines, BAD_NEIGHBOURS * len(lines), strict=False) for x in pair]
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(mixed) + b"\n")
    results = [split_batch(batch, DATE) for batch in read_all(path, batch_rows)]
    found: list[tuple[str, ...]] = []
    for result in results:
        rows = by_row(result)
        found += [tuple(rows.get(i, ())) for i in range(result.rows_read)]
    assert found[::2] == [EXPECTED[name] for name, _ in HOSTILE]
    raws = [
        raw for result in results for raw in result.rejected.column("source_record").to_pylist()
    ]
    assert all(isinstance(raw, str) for raw in raws)


# --- invalid UTF-8: JSON lines -------------------------------------------------------------------
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize(("path", "out"), [pytest.param(p, o, id=o) for p, o in SELECTED])
def test_latin1_text_in_a_json_file_is_rejected_for_its_field(
    tmp_path: Path, path: tuple[str, ...], out: str, compressed: bool
) -> None:
    bad = with_raw(path, LATIN1)
    data = b"\n".join([GOOD_LINE, bad, GOOD_LINE, with_raw(("x",), LATIN1)]) + b"\n"
    file = tmp_path / ("day.jsonl.gz" if compressed else "day.jsonl")
    file.write_bytes(gzip.compress(data) if compressed else data)
    for batch_rows in (1, 1000):
        result = split_file(file, batch_rows)
        assert result.valid.num_rows == 3  # the Latin-1 in an ignored field is no problem
        assert result.rejected.column("reasons").to_pylist() == [list(utf8(out))]
        [kept] = result.rejected.column("source_record").to_pylist()
        assert kept == bad.decode("utf-8", errors="replace")
        assert "caf\ufffd" in kept


# --- invalid UTF-8: Parquet and Arrow IPC --------------------------------------------------------
def typed_rows(n: int = 3) -> dict[str, Any]:
    """Columns of n good typed rows, as Python values."""
    return {
        "timestamp": [NOON] * n,
        "event_name": ["view"] * n,
        "platform": ["web"] * n,
        "id": [f"user_{i}" for i in range(n)],
        "name": ["Mouse"] * n,
        "SKU": ["SKU-1"] * n,
    }


def _strings(values: list[Any], bad_row: int | None, dictionary: bool) -> pa.Array:
    encoded = [v.encode() if isinstance(v, str) else v for v in values]
    if bad_row is not None:
        encoded[bad_row] = b"caf\xe9"
    array = pa.array(encoded, pa.binary()).view(pa.string())  # no UTF-8 check
    if not dictionary:
        return array
    unique = list(dict.fromkeys(encoded))
    indices = pa.array([unique.index(v) for v in encoded], pa.int32())
    return pa.DictionaryArray.from_arrays(indices, pa.array(unique, pa.binary()).view(pa.string()))


def typed_table(bad: str | None = None, bad_row: int = 1, dictionary: bool = False) -> pa.Table:
    """Three good rows, or with the leaf field ``bad`` (``timestamp`` makes it text) holding
    invalid UTF-8 in ``bad_row``; ``dictionary`` encodes the categorical fields (as Parquet's
    reader hands them over)."""
    rows = typed_rows()

    def text(name: str) -> pa.Array:  # the categorical fields dictionary-encoded, if asked
        encode = dictionary and name in {"event_name", "platform", "name", "SKU"}
        return _strings(rows[name], bad_row if name == bad else None, encode)

    if bad == "timestamp":
        timestamp = _strings(["2023-10-23T12:00:00Z"] * 3, bad_row, False)
    else:
        timestamp = pa.array(rows["timestamp"], pa.timestamp("us", tz="UTC"))
    return pa.table(
        {
            "timestamp": timestamp,
            "event_name": text("event_name"),
            "user_identifiers": pa.StructArray.from_arrays(
                [text("platform"), text("id")], names=["platform", "id"]
            ),
            "product_information": pa.StructArray.from_arrays(
                [text("name"), text("SKU")], names=["name", "SKU"]
            ),
        }
    )


LEAVES = {
    "timestamp": s.EVENT_DATETIME,
    "event_name": s.EVENT_NAME,
    "id": s.USER_ID,
    "platform": s.PLATFORM,
    "name": s.PRODUCT_NAME,
    "SKU": s.SKU,
}


def write(table: pa.Table, path: Path) -> Path:
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        with ipc.new_file(path, table.schema) as writer:
            writer.write_table(table)
    return path


@pytest.mark.parametrize(
    ("suffix", "dictionary"),
    [(".parquet", False), (".parquet", True), (".arrow", False), (".arrow", True)],
    ids=["parquet", "parquet-dictionary", "arrow", "arrow-dictionary"],
)
@pytest.mark.parametrize("leaf", list(LEAVES))
def test_invalid_utf8_in_a_typed_file_is_rejected_for_its_field(
    tmp_path: Path, leaf: str, suffix: str, dictionary: bool
) -> None:
    path = write(typed_table(leaf, dictionary=dictionary), tmp_path / f"day{suffix}")
    result = split_file(path)
    assert result.valid.num_rows == 2
    assert by_row(result) == {1: [r.reason(LEAVES[leaf], r.INVALID_UTF8)]}
    [kept] = result.rejected.column("source_record").to_pylist()
    assert "caf\ufffd" in kept
    assert json.loads(kept)["event_name"] in {"view", "caf\ufffd"}


@pytest.mark.parametrize("leaf", list(LEAVES))
def test_invalid_utf8_in_a_batch_is_rejected_for_its_field(leaf: str) -> None:
    """The transform on its own (sources that hand over text unchecked, BigQuery's included)."""
    for dictionary in (False, True):
        result = split_batch(typed_table(leaf, bad_row=0, dictionary=dictionary), DATE)
        assert by_row(result) == {0: [r.reason(LEAVES[leaf], r.INVALID_UTF8)]}
        assert result.valid.num_rows == 2


def test_invalid_utf8_in_many_rows_of_a_large_batch() -> None:
    n = 10_000
    bad = set(random.Random(3).sample(range(n), 150))
    values = [b"caf\xe9" if i in bad else f"user_{i}".encode() for i in range(n)]
    table = pa.table(
        {
            "timestamp": pa.array([NOON] * n, pa.timestamp("us", tz="UTC")),
            "event_name": ["view"] * n,
            "user_identifiers": pa.StructArray.from_arrays(
                [pa.array(["web"] * n), pa.array(values, pa.binary()).view(pa.string())],
                names=["platform", "id"],
            ),
            "product_information": pa.nulls(n, s.PRODUCT_INFORMATION),
        }
    )
    result = split_batch(table, DATE)
    assert set(by_row(result)) == bad
    assert result.valid.num_rows == n - len(bad)


def test_an_invalid_dictionary_value_no_row_uses_rejects_nothing() -> None:
    table = typed_table()
    names = pa.DictionaryArray.from_arrays(
        pa.array([0, 0, 0], pa.int32()), pa.array([b"view", b"caf\xe9"]).view(pa.string())
    )
    result = split_batch(table.set_column(1, "event_name", names), DATE)
    assert result.valid.num_rows == 3


def test_source_records_replace_invalid_utf8() -> None:
    table = typed_table("id", bad_row=0, dictionary=True)
    [kept] = source_records(table, [0])
    assert json.loads(kept) == {
        "timestamp": "2023-10-23T12:00:00.000000Z",
        "event_name": "view",
        "user_identifiers": {"platform": "web", "id": "caf\ufffd"},
        "product_information": {"name": "Mouse", "SKU": "SKU-1"},
    }


# --- instants BigQuery cannot hold ---------------------------------------------------------------
TYPED_INSTANTS = [
    # (unit, value in that unit, expected reason)
    pytest.param("us", 253_402_300_800_000_000, OUT_OF_RANGE, id="us-year-10000"),
    pytest.param("us", r.MAX_INSTANT_US, OUTSIDE, id="us-last-instant"),
    pytest.param("us", r.MIN_INSTANT_US, OUTSIDE, id="us-first-instant"),
    pytest.param("us", r.MIN_INSTANT_US - 1, OUT_OF_RANGE, id="us-before-year-1"),
    pytest.param("us", INT64_MAX, OUT_OF_RANGE, id="us-int64-max"),
    pytest.param("us", INT64_MIN, OUT_OF_RANGE, id="us-int64-min"),
    pytest.param("s", 253_402_300_799, OUTSIDE, id="s-last-second"),
    pytest.param("s", 253_402_300_800, OUT_OF_RANGE, id="s-year-10000"),
    # in microseconds these wrap around to 2023-10-23T12:00:00Z exactly
    pytest.param("s", NOON_US // 10**6 + 2**58, OUT_OF_RANGE, id="s-wraps-into-the-date"),
    pytest.param("ms", NOON_US // 10**3 + 2**61, OUT_OF_RANGE, id="ms-wraps-into-the-date"),
    pytest.param("s", INT64_MAX, OUT_OF_RANGE, id="s-int64-max"),
    pytest.param("s", INT64_MIN + 1, OUT_OF_RANGE, id="s-int64-min"),
    pytest.param("ms", INT64_MIN + 1, OUT_OF_RANGE, id="ms-int64-min"),
    pytest.param("ns", INT64_MAX, OUTSIDE, id="ns-int64-max-is-2262"),
    pytest.param("ns", INT64_MIN + 1, OUTSIDE, id="ns-int64-min-is-1677"),
]


def _with_timestamp(unit: str, value: int, tz: str | None = "UTC") -> pa.Table:
    """Two rows: noon of the date, and ``value`` (in ``unit``)."""
    noon = NOON_US * 1000 if unit == "ns" else NOON_US // {"s": 10**6, "ms": 10**3, "us": 1}[unit]
    column = pa.array([noon, value], pa.int64()).cast(pa.timestamp(unit, tz=tz))
    return typed_table().slice(0, 2).set_column(0, pa.field("timestamp", column.type), column)


def _check_instant(result: BatchResult, expected: str) -> None:
    assert result.valid.num_rows == 1
    assert by_row(result) == {1: [expected]}
    kept = json.loads(result.rejected.column("source_record")[0].as_py())
    if expected == OUT_OF_RANGE:  # rendered as microseconds since the epoch, not as a date
        assert isinstance(kept["timestamp"], int)
        assert not r.MIN_INSTANT_US <= kept["timestamp"] <= r.MAX_INSTANT_US
    else:
        assert isinstance(kept["timestamp"], str)


@pytest.mark.parametrize("tz", ["UTC", None], ids=["utc", "zone-less"])
@pytest.mark.parametrize(("unit", "value", "expected"), TYPED_INSTANTS)
def test_typed_instant_out_of_bigquery_range(unit: str, value: int, expected: str, tz) -> None:
    table = _with_timestamp(unit, value, tz)
    _check_instant(split_batch(table, DATE), expected)  # the transform on any unit
    _check_instant(split_batch(conform(table), DATE), expected)  # a source's shape (us, UTC)


@pytest.mark.parametrize(("unit", "value", "expected"), TYPED_INSTANTS)
def test_typed_instant_out_of_range_from_an_arrow_file(
    tmp_path: Path, unit: str, value: int, expected: str
) -> None:
    path = write(_with_timestamp(unit, value), tmp_path / "day.arrow")
    _check_instant(split_file(path), expected)


def test_out_of_range_source_record_is_the_microseconds() -> None:
    table = _with_timestamp("us", 253_402_300_800_000_000)
    [kept] = source_records(table, [1])
    assert json.loads(kept)["timestamp"] == 253_402_300_800_000_000


def test_flipped_bytes_in_a_parquet_timestamp_value(tmp_path: Path) -> None:
    """A bit flipped in a stored value (not in a header) gives an instant out of range."""
    n = 50
    table = typed_table().slice(0, 1)
    table = pa.concat_tables([table] * n)
    micros = pa.array([NOON_US + i * 1_000_003 for i in range(n)], pa.int64())
    table = table.set_column(0, "timestamp", micros.cast(pa.timestamp("us", tz="UTC")))
    path = tmp_path / "day.parquet"
    pq.write_table(table, path, compression="none", use_dictionary=False, write_statistics=False)
    data = bytearray(path.read_bytes())
    where = data.find((NOON_US + 7 * 1_000_003).to_bytes(8, "little", signed=True))
    assert where > 0
    data[where + 7] ^= 0x40  # the top byte: the value grows by 2**62 microseconds
    path.write_bytes(bytes(data))
    result = split_file(path)
    assert by_row(result) == {7: [OUT_OF_RANGE]}
    assert result.valid.num_rows == n - 1


# --- corrupt files: an InputError naming the file, never a crash ---------------------------------
def _sample(n: int = 120) -> pa.Table:
    rows = typed_rows(n)
    return pa.table(
        {
            "timestamp": pa.array(
                [NOON + dt.timedelta(seconds=7 * i) for i in range(n)],
                pa.timestamp("us", tz="UTC"),
            ),
            "event_name": [["view", "click", "purchase"][i % 3] for i in range(n)],
            "user_identifiers": pa.array(
                [{"platform": ["web", "ios"][i % 2], "id": rows["id"][i]} for i in range(n)],
                s.USER_IDENTIFIERS,
            ),
            "product_information": pa.array(
                [{"name": f"Product {i % 5}", "SKU": f"SKU-{i % 5}"} for i in range(n)],
                s.PRODUCT_INFORMATION,
            ),
        }
    )


def _write_variant(path: Path, variant: str) -> None:
    table = _sample()
    if variant.startswith("parquet"):
        compression, dictionary = variant.split("-")[1:]
        pq.write_table(table, path, compression=compression, use_dictionary=dictionary == "dict")
        return
    if variant.endswith("dict"):
        table = table.set_column(1, "event_name", table.column("event_name").dictionary_encode())
    compression = "lz4" if "lz4" in variant else None
    options = ipc.IpcWriteOptions(compression=compression)
    with ipc.new_file(path, table.schema, options=options) as writer:
        writer.write_table(table, max_chunksize=40)


def _outcome(path: Path) -> str:
    """ "ok" when every row is read and split (counts adding up), "refused" for an InputError
    that names the file; anything else fails the test."""
    try:
        plan = open_source(str(path)).plan(DATE, 10**6)
        for piece in plan.pieces:
            for batch in _read(piece, 50):
                result = split_batch(batch, DATE, piece.id)
                assert result.rows_read == result.valid.num_rows + result.rejected.num_rows
    except InputError as e:
        assert str(path) in str(e), str(e)
        return "refused"
    return "ok"


VARIANTS = [
    "parquet-none-dict",
    "parquet-none-plain",
    "parquet-snappy-dict",
    "parquet-snappy-plain",
    "arrow-plain",
    "arrow-dict",
    "arrow-lz4-plain",
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_flipped_bits_anywhere_never_crash(tmp_path: Path, variant: str) -> None:
    """Bits flipped at random in the file's pages, headers and footer: each run either reads
    every row (the flip landed in a value: the row is valid or rejected) or is refused."""
    suffix = ".parquet" if variant.startswith("parquet") else ".arrow"
    good = tmp_path / f"good{suffix}"
    _write_variant(good, variant)
    data = good.read_bytes()
    assert _outcome(good) == "ok"
    rng = random.Random(variant)
    seen = set()
    for trial in range(40):
        flipped = bytearray(data)
        for _ in range(rng.choice([1, 2, 4])):
            flipped[rng.randrange(8, len(data) - 8)] ^= 1 << rng.randrange(8)
        path = tmp_path / f"flipped{trial}{suffix}"
        path.write_bytes(bytes(flipped))
        seen.add(_outcome(path))
        path.unlink()
    assert "refused" in seen


def test_a_corrupt_parquet_page_header_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "day.parquet"
    pq.write_table(_sample(), path, compression="none")
    data = bytearray(path.read_bytes())
    data[4:24] = b"\xff" * 20  # the first page's header
    path.write_bytes(bytes(data))
    [piece] = open_source(str(path)).plan(DATE, 10**6).pieces
    with pytest.raises(InputError, match="corrupt") as caught:
        list(_read(piece, 1000))
    assert str(path) in str(caught.value)
    assert piece.id in str(caught.value)


def test_dictionary_indices_out_of_bounds_are_a_corrupt_source() -> None:
    table = typed_table()
    names = pa.DictionaryArray.from_arrays(
        pa.array([0, 5, 0], pa.int32()), pa.array(["view"]), safe=False
    )
    with pytest.raises(pa.ArrowInvalid):
        conform(table.set_column(1, "event_name", names), check_buffers=False)
    with pytest.raises(pa.ArrowInvalid):
        conform(table.set_column(1, "event_name", names))
