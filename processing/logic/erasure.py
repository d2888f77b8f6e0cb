"""Erasure of users on request (``forget``): the request, how rows are matched, and the manifest
of a date once their rows are gone (pure).

A request is a file of user ids, one per line, as the source holds them (raw). A date is
searched in the form its manifest says its ids were published in: raw ids as the transform
trims them, or their pseudonyms under the key the date was written with
(:mod:`processing.logic.pseudonymise`). A valid row matches on its ``user_id``; a rejected row on
the id in its source record, or, when that record could not be read as JSON (it was kept as it
came), on the id's JSON text anywhere in it.

The erasure log names a request by a hash, never by its ids: an HMAC under the pseudonymisation
key when there is one; else a SHA-256 (which a guess of a few ids can be checked against: say
so to whoever keeps the log).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from processing.logic.pseudonymise import Pseudonymiser, has_user_id_field, record_user_ids
from processing.spec import rules as r
from processing.spec import schema as s
from processing.spec.errors import ConfigError

#: The most ids one request may hold (a bigger one is split: each date is read once per request).
MAX_REQUEST_IDS = 1_000_000


def read_request(data: bytes, where: str) -> list[str]:
    """The distinct ids of a request file, one per line (split on ``\\n`` alone, one ``\\r``
    before it dropped: an id may hold any other character the pipeline publishes, a vertical
    tab or U+2028 too), in their published raw form (trimmed; blank lines skipped). Refuses a
    file that is not UTF-8, holds no id, or an id the pipeline would have rejected (longer than
    the user id's limit)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{where}: not UTF-8 text (byte {e.start}): one user id per line"
        ) from None
    ids: dict[str, None] = {}
    problems = []
    limit = r.MAX_LENGTH[s.USER_ID]
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    trimmed = pc.utf8_trim_whitespace(pa.array(lines, pa.string())).to_pylist()
    for number, value in enumerate(trimmed, 1):
        if not value:
            continue
        if len(value) > limit:
            problems.append(f"line {number}: longer than {limit} characters")
        else:
            ids[value] = None
    if problems:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise ConfigError(
            f"{where}: {len(problems)} malformed id(s), nothing was erased: "
            + "; ".join(problems[:3])
            + more
        )
    if not ids:
        raise ConfigError(f"{where}: holds no user id (one per line): nothing to erase")
    if len(ids) > MAX_REQUEST_IDS:
        raise ConfigError(
            f"{where}: {len(ids):,} ids; split it into files of at most {MAX_REQUEST_IDS:,}"
        )
    return list(ids)


def request_hash(ids: Iterable[str], key: bytes | None) -> str:
    """What names a request in the erasure log (the same ids, in any order, the same name)."""
    canonical = "\n".join(sorted(set(ids))).encode()
    if key is not None:
        return "hmac-sha256:" + hmac.digest(key, b"forget\x00" + canonical, "sha256").hex()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def published_ids(ids: Sequence[str], key: bytes | None) -> set[str]:
    """The ids as a date published them: raw, or pseudonymised with ``key``."""
    if key is None:
        return set(ids)
    return set(Pseudonymiser(key).hashed(pa.array(list(ids), pa.string())).to_pylist())


def rejected_matches(records: list[str], targets: set[str]) -> list[bool]:
    """Whether each rejected row's source record belongs to one of ``targets`` (published
    form): on the id in the record, or, for a record that is not JSON, on the id's JSON text
    anywhere in it."""
    parsed: list[Any] = []
    unreadable: dict[int, bool] = {}
    quoted = [orjson.dumps(t).decode() for t in targets]
    for i, record in enumerate(records):
        try:
            found = orjson.loads(record)
        except orjson.JSONDecodeError:
            found = None
        if not has_user_id_field(found):  # kept as it came: the id's JSON text, anywhere
            unreadable[i] = any(q in record for q in quoted)
        parsed.append(found)
    ids = record_user_ids(parsed)
    return [unreadable.get(i, ids[i] is not None and ids[i] in targets) for i in range(len(ids))]


