"""Parquet files concatenated by copying their row groups' bytes (``parquet_concat``), and the
schema-less Thrift compact codec it rewrites footers and page indexes with (``thrift_compact``).

The files are real ones, written by pyarrow with the pipeline's options, and the concatenations
are read back by pyarrow, DuckDB and Polars; the page index is checked against the pages
themselves."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processing.adapters.merger import merge_files
from processing.adapters.parquet_concat import (
    NotConcatenableError,
    concatenate,
    read_footer,
    row_group_rows,
)
from processing.adapters.writer import _EVENTS_SCHEMA, WriteOptions
from processing.logic import thrift_compact as t
from processing.spec import schema as s

FS = fsspec.filesystem("file")
PIPELINE = WriteOptions().parquet_kwargs(_EVENTS_SCHEMA)
#: the pipeline's options, with small pages: several pages (and page locations) per chunk
SMALL_PAGES = {**PIPELINE, "data_page_size": 1024, "write_batch_size": 256}

# parquet.thrift field ids
FMD_SCHEMA, FMD_NUM_ROWS, FMD_ROW_GROUPS, FMD_KEY_VALUES, FMD_CREATED_BY = 2, 3, 4, 5, 6
FMD_ENCRYPTION = 8
RG_COLUMNS, RG_NUM_ROWS = 1, 3
CC_FILE_PATH, CC_META, OI_OFFSET, OI_LENGTH, CI_OFFSET, CI_LENGTH = 1, 3, 4, 5, 6, 7
CC_CRYPTO = 8
CMD_TOTAL_COMPRESSED, CMD_DATA_PAGE, CMD_DICTIONARY_PAGE = 7, 9, 11
PAGE_LOCATIONS, PL_OFFSET, PL_SIZE, PL_FIRST_ROW = 1, 1, 2, 3
PH_TYPE, PH_COMPRESSED_SIZE = 1, 3
DATA_PAGE, DICTIONARY_PAGE, DATA_PAGE_V2 = 0, 2, 3


# --- files ----------------------------------------------------------------------------------------
def _events(rows: int, seed: int) -> pa.Table:
    """Rows of an events file: sorted timestamps, random user ids, dictionary columns with nulls."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2023-10-23T00:00:00", "us")
    times = np.sort(start + rng.integers(0, 86_400_000_000, rows).astype("timedelta64[us]"))

    def categorical(values: list[str], nulls: float) -> pa.Array:
        picked = rng.integers(0, len(values), rows)
        missing = rng.random(rows) < nulls
        return pa.array(
            [None if m else values[i] for i, m in zip(picked, missing, strict=True)]
        ).dictionary_encode()

    return pa.table(
        {
            s.EVENT_DATETIME: pa.array(times, pa.timestamp("us", tz="UTC")),
            s.USER_ID: pa.array([f"{x:032x}" for x in rng.integers(0, 2**63, rows)]),
            s.PLATFORM: categorical(["web", "ios", "android"], 0.0),
            s.PRODUCT_NAME: categorical(["shoe", "hat", "sock", "scarf"], 0.3),
            s.SKU: categorical(["A-1", "B-2"], 0.5),
        }
    ).cast(_EVENTS_SCHEMA)


def _write(path: Path, table: pa.Table, row_group_rows: int, **kwargs: Any) -> str:
    pq.write_table(table, path, row_group_size=row_group_rows, **kwargs)
    return str(path)


def _events_files(directory: Path, shapes: list[tuple[int, int]], **kwargs: Any) -> list[str]:
    """One events file per ``(rows, row_group_rows)``, with the pipeline's options."""
    options = kwargs or PIPELINE
    return [
        _write(directory / f"part-{i}.parquet", _events(rows, seed=i), group, **options)
        for i, (rows, group) in enumerate(shapes)
    ]


def _footer_bytes(path: str) -> bytes:
    data = Path(path).read_bytes()
    length = int.from_bytes(data[-8:-4], "little")
    return data[-8 - length : -8]


def _footer(path: str) -> t.Struct:
    with open(path, "rb") as handle:
        return read_footer(handle, path).footer


def _chunks(footer: t.Struct) -> Iterator[tuple[int, t.Struct]]:
    """Every column chunk of the file, with its row group's rows."""
    for group in footer.get(FMD_ROW_GROUPS).items:
        for chunk in group.get(RG_COLUMNS).items:
            yield group.get(RG_NUM_ROWS), chunk


def _index_bytes(data: bytes, chunk: t.Struct, offset: int, length: int) -> bytes:
    start = chunk.get(offset)
    return data[start : start + chunk.get(length)]


def _with_footer(source: str, dest: Path, change: Callable[[t.Struct], None]) -> str:
    """A copy of ``source`` whose footer ``change`` edited (the pages are untouched)."""
    data = Path(source).read_bytes()
    raw = _footer_bytes(source)
    footer = t.decode(raw)
    change(footer)
    new = t.encode(footer)
    dest.write_bytes(
        data[: len(data) - 8 - len(raw)] + new + len(new).to_bytes(4, "little") + b"PAR1"
    )
    return str(dest)


