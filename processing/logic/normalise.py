"""Flatten, normalise and enrich a batch of source records (pure: Arrow in, Arrow out).

The result has the output columns plus ``_defects``: the problems already known before validation
(from the source, text that is not valid UTF-8, a timestamp that could not be parsed or that
BigQuery cannot hold). Such a value becomes null here and the defect names why, so validation
reports the precise reason instead of "missing".

Sources hand over text unchecked (Arrow's JSON and Parquet readers do not validate UTF-8), and the
string kernels refuse invalid UTF-8 for the whole array: so each selected text field is checked
first, with one C++ validation of the array (or of its dictionary), and only an array that fails is
searched for its bad values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from processing.spec import rules as r
from processing.spec import schema as s

_TIMESTAMP_US_UTC = pa.timestamp("us", tz="UTC")
# A timestamp in text must at least have a date and a time of day ("2023-10-23" alone is refused).
_TIMESTAMP_SHAPE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}"
_BELOW_MICROSECONDS = r"(:\d{2}\.\d{6})\d+"
_MIN_INSTANT = pa.scalar(r.MIN_INSTANT_US, _TIMESTAMP_US_UTC)
_MAX_INSTANT = pa.scalar(r.MAX_INSTANT_US, _TIMESTAMP_US_UTC)
_INT64_MAX = np.iinfo(np.int64).max
_PER_UNIT = {"s": 1_000_000, "ms": 1_000}  # microseconds per unit, for the coarser units
# An array that fails validation is halved until its pieces are this small, then read in Python.
_UTF8_LEAF = 64


def _nested(batch: pa.Table, struct: str, field: str) -> pa.ChunkedArray:
    return pc.struct_field(batch.column(struct), field)


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def invalid_utf8_positions(values: pa.Array, offset: int = 0) -> list[int]:
    """Positions (plus ``offset``) of the values of a string array that are not valid UTF-8.

    Null values are never invalid. Halves the array while validation fails, so a few bad values
    in a large array cost a few C++ passes over its bytes, not a Python loop over every value.
    """
    try:
        values.validate(full=True)
    except pa.ArrowInvalid:
        if len(values) <= _UTF8_LEAF:
            as_bytes = values.view(pa.binary()).to_pylist()
            return [offset + i for i, v in enumerate(as_bytes) if v is not None and not _is_utf8(v)]
        half = len(values) // 2
        return invalid_utf8_positions(values.slice(0, half), offset) + invalid_utf8_positions(
            values.slice(half), offset + half
        )
    return []


def text_as_bytes(typ: pa.DataType) -> pa.DataType:
    """``typ`` with every string type (also in dictionaries, structs and lists) as the binary type
    of the same layout: a cast to it copies nothing and checks no UTF-8."""
    if pa.types.is_string(typ):
        return pa.binary()
    if pa.types.is_large_string(typ):
        return pa.large_binary()
    if pa.types.is_dictionary(typ):
        return pa.dictionary(typ.index_type, text_as_bytes(typ.value_type))
    if pa.types.is_struct(typ):
        return pa.struct([f.with_type(text_as_bytes(f.type)) for f in typ])
    if pa.types.is_list(typ):
        return pa.list_(text_as_bytes(typ.value_type))
    return typ


def replace_invalid_utf8(values: pa.Array) -> pa.Array:
    """``values`` (of any type) with each invalid UTF-8 sequence in its text replaced by U+FFFD,
    as ``bytes.decode(errors="replace")`` does; valid text is not copied."""
    typ = values.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        bad = invalid_utf8_positions(values)
        if not bad:
            return values
        raw = values.view(text_as_bytes(typ)).take(pa.array(bad, pa.int64())).to_pylist()
        fixed = pa.array([v.decode("utf-8", errors="replace") for v in raw], typ)
        return pc.replace_with_mask(values, _mask(bad, len(values)), fixed)
    if pa.types.is_dictionary(typ):
        dictionary = replace_invalid_utf8(values.dictionary)
        if dictionary is values.dictionary:
            return values
        return pa.DictionaryArray.from_arrays(values.indices, dictionary)
    if pa.types.is_struct(typ):
        children = [replace_invalid_utf8(child) for child in values.flatten()]
        return pa.StructArray.from_arrays(
            children, fields=list(typ), mask=values.is_null() if values.null_count else None
        )
    return values


def _mask(positions: list[int], n: int) -> pa.Array:
    mask = np.zeros(n, dtype=bool)
    mask[positions] = True
    return pa.array(mask)


def _valid_utf8(values: Any) -> tuple[Any, pa.Array | None]:
    """Plain strings with the values that are not valid UTF-8 made null, and where they were
    (``None`` when every value is valid: the common case, one validation per chunk)."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    bad: list[int] = []
    offset = 0
    for chunk in chunks:
        bad += invalid_utf8_positions(chunk, offset)
        offset += len(chunk)
    if not bad:
        return values, None
    mask = _mask(bad, offset)
    return pc.if_else(mask, pa.scalar(None, values.type), values), mask


