"""Which staged files to merge so each partition's files come close to a target size (pure).

Every piece writes its own files per partition (one BigQuery stream, or one piece of a file), so
a day read in 1,000 streams would write 1,000 small files per event name. Before the audit, the
small files of each partition (dataset and event name) are packed, in path order, into groups of
at most ``target`` bytes; each group of two or more files becomes one file. A file of at least
half the target stays as it is. The written size of a merged file is about the sum of its
sources' (the same rows, the same encoding), so files land between half the target and the
target, but for the last group of a partition.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from processing.logic.manifest import FileInfo, RunTotals
from processing.spec.errors import AuditError


@dataclass(frozen=True)
class Merge:
    """Files of one partition to be rewritten as the one file ``into`` (a relative path, as in
    :class:`FileInfo`)."""

    dataset: str
    event_name: str | None
    sources: tuple[FileInfo, ...]
    into: str

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.sources)


def merged_name(index: int, tag: str) -> str:
    return f"merged-{index:05d}-{tag}.parquet"


def plan_merges(files: Sequence[FileInfo], target: int, tag: str) -> list[Merge]:
    """The merges that bring the partitions' files close to ``target`` bytes (see the module)."""
    partitions: dict[tuple[str, str | None], list[FileInfo]] = defaultdict(list)
    for f in files:
        if f.bytes < target / 2:
            partitions[(f.dataset, f.event_name)].append(f)
    merges: list[Merge] = []
    for (dataset, event_name), small in sorted(partitions.items(), key=lambda kv: str(kv[0])):
        group: list[FileInfo] = []
        for f in sorted(small, key=lambda f: f.path):
            if group and sum(g.bytes for g in group) + f.bytes > target:
                merges.append(_merge(dataset, event_name, group, len(merges), tag))
                group = []
            group.append(f)
        merges.append(_merge(dataset, event_name, group, len(merges), tag))
    return [m for m in merges if len(m.sources) > 1]


def _merge(
    dataset: str, event_name: str | None, group: list[FileInfo], index: int, tag: str
) -> Merge:
    directory = group[0].path.rpartition("/")[0]
    into = f"{directory}/{merged_name(index, tag)}".lstrip("/")
    return Merge(dataset, event_name, tuple(group), into)


def with_merges(totals: RunTotals, done: Sequence[tuple[Merge, FileInfo]]) -> RunTotals:
    """``totals`` with each merge's sources replaced by the file it wrote; raise AuditError if a
    merge's file does not hold its sources' rows, or a source is not one of the run's files."""
    files = {(f.dataset, f.path): f for f in totals.files}
    problems: list[str] = []
    for merge, written in done:
        if written.rows != merge.rows:
            problems.append(f"{written.path} holds {written.rows} rows, its sources {merge.rows}")
        for source in merge.sources:
            if files.pop((source.dataset, source.path), None) is None:
                problems.append(f"{source.path} is merged but no piece wrote it")
        files[(written.dataset, written.path)] = written
    if problems:
        raise AuditError(
            "merged files do not match the pieces', nothing published: " + "; ".join(problems[:10])
        )
    return dataclasses.replace(
        totals, files=tuple(sorted(files.values(), key=lambda f: (f.dataset, f.path)))
    )
