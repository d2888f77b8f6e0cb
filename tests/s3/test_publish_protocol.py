"""Write-audit-publish, step by step, on a local disk and on S3 (moto's server): a publish that
dies after any step is completed by the next holder of the date, readers always find one complete
version, and a rollback restores the previous version (same rows and bytes, new names)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from processing.adapters import publish as wap
from processing.adapters.date_lock import DateLock, holder_of
from processing.logic.layout import Layout, retag
from processing.spec.errors import ConfigError, DamagedError, LockLostError
from tests.faults.storage_steps import wrap_steps
from tests.kept_version import previous_manifest
from tests.s3.conftest import Lake
from tests.tags import run_tag

DATE = dt.date(2023, 10, 23)
OTHER = dt.date(2023, 10, 24)
#: Later holders' clocks: the lock of a holder that died (or stopped) has expired by then.
LATER = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)


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
    if manifest is None:
        return None
    return {k: v for k, v in manifest.items() if k not in {"publish_id"}}


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
    return {"run_id": run_id, "date": DATE.isoformat(), "tag": tag, "files": files}


def _data(manifest: dict[str, Any], entry: dict[str, Any]) -> bytes:
    """A file's bytes: its version's run id and its name before any rollback renamed it."""
    original = retag(entry["path"], run_tag(manifest["run_id"]))
    return f"{manifest['run_id']}:{original}".encode()


def _stage(fs: Any, layout: Layout, date: dt.date, manifest: dict[str, Any]) -> None:
    events, rejected = layout.staged(date, manifest["run_id"])
    for f in manifest["files"]:
        path = f"{events if f['dataset'] == 'events' else rejected}/{f['path']}"
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(path, _data(manifest, f))


def _expected(manifest: dict[str, Any]) -> dict[str, bytes]:
    """What the published date holds when ``manifest``'s version is published."""
    files = {f"{f['dataset']}/{f['path']}": _data(manifest, f) for f in manifest["files"]}
    return files | {
        "events/_manifest.json": json.dumps(manifest, indent=2).encode(),
        "events/_SUCCESS": b"",
    }


def _lock(fs: Any, layout: Layout, run_id: str, date: dt.date = DATE, **kwargs: Any) -> DateLock:
    lock = DateLock(fs, layout.lock(date), run_id, ttl_seconds=600, **kwargs)
    lock.acquire()
    return lock


def _publish(fs: Any, layout: Layout, manifest: dict[str, Any], date: dt.date = DATE) -> Any:
    """A whole run's part of the protocol: take the date, prepare, publish, let go."""
    lock = _lock(fs, layout, manifest["run_id"], date)
    wap.prepare(fs, layout, date, manifest["run_id"], lock)
    _stage(fs, layout, date, manifest)
    outcome = wap.publish(fs, layout, date, manifest["run_id"], manifest, fence=lock)
    lock.release()
    return outcome


def _rollback(fs: Any, layout: Layout, rollback_id: str, **lock: Any) -> Any:
    held = _lock(fs, layout, rollback_id, **lock)
    manifest, _ = wap.rollback(fs, layout, DATE, rollback_id, tag=run_tag(rollback_id), fence=held)
    held.release()
    return manifest


OLD = _version("old-run", ("view", "click", "search"))
NEW = _version("new-run", ("view", "purchase"), rejected=False)


@pytest.fixture
def published_old(lake: Lake) -> tuple[Any, Layout]:
    """OLD published for DATE (and for OTHER); NEW staged for DATE."""
    fs, root = lake
    layout = Layout(root)
    for date in (DATE, OTHER):
        _publish(fs, layout, OLD, date)
    _stage(fs, layout, DATE, NEW)
    return fs, layout


def test_publish_replaces_exactly_the_date_and_keeps_the_previous(published_old) -> None:
    fs, layout = published_old
    other = _published(fs, layout, OTHER)
    assert _published(fs, layout) == _expected(OLD)

    lock = _lock(fs, layout, "new-run")
    outcome = wap.publish(fs, layout, DATE, "new-run", NEW, fence=lock)
    assert lock.intent is None  # resolved
    lock.release()

    assert _published(fs, layout) == _expected(NEW)
    assert _published(fs, layout, OTHER) == other
    assert _version_of(previous_manifest(fs, layout, DATE)) == OLD
    assert not fs.exists(layout.staging_date(DATE))
    assert 0 <= outcome.window < 30
    assert holder_of(fs, layout.lock(DATE)) is None


