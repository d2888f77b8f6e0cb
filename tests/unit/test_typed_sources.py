"""Typed (Parquet/Arrow) input: what the schema check accepts, refuses, and how it conforms."""

from __future__ import annotations

import pyarrow as pa
import pytest

from processing.adapters.sources.arrow_files import check_input_schema, conform
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
    assert conformed.schema.field("event_name").type == pa.string()


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
