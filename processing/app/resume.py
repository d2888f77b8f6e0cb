"""A retried ``process`` keeps the pieces an earlier attempt completed, and reads only the rest.

Each task records the piece it completed, after closing its files, beside its attempt's staging
(``_pieces/NNNNN.json``: the piece's key and its result; see processing.app.piece_task). A later
attempt of the same run finds those records, keeps a piece when its plan has the same piece (the
same key: a file and its byte range, or the same stream of the same BigQuery session) and every
file the record lists is there with its size, and copies the kept files into its own staging
(server-side on S3, hard links on a local disk): each attempt still stages under its own id,
because the tasks of an earlier one may still be running. A record that cannot be read, or
whose files are not all there, is read again: keeping is an optimisation, never a guess.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from processing.adapters.audit import files_under
from processing.adapters.sources import Piece
from processing.adapters.storage import copy_files, put_bytes
from processing.app.piece_task import piece_record
from processing.logic.layout import EVENTS, Layout
from processing.logic.manifest import FileInfo, PieceResult, piece_result

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Completed:
    """A piece an earlier attempt completed: where its files are, and what it reported."""

    staging_id: str
    piece: Piece
    result: PieceResult


def completed_pieces(
    fs: Any, layout: Layout, date: dt.date, stagings: Iterable[str], pieces: Sequence[Piece]
) -> list[Completed]:
    """The pieces of ``pieces`` that one of ``stagings`` completed, with all their files."""
    wanted = {p.key: p for p in pieces}
    found: dict[str, Completed] = {}
    for staging_id in stagings:
        records_dir = layout.piece_records(date, staging_id)
        if not fs.exists(records_dir):
            continue
        paths = sorted(fs.ls(records_dir, detail=False))
        listed = files_under(fs, layout.staged(date, staging_id))
        records = fs.cat(paths, on_error="omit") if paths else {}
        for path in paths:
            try:
                doc = json.loads(records[path])
                key, result = str(doc["key"]), piece_result(doc["result"])
            except (KeyError, TypeError, ValueError):
                log.warning("ignoring the unreadable record %s: its piece is read again", path)
                continue
            if key not in wanted or key in found:
                continue
            if all(listed.get(_path(layout, date, staging_id, f)) == f.bytes for f in result.files):
                found[key] = Completed(staging_id, wanted[key], result)
    return list(found.values())


def adopt(
    fs: Any, layout: Layout, date: dt.date, completed: Sequence[Completed], staging_id: str
) -> list[PieceResult]:
    """Copy the completed pieces' files into ``staging_id``, record them there too (an attempt
    after this one keeps them as well), and return their results."""
    pairs = [
        (_path(layout, date, c.staging_id, f), _path(layout, date, staging_id, f))
        for c in completed
        if c.staging_id != staging_id
        for f in c.result.files
    ]
    copy_files(fs, pairs)
    records = layout.piece_records(date, staging_id)
    for c in completed:
        put_bytes(fs, f"{records}/{c.piece.index:05d}.json", piece_record(c.piece, c.result))
    return [c.result for c in completed]


def _path(layout: Layout, date: dt.date, staging_id: str, f: FileInfo) -> str:
    events_dir, rejected_dir = layout.staged(date, staging_id)
    return f"{events_dir if f.dataset == EVENTS else rejected_dir}/{f.path}"
