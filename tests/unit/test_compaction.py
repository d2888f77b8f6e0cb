"""Which staged files are merged, and how the run's totals take the merged files in."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processing.logic.compaction import Merge, plan_merges, with_merges
from processing.logic.manifest import FileInfo, RunTotals
from processing.spec.errors import AuditError

MIB = 2**20
TAG = "0123abcd"


def _file(piece: int, size: int, event: str | None = "view", rows: int = 10) -> FileInfo:
    directory = f"event_name={event}/" if event else ""
    dataset = "events" if event else "rejected"
    return FileInfo(dataset, f"{directory}part-{piece:05d}-000-{TAG}.parquet", rows, size, event)


def test_small_files_of_a_partition_become_files_of_at_most_the_target() -> None:
    files = [_file(i, 10 * MIB) for i in range(10)] + [_file(99, 200 * MIB)]
    merges = plan_merges(files, 32 * MIB, TAG)
    assert [len(m.sources) for m in merges] == [3, 3, 3]  # the tenth, alone, stays as it is
    assert all(sum(f.bytes for f in m.sources) <= 32 * MIB for m in merges)
    assert all(m.into.startswith("event_name=view/merged-") for m in merges)
    assert all(m.into.endswith(f"-{TAG}.parquet") for m in merges)
    merged = {f for m in merges for f in m.sources}
    assert _file(99, 200 * MIB) not in merged  # past half the target: left as written


def test_partitions_and_datasets_are_never_mixed() -> None:
    files = [_file(i, MIB, event) for i in range(3) for event in ("view", "click", None)]
    merges = plan_merges(files, 256 * MIB, TAG)
    assert sorted((m.dataset, m.event_name, len(m.sources)) for m in merges) == sorted(
        [("events", "view", 3), ("events", "click", 3), ("rejected", None, 3)]
    )
    assert len({m.into for m in merges}) == 3
    assert next(m for m in merges if m.event_name is None).into.startswith("merged-")


@given(
    sizes=st.lists(st.integers(1, 300), min_size=0, max_size=60),
    target=st.integers(2, 256),
)
def test_every_small_file_is_merged_once_or_left_and_no_merge_passes_the_target(
    sizes: list[int], target: int
) -> None:
    files = [_file(i, size) for i, size in enumerate(sizes)]
    merges = plan_merges(files, target, TAG)
    sources = [f for m in merges for f in m.sources]
    assert len(sources) == len(set(sources))
    assert all(len(m.sources) >= 2 and sum(f.bytes for f in m.sources) <= target for m in merges)
    assert all(f.bytes < target / 2 for f in sources)
    left_small = [f for f in files if f.bytes < target / 2 and f not in sources]
    assert len(left_small) <= 1  # at most the last of the partition, alone
    assert plan_merges(files, target, TAG) == merges  # the same plan on a retry


def _totals(files: list[FileInfo]) -> RunTotals:
    rows = sum(f.rows for f in files)
    return RunTotals(rows, rows, 0, {}, {"view": rows}, tuple(files))


def test_the_totals_list_the_merged_files_instead_of_their_sources() -> None:
    files = [_file(i, MIB) for i in range(4)]
    (merge,) = plan_merges(files, 256 * MIB, TAG)
    written = FileInfo("events", merge.into, 40, 3 * MIB, "view")
    totals = with_merges(_totals(files), [(merge, written)])
    assert totals.files == (written,)
    assert totals.rows_valid == 40


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda w: dataclasses.replace(w, rows=39), "holds 39 rows, its sources 40"),
        (None, "no piece wrote it"),
    ],
)
def test_a_merge_that_does_not_match_the_pieces_fails_the_audit(change, says: str) -> None:
    files = [_file(i, MIB) for i in range(4)]
    (merge,) = plan_merges(files, 256 * MIB, TAG)
    written = FileInfo("events", merge.into, 40, 3 * MIB, "view")
    if change is None:  # a source the pieces never reported
        merge = Merge(merge.dataset, merge.event_name, (*merge.sources, _file(7, MIB)), merge.into)
        written = dataclasses.replace(written, rows=50)
    else:
        written = change(written)
    with pytest.raises(AuditError, match=says):
        with_merges(_totals(files), [(merge, written)])
