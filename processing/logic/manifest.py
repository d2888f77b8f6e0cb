"""Reconcile the pieces' counts and build the manifest (pure: the clock comes in as arguments)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from processing.logic import profile as prof
from processing.logic.pseudonymise import user_id_form
from processing.spec.errors import AuditError
from processing.spec.schema import SCHEMA_VERSION


@dataclass(frozen=True)
class FileInfo:
    """A written file, path relative to the date directory of its dataset (events or rejected)."""

    dataset: str  # "events" or "rejected"
    path: str
    rows: int
    bytes: int
    event_name: str | None = None


@dataclass(frozen=True)
class PieceResult:
    """What one Dask task reports back: small facts, never data."""

    piece: str
    rows_read: int
    rows_valid: int
    rows_rejected: int
    rejected_by_reason: dict[str, int]
    files: tuple[FileInfo, ...]
    seconds: float = 0.0
    #: counts by hour, platform and reason, for the quality report (:mod:`.profile`)
    profile: dict[str, Any] = field(default_factory=dict)
    #: the key id its user ids were pseudonymised with (None: published as they came)
    user_id_key_id: str | None = None


def piece_result(doc: Mapping[str, Any]) -> PieceResult:
    """A :class:`PieceResult` from its JSON form (``dataclasses.asdict``)."""
    files = tuple(FileInfo(**f) for f in doc["files"])
    return PieceResult(**{**doc, "files": files})


@dataclass(frozen=True)
class RunTotals:
    rows_read: int
    rows_valid: int
    rows_rejected: int
    rejected_by_reason: dict[str, int]
    valid_by_event: dict[str, int]
    files: tuple[FileInfo, ...] = field(repr=False)
    #: the pieces' profiles added up; None if a piece made none (staged by an older version)
    profile: dict[str, Any] | None = field(default=None, repr=False)
    #: the key id every piece pseudonymised its user ids with (None: raw ids)
    user_id_key_id: str | None = None

    @property
    def bytes_written(self) -> int:
        return sum(f.bytes for f in self.files)


def reconcile(pieces: Iterable[PieceResult]) -> RunTotals:
    """Add up the pieces and check every count against every other; raise AuditError if not."""
    pieces = list(pieces)
    problems: list[str] = []
    reasons: Counter[str] = Counter()
    by_event: Counter[str] = Counter()
    files: list[FileInfo] = []
    for p in pieces:
        if p.rows_read != p.rows_valid + p.rows_rejected:
            problems.append(
                f"{p.piece}: read {p.rows_read} != valid {p.rows_valid} "
                f"+ rejected {p.rows_rejected}"
            )
        if sum(p.rejected_by_reason.values()) != p.rows_rejected:
            problems.append(f"{p.piece}: rejected by reason does not add up to {p.rows_rejected}")
        file_valid = sum(f.rows for f in p.files if f.dataset == "events")
        file_rejected = sum(f.rows for f in p.files if f.dataset == "rejected")
        if file_valid != p.rows_valid or file_rejected != p.rows_rejected:
            problems.append(
                f"{p.piece}: files hold {file_valid} valid / {file_rejected} rejected rows, "
                f"counted {p.rows_valid} / {p.rows_rejected}"
            )
        if p.profile and prof.rows(p.profile) != (p.rows_valid, p.rows_rejected):
            problems.append(
                f"{p.piece}: its profile counts {prof.rows(p.profile)} valid/rejected rows, "
                f"counted {p.rows_valid} / {p.rows_rejected}"
            )
        reasons.update(p.rejected_by_reason)
        for f in p.files:
            if f.dataset == "events" and f.event_name is not None:
                by_event[f.event_name] += f.rows
        files.extend(p.files)
    keys = {p.user_id_key_id for p in pieces}
    if len(keys) > 1:
        shown = sorted("raw ids" if k is None else f"key {k}" for k in keys)
        problems.append(f"the pieces' user ids were written in different forms: {shown}")
    paths = [(f.dataset, f.path) for f in files]
    if len(paths) != len(set(paths)):
        problems.append("two pieces wrote the same file name")
    if problems:
        raise AuditError("counts do not reconcile, nothing published: " + "; ".join(problems))
    return RunTotals(
        rows_read=sum(p.rows_read for p in pieces),
        rows_valid=sum(p.rows_valid for p in pieces),
        rows_rejected=sum(p.rows_rejected for p in pieces),
        rejected_by_reason=dict(sorted(reasons.items())),
        valid_by_event=dict(sorted(by_event.items())),
        files=tuple(sorted(files, key=lambda f: (f.dataset, f.path))),
        profile=prof.add(p.profile for p in pieces) if all(p.profile for p in pieces) else None,
        user_id_key_id=next(iter(keys)) if len(keys) == 1 else None,
    )


def build_manifest(
    *,
    run_id: str,
    date: dt.date,
    source: str,
    totals: RunTotals,
    started_at: dt.datetime,
    finished_at: dt.datetime,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest as a JSON-ready dict. ``extra`` carries source details (e.g. snapshot time)."""
    seconds = max((finished_at - started_at).total_seconds(), 1e-9)
    return {
        "run_id": run_id,
        "date": date.isoformat(),
        "source": source,
        "schema_version": SCHEMA_VERSION,
        "rows_read": totals.rows_read,
        "rows_valid": totals.rows_valid,
        "rows_rejected": totals.rows_rejected,
        "rejected_by_reason": totals.rejected_by_reason,
        "valid_by_event": totals.valid_by_event,
        "bytes_written": totals.bytes_written,
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "duration_seconds": round(seconds, 3),
        "rows_per_second": round(totals.rows_read / seconds, 1),
        "rejected_share": round(totals.rows_rejected / totals.rows_read, 6)
        if totals.rows_read
        else 0.0,
        "files": [asdict(f) for f in totals.files],
        "user_id": user_id_form(totals.user_id_key_id),
        **(extra or {}),
    }
