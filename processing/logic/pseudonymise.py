"""Pseudonymised user ids: a keyed hash (HMAC-SHA256) in place of the raw id (pure).

The published ``user_id`` of a pseudonymised day is ``hmac_sha256(key, raw id as UTF-8)`` in 64
lower-case hex digits: the same raw id gives the same pseudonym under the same key (joins across
days work), and without the key a pseudonym cannot be traced back to an id, nor an id forward to
its pseudonym. A manifest names the key by its *key id* (a fingerprint of the key, never the key):
days written under another key are recognisable, and their pseudonyms do not join.

Rejected rows keep their source record, which holds the raw id: under a key, the record's
``user_identifiers.id`` is replaced by its pseudonym (a value that is not text is hashed as its
JSON text), and a record that is not a JSON object (so no field can be found in it) is withheld:
it becomes a note with its length. Validation runs on the raw id before any of this.

A :class:`Pseudonymiser` hashes each distinct id once per batch and remembers the pseudonyms
it made (up to a bound), so an id seen in an earlier batch of the worker costs a hash-table probe
in Arrow, not an HMAC (about 1.5 us each in Python): users send many events a day
(benchmarks/README.md, "Pseudonymised user ids").
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

#: The shortest key accepted, in bytes: HMAC-SHA256's own output size.
MIN_KEY_BYTES = 32
#: What a manifest names the method.
METHOD = "hmac-sha256"
#: A pseudonym's length: 32 bytes in hex.
PSEUDONYM_LENGTH = 64
_KEY_ID_CONTEXT = b"events-lake user id key id\x00"


def key_id(key: bytes) -> str:
    """The key's fingerprint: 16 hex digits of SHA-256 over a fixed context and the key (not
    an HMAC output of the key, so it reveals nothing a pseudonym could be checked against)."""
    return hashlib.sha256(_KEY_ID_CONTEXT + key).hexdigest()[:16]


def pseudonym(raw: str, key: bytes) -> str:
    return hmac.digest(key, raw.encode("utf-8", "surrogatepass"), "sha256").hex()


def _hashed(values: pa.Array, key: bytes) -> pa.Array:
    """The pseudonym of each value of a string array without nulls."""
    start = hmac.new(key, digestmod=hashlib.sha256)
    out = []
    for raw in values.to_pylist():
        h = start.copy()
        h.update(raw.encode("utf-8", "surrogatepass"))
        out.append(h.hexdigest())
    return pa.array(out, pa.string())


def _plain(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    return values


class Pseudonymiser:
    """Pseudonyms under one key, remembering up to ``max_known`` ids it has hashed (ids and
    pseudonyms as two Arrow arrays, about 90 bytes an id); past the bound it starts again from
    the current batch's. Safe to share between threads (a race only hashes an id twice)."""

    def __init__(self, key: bytes, max_known: int = 1_000_000) -> None:
        self.key = key
        self.max_known = max_known
        self._known = (pa.array([], pa.string()), pa.array([], pa.string()))
        self._lock = threading.Lock()

    def __call__(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        values = _plain(values)
        raw, hashed = self._known
        distinct = pc.unique(values).drop_null()
        new = distinct.filter(pc.is_null(pc.index_in(distinct, value_set=raw)))
        if len(new):
            made = _hashed(new, self.key)
            if len(raw) + len(new) > self.max_known:
                raw, hashed = (
                    distinct,
                    pc.take(
                        pa.concat_arrays([hashed, made]),
                        pc.index_in(distinct, value_set=pa.concat_arrays([raw, new])),
                    ),
                )
            else:
                raw, hashed = pa.concat_arrays([raw, new]), pa.concat_arrays([hashed, made])
            with self._lock:
                self._known = (raw, hashed)
        return pc.take(hashed, pc.index_in(values, value_set=raw))


def pseudonymise_record(text: str, key: bytes) -> str:
    """A rejected row's source record with its user id pseudonymised, or withheld when the
    record is not a JSON object (its id cannot be found in it)."""
    try:
        record: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        return withheld(text, "not JSON")
    if not isinstance(record, dict):
        return withheld(text, "not a JSON object")
    raw = record_user_id(record)
    if raw is not None:
        record["user_identifiers"] = {**record["user_identifiers"], "id": pseudonym(raw, key)}
    return orjson.dumps(record).decode()


def record_user_id(record: Any) -> str | None:
    """The user id of a parsed source record, in the form the valid rows publish it (text
    trimmed as the transform trims it; a value that is not text, as its JSON text), or None."""
    identifiers = record.get("user_identifiers") if isinstance(record, dict) else None
    if not isinstance(identifiers, dict) or identifiers.get("id") is None:
        return None
    raw = identifiers["id"]
    if not isinstance(raw, str):
        return orjson.dumps(raw).decode()
    return trimmed(raw)


def trimmed(text: str) -> str:
    """``text`` without leading and trailing whitespace, exactly as the transform trims ids."""
    value = pc.utf8_trim_whitespace(pa.array([text], pa.string()))[0].as_py()
    return str(value)


def withheld(text: str, why: str) -> str:
    """The note that replaces a record whose user id cannot be pseudonymised."""
    return orjson.dumps(
        {"_withheld": f"{why}: the record could hold a raw user id", "characters": len(text)}
    ).decode()


def user_id_form(key_identifier: str | None) -> dict[str, Any]:
    """What a manifest records about its ``user_id`` column."""
    if key_identifier is None:
        return {"pseudonymised": False}
    return {"pseudonymised": True, "method": METHOD, "key_id": key_identifier}
