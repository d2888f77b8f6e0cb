"""Pseudonymised user ids: a keyed hash (HMAC-SHA256) in place of the raw id (pure).

The published ``user_id`` of a pseudonymised day is ``hmac_sha256(key, raw id as UTF-8)``, its
first 128 bits in 32 lower-case hex digits: the same raw id gives the same pseudonym under the
same key (joins across days work), and without the key a pseudonym cannot be traced back to an
id, nor an id forward to its pseudonym. A manifest names the key by its *key id* (a fingerprint
of the key, never the key): days written under another key are recognisable, and their
pseudonyms do not join.

Rejected rows keep their source record, which holds the raw id: under a key, the record's
``user_identifiers.id`` is replaced by its pseudonym (a value that is not text is hashed as its
JSON text), and a record in which the id cannot be found where the transform reads it (not a JSON
object, or its ``user_identifiers`` not an object) is withheld:
it becomes a note with its length. Validation runs on the raw id before any of this.

A :class:`Pseudonymiser` hashes each distinct id of a batch once and remembers the pseudonyms
it made (up to a bound), so an id seen in an earlier batch of the worker costs a dictionary
lookup, not an HMAC (about 1.5 us each in Python): users send many events a day
(benchmarks/README.md, "Pseudonymised user ids").
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

#: The shortest key accepted, in bytes: HMAC-SHA256's own output size.
MIN_KEY_BYTES = 32
#: What a manifest names the method: HMAC-SHA256, truncated to 128 bits.
METHOD = "hmac-sha256-128"
#: A pseudonym's length: HMAC-SHA256's first 16 bytes (128 bits), in hex. Shorter than the 32
#: bytes, it halves what the ids cost in the lake (they do not compress), and two ids of even a
#: billion users share a pseudonym with odds of about 1e-21 (RFC 4868 truncates the same way).
PSEUDONYM_LENGTH = 32
_KEY_ID_CONTEXT = b"events-lake user id key id\x00"


def key_id(key: bytes) -> str:
    """The key's fingerprint: 16 hex digits of SHA-256 over a fixed context and the key (not
    an HMAC output of the key, so it reveals nothing a pseudonym could be checked against)."""
    return hashlib.sha256(_KEY_ID_CONTEXT + key).hexdigest()[:16]


def pseudonym(raw: str, key: bytes) -> str:
    """One id's pseudonym (a request's ids, a reader's lookup): the pipeline's own HMAC."""
    return str(Pseudonymiser(key).hashed(pa.array([raw], pa.string()))[0].as_py())


def _plain(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    return values


@dataclass(frozen=True)
class _Known:
    """The ids a pseudonymiser has hashed: their pseudonyms (Arrow), and a lookup from two
    independent 64-bit hashes of each id to its position (Polars joins on the first; the second
    must agree too, so a 64-bit collision is never taken for a match)."""

    hashed: pa.Array
    lookup: pl.DataFrame  # first hash (u64) -> position (u32), unique first hashes
    second: np.ndarray  # second hash of each id, by position

    @classmethod
    def empty(cls) -> _Known:
        lookup = pl.DataFrame(schema={"h": pl.UInt64, "at": pl.UInt32})
        return cls(pa.array([], pa.string()), lookup, np.empty(0, np.uint64))


_SEEDS = (0x5EED_0001, 0x5EED_0002)
_BLOCK = 64  # SHA-256's block size, in bytes


class Pseudonymiser:
    """Pseudonyms under one key, remembering the ids it hashed (about 60 bytes an id, up to
    ``max_known`` of them; beyond, an id not among them is hashed again in each batch that holds
    it). A batch costs two fast (non-cryptographic) hashes of its ids and a join in Polars, to
    find those already known, and an HMAC of each id not seen before: users send many events a
    day. Safe to share between threads: each call works on the state it read."""

    def __init__(self, key: bytes, max_known: int = 2_000_000) -> None:
        self.key = key
        self.max_known = max_known
        self._known = _Known.empty()
        self._lock = threading.Lock()
        # HMAC (RFC 2104) by hand: SHA-256 of the key's two pads hashed once, copied per id
        # (40 % faster than hmac's own objects, 2.2 us an id here: benchmarks/README.md)
        padded = (hashlib.sha256(key).digest() if len(key) > _BLOCK else key).ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def hashed(self, values: pa.Array) -> pa.Array:
        """The pseudonym of each value of a string array without nulls (nothing remembered)."""
        made = []
        inner, outer, size = self._inner, self._outer, PSEUDONYM_LENGTH // 2
        for raw in values.to_pylist():
            i = inner.copy()
            i.update(raw.encode("utf-8", "surrogatepass"))
            o = outer.copy()
            o.update(i.digest())
            made.append(o.digest()[:size].hex())
        return pa.array(made, pa.string())

    def __call__(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        values = _plain(values)
        known = self._known
        positions = self._find(known, values)
        valid = ~np.asarray(pc.is_null(values).to_numpy(zero_copy_only=False), dtype=bool)
        missing = valid & (positions < 0)
        positions[~valid] = 0
        hashed = known.hashed
        if missing.any():
            rows = values.filter(pa.array(missing))
            hashed, at_rows = self._add(pc.unique(rows), rows)
            positions[missing] = at_rows
        return pc.take(hashed, pa.array(positions, mask=~valid))

    def _add(self, new: pa.Array, rows: pa.Array) -> tuple[pa.Array, np.ndarray]:
        """Hash the ids of ``new`` that no other call hashed meanwhile, and remember them; the
        pseudonyms, and the position of each of ``rows`` among them. One call at a time: two
        tasks that start together do not both hash the ids they share."""
        with self._lock:
            known = self._known
            found = self._find(known, new)
            fresh = new.filter(pa.array(found < 0))
            hashed = known.hashed
            if len(fresh):
                hashed = pa.concat_arrays([hashed, self.hashed(fresh)])
                self._remember(known, fresh, hashed)
                found[found < 0] = np.arange(len(known.hashed), len(hashed))
        return hashed, found[pc.index_in(rows, value_set=new).to_numpy()]

    @staticmethod
    def _find(known: _Known, values: pa.Array) -> np.ndarray:
        """The position of each of ``values`` (without nulls) among ``known``, or -1."""
        ids = pl.Series(values=values, dtype=pl.String)
        first, second = (ids.hash(seed=seed) for seed in _SEEDS)
        at = pl.DataFrame({"h": first}).join(
            known.lookup, on="h", how="left", maintain_order="left"
        )["at"]
        if len(at) != len(values):  # (the lookup's first hashes are unique: never)
            raise AssertionError("the pseudonyms' lookup holds a first hash twice")
        positions = at.fill_null(0).to_numpy().astype(np.int64)
        if not len(known.second):
            return np.full(len(values), -1, np.int64)
        hit = ~at.is_null().to_numpy() & (known.second[positions] == second.to_numpy())
        return np.where(hit, positions, -1)

    def _remember(self, known: _Known, new: pa.Array, hashed: pa.Array) -> None:
        """Keep ``new`` (the ids just hashed, at the end of ``hashed``) for the next batches,
        but for those whose first hash is already taken (a 64-bit collision: they are simply
        hashed again when met)."""
        if len(hashed) > self.max_known:
            return
        ids = pl.Series(values=new, dtype=pl.String)
        first, second = (ids.hash(seed=seed).to_numpy() for seed in _SEEDS)
        base = len(hashed) - len(new)
        added = pl.DataFrame(
            {"h": first, "at": np.arange(base, len(hashed), dtype=np.uint32)}
        ).unique(subset="h", keep="none")
        added = added.join(known.lookup, on="h", how="anti")
        seconds = np.concatenate([known.second, second])
        self._known = _Known(hashed, pl.concat([known.lookup, added], rechunk=True), seconds)


def pseudonymise_records(texts: list[str], pseudonymiser: Pseudonymiser) -> list[str]:
    """Rejected rows' source records with their user ids pseudonymised, or withheld when a
    record is not a JSON object (its id cannot be found in it)."""
    records: list[Any] = []
    out: list[str | None] = []
    for text in texts:
        note: str | None = None
        try:
            record = orjson.loads(text)
        except orjson.JSONDecodeError:
            record, note = None, withheld(text, "not JSON")
        if note is None and not isinstance(record, dict):
            note = withheld(text, "not a JSON object")
        elif note is None and not has_user_id_field(record):
            note = withheld(text, "its user_identifiers is not an object")
        records.append(record if note is None else None)
        out.append(note)
    ids = record_user_ids(records)
    found = [i for i, raw in enumerate(ids) if raw is not None]
    # few, and the ids of rejected rows often new: hashed each, not looked up among those known
    hashed = pseudonymiser.hashed(pa.array([ids[i] for i in found], pa.string())).to_pylist()
    for i, pseudonym_of_id in zip(found, hashed, strict=True):
        records[i]["user_identifiers"] = {**records[i]["user_identifiers"], "id": pseudonym_of_id}
    return [
        note or orjson.dumps(record).decode() for note, record in zip(out, records, strict=True)
    ]


def has_user_id_field(record: Any) -> bool:
    """Whether a parsed record is an object whose user id, if it has one, is where the
    transform reads it (``user_identifiers.id``): else the id, if any, could be anywhere."""
    if not isinstance(record, dict):
        return False
    identifiers = record.get("user_identifiers")
    return identifiers is None or isinstance(identifiers, dict)


def record_user_ids(records: list[Any]) -> list[str | None]:
    """The user id of each parsed source record, in the form the valid rows publish it (text
    trimmed as the transform trims it, in one Arrow call for all; a value that is not text, as
    its JSON text), or None."""
    found: list[str | None] = []
    texts: list[int] = []
    for record in records:
        identifiers = record.get("user_identifiers") if isinstance(record, dict) else None
        raw = identifiers.get("id") if isinstance(identifiers, dict) else None
        if raw is None:
            found.append(None)
        elif isinstance(raw, str):
            texts.append(len(found))
            found.append(raw)
        else:
            found.append(orjson.dumps(raw).decode())
    if texts:
        trimmed = pc.utf8_trim_whitespace(pa.array([found[i] for i in texts], pa.string()))
        for i, value in zip(texts, trimmed.to_pylist(), strict=True):
            found[i] = value
    return found


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


def key_id_of(manifest: Mapping[str, Any] | None) -> str | None:
    """The key id a manifest says its user ids were pseudonymised under; None for raw ids (or
    a manifest from before the form was recorded: those ids are raw)."""
    form = (manifest or {}).get("user_id")
    if not isinstance(form, Mapping) or not form.get("pseudonymised"):
        return None
    return str(form.get("key_id"))
