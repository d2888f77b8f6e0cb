"""One writer per date: the lock object on a local disk and on S3 (conditional writes against
moto's server): exclusive, named in the refusal, taken over only when expired or dead."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from processing.adapters.date_lock import DateLock, holder_of
from processing.emulator.s3 import S3Server
from processing.spec.errors import ConfigError, DateLockedError, LockLostError
from tests.conftest import ROOT
from tests.s3.conftest import Lake

NOW = dt.datetime(2023, 10, 24, 6, tzinfo=dt.UTC)


def _path(lake: Lake) -> tuple[Any, str]:
    fs, root = lake
    return fs, f"{root}/_locks/event_date=2023-10-23.json"


def test_a_second_run_is_refused_with_the_holder_named(lake: Lake) -> None:
    fs, path = _path(lake)
    first = DateLock(fs, path, "run-1", ttl_seconds=600)
    first.acquire()
    with pytest.raises(DateLockedError, match=r"run run-1 on .* holds") as refused:
        DateLock(fs, path, "run-2", ttl_seconds=600).acquire()
    assert "until 20" in str(refused.value)  # when it expires
    holder = holder_of(fs, path)
    assert holder is not None and holder.run_id == "run-1"
    first.release()
    assert holder_of(fs, path) is None
    second = DateLock(fs, path, "run-2", ttl_seconds=600)
    second.acquire()
    second.release()


def test_an_expired_lock_is_taken_over_and_its_old_holder_cannot_publish(lake: Lake) -> None:
    fs, path = _path(lake)
    old = DateLock(fs, path, "run-1", ttl_seconds=60, clock=lambda: NOW)
    old.acquire()
    later = NOW + dt.timedelta(seconds=61)
    taker = DateLock(fs, path, "run-2", ttl_seconds=60, clock=lambda: later)
    taker.acquire()  # If-Match on the expired lock's ETag
    with pytest.raises(LockLostError, match=r"lost its lock .*\(now held by run run-2"):
        old.check()
    old.release()  # unaware it lost the lock: its conditional delete must not apply
    holder = holder_of(fs, path)
    assert holder is not None and holder.run_id == "run-2"
    taker.check()  # still the taker's
    taker.release()


def test_a_lock_not_yet_expired_is_not_taken(lake: Lake) -> None:
    fs, path = _path(lake)
    DateLock(fs, path, "run-1", ttl_seconds=60, clock=lambda: NOW).acquire()
    almost = NOW + dt.timedelta(seconds=59)
    with pytest.raises(DateLockedError):
        DateLock(fs, path, "run-2", ttl_seconds=60, clock=lambda: almost).acquire()


def test_the_lock_of_a_killed_process_on_this_host_is_taken_at_once(
    lake: Lake, s3_server: S3Server
) -> None:
    fs, path = _path(lake)
    on_s3 = "s3" in fs.protocol
    url = f"s3://{path}" if on_s3 else path
    options = {"endpoint_url": s3_server.endpoint_url} if on_s3 else {}
    code = (
        "import time\n"
        "from processing.adapters.date_lock import DateLock\n"
        "from processing.adapters.storage import filesystem\n"
        f"fs, path = filesystem({url!r}, {options!r})\n"
        "DateLock(fs, path, 'killed-run', ttl_seconds=3600).acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"held"
    proc.kill()
    proc.wait()
    holder = holder_of(fs, path)
    assert holder is not None and holder.run_id == "killed-run" and holder.pid == proc.pid
    DateLock(fs, path, "next-run", ttl_seconds=3600).acquire()  # no wait for its hour


def test_held_keeps_refreshing_so_a_slow_run_keeps_its_date(lake: Lake) -> None:
    fs, path = _path(lake)
    with DateLock(fs, path, "slow-run", ttl_seconds=2.0).held() as lock:
        time.sleep(4.5)  # more than two times to live
        with pytest.raises(DateLockedError):
            DateLock(fs, path, "run-2", ttl_seconds=2.0).acquire()
        lock.check()
    assert holder_of(fs, path) is None  # released at the end


def test_of_runs_racing_for_a_free_date_exactly_one_wins(lake: Lake) -> None:
    fs, path = _path(lake)
    outcomes: list[str] = []
    start = threading.Barrier(6)

    def contend(i: int) -> None:
        lock = DateLock(fs, path, f"run-{i}", ttl_seconds=600)
        start.wait()
        try:
            lock.acquire()
            outcomes.append("won")
        except DateLockedError:
            outcomes.append("refused")

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused"] * 5 + ["won"]


def test_a_missing_bucket_is_a_configuration_error(s3) -> None:
    lock = DateLock(s3, "no-such-bucket-here/lake/_locks/x.json", "run-1", ttl_seconds=60)
    with pytest.raises(ConfigError, match="bucket does not exist"):
        lock.acquire()


def test_a_lock_write_applied_but_answered_with_an_error_stays_ours(
    s3_server: S3Server, s3, bucket: str
) -> None:
    path = f"{bucket}/lake/_locks/event_date=2023-10-23.json"
    faults = s3_server.faults
    faults.path_contains, faults.after_serving, faults.methods = "_locks", True, frozenset({"PUT"})
    faults.every, faults.limit = 1, 1
    lock = DateLock(s3, path, "run-1", ttl_seconds=600)
    lock.acquire()  # the create was applied; its retry met 412; the lock read back is ours
    faults.limit = 2
    lock.check()  # the same for a refresh
    assert faults.injected == 2
    faults.reset()
    with pytest.raises(DateLockedError, match="run run-1"):
        DateLock(s3, path, "run-2", ttl_seconds=600).acquire()
    lock.release()
    assert holder_of(s3, path) is None