def test_a_run_cannot_reuse_the_published_run_id(published_old) -> None:
    fs, layout = published_old
    with pytest.raises(ConfigError, match="is the one published"):
        wap.prepare(fs, layout, DATE, "old-run", _lock(fs, layout, "x"))


def test_prepare_removes_failed_staging_of_the_date_only(published_old) -> None:
    fs, layout = published_old
    _stage(fs, layout, OTHER, _version("failed-other", ("view",)))
    before = _published(fs, layout)
    wap.prepare(fs, layout, DATE, "next-run", _lock(fs, layout, "next-run"))  # NEW failed
    assert _published(fs, layout) == before
    assert not fs.exists(layout.staging_date(DATE)) or not fs.find(layout.staging_date(DATE))
    assert fs.exists(layout.staging_run(OTHER, "failed-other"))


class _Crash(BaseException):
    """The process dies here (not an Exception: nothing may catch it)."""


def _crash_after(monkeypatch: pytest.MonkeyPatch, steps: int | None) -> list[str]:
    """Make the protocol's storage operations raise _Crash once ``steps`` of them have run
    (None: never; just count them)."""
    done: list[str] = []

    def before(name: str) -> None:
        if len(done) == steps:
            raise _Crash(name)
        done.append(name)

    wrap_steps(monkeypatch.setattr, before)
    return done


#: The storage operations of a publish over a published version, in order.
OPERATIONS = [
    "put_json",  # 1. the staged manifest (then the intent goes into the lock)
    "remove_marker",  # 3. the _SUCCESS marker
    "copy",  # 3. the published version, to _previous
    "swap",  # 3. the previous manifest switched to it
    "delete",  # 3. the version kept before it
    "copy",  # 4. the new version in
    "swap",  # 5. the switch
    "remove_tree",  # 6. the staging
    "delete",  # 6. the old files
    "put_marker",  # 7. the _SUCCESS marker
]
STEPS = len(OPERATIONS)