# --- thrift codec: real footers and page indexes --------------------------------------------------
def _nested_table(rows: int) -> pa.Table:
    rng = np.random.default_rng(3)
    values = rng.integers(-1000, 1000, rows)
    return pa.table(
        {
            "id": pa.array(np.arange(rows)),
            "maybe": pa.array([None if v % 3 == 0 else float(v) for v in values]),
            "tags": pa.array([[f"t{v % 7}"] * (int(v) % 4) if v % 5 else None for v in values]),
            "point": pa.array(
                [{"x": int(v), "label": None if v % 2 else f"p{v}"} for v in values],
                pa.struct([("x", pa.int32()), ("label", pa.string())]),
            ),
            "flag": pa.array([bool(v % 2) for v in values]),
        }
    )


OPTION_SETS = {
    "pipeline": PIPELINE,
    "pipeline-small-pages": SMALL_PAGES,
    "plain-snappy-no-stats": {
        "compression": "snappy",
        "use_dictionary": False,
        "write_statistics": False,
        "write_page_index": False,
    },
    "zstd-dictionary-stats-no-page-index": {
        "compression": "zstd",
        "use_dictionary": True,
        "write_statistics": True,
        "write_page_index": False,
    },
    "v2-pages-checksums-arrow-schema": {
        "compression": "zstd",
        "data_page_version": "2.0",
        "write_page_checksum": True,
        "write_page_index": True,
        "store_schema": True,
        "sorting_columns": [pq.SortingColumn(0)],
    },
}


def _option_files(directory: Path) -> Iterator[tuple[str, str]]:
    for name, options in OPTION_SETS.items():
        table = _events(2_000, seed=1) if name.startswith("pipeline") else _nested_table(2_000)
        yield name, _write(directory / f"{name}.parquet", table, 700, **options)


def test_real_footers_and_page_indexes_encode_back_to_their_bytes(tmp_path: Path) -> None:
    seen_indexes = 0
    for name, path in _option_files(tmp_path):
        raw = _footer_bytes(path)
        footer = t.decode(raw)
        assert t.encode(footer) == raw, name
        assert footer.get(FMD_NUM_ROWS) == 2_000
        assert t.decode_prefix(raw + b"trailing page bytes") == (footer, len(raw))
        data = Path(path).read_bytes()
        for _, chunk in _chunks(footer):
            for offset, length in ((OI_OFFSET, OI_LENGTH), (CI_OFFSET, CI_LENGTH)):
                if chunk.get(offset) is None:
                    continue
                index = _index_bytes(data, chunk, offset, length)
                assert t.encode(t.decode(index)) == index, name
                seen_indexes += 1
    assert seen_indexes > 0  # the files with a page index have one per chunk


# --- thrift codec: known answers from the specification ------------------------------------------
@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        pytest.param(t.Struct(), b"\x00", id="empty"),
        # field 1, i32 5 (zigzag 10); field 100 (delta 99: long form, zigzag 200), i32 -1
        pytest.param(
            t.Struct([[1, t.I32, 5], [100, t.I32, -1]]),
            b"\x15\x0a\x05\xc8\x01\x01\x00",
            id="long-form-field-id",
        ),
        # a bool field's type is its value
        pytest.param(
            t.Struct([[1, t.BOOL_TRUE, True], [2, t.BOOL_FALSE, False]]),
            b"\x11\x12\x00",
            id="bool-fields",
        ),
        # an i64 of -2**63 (zigzag 2**64 - 1: ten bytes), a double, binary
        pytest.param(
            t.Struct([[1, t.I64, -(2**63)], [2, t.DOUBLE, 1.5], [3, t.BINARY, b"ab"]]),
            b"\x16" + b"\xff" * 9 + b"\x01" + b"\x17" + struct.pack("<d", 1.5) + b"\x18\x02ab\x00",
            id="i64-double-binary",
        ),
        # a list of 20 i32 (long size header), a list of bools (1: true, 2: false)
        pytest.param(
            t.Struct([[1, t.LIST, t.List(t.I32, list(range(20)))]]),
            b"\x19\xf5\x14" + bytes(2 * i for i in range(20)) + b"\x00",
            id="long-list",
        ),
        pytest.param(
            t.Struct([[1, t.LIST, t.List(t.BOOL_TRUE, [1, 2, 2])]]),
            b"\x19\x31\x01\x02\x02\x00",
            id="bool-list",
        ),
        # a map of 2 binary -> i16, an empty map, a nested struct, a set
        pytest.param(
            t.Struct(
                [
                    [1, t.MAP, t.Map(t.BINARY, t.I16, [(b"a", 1), (b"b", -1)])],
                    [2, t.MAP, t.Map(0, 0, [])],
                    [3, t.STRUCT, t.Struct([[1, t.I8, 7]])],
                    [4, t.SET, t.List(t.I64, [3], t.SET)],
                ]
            ),
            b"\x1b\x02\x84\x01a\x02\x01b\x01"
            + b"\x1b\x00"
            + b"\x1c\x13\x07\x00"
            + b"\x1a\x16\x06\x00",
            id="map-struct-set",
        ),
        # a delta of 15 still takes the short form, one of 16 the long one
        pytest.param(
            t.Struct([[15, t.I8, 1], [31, t.I8, 2]]),
            b"\xf3\x01\x03\x3e\x02\x00",
            id="deltas-15-and-16",
        ),
        # 14 items: the size in the header; 15: the long size header
        pytest.param(
            t.Struct([[1, t.LIST, t.List(t.I8, [0] * 14)], [2, t.LIST, t.List(t.I8, [0] * 15)]]),
            b"\x19\xe3" + bytes(14) + b"\x19\xf3\x0f" + bytes(15) + b"\x00",
            id="lists-of-14-and-15",
        ),
        # ids that go down or repeat: long form
        pytest.param(
            t.Struct([[5, t.I16, 1], [3, t.I16, 2], [3, t.I16, 3]]),
            b"\x54\x02\x04\x06\x04\x04\x06\x06\x00",
            id="decreasing-ids",
        ),
    ],
)
def test_known_encodings(value: t.Struct, encoded: bytes) -> None:
    assert t.encode(value) == encoded
    assert t.decode(encoded) == value


