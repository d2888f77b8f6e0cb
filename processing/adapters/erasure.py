"""Find a request's rows in a version of a date, and stage the version without them.

Events files are searched on their ``user_id`` column alone, after their row groups' statistics
(min/max) say a requested id can be there; rejected files on their source records. A file that
holds none of the rows is staged as a copy (server-side on S3, a hard link on a local disk) under
the new version's name; a file that does is read, filtered and written again with the writer's
options: every other row keeps its values, in the same order.
"""

from __future__ import annotations

import bisect
import logging
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from processing.adapters.lake_store import lake_store
from processing.adapters.versions import Version
from processing.adapters.writer import WriteOptions
from processing.logic.erasure import Removed, rejected_matches
from processing.logic.layout import EVENTS, retag
from processing.spec import schema as s

log = logging.getLogger(__name__)

_THREADS = 8


@dataclass(frozen=True)
class Found:
    """The rows of one file that belong to the request (a boolean mask), or None: none do."""

    entry: Mapping[str, Any]
    remove: pa.Array | None
    read: bool  # False: its statistics ruled it out

    @property
    def rows(self) -> int:
        return 0 if self.remove is None else int(pc.sum(self.remove).as_py() or 0)


def _could_hold(metadata: pq.FileMetaData, column: str, targets: list[str]) -> bool:
    """Whether any row group's min/max of ``column`` can hold a target (True without stats)."""
    index = metadata.schema.names.index(column)
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(index).statistics
        if stats is None or not stats.has_min_max:
            return True
        low, high = stats.min, stats.max
        if isinstance(low, bytes) or isinstance(high, bytes):
            return True
        at = bisect.bisect_left(targets, low)  # targets is sorted
        if at < len(targets) and targets[at] <= high:
            return True
    return False


def _find_in(
    fs: Any, path: str, entry: Mapping[str, Any], targets: set[str], ordered: list[str]
) -> Found:
    with fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        if entry["dataset"] == EVENTS:
            if not _could_hold(parquet.metadata, s.USER_ID, ordered):
                return Found(entry, None, read=False)
            ids = parquet.read(columns=[s.USER_ID]).column(s.USER_ID)
            remove = pc.is_in(ids, value_set=pa.array(ordered, pa.string()))
        else:
            records = parquet.read(columns=["source_record"]).column("source_record")
            remove = pa.array(rejected_matches(records.to_pylist(), targets), pa.bool_())
    if isinstance(remove, pa.ChunkedArray):
        remove = remove.combine_chunks()
    found = Found(entry, remove, read=True)
    return found if found.rows else Found(entry, None, read=True)


def find(fs: Any, version: Version, manifest: Mapping[str, Any], targets: set[str]) -> list[Found]:
    """Every data file of ``version`` (as ``manifest`` lists it), with the request's rows."""
    entries = list(manifest.get("files", []))
    with ThreadPoolExecutor(_THREADS) as pool:
        ordered = sorted(targets)
        return list(pool.map(lambda e: _find_in(fs, version.file(e), e, targets, ordered), entries))


def stage_without(
    fs: Any,
    found: list[Found],
    *,
    manifest: Mapping[str, Any],
    published: Version,
    staged: Version,
    tag: str,
    options: WriteOptions,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Removed]]:
    """Stage the version without the found rows, every file renamed under ``tag``. Returns the
    new files' and reports' manifest entries and what was removed from each file."""
    store = lake_store(fs)
    copies: list[tuple[str, str]] = []
    files: list[dict[str, Any]] = []
    removed: list[Removed] = []
    for hit in found:
        entry = dict(hit.entry)
        new = {**entry, "path": retag(entry["path"], tag)}
        if hit.remove is None:
            copies.append((published.file(entry), staged.file(new)))
            files.append(new)
            continue
        rows, size, reasons = _rewrite(fs, published.file(entry), staged.file(new), hit, options)
        removed.append(Removed(entry["dataset"], entry["path"], hit.rows, reasons))
        if rows:
            files.append({**new, "rows": rows, "bytes": size})
    there = published.listing(fs)
    reports = []
    for report in manifest.get("reports", []):
        if published.file(report) in there:
            new = {**report, "path": retag(report["path"], tag)}
            copies.append((published.file(report), staged.file(new)))
            reports.append(new)
    store.copy(copies)
    return files, reports, removed


def _rewrite(
    fs: Any, source: str, target: str, hit: Found, options: WriteOptions
) -> tuple[int, int, dict[str, int]]:
    """Write ``source`` without the found rows to ``target`` (nothing when none is left):
    its rows, bytes, and the first reasons of the rejected rows removed."""
    with fs.open(source, "rb") as handle:
        table = pq.ParquetFile(handle).read()
    assert hit.remove is not None
    reasons: Counter[str] = Counter()
    if "reason" in table.column_names:
        reasons.update(table.column("reason").filter(hit.remove).to_pylist())
    kept = table.filter(pc.invert(hit.remove))
    if kept.num_rows == 0:
        return 0, 0, dict(reasons)
    fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(target, "wb") as out:
        pq.write_table(
            kept, out, row_group_size=options.row_group_rows, **options.parquet_kwargs(kept.schema)
        )
    return kept.num_rows, int(fs.size(target)), dict(reasons)


def holds_rows(
    fs: Any, version: Version, manifest: Mapping[str, Any] | None, targets: set[str]
) -> bool:
    """Whether ``version`` (kept for a rollback) holds any of the request's rows; a kept
    version whose manifest is gone or unreadable counts as holding them (it cannot be read)."""
    if manifest is None:
        return bool(version.listing(fs))
    there = version.listing(fs)
    present = {
        **manifest,
        "files": [e for e in manifest.get("files", []) if version.file(e) in there],
    }
    return any(f.remove is not None for f in find(fs, version, present, targets))
