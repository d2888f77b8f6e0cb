"""Write-audit-publish, step by step, on a local disk and on S3 (moto's server): a publish that
dies after any step is completed by the next holder of the date, readers always find one complete
version, and a rollback restores the previous version exactly."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from processing.adapters import publish as wap
from processing.logic.layout import Layout, run_tag
from processing.logic.manifest import FileInfo, RunTotals
from processing.spec import schema as s
from processing.spec.errors import AuditError, ConfigError
from tests.s3.conftest import Lake

DATE = dt.date(2023, 10, 23)
OTHER = dt.date(2023, 10, 24)


def _tree(fs: Any, root: str) -> dict[str, bytes]:
    if not fs.exists(root):
        return {}
    return {p[len(root) :].lstrip("/"): fs.cat_file(p) for p in sorted(fs.find(root))}


def _published(fs: Any, layout: Layout, date: dt.date = DATE) -> dict[str, bytes]:
    return {f"events/{k}": v for k, v in _tree(fs, layout.events_date(date)).items()} | {
        f"rejected/{k}": v for k, v in _tree(fs, layout.rejected_date(date)).items()
    }


def _version(run_id: str, events: tuple[str, ...], rejected: bool = True) -> dict[str, Any]:
    """A manifest whose files are named as the run ``run_id`` names them."""
    tag = run_tag(run_id)
    files = [
        {"dataset": "events", "path": f"event_name={e}/part-00000-000-{tag}.parquet"}
        for e in events
    ]
    if rejected:
        files.append({"dataset": "rejected", "path": f"part-00000-000-{tag}.parquet"})
    return {"run_id": run_id, "date": DATE.isoformat(), "files": files}


def _stage(fs: Any, layout: Layout, date: dt.date, manifest: dict[str, Any]) -> None:
    events, rejected = layout.staged(date, manifest["run_id"])
    for f in manifest["files"]:
        path = f"{events if f['dataset'] == 'events' else rejected}/{f['path']}"
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(path, f"{manifest['run_id']}:{f['path']}".encode())


def _expected(manifest: dict[str, Any]) -> dict[str, bytes]:
    """What the published date holds when ``manifest``'s version is published."""
    files = {
        f"{f['dataset']}/{f['path']}": f"{manifest['run_id']}:{f['path']}".encode()
        for f in manifest["files"]
    }
    return files | {"events/_manifest.json": json.dumps(manifest, indent=2).encode()}


OLD = _version("old-run", ("view", "click", "search"))
NEW = _version("new-run", ("view", "purchase"), rejected=False)


@pytest.fixture
def published_old(lake: Lake) -> tuple[Any, Layout]:
    """OLD published for DATE (and another version for OTHER); NEW staged for DATE."""
    fs, root = lake
    layout = Layout(root)
    for date in (DATE, OTHER):
        wap.prepare(fs, layout, date, "old-run")
        _stage(fs, layout, date, OLD)
        wap.publish(fs, layout, date, "old-run", OLD)
    _stage(fs, layout, DATE, NEW)
    return fs, layout


def test_publish_replaces_exactly_the_date_and_keeps_the_previous(published_old) -> None:
    fs, layout = published_old
    other = _published(fs, layout, OTHER)
    assert _published(fs, layout) == _expected(OLD)

    window = wap.publish(fs, layout, DATE, "new-run", NEW)

    assert _published(fs, layout) == _expected(NEW)
    assert _published(fs, layout, OTHER) == other
    assert wap.previous_manifest(fs, layout, DATE) == OLD
    assert not fs.exists(layout.staging_date(DATE))
    assert 0 <= window < 30


def test_a_run_cannot_reuse_the_published_run_id(published_old) -> None:
    fs, layout = published_old
    with pytest.raises(ConfigError, match="is the one published"):
        wap.prepare(fs, layout, DATE, "old-run")


def test_prepare_removes_failed_staging_of_the_date_only(published_old) -> None:
    fs, layout = published_old
    _stage(fs, layout, OTHER, _version("failed-other", ("view",)))
    before = _published(fs, layout)
    wap.prepare(fs, layout, DATE, "next-run")  # NEW never started publishing: it failed
    assert _published(fs, layout) == before
    assert not fs.exists(layout.staging_date(DATE))
    assert fs.exists(layout.staging_run(OTHER, "failed-other"))


class _Crash(BaseException):
    """The process dies here (not an Exception: nothing may catch it)."""


def _crash_after(monkeypatch: pytest.MonkeyPatch, steps: int) -> list[str]:
    """Make the publish's storage operations raise _Crash once ``steps`` of them have run."""
    done: list[str] = []
    for name in ("_copy", "_put_json", "_remove", "_remove_tree"):
        real = getattr(wap, name)

        def step(*args: Any, _real: Any = real, _name: str = name) -> Any:
            if len(done) == steps:
                raise _Crash(_name)
            done.append(_name)
            return _real(*args)

        monkeypatch.setattr(wap, name, step)
    return done


def _complete_versions(fs: Any, layout: Layout) -> list[str]:
    """Which versions a reader listing the date finds complete."""
    listed = set(_published(fs, layout))
    return [
        m["run_id"]
        for m in (OLD, NEW)
        if {f"{f['dataset']}/{f['path']}" for f in m["files"]} <= listed
    ]