def test_a_negative_i8_decodes_to_itself() -> None:
    assert t.decode(t.encode(t.Struct([[1, t.I8, -1]]))).get(1) == -1


# --- thrift codec: random trees ------------------------------------------------------------------
_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    t.I8: st.integers(-128, 127),
    t.I16: st.integers(-(2**15), 2**15 - 1),
    t.I32: st.integers(-(2**31), 2**31 - 1),
    t.I64: st.integers(-(2**63), 2**63 - 1),
    t.DOUBLE: st.floats(allow_nan=True, allow_infinity=True),
    t.BINARY: st.binary(max_size=24),
}
_BOOL_ELEMENT = st.sampled_from([1, 2])
_QUICK: dict[str, Any] = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
_CONTAINERS = (t.LIST, t.SET, t.MAP, t.STRUCT)


def _element(typ: int, depth: int) -> st.SearchStrategy[Any]:
    """A value of ``typ`` as a collection holds it (a bool is its byte)."""
    if typ in (t.BOOL_TRUE, t.BOOL_FALSE):
        return _BOOL_ELEMENT
    if typ in _SCALARS:
        return _SCALARS[typ]
    if typ == t.STRUCT:
        return _struct(depth - 1)
    if typ == t.MAP:
        return st.tuples(_element_type(depth - 1), _element_type(depth - 1)).flatmap(
            lambda kv: st.lists(
                st.tuples(_element(kv[0], depth - 1), _element(kv[1], depth - 1)), max_size=4
            ).map(lambda items: t.Map(kv[0], kv[1], items))
        )
    return _element_type(depth - 1).flatmap(lambda element: _list(element, typ, depth))


def _list(element: int, kind: int, depth: int) -> st.SearchStrategy[t.List]:
    short = st.lists(_element(element, depth - 1), max_size=4)
    if element in _CONTAINERS:
        items = short
    else:  # 15 items and more take the long size header
        items = st.one_of(short, st.lists(_element(element, depth - 1), min_size=15, max_size=40))
    return items.map(lambda values: t.List(element, values, kind))


def _element_type(depth: int) -> st.SearchStrategy[int]:
    simple = [t.BOOL_TRUE, t.BOOL_FALSE, *_SCALARS]
    return st.sampled_from(simple + list(_CONTAINERS) if depth > 0 else simple)


def _field(depth: int) -> st.SearchStrategy[tuple[int, Any]]:
    """A field's type and value (a bool field's type is either, its value says which)."""
    bools = st.tuples(st.sampled_from([t.BOOL_TRUE, t.BOOL_FALSE]), st.booleans())
    others = st.sampled_from([*_SCALARS, *(_CONTAINERS if depth > 0 else ())]).flatmap(
        lambda typ: st.tuples(st.just(typ), _element(typ, depth))
    )
    return st.one_of(bools, others)


def _struct(depth: int) -> st.SearchStrategy[t.Struct]:
    # gaps: 1..15 take the short form; 0, negative and > 15 the long one
    gaps = st.one_of(st.integers(1, 15), st.integers(16, 3_000), st.integers(-40, 0))
    return st.lists(st.tuples(gaps, _field(depth)), max_size=7).map(_numbered)


