"""JSON Lines files (optionally gzip), one event per line, as in the assignment's sample records.

Uncompressed files are split into byte ranges of about ``piece_rows`` lines (a line belongs to the
range where it starts); a gzip file is one piece. Each batch is parsed by Arrow's JSON reader with
the explicit text schema; a batch that Arrow refuses (a number where text belongs, a line that is
not an object) is parsed line by line instead, and each such problem becomes a defect on its row.
Every row keeps its line as ``_raw``, so a rejected row is stored exactly as it came.

A line's outcome must not depend on its neighbours, so the line-by-line parser gives the same
record as Arrow's reader for every line Arrow accepts: it does not convert numbers (Python's limit
on the digits of an integer does not apply), keeps invalid UTF-8 as surrogate escapes (the
field that holds it is ``invalid_utf8``, as the transform finds for Arrow's records, and an
ignored field may hold anything) and, for a line Python cannot read (nested deeper than its
recursion limit, or holding the ``Inf``, ``-Inf`` or ``-NaN`` literals Arrow also takes), asks
Arrow's reader about that line alone (a line that is merely broken is not: it costs as before).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from itertools import islice
from typing import Any

import pyarrow as pa
import pyarrow.json as pajson

from processing.adapters.sources.base import Piece
from processing.adapters.storage import filesystem
from processing.spec import rules as r
from processing.spec import schema as s

_PARSE = pajson.ParseOptions(
    explicit_schema=s.TEXT_INPUT_SCHEMA, unexpected_field_behavior="ignore"
)
_ARROW_MIN_BLOCK = 1 << 20  # Arrow's default block size
_ASSUMED_BYTES_PER_LINE = 220  # for planning byte ranges; only affects piece sizes
_OUTPUT_SCHEMA = s.TEXT_INPUT_SCHEMA.append(pa.field(s.RAW_COLUMN, pa.string())).append(
    pa.field(s.DEFECTS_COLUMN, pa.list_(pa.string()))
)
# (input field, nested field or None, output field named in the defect)
_TEXT_FIELDS = (
    ("timestamp", None, s.EVENT_DATETIME),
    ("event_name", None, s.EVENT_NAME),
    ("user_identifiers", "platform", s.PLATFORM),
    ("user_identifiers", "id", s.USER_ID),
    ("product_information", "name", s.PRODUCT_NAME),
    ("product_information", "SKU", s.SKU),
)


def compression_of(path: str) -> str | None:
    return "gzip" if path.endswith(".gz") else None


def plan_jsonl(
    url: str, path: str, piece_rows: int, storage_options: Mapping[str, Any]
) -> list[Piece]:
    fs, _ = filesystem(url, storage_options)
    size = fs.size(path)
    name = path.rsplit("/", 1)[-1]
    common = {"url": url, "path": path, "storage_options": storage_options}
    if compression_of(path) or size == 0:
        return [Piece(f"{name}", 0, read_jsonl, {**common, "start": 0, "end": None}, None, size)]
    step = max(piece_rows * _ASSUMED_BYTES_PER_LINE, 1 << 20)
    ranges = [(start, min(start + step, size)) for start in range(0, size, step)]
    return [
        Piece(f"{name}@{a}-{b}", 0, read_jsonl, {**common, "start": a, "end": b}, None, b - a)
        for a, b in ranges
    ]


def _lines(f: io.BufferedIOBase, start: int, end: int | None) -> Iterator[bytes]:
    """Lines that start in [start, end), without their newline; blank lines skipped."""
    if start > 0:
        f.seek(start - 1)
        f.readline()  # the rest of the line that began before start belongs to the previous piece
    while True:
        if end is not None and f.tell() >= end:
            return
        line = f.readline()
        if not line:
            return
        line = line.rstrip(b"\r\n")
        if line.strip():
            yield line


class _Number:
    """Any JSON number or NaN/Infinity literal, unconverted: never text (``wrong_type``)."""


_NUMBER = _Number()
_ARROW_LITERALS = ("Inf", "-Inf", "-NaN")  # besides JSON's NaN, Infinity and -Infinity
_DECODER = json.JSONDecoder(
    parse_int=lambda _: _NUMBER, parse_float=lambda _: _NUMBER, parse_constant=lambda _: _NUMBER
)
_TEXT_AS_BYTES = pa.schema(
    [
        f.with_type(
            pa.struct([c.with_type(pa.binary()) for c in f.type])
            if pa.types.is_struct(f.type)
            else pa.binary()
        )
        for f in s.TEXT_INPUT_SCHEMA
    ]
)


def _is_unicode(text: str) -> bool:
    try:
        # invalid UTF-8 read with surrogateescape, or a lone surrogate escape ("\ud800")
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _coerce(value: Any, out: str, defects: list[str]) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        if _is_unicode(value):
            return value
        defects.append(r.reason(out, r.INVALID_UTF8))
        return None
    defects.append(r.reason(out, r.WRONG_TYPE))
    return None


def _text_of(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    if isinstance(value, dict):
        return {k: _text_of(v) for k, v in value.items()}
    return value


def _read_alone(line: bytes) -> dict[str, Any] | None:
    """The selected fields of ``line`` as Arrow's reader reads it on its own (text as Python
    reads it), or None if Arrow refuses it."""
    if not line.lstrip().startswith(b"{"):  # see parse_lines
        return None
    options = pajson.ReadOptions(use_threads=False, block_size=max(_ARROW_MIN_BLOCK, len(line) + 1))
    try:
        table = pajson.read_json(io.BytesIO(line), read_options=options, parse_options=_PARSE)
    except pa.ArrowInvalid:
        return None
    if table.num_rows != 1:
        return None
    record: dict[str, Any] = _text_of(table.cast(_TEXT_AS_BYTES).to_pylist()[0])
    return record


def parse_line(line: bytes) -> tuple[dict[str, Any], list[str]]:
    """One line to a record of the text schema and its defects (slow path, never raises)."""
    text = line.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")  # a BOM
    try:
        obj = _DECODER.decode(text)
    except RecursionError:  # Arrow's reader has no nesting limit
        obj = _read_alone(line)
    except json.JSONDecodeError as e:  # Arrow's reader also takes Inf, -Inf and -NaN
        obj = _read_alone(line) if text.startswith(_ARROW_LITERALS, e.pos) else None
    if obj is None:
        return {}, [r.reason(r.RECORD, r.INVALID_JSON)]
    if not isinstance(obj, dict):
        return {}, [r.reason(r.RECORD, r.INVALID_JSON)]
    defects: list[str] = []
    record: dict[str, Any] = {}
    for top, child, out in _TEXT_FIELDS:
        value = obj.get(top)
        if child is None:
            record[top] = _coerce(value, out, defects)
            continue
        if value is not None and not isinstance(value, dict):
            # a struct that is not an object: blame its required member, or its first one
            owner = s.USER_ID if top == "user_identifiers" else s.PRODUCT_NAME
            if r.reason(owner, r.WRONG_TYPE) not in defects:
                defects.append(r.reason(owner, r.WRONG_TYPE))
            record.setdefault(top, None)
            continue
        if value is None:
            record.setdefault(top, None)
            continue
        struct = record.get(top) or {}
        struct[child] = _coerce(value.get(child), out, defects)
        record[top] = struct
    return record, defects


def _decode(line: bytes) -> str:
    return line.decode("utf-8", errors="replace")


def parse_lines(lines: list[bytes]) -> pa.Table:
    """A block of lines to one table of the text schema plus ``_raw`` and ``_defects``."""
    raw = pa.array([_decode(line) for line in lines], pa.string())
    try:
        if not all(line.lstrip().startswith(b"{") for line in lines):
            # Arrow's reader wants objects (and pyarrow 26 crashes on a leading `null` line)
            raise pa.ArrowInvalid("a line is not a JSON object")
        table = pajson.read_json(io.BytesIO(b"\n".join(lines)), parse_options=_PARSE)
        if table.num_rows != len(lines):
            raise pa.ArrowInvalid("line count changed")
        table = table.append_column(s.RAW_COLUMN, raw)
        defects = pa.nulls(len(lines), pa.list_(pa.string()))
        return table.append_column(s.DEFECTS_COLUMN, defects).cast(_OUTPUT_SCHEMA)
    except pa.ArrowInvalid:
        parsed = [parse_line(line) for line in lines]
        records = [
            {**rec, s.RAW_COLUMN: text, s.DEFECTS_COLUMN: defects or None}
            for (rec, defects), text in zip(parsed, raw.to_pylist(), strict=True)
        ]
        return pa.Table.from_pylist(records, schema=_OUTPUT_SCHEMA)


def read_jsonl(
    *,
    url: str,
    path: str,
    start: int,
    end: int | None,
    storage_options: Mapping[str, Any],
    batch_rows: int,
) -> Iterator[pa.Table]:
    fs, _ = filesystem(url, storage_options)
    with fs.open(path, "rb", compression=compression_of(path)) as f:
        lines = _lines(f, start, end)
        while block := list(islice(lines, batch_rows)):
            yield parse_lines(block)
