"""JSON Lines files (optionally gzip), one event per line, as in the assignment's sample records.

Uncompressed files are split into byte ranges of about ``piece_rows`` lines (a line belongs to the
range where it starts); a gzip file is one piece. Each batch is parsed by Arrow's JSON reader with
the explicit text schema; a batch that Arrow refuses (a number where text belongs, a line that is
not an object) is parsed line by line instead, and each such problem becomes a defect on its row.
Every row keeps its line as ``_raw``, so a rejected row is stored exactly as it came.
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


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")  # JSON may escape lone surrogates ("\ud800"): not text
    except UnicodeEncodeError:
        return False
    return True


def _coerce(value: Any, defect: str, defects: list[str]) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        if _is_unicode(value):
            return value
        defects.append(r.reason(r.RECORD, r.INVALID_JSON))
        return None
    defects.append(defect)
    return None


def parse_line(line: bytes) -> tuple[dict[str, Any], list[str]]:
    """One line to a record of the text schema and its defects (slow path, never raises)."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):  # also: absurdly deep nesting, 5,000-digit numbers
        return {}, [r.reason(r.RECORD, r.INVALID_JSON)]
    if not isinstance(obj, dict):
        return {}, [r.reason(r.RECORD, r.INVALID_JSON)]
    defects: list[str] = []
    record: dict[str, Any] = {}
    for top, child, out in _TEXT_FIELDS:
        value = obj.get(top)
        wrong = r.reason(out, r.WRONG_TYPE)
        if child is None:
            record[top] = _coerce(value, wrong, defects)
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
        struct[child] = _coerce(value.get(child), wrong, defects)
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