def _numbered(entries: list[tuple[int, tuple[int, Any]]]) -> t.Struct:
    fields, field_id = [], 0
    for gap, (typ, value) in entries:
        field_id = max(-(2**15), min(2**15 - 1, field_id + gap))
        fields.append([field_id, typ, value])
    return t.Struct(fields)


def _canonical(value: Any, typ: int) -> Any:  # noqa: PLR0911
    """What decoding keeps of a value: bool fields by value, i8 as a byte, doubles by their bits,
    empty maps without their (unsent) types."""
    if typ == t.STRUCT:
        return [
            (fid, "bool", bool(v))
            if ft in (t.BOOL_TRUE, t.BOOL_FALSE)
            else (fid, ft, _canonical(v, ft))
            for fid, ft, v in value.fields
        ]
    if typ in (t.LIST, t.SET):
        return (typ, value.element_type, [_canonical(v, value.element_type) for v in value.items])
    if typ == t.MAP:
        if not value.items:
            return ("map", [])
        return (
            "map",
            value.key_type,
            value.value_type,
            [
                (_canonical(k, value.key_type), _canonical(v, value.value_type))
                for k, v in value.items
            ],
        )
    if typ == t.I8:
        return value & 0xFF
    if typ == t.DOUBLE:
        return struct.pack("<d", value)
    return value


@settings(max_examples=300, report_multiple_bugs=False, database=None, **_QUICK)
@given(_struct(3))
def test_random_structs_survive_encoding_and_decoding(value: t.Struct) -> None:
    encoded = t.encode(value)
    decoded = t.decode(encoded)
    assert t.encode(decoded) == encoded
    assert _canonical(decoded, t.STRUCT) == _canonical(value, t.STRUCT)
    prefix, used = t.decode_prefix(encoded + b"\x00\xff")
    assert (t.encode(prefix), used) == (encoded, len(encoded))


@settings(max_examples=100, report_multiple_bugs=False, database=None, **_QUICK)
@given(_struct(2), st.data())
def test_a_truncated_struct_is_a_thrift_error(value: t.Struct, data: st.DataObject) -> None:
    encoded = t.encode(value)
    cuts = data.draw(st.lists(st.integers(0, len(encoded) - 1), min_size=1, max_size=20))
    for cut in cuts:
        with pytest.raises(t.ThriftError):
            t.decode(encoded[:cut])
        with pytest.raises(t.ThriftError):
            t.decode_prefix(encoded[:cut])


def test_every_prefix_of_a_real_footer_is_a_thrift_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "small.parquet", _events(300, seed=2), 100, **PIPELINE)
    raw = _footer_bytes(path)
    for cut in range(len(raw)):
        with pytest.raises(t.ThriftError):
            t.decode(raw[:cut])


@settings(max_examples=500, report_multiple_bugs=False, database=None, **_QUICK)
@given(st.binary(max_size=300))
def test_garbage_decodes_or_is_a_thrift_error(data: bytes) -> None:
    with contextlib.suppress(t.ThriftError):
        t.decode(data)
    try:
        _, used = t.decode_prefix(data)
    except t.ThriftError:
        return
    assert 0 < used <= len(data)


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x15", id="field-without-value"),
        pytest.param(b"\x15\x80", id="cut-varint"),
        pytest.param(b"\x15" + b"\xff" * 12 + b"\x01\x00", id="endless-varint"),
        pytest.param(b"\x1d\x00", id="unknown-type-13"),
        pytest.param(b"\x10\x00", id="type-0"),
        pytest.param(b"\x18\xff\xff\xff\xff\x0fab\x00", id="binary-longer-than-data"),
        pytest.param(b"\x19\xf5\xff\xff\xff\xff\x0f\x02\x00", id="list-longer-than-data"),
        pytest.param(b"\x1b\xff\xff\xff\xff\x0f\x55\x02\x02\x00", id="map-longer-than-data"),
        pytest.param(b"\x19\x1d\x00", id="list-of-unknown-type"),
        pytest.param(b"\x17\x00\x00\x00", id="cut-double"),
        pytest.param(b"\x1c" * 5_000, id="structs-nested-too-deep"),
        pytest.param(b"\x19" + b"\x19" * 5_000, id="lists-nested-too-deep"),
        pytest.param(b"\x1b" + b"\x01\xbb" * 5_000, id="maps-nested-too-deep"),
        pytest.param(b"\x00\x00", id="bytes-after-the-struct"),
    ],
)
def test_malformed_input_is_a_thrift_error(garbage: bytes) -> None:
    with pytest.raises(t.ThriftError):
        t.decode(garbage)


def test_decode_prefix_stops_at_the_struct_s_end() -> None:
    assert t.decode_prefix(b"\x15\x02\x00rest") == (t.Struct([[1, t.I32, 1]]), 3)


# --- concatenation -------------------------------------------------------------------------------
SHAPES = [(3_000, 1_000), (2_500, 800), (1_200, 600)]  # 3 + 4 + 2 row groups


