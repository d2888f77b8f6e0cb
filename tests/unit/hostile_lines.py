"""JSON lines no source should send, shared by the tests that check a line's outcome does not
depend on its neighbours or on the batch size (``test_hostile_rows.py``, ``test_properties.py``).

Each line is a good record with one hostile change, so whatever is not hostile in it is valid.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from processing.adapters.sources import jsonl
from processing.logic.batch import split_batch

DATE = dt.date(2023, 10, 23)

GOOD: dict[str, Any] = {
    "timestamp": "2023-10-23T12:34:56Z",
    "event_name": "view",
    "user_identifiers": {"platform": "web", "id": "user_1"},
    "product_information": {"name": "Wireless Mouse", "SKU": "SKU-1001"},
}
# (path in the record, output field): the selected text fields
SELECTED = [
    (("timestamp",), "event_datetime"),
    (("event_name",), "event_name"),
    (("user_identifiers", "id"), "user_id"),
    (("user_identifiers", "platform"), "platform"),
    (("product_information", "name"), "product_name"),
    (("product_information", "SKU"), "SKU"),
]
_SLOT = "@@SLOT@@"


def with_raw(path: tuple[str, ...], raw: bytes, record: dict[str, Any] | None = None) -> bytes:
    """``record`` (the good one) as a JSON line with the value at ``path`` replaced by the raw
    bytes ``raw`` (which need not be JSON, nor UTF-8); a new key is added at the end."""
    rec = json.loads(json.dumps(record or GOOD))
    target = rec
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = _SLOT
    return json.dumps(rec, ensure_ascii=False).encode().replace(f'"{_SLOT}"'.encode(), raw)


def ignored(raw: bytes) -> bytes:
    """The good line with an extra (ignored) field ``x`` holding ``raw``."""
    return with_raw(("x",), raw)


def deep(depth: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return opener * depth + closer * depth


DEEP_OBJECT = b'{"a":' * 5_000 + b"1" + b"}" * 5_000
HUGE_INT = b"9" * 5_000
LATIN1 = b'"caf\xe9"'

#: (id, line). The lines are hostile in every way seen or imagined; none may fail a batch.
HOSTILE: list[tuple[str, bytes]] = [
    ("good", with_raw(("event_name",), b'"view"')),
    # nesting deeper than Python's recursion limit (Arrow's reader has none)
    ("deep-ignored-array", ignored(deep(5_000))),
    ("deep-ignored-object", ignored(DEEP_OBJECT)),
    ("very-deep-ignored", ignored(deep(200_000))),
    ("deep-event-name", with_raw(("event_name",), deep(5_000))),
    ("deep-user-id", with_raw(("user_identifiers", "id"), deep(5_000))),
    ("deep-user-identifiers", with_raw(("user_identifiers",), deep(5_000))),
    (
        "deep-ignored-and-wrong-type",
        with_raw(("event_name",), b"42")[:-1] + b', "x": ' + deep(5_000) + b"}",
    ),
    (
        "deep-ignored-and-latin1-id",
        with_raw(("user_identifiers", "id"), LATIN1)[:-1] + b', "x": ' + deep(5_000) + b"}",
    ),
    # integers past Python's 4,300-digit limit
    ("huge-int-ignored", ignored(HUGE_INT)),
    ("huge-negative-int-ignored", ignored(b"-" + HUGE_INT)),
    ("huge-int-event-name", with_raw(("event_name",), HUGE_INT)),
    ("huge-int-user-id", with_raw(("user_identifiers", "id"), HUGE_INT)),
    ("huge-fraction-ignored", ignored(b"0." + HUGE_INT)),
    ("huge-exponent-ignored", ignored(b"1e999")),
    # invalid UTF-8
    *[(f"latin1-{out}", with_raw(path, LATIN1)) for path, out in SELECTED],
    ("latin1-ignored", ignored(LATIN1)),
    ("latin1-key", with_raw(("caf\u00e9",), b'"x"').replace("caf\u00e9".encode(), b"caf\xe9")),
    (
        "latin1-child-key",
        with_raw(("user_identifiers", "\u00e9"), b'"x"').replace("\u00e9".encode(), b"\xe9"),
    ),
    ("overlong-slash-event-name", with_raw(("event_name",), b'"a\xc0\xafb"')),
    ("encoded-surrogate-sku", with_raw(("product_information", "SKU"), b'"\xed\xa0\x80"')),
    ("truncated-sequence-name", with_raw(("product_information", "name"), b'"caf\xc3"')),
    ("latin1-outside-a-string", with_raw(("event_name",), b'"view"\xe9')),
    # lone surrogate escapes (valid JSON grammar, not text)
    ("lone-high-user-id", with_raw(("user_identifiers", "id"), b'"\\ud800"')),
    ("lone-low-event-name", with_raw(("event_name",), b'"\\udc00x"')),
    ("reversed-pair-platform", with_raw(("user_identifiers", "platform"), b'"\\udc00\\ud800"')),
    ("lone-surrogate-ignored", ignored(b'"\\ud800"')),
    ("lone-surrogate-key", with_raw(("k",), b'"x"').replace(b'"k":', b'"\\ud800":')),
    ("surrogate-pair-name", with_raw(("product_information", "name"), b'"\\ud83d\\ude00"')),
    # NaN and infinities
    *[(f"{c.decode()}-ignored", ignored(c)) for c in (b"NaN", b"Infinity", b"-Infinity")],
    *[(f"{c.decode()}-ignored", ignored(c)) for c in (b"Inf", b"-Inf", b"-NaN")],
    ("NaN-event-name", with_raw(("event_name",), b"NaN")),
    ("Infinity-user-id", with_raw(("user_identifiers", "id"), b"Infinity")),
    # duplicate keys
    ("duplicate-event-name", with_raw(("event_name",), b'"view", "event_name": "click"')),
    ("duplicate-event-name-number", with_raw(("event_name",), b'"view", "event_name": 5')),
    ("duplicate-user-id", with_raw(("user_identifiers", "id"), b'"a", "id": "b"')),
    ("duplicate-ignored", ignored(b'1, "x": 2')),
    ("duplicate-ignored-child", with_raw(("user_identifiers", "e"), b'1, "e": [2]')),
    (
        "duplicate-struct",
        with_raw(
            ("user_identifiers",),
            b'{"id": "a"}, "user_identifiers": {"id": "b", "platform": "ios"}',
        ),
    ),
    # byte order marks
    ("bom-first", b"\xef\xbb\xbf" + with_raw(("event_name",), b'"view"')),
    ("bom-in-event-name", with_raw(("event_name",), b'"\xef\xbb\xbfview"')),
    # control characters
    ("raw-control-in-name", with_raw(("product_information", "name"), b'"a\x01b"')),
    ("raw-tab-in-event-name", with_raw(("event_name",), b'"a\tb"')),
    ("raw-nul-ignored", ignored(b'"a\x00b"')),
    ("escaped-nul-event-name", with_raw(("event_name",), b'"a\\u0000b"')),
    ("escaped-nul-user-id", with_raw(("user_identifiers", "id"), b'"a\\u0000b"')),
    ("carriage-return-between-tokens", with_raw(("event_name",), b'\r"view"')),
    ("form-feed-between-tokens", with_raw(("event_name",), b'\x0c"view"')),
    ("leading-tab", b"\t" + with_raw(("event_name",), b'"view"')),
    # trailing garbage, and what is not one object
    ("trailing-garbage", with_raw(("event_name",), b'"view"') + b" x"),
    ("trailing-brace", with_raw(("event_name",), b'"view"') + b"}"),
    ("trailing-comma", with_raw(("event_name",), b'"view"') + b","),
    ("two-objects", with_raw(("event_name",), b'"view"') + b" {}"),
    ("trailing-comma-inside", with_raw(("event_name",), b'"view",')),
    ("null", b"null"),
    ("array", b"[1]"),
    # a line longer than Arrow's 1 MiB block, nested deeper than Python can read
    ("long-and-deep-ignored", ignored(deep(700_000))),
]

#: Lines that make Arrow refuse a whole block, so that their neighbours are parsed line by line.
BAD_NEIGHBOURS = [b"null", with_raw(("event_name",), b"42"), b"{broken"]


def outcomes(lines: list[bytes], batch_rows: int) -> list[tuple[str, ...]]:
    """Each line's outcome, ``()`` for valid or its reasons, reading ``lines`` ``batch_rows`` at
    a time as the JSON Lines source does."""
    found: list[tuple[str, ...]] = []
    for start in range(0, len(lines), batch_rows):
        block = lines[start : start + batch_rows]
        result = split_batch(jsonl.parse_lines(block), DATE)
        assert result.rows_read == result.valid.num_rows + result.rejected.num_rows == len(block)
        rejected = dict(
            zip(
                result.rejected.column("row_in_piece").to_pylist(),
                result.rejected.column("reasons").to_pylist(),
                strict=True,
            )
        )
        found.extend(tuple(rejected.get(i, ())) for i in range(len(block)))
    return found
