"""What the stages of a run hand each other, typed, and the small store that keeps it.

A stage may run in a process of its own (an Airflow task each), so what a later stage needs is
written beside the run's staging, in ``_staging/event_date=D/_runs/run_id=R.<kind>.json``, and
read back by the stage that needs it; nothing else is passed between stages. Three records:

- :class:`PlanRecord` (``begin``): the read planned, the snapshot pinned, the notices of the
  date's preparation, and the source's state (the read session's streams);
- :class:`ProcessRecord` (``process``): where and under which tag the pieces were staged, their
  results and the merges of their small files;
- :class:`AuditRecord` (``audit``): how long the audit took.

The JSON keys are the records' field names, the same as the untyped documents of earlier
versions, so a run begun by one version is completed by the next.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from processing.adapters.storage import put_bytes
from processing.logic.compaction import Merge, with_merges
from processing.logic.layout import Layout, check_run_id
from processing.logic.manifest import FileInfo, PieceResult, RunTotals, piece_result, reconcile


@dataclass(frozen=True)
class PlanRecord:
    """The read ``begin`` planned for the run."""

    run_id: str
    date: str  # ISO date
    started_at: str  # ISO instant
    source: str  # the source's URL, without secrets
    pieces: int
    estimated_rows: int | None
    estimated_bytes: int
    snapshot_time: str | None
    source_details: Mapping[str, Any]
    seconds: float
    #: what preparing the date found and repaired (one sentence each)
    notices: tuple[str, ...] = ()
    #: the source's own state (BigQuery's session and stream names): kept, never sent to XCom
    source_state: Mapping[str, Any] = field(default_factory=dict)

    def facts(self) -> dict[str, Any]:
        """The plan's facts for logs and XCom: everything but the source's state."""
        doc = _doc(self)
        del doc["source_state"]
        return doc


@dataclass(frozen=True)
class ProcessRecord:
    """The pieces ``process`` staged, under ``staging_id`` (the run id, or an attempt's)."""

    staging_id: str
    tag: str  # in the name of every file of the attempt
    pieces: int
    results: tuple[PieceResult, ...]
    merges: tuple[tuple[Merge, FileInfo], ...]  # small files merged, and the file written
    source_details: Mapping[str, Any]
    seconds: float
    dashboard: str | None = None
    #: manifest entries of the reports written into the staging (Dask's performance report)
    reports: tuple[Mapping[str, Any], ...] = ()
    bytes_read: int | None = None

    def totals(self) -> RunTotals:
        """The pieces' results added up, with the merged files in place of their sources."""
        return with_merges(reconcile(self.results), self.merges)

    def to_json(self) -> dict[str, Any]:
        doc = _doc(self)
        doc["results"] = [asdict(r) for r in self.results]
        doc["merges"] = [{"merge": asdict(m), "written": asdict(f)} for m, f in self.merges]
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ProcessRecord:
        return cls(
            **{
                **_known(cls, doc),
                "results": tuple(piece_result(r) for r in doc["results"]),
                "merges": tuple(_merged(m) for m in doc.get("merges", ())),
                "reports": tuple(doc.get("reports", ())),
            }
        )


@dataclass(frozen=True)
class AuditRecord:
    """What ``audit`` leaves the publish."""

    seconds: float


Record = PlanRecord | ProcessRecord | AuditRecord
R = TypeVar("R", PlanRecord, ProcessRecord, AuditRecord)

_KINDS: dict[type[Any], str] = {PlanRecord: "plan", ProcessRecord: "results", AuditRecord: "audit"}


class RunRecords:
    """The records of run ``run_id`` of ``date``, on the destination's filesystem."""

    def __init__(self, fs: Any, layout: Layout, date: dt.date, run_id: str) -> None:
        self.fs, self.layout, self.date = fs, layout, date
        self.run_id = check_run_id(run_id)

    def path(self, kind: str) -> str:
        return f"{self.layout.staging_date(self.date)}/_runs/run_id={self.run_id}.{kind}.json"

    def save(self, record: Record) -> None:
        doc = record.to_json() if isinstance(record, ProcessRecord) else _doc(record)
        put_bytes(self.fs, self.path(_KINDS[type(record)]), json.dumps(doc, default=str).encode())

    def plan(self) -> PlanRecord | None:
        return self._load(PlanRecord)

    def processed(self) -> ProcessRecord | None:
        return self._load(ProcessRecord)

    def audited(self) -> AuditRecord | None:
        return self._load(AuditRecord)

    def forget(self) -> None:
        """Remove the run's records (and the date's staging, if that leaves it empty)."""
        fs = self.fs
        for kind in _KINDS.values():
            path = self.path(kind)
            if fs.exists(path):
                fs.rm_file(path)
        staging = self.layout.staging_date(self.date)
        runs = f"{staging}/_runs"
        if fs.exists(runs) and not fs.ls(runs, detail=False):
            fs.rm(runs, recursive=True)
        if fs.exists(staging) and not fs.ls(staging, detail=False):
            fs.rm(staging, recursive=True)

    def _load(self, kind: type[R]) -> R | None:
        try:
            doc = json.loads(self.fs.cat_file(self.path(_KINDS[kind])))
        except FileNotFoundError:
            return None
        if kind is ProcessRecord:
            return ProcessRecord.from_json(doc)  # type: ignore[return-value]
        known = _known(kind, doc)
        if kind is PlanRecord:
            known["notices"] = tuple(known.get("notices", ()))
        return kind(**known)


def _doc(record: Any) -> dict[str, Any]:
    """The record's fields as JSON-ready values (one level: its values are JSON already)."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


def _known(kind: type[Any], doc: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``kind`` found in ``doc`` (a key a later version added is ignored)."""
    names = {f.name for f in dataclasses.fields(kind)}
    return {k: v for k, v in doc.items() if k in names}


def _merged(doc: Mapping[str, Any]) -> tuple[Merge, FileInfo]:
    merge = doc["merge"]
    sources = tuple(FileInfo(**f) for f in merge["sources"])
    return Merge(**{**merge, "sources": sources}), FileInfo(**doc["written"])