@pytest.fixture
def sources(tmp_path: Path) -> list[str]:
    return _events_files(tmp_path, SHAPES)


def _row_groups(path: str) -> list[int]:
    metadata = pq.ParquetFile(path).metadata
    return [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]


def test_a_concatenation_holds_its_sources_row_groups_as_they_were(
    sources: list[str], tmp_path: Path
) -> None:
    dest = str(tmp_path / "merged.parquet")
    rows, size = concatenate(FS, sources, dest)

    expected = pa.concat_tables(pq.read_table(p) for p in sources)
    assert rows == expected.num_rows == 6_700
    assert size == Path(dest).stat().st_size
    merged = pq.ParquetFile(dest)
    assert merged.metadata.num_rows == rows
    assert _row_groups(dest) == [n for p in sources for n in _row_groups(p)]
    assert merged.read().equals(expected)
    assert merged.schema_arrow == pq.ParquetFile(sources[0]).schema_arrow
    # each row group, its source's: rows, statistics, encodings, sizes
    groups = [(p, i) for p in sources for i in range(pq.ParquetFile(p).num_row_groups)]
    for k, (path, i) in enumerate(groups):
        source = pq.ParquetFile(path)
        assert merged.read_row_group(k).equals(source.read_row_group(i))
        for j in range(merged.metadata.num_columns):
            out, src = (
                merged.metadata.row_group(k).column(j),
                source.metadata.row_group(i).column(j),
            )
            assert out.statistics == src.statistics
            assert out.encodings == src.encodings
            assert out.total_compressed_size == src.total_compressed_size
            assert out.num_values == src.num_values
    # the footer keeps the first source's fields but the row groups and rows
    first, footer = _footer(sources[0]), _footer(dest)
    for field_id in (FMD_SCHEMA, FMD_CREATED_BY, FMD_KEY_VALUES):
        assert footer.get(field_id) == first.get(field_id)
    with open(dest, "rb") as handle:
        assert row_group_rows(read_footer(handle, dest)) == _row_groups(dest)


def test_duckdb_and_polars_read_the_concatenation(sources: list[str], tmp_path: Path) -> None:
    import duckdb
    import polars as pl

    dest = str(tmp_path / "merged.parquet")
    concatenate(FS, sources, dest)
    expected = pa.concat_tables(pq.read_table(p) for p in sources)
    user_bytes = pc.sum(pc.binary_length(expected.column(s.USER_ID))).as_py()
    micros = sum(expected.column(s.EVENT_DATETIME).cast(pa.int64()).to_pylist())  # no overflow
    day = 1_698_019_200_000_000  # 2023-10-23 in microseconds: polars sums in (wrapping) int64
    names = expected.column(s.PRODUCT_NAME).null_count
    cut = pa.scalar(dt.datetime(2023, 10, 23, 12, tzinfo=dt.UTC), pa.timestamp("us", tz="UTC"))
    after_noon = pc.sum(pc.greater_equal(expected.column(s.EVENT_DATETIME), cut)).as_py()

    row = duckdb.sql(
        f"""select count(*), sum(strlen({s.USER_ID})), sum(epoch_us({s.EVENT_DATETIME})),
                   count(*) - count({s.PRODUCT_NAME}),
                   count(*) filter (where {s.EVENT_DATETIME} >= TIMESTAMPTZ '2023-10-23 12:00:00Z')
            from read_parquet('{dest}')"""
    ).fetchall()
    assert row == [(expected.num_rows, user_bytes, micros, names, after_noon)]
    pruned = duckdb.sql(
        f"select count(*) from read_parquet('{dest}') "
        f"where {s.EVENT_DATETIME} >= TIMESTAMPTZ '2023-10-23 12:00:00Z'"
    ).fetchall()
    assert pruned == [(after_noon,)]  # row-group pruning by the (moved) statistics

    frame = pl.read_parquet(dest)
    assert frame.height == expected.num_rows
    assert frame.select(pl.col(s.USER_ID).str.len_bytes().sum()).item() == user_bytes
    since_midnight = frame.select((pl.col(s.EVENT_DATETIME).cast(pl.Int64) - day).sum()).item()
    assert since_midnight == micros - day * expected.num_rows
    assert frame.get_column(s.PRODUCT_NAME).null_count() == names
    assert frame.equals(pl.read_parquet(sources))
    lazy = pl.scan_parquet(dest).filter(pl.col(s.EVENT_DATETIME) >= cut.as_py())
    assert lazy.select(pl.len()).collect().item() == after_noon