def test_the_crash_cases_cover_every_step_of_a_publish(
    published_old, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, layout = published_old
    _publish(fs, layout, _version("middle-run", ("view",)))  # so a version is kept before
    _stage(fs, layout, DATE, NEW)
    done = _crash_after(monkeypatch, None)
    lock = _lock(fs, layout, "new-run")
    wap.publish(fs, layout, DATE, "new-run", NEW, fence=lock)
    assert done == OPERATIONS


def _complete_versions(fs: Any, layout: Layout, *versions: dict[str, Any]) -> list[str]:
    """Which versions a reader listing the date finds complete."""
    listed = set(_published(fs, layout))
    return [
        m["run_id"]
        for m in versions
        if {f"{f['dataset']}/{f['path']}" for f in m["files"]} <= listed
    ]


@pytest.mark.parametrize("steps", range(STEPS), ids=lambda n: f"dies-after-{n}-steps")
def test_a_publish_that_dies_anywhere_is_completed_by_the_next_run(
    published_old, monkeypatch: pytest.MonkeyPatch, steps: int
) -> None:
    fs, layout = published_old
    middle = _version("middle-run", ("view",))
    _publish(fs, layout, middle)
    _stage(fs, layout, DATE, NEW)
    _crash_after(monkeypatch, steps)
    with pytest.raises(_Crash):
        wap.publish(fs, layout, DATE, "new-run", NEW, fence=_lock(fs, layout, "new-run"))
    monkeypatch.undo()

    # while it lies dead: the manifest names a complete version; a listing holds one whole
    manifest = _version_of(wap.published_manifest(fs, layout, DATE))
    assert manifest in (middle, NEW)
    assert manifest["run_id"] in _complete_versions(fs, layout, middle, NEW)
    if fs.exists(layout.success_marker(DATE)):  # the marker: the listing is that version alone
        assert _published(fs, layout) == _expected(manifest)

    nxt = _lock(fs, layout, "next-run", clock=lambda: LATER)  # the dead run's lock expired
    if steps > 0:  # its intent was in the lock: the next holder inherits it
        assert nxt.intent is not None and nxt.intent.staging_id == "new-run"
    outcome = wap.prepare(fs, layout, DATE, "next-run", nxt)
    assert nxt.intent is None
    if steps > 0:
        assert outcome.completed == ["new-run"]
        assert _published(fs, layout) == _expected(NEW)
        assert _version_of(previous_manifest(fs, layout, DATE)) == middle
        kept = _expected(middle)
        del kept["events/_SUCCESS"]  # the marker is the published date's only
        assert _tree(fs, layout.previous(DATE)) == kept  # nothing more
    else:  # died before its intent: nothing of it was published
        assert _published(fs, layout) == _expected(middle)
    assert not fs.exists(layout.staging_date(DATE)) or not fs.find(layout.staging_date(DATE))
    assert _published(fs, layout, OTHER) == _expected(OLD)


def test_rollback_restores_the_previous_version_and_can_be_undone(published_old) -> None:
    fs, layout = published_old
    lock = _lock(fs, layout, "new-run")
    wap.publish(fs, layout, DATE, "new-run", NEW, fence=lock)
    lock.release()

    restored = _rollback(fs, layout, "rollback_1")
    tag = run_tag("rollback_1")
    renamed = {**OLD, "files": [{**f, "path": retag(f["path"], tag)} for f in OLD["files"]]}
    assert (restored["run_id"], restored["files"], restored["tag"]) == (
        "old-run",
        renamed["files"],
        tag,
    )
    assert restored["restored_by"] == "rollback_1"
    published = _published(fs, layout)
    data = {k: v for k, v in published.items() if not k.endswith("_manifest.json")}
    assert data == {
        k: v for k, v in _expected(renamed).items() if not k.endswith("_manifest.json")
    }  # the same bytes, file by file, under the rollback's names
    assert _version_of(previous_manifest(fs, layout, DATE)) == NEW

    _rollback(fs, layout, "rollback_2")
    again = _published(fs, layout)
    assert {k for k in again if "purchase" in k}  # NEW's rows are back
    assert _version_of(wap.published_manifest(fs, layout, DATE))["run_id"] == "new-run"
    assert not fs.exists(layout.staging_date(DATE)) or not fs.find(layout.staging_date(DATE))


def test_rollback_needs_a_previous_version(lake: Lake) -> None:
    fs, root = lake
    layout = Layout(root)
    with pytest.raises(ConfigError, match="no previous version"):
        wap.rollback(fs, layout, DATE, "rollback_1", tag="0" * 8, fence=_lock(fs, layout, "r"))


def test_rollback_refuses_a_damaged_previous_version_and_changes_nothing(published_old) -> None:
    fs, layout = published_old
    _publish(fs, layout, NEW)
    kept = f"{layout.previous(DATE)}/events/{OLD['files'][0]['path']}"
    fs.rm_file(kept)
    before = _published(fs, layout)
    with pytest.raises(DamagedError, match="is missing; nothing was rolled back"):
        _rollback(fs, layout, "rollback_1")
    assert _published(fs, layout) == before


# --- what a crash, a reused run id or a lost lock must not do ---------------------------------
def test_a_run_id_reused_after_a_crashed_publish_is_refused_and_the_crash_completed(
    published_old, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, layout = published_old
    _crash_after(monkeypatch, 3)  # after the intent: the publish of new-run is half done
    with pytest.raises(_Crash):
        wap.publish(fs, layout, DATE, "new-run", NEW, fence=_lock(fs, layout, "new-run"))
    monkeypatch.undo()

    with pytest.raises(ConfigError, match="is the one published"):
        lock = _lock(fs, layout, "new-run", clock=lambda: LATER)
        wap.prepare(fs, layout, DATE, "new-run", lock)  # the same id again, e.g. --run-id
    assert _published(fs, layout) == _expected(NEW)  # the crashed publish, completed whole


def test_a_run_that_lost_its_lock_before_its_intent_changes_nothing(published_old) -> None:
    fs, layout = published_old
    before = _published(fs, layout)
    lock = _lock(fs, layout, "new-run")
    _lock(fs, layout, "taker", clock=lambda: LATER)  # took the expired lock meanwhile
    with pytest.raises(LockLostError, match="now held by run taker"):
        wap.publish(fs, layout, DATE, "new-run", NEW, fence=lock)
    assert _published(fs, layout) == before
    holder = holder_of(fs, layout.lock(DATE))
    assert holder is not None and holder.run_id == "taker" and holder.publishing is None


def test_an_intent_whose_staging_lost_files_is_abandoned(
    published_old, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, layout = published_old
    _crash_after(monkeypatch, 3)  # dies after keeping OLD in _previous, before its own copy
    with pytest.raises(_Crash):
        wap.publish(fs, layout, DATE, "new-run", NEW, fence=_lock(fs, layout, "new-run"))
    monkeypatch.undo()
    events, _ = layout.staged(DATE, "new-run")
    fs.rm(f"{events}/event_name=view", recursive=True)  # lost, somehow

    nxt = _lock(fs, layout, "next-run", clock=lambda: LATER)
    outcome = wap.prepare(fs, layout, DATE, "next-run", nxt)
    assert any("abandoned the interrupted publish of new-run" in n for n in outcome.notices)
    assert _published(fs, layout) == _expected(OLD)  # and nothing of NEW is listed
    assert not fs.exists(layout.staging_date(DATE)) or not fs.find(layout.staging_date(DATE))
    assert nxt.intent is None


def test_an_intent_completes_from_files_already_published_when_its_staging_lost_them(
    published_old, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, layout = published_old
    _crash_after(monkeypatch, 5)  # dies after copying NEW in, before the switch
    with pytest.raises(_Crash):
        wap.publish(fs, layout, DATE, "new-run", NEW, fence=_lock(fs, layout, "new-run"))
    monkeypatch.undo()
    events, _ = layout.staged(DATE, "new-run")
    fs.rm(f"{events}/event_name=view", recursive=True)  # the copy in the lake is whole

    nxt = _lock(fs, layout, "next-run", clock=lambda: LATER)
    assert wap.prepare(fs, layout, DATE, "next-run", nxt).completed == ["new-run"]
    assert _published(fs, layout) == _expected(NEW)


def test_a_paused_run_cannot_switch_the_manifest_back(published_old) -> None:
    fs, layout = published_old
    calls: list[int] = []
    other = _version("other-run", ("view",))
    lock = _lock(fs, layout, "new-run")

    class Paused:
        """The run's lock, paused (between checks) while another run publishes the date."""

        intent = property(lambda self: lock.intent)
        mark = staticmethod(lock.mark)
        clear = staticmethod(lock.clear)

        def check(self) -> None:
            calls.append(1)
            if len(calls) == 3:  # just before the switch
                _publish_over(fs, layout, other)
                return  # as if this check had been made just before the pause
            lock.check()

    with pytest.raises(LockLostError):
        wap.publish(fs, layout, DATE, "new-run", NEW, fence=Paused())
    assert _published(fs, layout) == _expected(other)


def _publish_over(fs: Any, layout: Layout, manifest: dict[str, Any]) -> None:
    """Another run takes the date over (its lock expired), resolves what it finds open, and
    publishes its own version."""
    lock = _lock(fs, layout, manifest["run_id"], clock=lambda: LATER)
    wap.prepare(fs, layout, DATE, manifest["run_id"], lock)
    _stage(fs, layout, DATE, manifest)
    wap.publish(fs, layout, DATE, manifest["run_id"], manifest, fence=lock)
    lock.release()


def test_a_retried_rollback_does_not_undo_itself(
    published_old, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, layout = published_old
    lock = _lock(fs, layout, "new-run")
    wap.publish(fs, layout, DATE, "new-run", NEW, fence=lock)
    lock.release()
    _crash_after(monkeypatch, 7)  # the rollback dies after its switch
    with pytest.raises(_Crash):
        _rollback(fs, layout, "rollback_1")
    monkeypatch.undo()

    restored = _rollback(fs, layout, "rollback_2", clock=lambda: LATER)  # the operator retries
    assert restored["run_id"] == "old-run"
    assert restored["restored_by"] == "rollback_1"
    assert _version_of(previous_manifest(fs, layout, DATE)) == NEW


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
        lock = _lock(fs, layout, manifest["run_id"])
        wap.prepare(fs, layout, DATE, manifest["run_id"], lock)
        _stage(fs, layout, DATE, manifest)
        _stage_reports(fs, layout, manifest)
        wap.publish(fs, layout, DATE, manifest["run_id"], manifest, fence=lock)
        lock.release()
    report = f"events/{new['reports'][0]['path']}"
    assert _published(fs, layout)[report] == f"new-run:{new['reports'][0]['path']}".encode()
    assert f"events/{old['reports'][0]['path']}" not in _published(fs, layout)  # no stale one
    assert _version_of(previous_manifest(fs, layout, DATE)) == old  # kept, report and all

    fs.rm_file(f"{layout.events_date(DATE)}/{new['reports'][0]['path']}")  # lost, somehow
    third = _reported(_version("third-run", ("view",)))
    _publish(fs, layout, third)  # and its own report never made it to the staging
    assert _version_of(wap.published_manifest(fs, layout, DATE)) == {**third, "reports": []}
    assert _version_of(previous_manifest(fs, layout, DATE)) == {**new, "reports": []}

    restored = _rollback(fs, layout, "rollback_1")  # the previous, without its lost report
    assert restored["run_id"] == "new-run" and restored["reports"] == []
