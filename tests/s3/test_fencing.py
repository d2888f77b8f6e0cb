"""Fencing: a run paused at any step of its publish or rollback (a node under pressure, a long
pause) past its lock's time to live, while another run takes the date over and publishes, changes
nothing when it resumes. On a local disk and on S3 (moto's server).

The invariant, checked after every case:
- the published date is exactly the second run's version (its manifest, and its files only);
- ``_previous/`` holds exactly one complete version, the one the second run replaced;
- the paused run fails, and its lock is lost; nothing is left open in the date's lock;
- the next run of the date publishes, over the second run's version.

The pause is injected in-process at every *pause point*: before each storage operation of the
protocol, and right after each successful check or write of the lock (the worst moment: the run
has just made sure the date is its own). Its lock expires for the second run by that run's clock.
``tests/integration/test_suspend.py`` does the same with a real SIGSTOP of a whole CLI run.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from typing import Any

import pytest

from processing.adapters import publish as wap
from processing.adapters.date_lock import DateLock, DateLockedError, holder_of
from processing.logic.layout import Layout
from processing.spec.errors import LockLostError
from tests.faults.storage_steps import wrap_steps
from tests.kept_version import previous_manifest
from tests.s3.conftest import Lake
from tests.s3.test_publish_protocol import (
    DATE,
    LATER,
    NEW,
    OLD,
    _expected,
    _publish,
    _published,
    _stage,
    _tree,
    _version,
    _version_of,
)
from tests.tags import run_tag

SECOND = _version("second-run", ("view", "login"))
NEXT = _version("next-run", ("click",))
#: A clock for the run after the second one: its lock expired too.
MUCH_LATER = LATER + dt.timedelta(hours=1)


class Pauses:
    """Counts the pause points of the protocol and, once armed at point ``at``, runs ``meanwhile``
    there (what happens while the paused run sleeps), once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen = 0
        self.at: int | None = None
        self.meanwhile: Callable[[], None] | None = None
        self.inside = False
        wrap_steps(monkeypatch.setattr, lambda _name: self.point())

    def point(self) -> None:
        if self.inside:
            return
        if self.seen == self.at and self.meanwhile is not None:
            self.inside = True
            try:
                self.meanwhile()
            finally:
                self.inside = False
        self.seen += 1

    def fence(self, lock: DateLock) -> Any:
        """``lock``, pausing right after each of its successful writes."""
        pauses = self

        class Fence:
            @property
            def intent(self) -> Any:
                return lock.intent

            def check(self) -> None:
                lock.check()
                pauses.point()

            def mark(self, intent: Any) -> None:
                lock.mark(intent)
                pauses.point()

            def clear(self) -> None:
                lock.clear()
                pauses.point()

        return Fence()


def _takes_over_and_publishes(
    fs: Any, layout: Layout, run_id: str, version: Any, now: dt.datetime
) -> None:
    """A run whose clock says ``now`` (every earlier lock expired by it): it resolves what it
    finds open, then publishes ``version``."""
    lock = DateLock(fs, layout.lock(DATE), run_id, ttl_seconds=600, clock=lambda: now)
    lock.acquire()
    wap.prepare(fs, layout, DATE, run_id, lock)
    _stage(fs, layout, DATE, version)
    wap.publish(fs, layout, DATE, run_id, version, fence=lock)
    lock.release()


def _second_run_publishes(fs: Any, layout: Layout) -> None:
    """The second run: the first's lock has expired by its clock."""
    _takes_over_and_publishes(fs, layout, "second-run", SECOND, LATER)


def _first_run(kind: str, fs: Any, layout: Layout, pauses: Pauses) -> DateLock:
    """The run that gets paused: a publish of NEW over OLD, or a rollback of NEW to OLD."""
    lock = DateLock(fs, layout.lock(DATE), f"first-{kind}", ttl_seconds=600)
    lock.acquire()
    fence = pauses.fence(lock)
    if kind == "publish":
        wap.publish(fs, layout, DATE, "new-run", NEW, fence=fence)
    else:
        wap.rollback(fs, layout, DATE, "rollback_1", tag=run_tag("rollback_1"), fence=fence)
    lock.release()
    return lock


def _lake_for(kind: str, lake: Lake) -> tuple[Any, Layout]:
    fs, root = lake
    layout = Layout(root)
    _publish(fs, layout, OLD)
    if kind == "publish":
        _stage(fs, layout, DATE, NEW)
    else:
        _publish(fs, layout, NEW)  # published NEW, OLD kept: the rollback restores OLD
    return fs, layout


#: The last pause point of each kind of run: after it clears its intent from the lock.
_LAST: dict[str, int] = {}