def test_the_concatenation_s_page_index_locates_its_pages(tmp_path: Path) -> None:
    sources = _events_files(tmp_path, SHAPES, **SMALL_PAGES)
    dest = str(tmp_path / "merged.parquet")
    concatenate(FS, sources, dest)

    data = Path(dest).read_bytes()
    source_chunks = [
        (Path(p).read_bytes(), chunk) for p in sources for _, chunk in _chunks(_footer(p))
    ]
    out_chunks = list(_chunks(_footer(dest)))
    assert len(out_chunks) == len(source_chunks)
    several_pages = 0
    for (rows, chunk), (source_data, source_chunk) in zip(out_chunks, source_chunks, strict=True):
        meta = chunk.get(CC_META)
        first_data_page = meta.get(CMD_DATA_PAGE)
        start = meta.get(CMD_DICTIONARY_PAGE) or first_data_page
        end = start + meta.get(CMD_TOTAL_COMPRESSED)
        # the chunk's bytes are its source chunk's
        source_meta = source_chunk.get(CC_META)
        source_start = source_meta.get(CMD_DICTIONARY_PAGE) or source_meta.get(CMD_DATA_PAGE)
        assert data[start:end] == source_data[source_start : source_start + end - start]
        delta = start - source_start

        if meta.get(CMD_DICTIONARY_PAGE):
            header, used = t.decode_prefix(data[start:])
            assert header.get(PH_TYPE) == DICTIONARY_PAGE
            assert start + used + header.get(PH_COMPRESSED_SIZE) == first_data_page

        locations = t.decode(_index_bytes(data, chunk, OI_OFFSET, OI_LENGTH)).get(PAGE_LOCATIONS)
        position, first_rows = first_data_page, []
        for location in locations.items:
            offset = location.get(PL_OFFSET)
            assert offset == position  # pages back to back, from the first data page
            header, used = t.decode_prefix(data[offset:])
            assert header.get(PH_TYPE) in (DATA_PAGE, DATA_PAGE_V2)
            assert used + header.get(PH_COMPRESSED_SIZE) == location.get(PL_SIZE)
            position += location.get(PL_SIZE)
            first_rows.append(location.get(PL_FIRST_ROW))
        assert position == end  # the last page ends the chunk
        assert first_rows[0] == 0
        assert all(a < b < rows for a, b in itertools.pairwise(first_rows))
        several_pages += len(first_rows) > 1

        # the offset index is its source's, shifted; the column index is copied
        source_index = t.decode(_index_bytes(source_data, source_chunk, OI_OFFSET, OI_LENGTH))
        for location in source_index.get(PAGE_LOCATIONS).items:
            location.set(PL_OFFSET, location.get(PL_OFFSET) + delta)
        assert t.encode(source_index) == _index_bytes(data, chunk, OI_OFFSET, OI_LENGTH)
        assert _index_bytes(data, chunk, CI_OFFSET, CI_LENGTH) == _index_bytes(
            source_data, source_chunk, CI_OFFSET, CI_LENGTH
        )
    assert several_pages >= sum(len(_row_groups(p)) for p in sources)  # not all trivial

    metadata = pq.ParquetFile(dest).metadata
    column = metadata.row_group(0).column(0)
    if not hasattr(column, "has_offset_index"):
        pytest.skip("this pyarrow does not say whether a chunk has a page index")
    for i in range(metadata.num_row_groups):
        for j in range(metadata.num_columns):
            assert metadata.row_group(i).column(j).has_offset_index
            assert metadata.row_group(i).column(j).has_column_index


def test_pages_keep_their_checksums(tmp_path: Path) -> None:
    options = {**PIPELINE, "write_page_checksum": True}
    sources = _events_files(tmp_path, SHAPES[:2], **options)
    dest = str(tmp_path / "merged.parquet")
    concatenate(FS, sources, dest)
    table = pq.read_table(dest, page_checksum_verification=True)
    assert table.equals(pa.concat_tables(pq.read_table(p) for p in sources))


def test_nested_columns_and_the_rejected_schema_concatenate(tmp_path: Path) -> None:
    rows = 1_500
    rejected = pa.table(
        {
            "source_record": [f'{{"n": {i}}}' for i in range(rows)],
            "reasons": [["timestamp:missing", "user_id:empty"][: i % 3] for i in range(rows)],
            "reason": ["timestamp:missing" if i % 2 else "user_id:empty" for i in range(rows)],
            "piece": [f"p{i % 4}" for i in range(rows)],
            "row_in_piece": list(range(rows)),
        },
        s.REJECTED_SCHEMA,
    )
    options = WriteOptions().parquet_kwargs(s.REJECTED_SCHEMA)
    paths = [
        _write(tmp_path / "r0.parquet", rejected.slice(0, 900), 400, **options),
        _write(tmp_path / "r1.parquet", rejected.slice(900), 250, **options),
        _write(tmp_path / "n0.parquet", _nested_table(1_000), 300, **SMALL_PAGES),
        _write(tmp_path / "n1.parquet", _nested_table(700), 300, **SMALL_PAGES),
    ]
    for name, pair in (("rejected", paths[:2]), ("nested", paths[2:])):
        dest = str(tmp_path / f"{name}.parquet")
        concatenate(FS, pair, dest)
        assert pq.read_table(dest).equals(pa.concat_tables(pq.read_table(p) for p in pair))
        assert _row_groups(dest) == _row_groups(pair[0]) + _row_groups(pair[1])


