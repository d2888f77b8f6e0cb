"""Flatten, normalise and enrich a batch of source records (pure: Arrow in, Arrow out).

The result has the output columns plus ``_defects``: the problems already known before validation
(from the source, or a timestamp that could not be parsed). A value that fails to parse becomes
null here and the defect names why, so validation reports the precise reason instead of "missing".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from processing.spec import rules as r
from processing.spec import schema as s

_TIMESTAMP_US_UTC = pa.timestamp("us", tz="UTC")
# A timestamp in text must at least have a date and a time of day ("2023-10-23" alone is refused).
_TIMESTAMP_SHAPE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}"


def _nested(batch: pa.Table, struct: str, field: str) -> pa.ChunkedArray:
    return pc.struct_field(batch.column(struct), field)


def _clean(values: Any) -> Any:
    """Trim whitespace; empty strings become null."""
    trimmed = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _per_distinct(values: Any, fn: Callable[[pa.Array], pa.Array]) -> pa.DictionaryArray:
    """A categorical column, normalised once per distinct value (they are few).

    The result is dictionary-encoded with unique, non-null dictionary values (nulls are null
    indices), which pandas reads as a Categorical: validation then also runs once per value.
    """
    if pa.types.is_dictionary(values.type):
        encoded = _nulls_in_dictionary(values)
    else:
        encoded = pc.dictionary_encode(values, null_encoding="encode")
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
    mapped = pc.dictionary_encode(fn(encoded.dictionary))  # distinct inputs may normalise alike
    return pa.DictionaryArray.from_arrays(
        pc.take(mapped.indices, encoded.indices), mapped.dictionary
    )


def _nulls_in_dictionary(values: Any) -> pa.DictionaryArray:
    """An already dictionary-encoded input, in the form ``dictionary_encode(null_encoding=
    "encode")`` gives: one array, and null rows pointing at a null dictionary value (so that the
    normalisation of null, e.g. a default, is applied through the dictionary too)."""
    if isinstance(values, pa.ChunkedArray):
        values = (
            pa.table({"v": values}).unify_dictionaries().column("v").combine_chunks()
            if values.num_chunks != 1
            else values.chunk(0)
        )
    dictionary = pa.concat_arrays([values.dictionary, pa.nulls(1, values.dictionary.type)])
    indices = pc.fill_null(values.indices.cast(pa.int32()), len(values.dictionary))
    return pa.DictionaryArray.from_arrays(indices, dictionary)


def _event_name(values: pa.Array) -> pa.Array:
    lowered = pc.utf8_lower(_clean(values))
    return pc.replace_substring_regex(lowered, pattern=r"[\s\-]+", replacement="_")


def _platform(values: pa.Array) -> pa.Array:
    return pc.fill_null(pc.utf8_lower(_clean(values)), s.UNKNOWN_PLATFORM)


def _sku(values: pa.Array) -> pa.Array:
    return pc.utf8_upper(_clean(values))


def parse_timestamps(values: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Timestamps of any accepted form to UTC microseconds.

    Returns the parsed values and a boolean mask of the non-null inputs that did not parse.
    """
    if pa.types.is_timestamp(values.type):
        if values.type.tz is None:  # a zone-less TIMESTAMP is UTC, as in BigQuery
            values = pc.assume_timezone(values, "UTC")
        parsed = values.cast(_TIMESTAMP_US_UTC)
        return parsed, pc.and_(pc.is_valid(values), pc.is_null(parsed))  # all False
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        raise TypeError(f"timestamp column has type {values.type}; expected timestamp or string")
    text = pc.utf8_upper(pc.utf8_trim_whitespace(values))  # ISO 8601's only letters: T, Z, UTC
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)  # blank: missing
    present = pc.is_valid(text)
    text = pc.replace_substring_regex(text, pattern=r"\s+UTC$", replacement="Z")
    shaped = pc.match_substring_regex(text, _TIMESTAMP_SHAPE)
    text = pc.if_else(shaped, text, pa.scalar(None, pa.string()))
    as_pandas = pd.to_datetime(
        pd.Series(text.to_pandas(), dtype="str"), utc=True, errors="coerce", format="ISO8601"
    )
    parsed = pa.chunked_array(
        [pa.array(as_pandas.dt.as_unit("us"), type=_TIMESTAMP_US_UTC, from_pandas=True)]
    )
    failed = pc.and_(present, pc.is_null(parsed))
    return parsed, failed


def _add_defect(defects: list[list[str]] | None, mask: pa.ChunkedArray, defect: str, n: int):
    hits = pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist()
    if not hits:
        return defects
    if defects is None:
        defects = [[] for _ in range(n)]
    for i in hits:
        defects[i].append(defect)
    return defects


def normalise(batch: pa.Table | pa.RecordBatch) -> pa.Table:
    """BigQuery-shaped records to the output record (before validation), plus ``_defects``.

    ``event_date`` is the UTC date of ``event_datetime`` (null where the timestamp is). The
    categorical columns (``schema.CATEGORICAL``) come back dictionary-encoded.
    """
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    n = table.num_rows
    event_datetime, unparseable = parse_timestamps(table.column("timestamp"))

    source_defects = None
    if s.DEFECTS_COLUMN in table.column_names:
        source_defects = table.column(s.DEFECTS_COLUMN).to_pylist()
        source_defects = [list(d) if d else [] for d in source_defects]
    defects = _add_defect(source_defects, unparseable, r.reason(s.EVENT_DATETIME, r.UNPARSEABLE), n)

    # categorical columns are normalised per distinct value; ids are high-cardinality
    columns = {
        s.EVENT_DATETIME: event_datetime,
        s.EVENT_DATE: event_datetime.cast(pa.date32()),
        s.EVENT_NAME: _per_distinct(table.column("event_name"), _event_name),
        s.USER_ID: _clean(_nested(table, "user_identifiers", "id")),
        s.PLATFORM: _per_distinct(_nested(table, "user_identifiers", "platform"), _platform),
        s.PRODUCT_NAME: _per_distinct(_nested(table, "product_information", "name"), _clean),
        s.SKU: _per_distinct(_nested(table, "product_information", "SKU"), _sku),
    }
    out = pa.table(columns)
    defect_type = pa.list_(pa.string())
    defect_column = pa.nulls(n, defect_type) if defects is None else pa.array(defects, defect_type)
    return out.append_column(s.DEFECTS_COLUMN, defect_column)
