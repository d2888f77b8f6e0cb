"""Typed (Parquet/Arrow) input: what the schema check accepts, refuses, and how it conforms."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import ipc

from processing.adapters.sources import open_source
from processing.adapters.sources.arrow_files import check_input_schema, conform
from processing.logic.batch import split_batch
from processing.spec import schema as s
from processing.spec.errors import InputError

USER = pa.struct([("platform", pa.string()), ("id", pa.string())])
PRODUCT = pa.struct([("name", pa.string()), ("SKU", pa.string())])


def _table(**types: pa.DataType) -> pa.Table:
    fields = {
        "timestamp": pa.timestamp("us", tz="UTC"),
        "event_name": pa.string(),
        "user_identifiers": USER,
        "product_information": PRODUCT,
        **types,
    }
    row = {
        "timestamp": "2023-10-23T12:00:00Z",
        "event_name": "view",
        "user_identifiers": {"platform": "web", "id": "u1"},
        "product_information": {"name": "Mouse", "SKU": "SKU-1"},
    }
    columns = {}
    for name, typ in fields.items():
        value = pa.array([row[name]])
        if pa.types.is_timestamp(typ):
            value = value.cast(pa.timestamp("us", tz="UTC")).cast(typ)
        elif pa.types.is_dictionary(typ):
            value = value.dictionary_encode()
        elif not pa.types.is_struct(typ):
            value = value.cast(typ)
        else:
            value = pa.array([row[name]], typ)
        columns[name] = value
    return pa.table(columns)


ACCEPTED = [
    pytest.param({}, id="bigquery-shape"),
    pytest.param({"event_name": pa.large_string()}, id="large-string"),
    pytest.param({"event_name": pa.dictionary(pa.int32(), pa.string())}, id="dictionary"),
    pytest.param({"timestamp": pa.string()}, id="text-timestamp"),
    pytest.param({"timestamp": pa.large_string()}, id="large-text-timestamp"),
    pytest.param({"timestamp": pa.timestamp("ns", tz="UTC")}, id="ns-timestamp"),
    pytest.param({"timestamp": pa.timestamp("us")}, id="naive-timestamp"),
]


@pytest.mark.parametrize("types", ACCEPTED)
def test_accepted_shapes_conform_to_the_input_schema(types: dict) -> None:
    table = _table(**types)
    check_input_schema(table.schema, "t.parquet")
    conformed = conform(table)
    assert conformed.column("event_name").to_pylist() == ["view"]
    assert conformed.schema.field("user_identifiers").type == s.USER_IDENTIFIERS
    # a dictionary-encoded categorical stays one (of plain strings); other text becomes plain
    dictionary = pa.types.is_dictionary(types.get("event_name", pa.null()))
    expected = pa.dictionary(pa.int32(), pa.string()) if dictionary else pa.string()
    assert conformed.schema.field("event_name").type == expected


REFUSED = [
    pytest.param({"event_name": pa.int64()}, "'event_name'", id="number-event-name"),
    pytest.param(
        {"user_identifiers": pa.struct([("platform", pa.string()), ("id", pa.int64())])},
        "'user_identifiers'",
        id="number-id-is-not-coerced",
    ),
    pytest.param(
        {"user_identifiers": pa.struct([("platform", pa.string())])},
        "'user_identifiers'",
        id="struct-without-id",
    ),
]


@pytest.mark.parametrize(("types", "named"), REFUSED)
def test_wrong_shapes_are_refused_naming_the_field(types: dict, named: str) -> None:
    base = {f.name: f.type for f in _table().schema}
    schema = pa.schema(list({**base, **types}.items()))
    with pytest.raises(InputError, match=named):
        check_input_schema(schema, "t.parquet")


def test_a_missing_field_is_refused() -> None:
    with pytest.raises(InputError, match="'product_information' is missing"):
        check_input_schema(_table().schema.remove(3), "t.parquet")


def test_parquet_categoricals_are_read_as_dictionaries_with_the_same_result(tmp_path: Path) -> None:
    """Parquet's own dictionaries are kept (no decoding and re-hashing); nothing else changes."""
    rows = [
        ("2023-10-23T01:00:00Z", "View", " web ", "u1", "Mouse", "sku-1"),
        ("2023-10-23T02:00:00Z", "add-to-cart", None, "u2", None, None),
        ("2023-10-23T03:00:00Z", None, "IOS", "u3", "Mouse", "SKU-1"),
        ("2023-10-24T03:00:00Z", "view", "web", None, "Stand", "bad sku"),
        ("2023-10-23T04:00:00Z", "  ", "", "u4", "Stand", "SKU-2"),
    ]
    table = pa.table(
        {
            "timestamp": pa.array([r[0] for r in rows]).cast(pa.timestamp("us", tz="UTC")),
            "event_name": [r[1] for r in rows],
            "user_identifiers": pa.array(
                [{"platform": r[2], "id": r[3]} for r in rows], s.USER_IDENTIFIERS
            ),
            "product_information": pa.array(
                [None if r[4] is None else {"name": r[4], "SKU": r[5]} for r in rows],
                s.PRODUCT_INFORMATION,
            ),
        }
    )
    path = tmp_path / "day.parquet"
    pq.write_table(table, path)
    [piece] = open_source(str(path)).plan(dt.date(2023, 10, 23), 100).pieces
    [read] = list(piece.read(100))
    assert pa.types.is_dictionary(read.schema.field("event_name").type)
    assert pa.types.is_dictionary(read.schema.field("user_identifiers").type.field("platform").type)
    assert read.schema.field("user_identifiers").type.field("id").type == pa.string()

    from_dictionaries = split_batch(read, dt.date(2023, 10, 23))
    from_strings = split_batch(table, dt.date(2023, 10, 23))
    assert from_dictionaries.valid.to_pylist() == from_strings.valid.to_pylist()
    assert from_dictionaries.rejected.to_pylist() == from_strings.rejected.to_pylist()
    assert from_dictionaries.valid.column("platform").to_pylist() == ["web", "unknown"]
    assert from_dictionaries.reasons == {
        "event_name:missing": 2,
        "event_datetime:outside_run_date": 1,
    }


