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
from processing.spec.errors import AuditError, ConfigError, LockLostError
from tests.s3.conftest import Lake

DATE = dt.date(2023, 10, 23)
OTHER = dt.date(2023, 10, 24)


def _tree(fs: Any, root: str) -> dict[str, bytes]:
    if not fs.exists(root):
        return {}
    return {p[len(root) :].lstrip("/"): _content(p, fs.cat_file(p)) for p in sorted(fs.find(root))}


def _content(path: str, data: bytes) -> bytes:
    """Manifests without the id of the publish that wrote them (unique to each attempt)."""
    if not path.endswith("_manifest.json"):
        return data
    return json.dumps(_version_of(json.loads(data)), indent=2).encode()


def _version_of(manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if manifest is None else {k: v for k, v in manifest.items() if k != "publish_id"}


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
    assert _version_of(wap.previous_manifest(fs, layout, DATE)) == OLD
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


def _crash_after(monkeypatch: pytest.MonkeyPatch, steps: int | None) -> list[str]:
    """Make the publish's storage operations raise _Crash once ``steps`` of them have run
    (None: never; just count them)."""
    done: list[str] = []
    inside: list[str] = []  # an operation made of others counts once
    for name in ("_copy", "_put_json", "_switch_manifest", "_remove", "_remove_tree"):
        real = getattr(wap, name)

        def step(*args: Any, _real: Any = real, _name: str = name) -> Any:
            if inside:
                return _real(*args)
            if len(done) == steps:
                raise _Crash(_name)
            done.append(_name)
            inside.append(_name)
            try:
                return _real(*args)
            finally:
                inside.pop()

        monkeypatch.setattr(wap, name, step)
    return done


#: The storage operations of a publish over a published version, in order (a local disk then
#: also removes the empty staging directory of the date).
OPERATIONS = [
    "_put_json",  # the staged manifest (then the marker)
    "_remove_tree",  # a. the version kept before
    "_copy",  # a. the published version, to _previous
    "_put_json",  # a. its manifest, last
    "_copy",  # b. the new version in
    "_switch_manifest",  # c.
    "_remove",  # d. the old files
    "_remove_tree",  # e. the staging
]
STEPS = len(OPERATIONS)


def test_the_crash_cases_cover_every_step_of_a_publish(
    published_old, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, layout = published_old
    done = _crash_after(monkeypatch, None)
    wap.publish(fs, layout, DATE, "new-run", NEW)
    assert done[:STEPS] == OPERATIONS


def _complete_versions(fs: Any, layout: Layout) -> list[str]:
    """Which versions a reader listing the date finds complete."""
    listed = set(_published(fs, layout))
    return [
        m["run_id"]
        for m in (OLD, NEW)
        if {f"{f['dataset']}/{f['path']}" for f in m["files"]} <= listed
    ]


@pytest.mark.parametrize("steps", range(STEPS), ids=lambda n: f"dies-after-{n}-steps")
def test_a_publish_that_dies_anywhere_is_completed_by_the_next_run(
    published_old, monkeypatch: pytest.MonkeyPatch, steps: int
) -> None:
    fs, layout = published_old
    _crash_after(monkeypatch, steps)
    with pytest.raises(_Crash):
        wap.publish(fs, layout, DATE, "new-run", NEW)
    monkeypatch.undo()

    # while it lies dead: the manifest names a complete version; a listing holds one whole
    manifest = _version_of(wap.published_manifest(fs, layout, DATE))
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
    assert _version_of(restored) == OLD
    assert _published(fs, layout) == old
    assert _version_of(wap.previous_manifest(fs, layout, DATE)) == NEW

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


# --- what a crash, a reused run id or a lost lock must not do ---------------------------------
def test_a_run_id_reused_after_a_crashed_publish_is_refused_and_the_crash_completed(
    published_old, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, layout = published_old
    _crash_after(monkeypatch, 3)  # after the marker: the publish of new-run is half done
    with pytest.raises(_Crash):
        wap.publish(fs, layout, DATE, "new-run", NEW)
    monkeypatch.undo()

    with pytest.raises(ConfigError, match="is the one published"):
        wap.prepare(fs, layout, DATE, "new-run")  # the same id again, e.g. --run-id
    assert _published(fs, layout) == _expected(NEW)  # the crashed publish, completed whole


def _lost(message: str = "taken by run other") -> Any:
    def check() -> None:
        raise LockLostError(message)

    return check


def test_a_run_that_lost_its_lock_leaves_no_marker_and_changes_nothing(published_old) -> None:
    fs, layout = published_old
    before = _published(fs, layout)
    with pytest.raises(LockLostError):
        wap.publish(fs, layout, DATE, "new-run", NEW, check=_lost())
    assert not wap.publishing_started(fs, layout, DATE, "new-run")
    assert _published(fs, layout) == before


def test_a_marked_staging_that_lost_its_files_is_abandoned(
    published_old, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, layout = published_old
    _crash_after(monkeypatch, 5)  # dies after copying the new files in, before the switch
    with pytest.raises(_Crash):
        wap.publish(fs, layout, DATE, "new-run", NEW)
    monkeypatch.undo()
    events, _ = layout.staged(DATE, "new-run")
    fs.rm(f"{events}/event_name=view", recursive=True)  # what a run that took the date over did

    wap.prepare(fs, layout, DATE, "next-run")
    assert _published(fs, layout) == _expected(OLD)  # and the copied-in files are gone
    assert not fs.exists(layout.staging_date(DATE))


@pytest.mark.parametrize("lake", ["s3"], indirect=True)  # a local disk relies on the lock alone
def test_a_paused_run_cannot_switch_the_manifest_back_on_s3(published_old) -> None:
    fs, layout = published_old
    calls: list[int] = []
    other = _version("other-run", ("view",))

    def check() -> None:  # meanwhile another run publishes the date
        calls.append(1)
        if len(calls) == 2:
            _stage(fs, layout, DATE, other)
            wap.publish(fs, layout, DATE, "other-run", other)

    with pytest.raises(LockLostError, match="changed during this publish"):
        wap.publish(fs, layout, DATE, "new-run", NEW, check=check)
    assert _published(fs, layout) == _expected(other)


def test_a_retried_rollback_does_not_undo_itself(
    published_old, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, layout = published_old
    wap.publish(fs, layout, DATE, "new-run", NEW)
    _crash_after(monkeypatch, 6)  # the rollback dies after its switch
    with pytest.raises(_Crash):
        wap.rollback(fs, layout, DATE, "rollback_1")
    monkeypatch.undo()

    restored = wap.rollback(fs, layout, DATE, "rollback_2")  # the operator retries
    assert _version_of(restored) == OLD
    assert _published(fs, layout) == _expected(OLD)


def _reported(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with a quality report beside it, named as its run names it."""
    tag = run_tag(manifest["run_id"])
    report = {"kind": "quality_json", "dataset": "events", "path": f"_reports/quality-{tag}.json"}
    return {**manifest, "reports": [report]}


def _stage_reports(fs: Any, layout: Layout, manifest: dict[str, Any]) -> None:
    events, _ = layout.staged(DATE, manifest["run_id"])
    for r in manifest["reports"]:
        fs.makedirs(f"{events}/_reports", exist_ok=True)
        fs.pipe_file(f"{events}/{r['path']}", f"{manifest['run_id']}:{r['path']}".encode())


def test_reports_move_with_their_version_and_a_lost_one_blocks_nothing(lake: Lake) -> None:
    fs, root = lake
    layout = Layout(root)
    old, new = _reported(OLD), _reported(NEW)
    for manifest in (old, new):
        wap.prepare(fs, layout, DATE, manifest["run_id"])
        _stage(fs, layout, DATE, manifest)
        _stage_reports(fs, layout, manifest)
        wap.publish(fs, layout, DATE, manifest["run_id"], manifest)
    report = f"events/{new['reports'][0]['path']}"
    assert _published(fs, layout)[report] == f"new-run:{new['reports'][0]['path']}".encode()
    assert f"events/{old['reports'][0]['path']}" not in _published(fs, layout)  # no stale one
    assert _version_of(wap.previous_manifest(fs, layout, DATE)) == old  # kept, report and all

    fs.rm_file(f"{layout.events_date(DATE)}/{new['reports'][0]['path']}")  # lost, somehow
    third = _reported(_version("third-run", ("view",)))
    wap.prepare(fs, layout, DATE, "third-run")
    _stage(fs, layout, DATE, third)  # and its own report never made it to the staging
    wap.publish(fs, layout, DATE, "third-run", third)
    assert _version_of(wap.published_manifest(fs, layout, DATE)) == {**third, "reports": []}
    assert _version_of(wap.previous_manifest(fs, layout, DATE)) == {**new, "reports": []}

    wap.rollback(fs, layout, DATE, "rollback_1")  # the previous version, without its lost report
    assert _version_of(wap.published_manifest(fs, layout, DATE)) == {**new, "reports": []}
    assert _published(fs, layout) == _expected({**new, "reports": []})
