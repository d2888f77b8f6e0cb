"""The erasure request, how rows match, and the manifest after an erasure (logic.erasure)."""

from __future__ import annotations

import datetime as dt

import pytest

from processing.logic.erasure import (
    DateOutcome,
    Removed,
    erased_manifest,
    published_ids,
    read_request,
    rejected_matches,
    request_hash,
)
from processing.logic.pseudonymise import pseudonym
from processing.spec.errors import ConfigError

KEY = bytes(range(32))


def test_a_request_is_its_distinct_trimmed_ids() -> None:
    assert read_request(b"  u1\nu2\n\nu1\r\n u3 \n", "f") == ["u1", "u2", "u3"]


def test_a_request_splits_lines_on_newline_alone() -> None:
    """The pipeline publishes ids holding a tab, a vertical tab or U+2028: each is one id."""
    data = "a\tb\nalice\u2028bob\nc\x0bd\x1ce\n".encode()
    assert read_request(data, "f") == ["a\tb", "alice\u2028bob", "c\x0bd\x1ce"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "holds no user id"),
        (b"\n  \n", "holds no user id"),
        (b"ok\n" + b"x" * 257, "line 2: longer than 256"),
        (b"caf\xe9\n", "not UTF-8"),
    ],
)
def test_a_malformed_request_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_request(data, "f")


def test_the_request_hash_holds_no_id_and_ignores_order() -> None:
    assert request_hash(["b", "a"], None) == request_hash(["a", "b", "a"], None)
    assert request_hash(["a"], KEY).startswith("hmac-sha256:")
    assert request_hash(["a"], KEY) != request_hash(["a"], None)
    assert "user_1" not in request_hash(["user_1"], None)


def test_ids_in_the_form_a_date_published_them() -> None:
    assert published_ids(["u1"], None) == {"u1"}
    assert published_ids(["u1"], KEY) == {pseudonym("u1", KEY)}


@pytest.mark.parametrize(
    ("record", "matches"),
    [
        ('{"user_identifiers": {"id": "u1"}}', True),
        ('{"user_identifiers": {"id": " u1  "}}', True),
        ('{"user_identifiers": {"id": "u10"}}', False),
        ('{"event_name": "u1", "user_identifiers": {"id": "u2"}}', False),
        ('{"user_identifiers": null}', False),
        ('not json "u1" at all', True),  # kept as it came: its id's JSON text
        ("not json u1", False),
        ('{"user_identifiers": "u1"}', True),  # not an object: the id's JSON text, anywhere
        ('{"user_identifiers": ["u1"]}', True),
        ('{"user_identifiers": "u2"}', False),
    ],
)
def test_a_rejected_row_matches_on_its_records_id(record: str, matches: bool) -> None:
    assert rejected_matches([record], {"u1"}) == [matches]
    assert rejected_matches([record, record], {"u1"}) == [matches, matches]


def test_the_manifest_after_an_erasure_reconciles() -> None:
    manifest = {
        "rows_read": 100,
        "rows_valid": 90,
        "rows_rejected": 10,
        "valid_by_event": {"click": 40, "view": 50},
        "rejected_by_reason": {"user_id:missing": 6, "event_name:missing": 4},
        "files": [
            {"dataset": "events", "path": "event_name=click/p-aaaaaaaa.parquet", "rows": 40,
             "bytes": 1, "event_name": "click"},
            {"dataset": "events", "path": "event_name=view/p-aaaaaaaa.parquet", "rows": 50,
             "bytes": 1, "event_name": "view"},
            {"dataset": "rejected", "path": "p-aaaaaaaa.parquet", "rows": 10, "bytes": 1},
        ],
        "tag": "aaaaaaaa",
    }  # fmt: skip
    removed = [
        Removed("events", "event_name=click/p-aaaaaaaa.parquet", 40, {}),
        Removed("events", "event_name=view/p-aaaaaaaa.parquet", 5, {}),
        Removed("rejected", "p-aaaaaaaa.parquet", 2, {"user_id:missing": 2}),
    ]
    files = [
        {"dataset": "events", "path": "event_name=view/p-bbbbbbbb.parquet", "rows": 45,
         "bytes": 7, "event_name": "view"},
        {"dataset": "rejected", "path": "p-bbbbbbbb.parquet", "rows": 8, "bytes": 3},
    ]  # fmt: skip
    at = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
    out = erased_manifest(manifest, files, [], removed, tag="bbbbbbbb", forget_id="f",
                          request="sha256:x", at=at)  # fmt: skip
    assert out["rows_valid"] == 45 and out["rows_rejected"] == 8
    assert out["valid_by_event"] == {"view": 45}  # click is gone: no partition left
    assert out["rejected_by_reason"] == {"event_name:missing": 4, "user_id:missing": 4}
    assert out["bytes_written"] == 10 and out["tag"] == "bbbbbbbb"
    assert out["erased"]["rows_valid"] == 45 and out["erased"]["rows_rejected"] == 2
    again = erased_manifest(out, files, [], [], tag="cccccccc", forget_id="g", request="r", at=at)
    assert again["erased"]["rows_valid"] == 45 and len(again["erased"]["requests"]) == 2
    assert out["rows_read"] == out["rows_valid"] + out["rows_rejected"] + 47


def test_what_a_date_says() -> None:
    date = dt.date(2023, 10, 23)
    assert "no row of these users" in DateOutcome(files_read=3).line(date)
    assert not DateOutcome(files_read=3).changed
    done = DateOutcome(rows_valid=2, previous_dropped=True, files_rewritten=1, files_read=3)
    assert done.changed and "dropped" in done.line(date)