def _clean(values: Any) -> Any:
    """Trim whitespace; empty strings become null."""
    trimmed = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _per_distinct(
    values: Any, fn: Callable[[pa.Array], pa.Array]
) -> tuple[pa.DictionaryArray, pa.Array | None]:
    """A categorical column, normalised once per distinct value (they are few), and the rows
    whose value is not valid UTF-8 (``None`` if none is): those are normalised as null.

    The result is dictionary-encoded with unique, non-null dictionary values (nulls are null
    indices), which pandas reads as a Categorical: validation then also runs once per value.
    """
    if pa.types.is_dictionary(values.type):
        encoded = _nulls_in_dictionary(values)
    else:
        encoded = pc.dictionary_encode(values, null_encoding="encode")
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
    dictionary, bad = encoded.dictionary, None
    invalid = invalid_utf8_positions(dictionary)  # the distinct values only: cheap
    if invalid:
        dictionary = pc.if_else(
            _mask(invalid, len(dictionary)), pa.scalar(None, dictionary.type), dictionary
        )
        bad = pc.is_in(encoded.indices, value_set=pa.array(invalid, encoded.indices.type))
    mapped = pc.dictionary_encode(fn(dictionary))  # distinct inputs may normalise alike
    normalised = pa.DictionaryArray.from_arrays(
        pc.take(mapped.indices, encoded.indices), mapped.dictionary
    )
    return normalised, bad


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


# Case is changed for ASCII letters only: the patterns (rules.PATTERNS) are ASCII, and a non-ASCII
# letter must fail them rather than be folded into an ASCII one (Unicode's case mapping turns the
# Kelvin sign into "k", "ſ" into "S", "ı" into "I"). RE2's "\s" is ASCII whitespace too.
def _event_name(values: pa.Array) -> pa.Array:
    lowered = pc.ascii_lower(_clean(values))
    return pc.replace_substring_regex(lowered, pattern=r"[\s\-]+", replacement="_")


def _platform(values: pa.Array) -> pa.Array:
    return pc.fill_null(pc.ascii_lower(_clean(values)), s.UNKNOWN_PLATFORM)


def _sku(values: pa.Array) -> pa.Array:
    return pc.ascii_upper(_clean(values))


def to_utc_microseconds(values: Any) -> Any:
    """Timestamps of any unit and zone to UTC microseconds, never wrapping around.

    A zone-less TIMESTAMP is UTC, as in BigQuery. Digits below the microsecond are dropped.
    Seconds or milliseconds whose microseconds do not fit in 64 bits (beyond year 292,000) are
    clamped to the largest microsecond counts that do: still outside BigQuery's range, so such
    rows are ``out_of_range``, never silently moved into it.
    """
    unit = values.type.unit
    if values.type.tz is None:  # a label only: the stored values are UTC already
        values = values.cast(pa.timestamp(unit, tz="UTC"))
    factor = _PER_UNIT.get(unit)
    if factor is None:  # us, or ns (truncated to microseconds)
        return values.cast(_TIMESTAMP_US_UTC, safe=False)
    limit = _INT64_MAX // factor
    counts = pc.max_element_wise(pc.min_element_wise(values.cast(pa.int64()), limit), -limit)
    return pc.multiply_checked(counts, factor).cast(_TIMESTAMP_US_UTC)


def _out_of_range(parsed: Any) -> tuple[Any, Any]:
    """Instants BigQuery's TIMESTAMP cannot hold made null, and where they were (or None)."""
    low, high = pc.min_max(parsed).values()
    if not low.is_valid or (low.value >= r.MIN_INSTANT_US and high.value <= r.MAX_INSTANT_US):
        return parsed, None  # the common case: one pass
    mask = pc.or_(pc.less(parsed, _MIN_INSTANT), pc.greater(parsed, _MAX_INSTANT))
    return pc.if_else(mask, pa.scalar(None, _TIMESTAMP_US_UTC), parsed), mask