def _points(kind: str, lake: Lake, monkeypatch: pytest.MonkeyPatch) -> int:
    """How many pause points the first run passes when nothing disturbs it."""
    fs, layout = _lake_for(kind, lake)
    with monkeypatch.context() as patch:
        pauses = Pauses(patch)
        _first_run(kind, fs, layout, pauses)
    _LAST[kind] = pauses.seen - 1
    return pauses.seen


def _check_invariant(fs: Any, layout: Layout, replaced: list[dict[str, Any]]) -> None:
    published = _published(fs, layout)
    # The _SUCCESS marker has one name for every version: the paused run's late delete of it
    # (woken between its last check and the delete) hides the second run's finished date until
    # the next publish (publish.py's docstring); nothing else of the second run's may change.
    marker = published.pop("events/_SUCCESS", None)
    assert marker in (b"", None)
    expected = _expected(SECOND)
    del expected["events/_SUCCESS"]
    assert published == expected  # the second run's version, and nothing else
    kept = _version_of(previous_manifest(fs, layout, DATE))
    assert kept is not None
    assert kept["run_id"] in {m["run_id"] for m in replaced}
    kept_files = {f"{f['dataset']}/{f['path']}" for f in kept["files"]}
    previous = _tree(fs, layout.previous(DATE))
    assert set(previous) == kept_files | {"events/_manifest.json"}  # whole, and nothing more
    holder = holder_of(fs, layout.lock(DATE))
    assert holder is None, holder  # nothing left open, no lock left behind by the paused run


def _next_run_publishes(fs: Any, layout: Layout) -> None:
    _takes_over_and_publishes(fs, layout, "next-run", NEXT, MUCH_LATER)
    assert _version_of(wap.published_manifest(fs, layout, DATE))["run_id"] == "next-run"
    assert _version_of(previous_manifest(fs, layout, DATE))["run_id"] == "second-run"
    assert _published(fs, layout) == _expected(NEXT)  # its marker too
    staging = layout.staging_date(DATE)  # what the paused run wrote there on waking is gone
    assert not fs.exists(staging) or not fs.find(staging)


def _paused_case(
    kind: str, lake: Lake, monkeypatch: pytest.MonkeyPatch, at: int, *, expired: bool = True
) -> None:
    fs, layout = _lake_for(kind, lake)
    refused: list[BaseException] = []

    def meanwhile() -> None:
        if expired:
            _second_run_publishes(fs, layout)
            return
        try:  # the paused run's lock has not expired: the second run is refused
            lock = DateLock(fs, layout.lock(DATE), "second-run", ttl_seconds=600)
            lock.acquire()
        except DateLockedError as e:
            refused.append(e)

    with monkeypatch.context() as patch:
        pauses = Pauses(patch)
        pauses.at, pauses.meanwhile = at, meanwhile
        if not expired:
            _first_run(kind, fs, layout, pauses)  # undisturbed: it publishes
            assert refused
            return
        try:
            _first_run(kind, fs, layout, pauses)
        except LockLostError:
            pass
        except OSError:  # a file the second run had removed: the stages say it lost the lock
            pass
        else:  # only a run paused after its last write (its publish done) may succeed
            assert at == _LAST[kind], at
    _check_invariant(fs, layout, [NEW, OLD])
    _next_run_publishes(fs, layout)


@pytest.mark.parametrize("kind", ["publish", "rollback"])
def test_a_run_paused_at_any_step_past_its_lock_changes_nothing(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    fs, root = lake
    points = _points(kind, (fs, f"{root}/count"), monkeypatch)
    assert points >= 12, points  # every operation and every check of the protocol
    for at in range(points):
        _paused_case(kind, (fs, f"{root}/at-{at}"), monkeypatch, at)


def test_randomised_pauses_and_delays(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeded: the operation, the step and whether the pause outlasts the lock, drawn (16 cases on
    a local disk, 6 on S3, where each case costs a few seconds of requests)."""
    fs, root = lake
    rng = random.Random(20261205)
    points = {
        k: _points(k, (fs, f"{root}/count-{k}"), monkeypatch) for k in ("publish", "rollback")
    }
    for case in range(6 if "s3" in fs.protocol else 16):
        kind = rng.choice(["publish", "rollback"])
        at = rng.randrange(points[kind])
        expired = rng.random() < 0.75
        lake_case = (fs, f"{root}/case-{case}")
        _paused_case(kind, lake_case, monkeypatch, at, expired=expired)
        if not expired:  # the paused run went on and published: a complete version, its own
            layout = Layout(lake_case[1])
            published = _version_of(wap.published_manifest(fs, layout, DATE))
            assert published is not None
            expected = "new-run" if kind == "publish" else "old-run"
            assert published["run_id"] == expected, (case, kind, at)