def test_a_piece_of_many_small_row_groups_reads_into_full_batches(tmp_path: Path) -> None:
    """Dictionaries inside structs cannot be chunked by Arrow: row groups are read one by one."""
    n = 1_000
    table = pa.table(
        {
            "timestamp": pa.array([dt.datetime(2023, 10, 23, 12, tzinfo=dt.UTC)] * n),
            "event_name": ["view", "add_to_cart"] * (n // 2),
            "user_identifiers": pa.array(
                [{"platform": ["web", "ios"][i % 2], "id": f"u{i}"} for i in range(n)],
                s.USER_IDENTIFIERS,
            ),
            "product_information": pa.array(
                [{"name": f"p{i % 7}", "SKU": f"SKU-{i % 7}"} for i in range(n)],
                s.PRODUCT_INFORMATION,
            ),
        }
    )
    path = tmp_path / "small-groups.parquet"
    pq.write_table(table, path, row_group_size=64)
    [piece] = open_source(str(path)).plan(dt.date(2023, 10, 23), 10_000).pieces
    batches = list(piece.read(300))
    assert [b.num_rows for b in batches] == [320, 320, 320, 40]  # whole row groups of 64
    result = split_batch(pa.concat_tables(batches), dt.date(2023, 10, 23))
    assert result.valid.num_rows == n
    assert sorted(result.valid.column("user_id").to_pylist()) == sorted(f"u{i}" for i in range(n))


# --- duplicated columns --------------------------------------------------------------------------
def _with_duplicate(table: pa.Table, name: str) -> pa.Table:
    """``table`` with a second column ``name`` (a copy of the first one, or of event_name), or
    for ``struct.child`` a second child of that name in the struct."""
    if "." not in name:
        source = name if name in table.column_names else "event_name"
        return table.append_column(name, table.column(source))
    top, child = name.split(".")
    struct = table.column(top).combine_chunks()
    children = [struct.field(i) for i in range(struct.type.num_fields)]
    names = [f.name for f in struct.type]
    copy = struct.field(child) if child in names else struct.field(0)
    rebuilt = pa.StructArray.from_arrays([*children, copy], names=[*names, child])
    return table.set_column(table.column_names.index(top), top, rebuilt)


SELECTED_DUPLICATES = [
    "timestamp",
    "event_name",
    "user_identifiers",
    "product_information",
    "user_identifiers.id",
    "user_identifiers.platform",
    "product_information.name",
    "product_information.SKU",
]


def _write(table: pa.Table, path: Path) -> None:
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        with ipc.new_file(path, table.schema) as writer:
            writer.write_table(table)


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
@pytest.mark.parametrize("name", SELECTED_DUPLICATES)
def test_a_duplicated_selected_field_is_refused_naming_it(
    tmp_path: Path, name: str, suffix: str
) -> None:
    table = _with_duplicate(_table(), name)
    with pytest.raises(InputError, match=f"'{name}' appears 2 times"):
        check_input_schema(table.schema, "t.parquet")
    path = tmp_path / f"day{suffix}"
    _write(table, path)
    with pytest.raises(InputError, match=f"{path}: field '{name}' appears 2 times"):
        open_source(str(path)).plan(dt.date(2023, 10, 23), 100)


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
@pytest.mark.parametrize("name", ["extra", "user_identifiers.email", "product_information.x"])
def test_a_duplicated_field_that_is_not_read_is_ignored(
    tmp_path: Path, name: str, suffix: str
) -> None:
    table = _with_duplicate(_with_duplicate(_table(), name), name)
    path = tmp_path / f"day{suffix}"
    _write(table, path)
    [piece] = open_source(str(path)).plan(dt.date(2023, 10, 23), 100).pieces
    [batch] = list(piece.read(100))
    result = split_batch(batch, dt.date(2023, 10, 23))
    assert result.valid.column("user_id").to_pylist() == ["u1"]
