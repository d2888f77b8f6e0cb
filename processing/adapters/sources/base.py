"""The source interface: a source plans a day into pieces; a piece is read on a worker.

A :class:`Piece` is a small picklable description (a file and a byte range or row groups, later
a BigQuery stream name). Its ``reader`` is a module-level function, so it pickles by reference and
each Dask task opens its own file handles or clients. Reading yields Arrow tables of at most
``batch_rows`` rows in the BigQuery shape (``processing.spec.schema.INPUT_SCHEMA``, or
``TEXT_INPUT_SCHEMA`` for text sources), optionally with ``_raw`` and ``_defects``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa


@dataclass(frozen=True)
class Piece:
    id: str  # readable, e.g. "day.parquet#rg0-3"
    index: int  # position in the plan; names the piece's output files
    reader: Callable[..., Iterator[pa.Table]]
    args: Mapping[str, Any] = field(default_factory=dict, repr=False)  # may hold credentials
    estimated_rows: int | None = None
    estimated_bytes: int | None = None
    #: the same piece in another plan of the day has the same key (a retried ``process`` keeps
    #: the pieces an earlier attempt completed): the id, or for BigQuery the stream's name
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.id)

    def read(self, batch_rows: int) -> Iterator[pa.Table]:
        return self.reader(batch_rows=batch_rows, **self.args)


@dataclass(frozen=True)
class SourcePlan:
    source: str
    pieces: tuple[Piece, ...]
    details: Mapping[str, Any] = field(default_factory=dict)  # recorded in the manifest
    #: what a later process needs to read the same pieces again without planning anew (JSON;
    #: BigQuery's session and stream names), kept beside the run's staging; empty if planning
    #: again gives the same pieces (files)
    state: Mapping[str, Any] = field(default_factory=dict)

    @property
    def estimated_rows(self) -> int | None:
        rows = [p.estimated_rows for p in self.pieces]
        return None if any(r is None for r in rows) else sum(r for r in rows if r is not None)

    @property
    def estimated_bytes(self) -> int:
        return sum(p.estimated_bytes or 0 for p in self.pieces)


class Source(Protocol):
    """Anything that can plan a day of events into pieces (on the client, cheaply)."""

    @property
    def url(self) -> str: ...

    def plan(self, date: dt.date, piece_rows: int) -> SourcePlan: ...