def test_a_file_given_twice_is_copied_twice(tmp_path: Path) -> None:
    (path,) = _events_files(tmp_path, [(1_000, 300)])
    dest = str(tmp_path / "merged.parquet")
    rows, _ = concatenate(FS, [path, path], dest)
    assert rows == 2_000
    table = pq.read_table(path)
    assert pq.read_table(dest).equals(pa.concat_tables([table, table]))
    assert _row_groups(dest) == _row_groups(path) * 2


def test_an_empty_file_is_refused_or_copied_as_it_is(tmp_path: Path) -> None:
    """pyarrow writes an empty table as one row group of 0 rows, whose chunks have no data page
    (offset 0): refusing it is fine (the merge rewrites), a broken file is not."""
    (path,) = _events_files(tmp_path, [(1_000, 300)])
    empty = _write(tmp_path / "empty.parquet", _events(0, seed=9), 100, **PIPELINE)
    dest = tmp_path / "merged.parquet"
    try:
        rows, _ = concatenate(FS, [path, empty], str(dest))
    except NotConcatenableError:
        assert not dest.exists()
        return
    assert rows == 1_000
    assert pq.read_table(dest).equals(pq.read_table(path))


# --- refusals -------------------------------------------------------------------------------------
def _refused(sources: list[str], dest: Path, **kwargs: Any) -> str:
    with pytest.raises(NotConcatenableError) as refusal:
        concatenate(FS, sources, str(dest), **kwargs)
    assert not dest.exists()  # refused before writing
    return str(refusal.value)


def test_files_of_different_schemas_are_refused(sources: list[str], tmp_path: Path) -> None:
    other = _events(500, seed=5)
    variants = {
        "fewer-columns": other.drop_columns([s.SKU]),
        "other-type": other.set_column(1, s.USER_ID, pc.binary_length(other.column(s.USER_ID))),
        "nullable": other.cast(pa.schema([f.with_nullable(True) for f in _EVENTS_SCHEMA])),
        "renamed": other.rename_columns([*other.column_names[:-1], "sku"]),
    }
    for name, table in variants.items():
        path = _write(tmp_path / f"{name}.parquet", table, 200, **PIPELINE)
        assert "schema" in _refused([sources[0], path], tmp_path / f"{name}-merged.parquet")


def test_a_bloom_filter_is_refused(sources: list[str], tmp_path: Path) -> None:
    options = {**PIPELINE, "bloom_filter_options": {s.USER_ID: {"ndv": 1_000, "fpp": 0.05}}}
    try:
        path = _write(tmp_path / "bloom.parquet", _events(1_000, seed=4), 400, **options)
    except TypeError as e:  # pragma: no cover - older pyarrow
        pytest.skip(f"this pyarrow writes no bloom filter: {e}")
    if pq.ParquetFile(path).metadata.row_group(0).column(1).bloom_filter_offset is None:
        pytest.skip("this pyarrow accepts bloom_filter_options but wrote no filter")
    assert "bloom" in _refused([sources[0], path], tmp_path / "merged.parquet")
    assert "bloom" in _refused([path, sources[0]], tmp_path / "merged.parquet")


def test_a_row_group_smaller_than_the_minimum_is_refused(
    sources: list[str], tmp_path: Path
) -> None:
    smallest = min(n for p in sources for n in _row_groups(p))  # 100: 2,500 by 800
    assert smallest == 100
    _refused(sources, tmp_path / "merged.parquet", min_row_group_rows=smallest + 1)
    rows, _ = concatenate(FS, sources, str(tmp_path / "ok.parquet"), min_row_group_rows=smallest)
    assert rows == 6_700


def _drop_chunk_gap(footer: t.Struct) -> None:
    """The second chunk of the first row group starts a byte after the first one ends."""
    meta = footer.get(FMD_ROW_GROUPS).items[0].get(RG_COLUMNS).items[1].get(CC_META)
    meta.set(CMD_DATA_PAGE, meta.get(CMD_DATA_PAGE) + 1)


def _encrypted(footer: t.Struct) -> None:
    footer.fields.append([FMD_ENCRYPTION, t.STRUCT, t.Struct([[1, t.STRUCT, t.Struct()]])])


def _chunk_encrypted(footer: t.Struct) -> None:
    chunk = footer.get(FMD_ROW_GROUPS).items[-1].get(RG_COLUMNS).items[0]
    chunk.fields.append([CC_CRYPTO, t.STRUCT, t.Struct([[1, t.STRUCT, t.Struct()]])])