def parse_timestamps(values: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Timestamps of any accepted form to UTC microseconds.

    Returns the parsed values and a boolean mask of the non-null inputs that are null in the
    result: text that is not valid UTF-8 or does not parse, and instants out of BigQuery's range.
    """
    text = values if pa.types.is_timestamp(values.type) else _valid_utf8(values)[0]
    parsed, _, _ = _parse_timestamps(text)
    return parsed, pc.and_(pc.is_valid(values), pc.is_null(parsed))


def _parse_timestamps(values: Any) -> tuple[Any, Any, Any]:
    """Parsed values, the mask of text that did not parse, and of instants out of BigQuery's
    range (or None). Text must be valid UTF-8 here."""
    if pa.types.is_timestamp(values.type):
        parsed, out_of_range = _out_of_range(to_utc_microseconds(values))
        return parsed, None, out_of_range
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        raise TypeError(f"timestamp column has type {values.type}; expected timestamp or string")
    text = pc.ascii_upper(pc.utf8_trim_whitespace(values))  # ISO 8601's only letters: T, Z, UTC
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)  # blank: missing
    present = pc.is_valid(text)
    text = pc.replace_substring_regex(text, pattern=r"\s+UTC$", replacement="Z")
    shaped = pc.match_substring_regex(text, _TIMESTAMP_SHAPE)
    text = pc.if_else(shaped, text, pa.scalar(None, pa.string()))
    as_pandas = _iso8601(text)
    if as_pandas.dt.unit == "ns":
        # A value with digits below the microsecond makes pandas read the whole batch in
        # nanoseconds, which cannot hold years before 1677 or after 2262: such a year would then
        # be unparseable, or not, by its neighbours. The digits are dropped (truncated) instead.
        text = pc.replace_substring_regex(text, pattern=_BELOW_MICROSECONDS, replacement=r"\1")
        as_pandas = _iso8601(text)
    parsed = pa.chunked_array(
        [pa.array(as_pandas.dt.as_unit("us"), type=_TIMESTAMP_US_UTC, from_pandas=True)]
    )
    failed = pc.and_(present, pc.is_null(parsed))
    parsed, out_of_range = _out_of_range(parsed)  # e.g. 9999-12-31T23:30:00-01:00
    return parsed, failed, out_of_range


def _iso8601(text: Any) -> pd.Series:
    return pd.to_datetime(
        pd.Series(text.to_pandas(), dtype="str"), utc=True, errors="coerce", format="ISO8601"
    )


Defects = dict[int, list[str]]  # row -> its defects, for the few rows that have any


def _add_defect(defects: Defects, mask: Any, defect: str) -> None:
    if mask is None:
        return
    for i in pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist():
        defects.setdefault(i, []).append(defect)


def _source_defects(table: pa.Table) -> Defects:
    """The defects a source found (``_defects``), for the rows that have any."""
    if s.DEFECTS_COLUMN not in table.column_names:
        return {}
    column = table.column(s.DEFECTS_COLUMN)
    if column.null_count == len(column):
        return {}
    rows = pc.indices_nonzero(pc.fill_null(pc.greater(pc.list_value_length(column), 0), False))
    found = column.take(rows).to_pylist()
    return {i: list(d) for i, d in zip(rows.to_pylist(), found, strict=True)}


def _defect_column(defects: Defects, n: int) -> pa.Array:
    """``defects`` as a list column of ``n`` rows, null where a row has none (built from
    offsets: no Python object per row)."""
    defect_type = pa.list_(pa.string())
    if not defects:
        return pa.nulls(n, defect_type)
    rows = sorted(defects)
    counts = np.zeros(n, dtype=np.int32)
    counts[rows] = [len(defects[i]) for i in rows]
    offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int32)])
    values = pa.array([d for i in rows for d in defects[i]], pa.string())
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=pa.array(counts == 0))


def normalise(batch: pa.Table | pa.RecordBatch) -> pa.Table:
    """BigQuery-shaped records to the output record (before validation), plus ``_defects``.

    ``event_date`` is the UTC date of ``event_datetime`` (null where the timestamp is). The
    categorical columns (``schema.CATEGORICAL``) come back dictionary-encoded.
    """
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    n = table.num_rows
    defects = _source_defects(table)

    def note(mask: Any, field: str, rule: str) -> None:
        _add_defect(defects, mask, r.reason(field, rule))

    timestamp = table.column("timestamp")
    if not pa.types.is_timestamp(timestamp.type):
        timestamp, bad = _valid_utf8(timestamp)
        note(bad, s.EVENT_DATETIME, r.INVALID_UTF8)
    event_datetime, unparseable, out_of_range = _parse_timestamps(timestamp)
    note(unparseable, s.EVENT_DATETIME, r.UNPARSEABLE)
    note(out_of_range, s.EVENT_DATETIME, r.OUT_OF_RANGE)

    # categorical columns are normalised per distinct value; ids are high-cardinality
    user_id, bad = _valid_utf8(_nested(table, "user_identifiers", "id"))
    note(bad, s.USER_ID, r.INVALID_UTF8)
    columns = {
        s.EVENT_DATETIME: event_datetime,
        s.EVENT_DATE: event_datetime.cast(pa.date32()),
        s.USER_ID: _clean(user_id),
    }
    for field, values, fn in (
        (s.EVENT_NAME, table.column("event_name"), _event_name),
        (s.PLATFORM, _nested(table, "user_identifiers", "platform"), _platform),
        (s.PRODUCT_NAME, _nested(table, "product_information", "name"), _clean),
        (s.SKU, _nested(table, "product_information", "SKU"), _sku),
    ):
        columns[field], bad = _per_distinct(values, fn)
        note(bad, field, r.INVALID_UTF8)
    out = pa.table({name: columns[name] for name in s.OUTPUT_COLUMNS})
    return out.append_column(s.DEFECTS_COLUMN, _defect_column(defects, n))