@pytest.mark.parametrize("steps", range(9), ids=lambda n: f"dies-after-{n}-steps")
def test_a_publish_that_dies_anywhere_is_completed_by_the_next_run(
    published_old, monkeypatch: pytest.MonkeyPatch, steps: int
) -> None:
    fs, layout = published_old
    done = _crash_after(monkeypatch, steps)
    try:
        wap.publish(fs, layout, DATE, "new-run", NEW)
        died = False
    except _Crash:
        died = True
    monkeypatch.undo()
    assert died or len(done) <= steps

    # while it lies dead: the manifest names a complete version; a listing holds one whole
    manifest = wap.published_manifest(fs, layout, DATE)
    assert manifest in (OLD, NEW)
    assert manifest["run_id"] in _complete_versions(fs, layout)

    wap.prepare(fs, layout, DATE, "next-run")  # what the next run of the date does first

    started = wap.publishing_started  # the marker is written after the staged manifest
    assert not started(fs, layout, DATE, "new-run")
    assert _published(fs, layout) in (_expected(NEW), _expected(OLD))
    if steps > 0:  # the marker went down with the first step: the publish is completed
        assert _published(fs, layout) == _expected(NEW)
    assert not fs.exists(layout.staging_date(DATE))
    assert _published(fs, layout, OTHER) == _expected(OLD) | {}


def test_rollback_restores_the_previous_version_exactly_and_can_be_undone(published_old) -> None:
    fs, layout = published_old
    old = _published(fs, layout)
    wap.publish(fs, layout, DATE, "new-run", NEW)
    new = _published(fs, layout)

    restored = wap.rollback(fs, layout, DATE, "rollback-1")
    assert restored == OLD
    assert _published(fs, layout) == old
    assert wap.previous_manifest(fs, layout, DATE) == NEW

    wap.rollback(fs, layout, DATE, "rollback-2")
    assert _published(fs, layout) == new
    assert not fs.exists(layout.staging_date(DATE))


def test_rollback_needs_a_previous_version(lake: Lake) -> None:
    fs, root = lake
    with pytest.raises(ConfigError, match="no previous version"):
        wap.rollback(fs, Layout(root), DATE, "rollback-1")


# --- audit -----------------------------------------------------------------------------------
def _events_file(fs: Any, path: str, times: list[dt.datetime]) -> FileInfo:
    table = pa.table(
        {
            s.EVENT_DATETIME: pa.array(times, pa.timestamp("us", tz="UTC")),
            s.USER_ID: ["u"] * len(times),
            s.PLATFORM: ["web"] * len(times),
            s.PRODUCT_NAME: pa.array([None] * len(times), pa.string()),
            s.SKU: pa.array([None] * len(times), pa.string()),
        }
    )
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as f:
        pq.write_table(table, f)
    return FileInfo("events", path.split("/events/", 1)[1], len(times), 0, "view")


def _totals(files: list[FileInfo]) -> RunTotals:
    valid = sum(f.rows for f in files)
    return RunTotals(valid, valid, 0, {}, {"view": valid}, tuple(files))


NOON = dt.datetime(2023, 10, 23, 12, tzinfo=dt.UTC)


def test_audit_accepts_what_the_tasks_reported(lake: Lake) -> None:
    fs, root = lake
    layout = Layout(root)
    events, _ = layout.staged(DATE, "r1")
    good = _events_file(fs, f"{events}/event_name=view/part-00000-000-aaaa.parquet", [NOON] * 3)
    wap.audit(fs, layout, DATE, "r1", _totals([good]))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "missing"),
        ("stray", "files no task reported"),
        ("rows", "holds 3 rows, reported 4"),
        ("model", "does not match the output model"),
    ],
)
def test_audit_refuses_staging_that_does_not_match(lake: Lake, case: str, message: str) -> None:
    fs, root = lake
    layout = Layout(root)
    events, _ = layout.staged(DATE, "r1")
    times = [NOON, NOON, NOON + dt.timedelta(days=1)] if case == "model" else [NOON] * 3
    good = _events_file(fs, f"{events}/event_name=view/part-00000-000-aaaa.parquet", times)
    reported = [good]
    if case == "missing":
        absent = "event_name=view/part-00001-000-aaaa.parquet"
        reported.append(FileInfo("events", absent, 1, 0, "view"))
    if case == "stray":
        _events_file(fs, f"{events}/event_name=view/part-00009-000-aaaa.parquet", [NOON])
    if case == "rows":
        reported = [FileInfo(good.dataset, good.path, 4, 0, "view")]
    with pytest.raises(AuditError, match=message):
        wap.audit(fs, layout, DATE, "r1", _totals(reported))


@pytest.mark.parametrize("tail_bytes", [16, 1 << 20], ids=["footer-beyond-the-tail", "whole"])
def test_audit_reads_row_counts_however_the_footer_falls(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, tail_bytes: int
) -> None:
    fs, root = lake
    layout = Layout(root)
    events, _ = layout.staged(DATE, "r1")
    monkeypatch.setattr(wap, "_TAIL_BYTES", tail_bytes)
    good = _events_file(fs, f"{events}/event_name=view/part-00000-000-aaaa.parquet", [NOON] * 5)
    wap.audit(fs, layout, DATE, "r1", _totals([good]))
    with pytest.raises(AuditError, match="holds 5 rows, reported 6"):
        wrong = FileInfo(good.dataset, good.path, 6, 0, "view")
        wap.audit(fs, layout, DATE, "r1", _totals([wrong]))