def _chunk_elsewhere(footer: t.Struct) -> None:
    chunk = footer.get(FMD_ROW_GROUPS).items[0].get(RG_COLUMNS).items[2]
    chunk.fields.insert(0, [CC_FILE_PATH, t.BINARY, b"other.parquet"])


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (_drop_chunk_gap, "back to back"),
        (_encrypted, "encrypted"),
        (_chunk_encrypted, "encrypted"),
        (_chunk_elsewhere, "another file"),
    ],
)
def test_footers_that_cannot_be_copied_are_refused(
    sources: list[str], tmp_path: Path, change: Callable[[t.Struct], None], says: str
) -> None:
    edited = _with_footer(sources[1], tmp_path / "edited.parquet", change)
    assert says in _refused([sources[0], edited], tmp_path / "merged.parquet")
    assert says in _refused([edited, sources[0]], tmp_path / "merged.parquet")


def _cut_in_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _middle_removed(data: bytes) -> bytes:
    return data[:5_000] + data[5_100:]


def _huge_footer_length(data: bytes) -> bytes:
    return data[:-8] + (2**31 - 1).to_bytes(4, "little") + b"PAR1"


def _zero_footer_length(data: bytes) -> bytes:
    return data[:-8] + bytes(4) + b"PAR1"


def _empty_footer(data: bytes) -> bytes:
    return b"PAR1\x00" + (1).to_bytes(4, "little") + b"PAR1"


@pytest.mark.parametrize(
    "damage",
    [
        _cut_in_half,
        _zero_footer_length,
        lambda data: b"",
        lambda data: b"PAR1PAR1",
        lambda data: b"event_datetime,user_id\n2023-10-23,u1\n" * 50,
        lambda data: data[:-1],
        _middle_removed,
        _huge_footer_length,
        _empty_footer,
    ],
    ids=lambda damage: getattr(damage, "__name__", "damage"),
)
def test_a_damaged_or_foreign_file_is_refused(
    sources: list[str], tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(damage(Path(sources[1]).read_bytes()))
    for order in ([sources[0], str(bad)], [str(bad), sources[0]]):
        _refused(order, tmp_path / "merged.parquet")


def test_a_source_missing_bytes_without_a_page_index_is_refused(tmp_path: Path) -> None:
    options = {**PIPELINE, "write_page_index": False}
    (path,) = _events_files(tmp_path, [(3_000, 1_000)], **options)
    data = Path(path).read_bytes()
    Path(path).write_bytes(_middle_removed(data))
    with pytest.raises(NotConcatenableError):
        concatenate(FS, [path], str(tmp_path / "merged.parquet"))


# --- merging: copied or rewritten ----------------------------------------------------------------
def test_a_merge_copies_large_row_groups_and_rewrites_small_ones(
    sources: list[str], tmp_path: Path
) -> None:
    copied, rewritten = str(tmp_path / "copied.parquet"), str(tmp_path / "rewritten.parquet")
    small = WriteOptions(row_group_rows=2_000, min_copied_row_group_rows=100)
    large = WriteOptions(row_group_rows=2_000, min_copied_row_group_rows=101)

    assert merge_files(FS, sources, copied, small) == (6_700, Path(copied).stat().st_size)
    assert merge_files(FS, sources, rewritten, large) == (6_700, Path(rewritten).stat().st_size)

    assert _row_groups(copied) == [n for p in sources for n in _row_groups(p)]
    assert _row_groups(rewritten) == [2_000, 2_000, 2_000, 700]
    expected = pa.concat_tables(pq.read_table(p) for p in sources)
    assert pq.read_table(copied).equals(expected)
    assert pq.read_table(rewritten).equals(expected)
    # a merge without copying (0) rewrites as well
    never = str(tmp_path / "never.parquet")
    merge_files(FS, sources, never, WriteOptions(row_group_rows=2_000, min_copied_row_group_rows=0))
    assert _row_groups(never) == [2_000, 2_000, 2_000, 700]
    assert pq.read_table(never).equals(expected)
    assert all(Path(p).exists() for p in sources)


def test_a_merge_rewrites_files_that_cannot_be_copied(sources: list[str], tmp_path: Path) -> None:
    options = {**PIPELINE, "bloom_filter_options": {s.USER_ID: {"ndv": 1_000}}}
    bloom = _write(tmp_path / "bloom.parquet", _events(1_000, seed=4), 400, **options)
    dest = str(tmp_path / "merged.parquet")
    rows, _ = merge_files(
        FS,
        [sources[0], bloom],
        dest,
        WriteOptions(row_group_rows=1_500, min_copied_row_group_rows=1),
    )
    assert rows == 4_000
    assert _row_groups(dest) == [1_500, 1_500, 1_000]
    assert pq.read_table(dest).equals(
        pa.concat_tables([pq.read_table(sources[0]), pq.read_table(bloom)])
    )
    assert pq.ParquetFile(dest).metadata.num_rows == rows
