"""Pseudonymised user ids (processing.logic.pseudonymise) and the key file's checks."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import orjson
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processing.adapters.user_id_key import load_key, worker_key
from processing.logic.batch import split_batch
from processing.logic.pseudonymise import (
    MIN_KEY_BYTES,
    Pseudonymiser,
    key_id,
    pseudonym,
    pseudonymise_records,
    user_id_form,
)
from processing.spec import schema as s
from processing.spec.errors import ConfigError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def _hmac(text: str, key: bytes = KEY) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:32]  # its first 128 bits


def test_a_pseudonym_is_hmac_sha256_truncated_to_128_bits_in_hex() -> None:
    assert pseudonym("user_1", KEY) == _hmac("user_1")
    assert len(pseudonym("", KEY)) == 32


@given(st.lists(st.one_of(st.none(), st.text(max_size=20)), max_size=50))
def test_pseudonyms_of_an_array_are_each_values_and_keep_nulls(values: list[str | None]) -> None:
    got = Pseudonymiser(KEY)(pa.array(values, pa.string())).to_pylist()
    assert got == [None if v is None else _hmac(v) for v in values]


def test_pseudonyms_of_chunked_and_dictionary_arrays() -> None:
    chunked = pa.chunked_array([["a", "b"], ["a"]])
    assert Pseudonymiser(KEY)(chunked).to_pylist() == [_hmac("a"), _hmac("b"), _hmac("a")]
    encoded = pa.array(["x", "y", "x"]).dictionary_encode()
    assert Pseudonymiser(KEY)(encoded).to_pylist() == [_hmac("x"), _hmac("y"), _hmac("x")]


def test_the_key_id_names_the_key_and_is_not_a_pseudonym() -> None:
    assert key_id(KEY) == key_id(bytes(KEY))
    assert key_id(KEY) != key_id(OTHER_KEY)
    assert len(key_id(KEY)) == 16
    assert key_id(KEY) not in (pseudonym("", KEY), hashlib.sha256(KEY).hexdigest())
    assert user_id_form(None) == {"pseudonymised": False}
    assert user_id_form("ab") == {
        "pseudonymised": True,
        "method": "hmac-sha256-128",
        "key_id": "ab",
    }


@pytest.mark.parametrize(
    ("record", "expected_id"),
    [
        ('{"user_identifiers": {"platform": "web", "id": "u1"}, "x": 1}', _hmac("u1")),
        ('{"user_identifiers": {"id": "  u1 "}}', _hmac("u1")),  # trimmed as published
        ('{"user_identifiers": {"id": 12345}}', _hmac("12345")),  # a number: its JSON text
        ('{"user_identifiers": {"id": {"nested": "u1"}}}', _hmac('{"nested":"u1"}')),
        ('{"user_identifiers": {"id": null}}', None),
        ('{"user_identifiers": null}', None),
    ],
)
def test_a_rejected_record_gets_its_id_pseudonymised(record: str, expected_id: str | None) -> None:
    out = orjson.loads(pseudonymise_records([record], Pseudonymiser(KEY))[0])
    ids = out.get("user_identifiers")
    assert (ids or {}).get("id") == expected_id
    assert "u1" not in pseudonymise_records([record], Pseudonymiser(KEY))[0].replace(
        _hmac("u1"), ""
    )


@pytest.mark.parametrize(
    "record",
    [
        "not json {u1",
        '["u1"]',
        '"u1"',
        "",
        '{"a": 1',
        '{"user_identifiers": "u1"}',
        '{"user_identifiers": ["u1"], "event_name": "view"}',
    ],
)
def test_a_record_that_is_not_a_json_object_is_withheld(record: str) -> None:
    out = orjson.loads(pseudonymise_records([record], Pseudonymiser(KEY))[0])
    assert set(out) == {"_withheld", "characters"}
    assert out["characters"] == len(record)


def test_split_batch_validates_the_raw_id_then_pseudonymises() -> None:
    date = dt.date(2023, 10, 23)
    start = dt.datetime(2023, 10, 23, 12, tzinfo=dt.UTC)
    rows = [
        (start, "view", {"platform": "web", "id": " u1 "}, None),
        (start, "view", {"platform": "web", "id": "u" * 300}, None),  # too long: rejected
        (start, "view", {"platform": "web", "id": "   "}, None),  # blank: missing
    ]
    batch = pa.table([pa.array(c) for c in zip(*rows, strict=True)], schema=s.INPUT_SCHEMA)
    plain = split_batch(batch, date)
    hashed = split_batch(batch, date, pseudonymiser=Pseudonymiser(KEY))
    assert plain.reasons == hashed.reasons  # the same rows fail, for the same reasons
    assert hashed.valid.column(s.USER_ID).to_pylist() == [_hmac("u1")]
    records = [orjson.loads(r) for r in hashed.rejected.column("source_record").to_pylist()]
    assert [r["user_identifiers"]["id"] for r in records] == [_hmac("u" * 300), _hmac("")]
    assert "uuuu" not in str(hashed.rejected.to_pylist())


def test_the_key_file_is_checked(tmp_path) -> None:
    path = tmp_path / "key"
    with pytest.raises(ConfigError, match="cannot read the key"):
        load_key(str(path))
    path.write_bytes(b"")
    with pytest.raises(ConfigError, match="is empty"):
        load_key(str(path))
    path.write_bytes(b"x" * (MIN_KEY_BYTES - 1) + b"\n")
    with pytest.raises(ConfigError, match=f"holds {MIN_KEY_BYTES - 1} bytes"):
        load_key(str(path))
    path.write_bytes(KEY + b"\n")  # one trailing newline is not part of the key
    assert load_key(str(path)) == KEY


def test_a_worker_with_another_key_fails_its_task(tmp_path) -> None:
    path = tmp_path / "key"
    path.write_bytes(OTHER_KEY)
    with pytest.raises(ConfigError, match="mount the same key"):
        worker_key(str(path), key_id(KEY))
    assert worker_key(str(path), key_id(OTHER_KEY)) == OTHER_KEY


@given(
    st.lists(st.lists(st.one_of(st.none(), st.sampled_from("abcdefgh")), max_size=30), max_size=6),
    st.integers(1, 5),
)
def test_a_pseudonymiser_remembers_ids_and_agrees_with_hashing_each(batches, max_known) -> None:
    """Across batches, whatever its bound: the same pseudonyms as hashing every value."""
    remembered = Pseudonymiser(KEY, max_known=max_known)
    for values in batches:
        got = remembered(pa.array(values, pa.string())).to_pylist()
        assert got == [None if v is None else _hmac(v) for v in values]
    assert len(remembered._known.second) <= max_known


def test_a_pseudonymiser_hashes_an_id_once() -> None:
    remembered = Pseudonymiser(KEY)
    hashed: list[int] = []
    real = remembered.hashed
    remembered.hashed = lambda values: hashed.append(len(values)) or real(values)  # type: ignore[method-assign]
    remembered(pa.array(["a", "b", "a"]))
    remembered(pa.array(["b", "c", None]))
    assert hashed == [2, 1]


def test_records_are_pseudonymised_together_in_their_order() -> None:
    records = ['{"user_identifiers": {"id": " a"}}', "nope", '{"user_identifiers": {"id": 7}}']
    out = pseudonymise_records(records, Pseudonymiser(KEY))
    assert orjson.loads(out[0])["user_identifiers"]["id"] == _hmac("a")
    assert "_withheld" in orjson.loads(out[1])
    assert orjson.loads(out[2])["user_identifiers"]["id"] == _hmac("7")
    assert pseudonymise_records([], Pseudonymiser(KEY)) == []


def test_a_pseudonymiser_shared_by_threads_agrees_with_hashing_each() -> None:
    from concurrent.futures import ThreadPoolExecutor

    remembered = Pseudonymiser(KEY, max_known=300)
    batches = [pa.array([f"u{(i * 7 + j) % 500}" for j in range(400)]) for i in range(12)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(remembered, batches))
    for values, got in zip(batches, results, strict=True):
        assert got.to_pylist() == [_hmac(v) for v in values.to_pylist()]
    assert len(remembered._known.second) <= 300