@dataclass(frozen=True)
class Removed:
    """The rows a rewrite removed from one file, and what is left of it."""

    dataset: str
    path: str  # the file's path in the date's directory, before the rewrite
    rows: int  # removed
    #: the first reason of each rejected row removed (a rejected file only)
    reasons: Mapping[str, int]


def erased_manifest(
    manifest: Mapping[str, Any],
    files: Sequence[Mapping[str, Any]],
    reports: Sequence[Mapping[str, Any]],
    removed: Sequence[Removed],
    *,
    tag: str,
    forget_id: str,
    request: str,
    at: dt.datetime,
) -> dict[str, Any]:
    """The date's manifest once ``removed`` rows are gone: ``files`` and ``reports`` are the new
    version's (renamed under ``tag``); the valid and rejected counts drop, ``rows_read`` stays,
    and ``erased`` adds up what every erasure removed (read = valid + rejected + erased)."""
    valid = sum(x.rows for x in removed if x.dataset == "events")
    rejected = sum(x.rows for x in removed if x.dataset == "rejected")
    by_event: Counter[str] = Counter(manifest.get("valid_by_event", {}))
    for entry in manifest.get("files", []):
        gone = next(
            (x.rows for x in removed if x.path == entry["path"] and x.dataset == entry["dataset"]),
            0,
        )
        if entry["dataset"] == "events" and entry.get("event_name"):
            by_event[entry["event_name"]] -= gone
    reasons: Counter[str] = Counter(manifest.get("rejected_by_reason", {}))
    for x in removed:
        reasons.subtract(x.reasons)
    before = manifest.get("erased", {})
    return {
        **manifest,
        "rows_valid": int(manifest["rows_valid"]) - valid,
        "rows_rejected": int(manifest["rows_rejected"]) - rejected,
        "valid_by_event": {k: n for k, n in sorted(by_event.items()) if n > 0},
        "rejected_by_reason": {k: n for k, n in sorted(reasons.items()) if n > 0},
        "bytes_written": sum(int(f["bytes"]) for f in files),
        "files": [dict(f) for f in files],
        "reports": [dict(x) for x in reports],
        "tag": tag,
        "erased": {
            "rows_valid": int(before.get("rows_valid", 0)) + valid,
            "rows_rejected": int(before.get("rows_rejected", 0)) + rejected,
            "requests": [
                *before.get("requests", []),
                {
                    "request": request,
                    "by": forget_id,
                    "at": at.isoformat(),
                    "rows_valid": valid,
                    "rows_rejected": rejected,
                },
            ],
        },
    }


def log_entry(
    date: dt.date, request: str, forget_id: str, at: dt.datetime, outcome: DateOutcome
) -> dict[str, Any]:
    """One date's line of the erasure log (no ids: counts and the request's hash)."""
    return {
        "date": date.isoformat(),
        "request": request,
        "by": forget_id,
        "at": at.isoformat(),
        **asdict(outcome),
    }


@dataclass(frozen=True)
class DateOutcome:
    """What a forget did to one date."""

    rows_valid: int = 0
    rows_rejected: int = 0
    #: the version kept for a rollback held rows of the request: it was dropped
    previous_dropped: bool = False
    #: files read to find the rows (the others were skipped on their statistics)
    files_read: int = 0
    files_rewritten: int = 0
    #: files no version listed (a publish or an expire that stopped), deleted
    strays: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.rows_valid or self.rows_rejected or self.previous_dropped or self.strays)

    def line(self, date: dt.date) -> str:
        dropped = "; the version kept for a rollback was dropped" if self.previous_dropped else ""
        strays = f"; {self.strays} files no version listed were deleted" if self.strays else ""
        if not (self.rows_valid or self.rows_rejected):
            return f"{date}: no row of these users ({self.files_read} files read){dropped}{strays}"
        return (
            f"{date}: removed {self.rows_valid:,} valid and {self.rows_rejected:,} rejected rows "
            f"({self.files_rewritten} files rewritten, {self.files_read} read){dropped}{strays}"
        )
