"""How a run ends when it is stopped or refused: SIGTERM (as Kubernetes and Airflow stop it) at
work and during its publish, a day with too many event names, and a stage whose lock was taken
over. Each says what was (not) published and exits with its documented code."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pytest

import processing
from processing.adapters import publish as wap
from processing.adapters.date_lock import DateLock, holder_of
from processing.app import stages
from processing.logic.layout import Layout
from processing.spec.errors import LockLostError
from processing.spec.settings import Settings
from tests.conftest import DATA, ROOT, tree_digest
from tests.kept_version import previous_manifest

pytestmark = pytest.mark.slow

DATE = "2023-10-23"
DAY = dt.date.fromisoformat(DATE)
SAMPLE = DATA / "sample_day.jsonl.gz"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROCESSING_")}
    return {**env, "PYTHONPATH": str(ROOT)}


def _published(dest: Path) -> dict[str, str]:
    return tree_digest(dest / "events") | tree_digest(dest / "rejected")


def _staging_files(dest: Path) -> list[Path]:
    return [p for p in (dest / "_staging").rglob("*") if p.is_file()]


def test_sigterm_at_work_stops_releases_the_date_and_publishes_nothing(
    cli, generate, tmp_path: Path
) -> None:
    dest = tmp_path / "lake"
    assert cli("run", "--date", DATE, "--source", SAMPLE, "--dest", dest).returncode == 0
    before = _published(dest)
    big = generate("big.parquet", DATE, 400_000, bad=0.01, seed=3)
    proc = subprocess.Popen(
        [sys.executable, "-m", "processing", "run", "--date", DATE, "--source", str(big),
         "--dest", str(dest), "--workers", "1", "--threads-per-worker", "1",
         "--piece-rows", "15000", "--batch-rows", "15000"],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not any(p.suffix == ".parquet" for p in _staging_files(dest)):
        assert proc.poll() is None and time.monotonic() < deadline, "never staged a file"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # once: it stops the work and cleans up
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == (
        "terminated: the lock was released; nothing was published"
    )
    assert "Traceback" not in stderr
    assert holder_of(fsspec.filesystem("file"), Layout(str(dest)).lock(DAY)) is None
    assert not [p for p in _staging_files(dest) if p.suffix == ".parquet"]
    assert _published(dest) == before


def test_sigterm_during_the_publish_leaves_it_for_the_next_run_to_complete(
    cli, tmp_path: Path
) -> None:
    dest = tmp_path / "lake"
    assert cli("run", "--date", DATE, "--source", SAMPLE, "--dest", dest).returncode == 0
    proc = subprocess.Popen(  # stops itself just before copying its files in, intent marked
        [sys.executable, "-m", "tests.faults.suspend_at", "copy", "2", "--", "run", "--date",
         DATE, "--source", str(SAMPLE), "--dest", str(dest), "--run-id", "terminated"],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("suspended before"):
            break
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # pending until it runs again
    proc.send_signal(signal.SIGCONT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "terminated: the publish had begun" in stderr.strip().splitlines()[-1]
    holder = holder_of(fsspec.filesystem("file"), Layout(str(dest)).lock(DAY))
    assert holder is not None and holder.publishing is not None  # left, expired, for the next

    nxt = cli("run", "--date", DATE, "--source", SAMPLE, "--dest", dest, "--run-id", "next")
    assert nxt.returncode == 0, nxt.stderr  # at once: no wait for the lock's time to live
    assert "completed the interrupted publish of terminated" in nxt.stdout
    kept = previous_manifest(fsspec.filesystem("file"), Layout(str(dest)), DAY)
    assert kept is not None and kept["run_id"] == "terminated"
    assert processing.read_manifest(str(dest), DAY)["run_id"] == "next"  # type: ignore[index]


def _ids_published(dest: Path) -> set[str]:
    import pyarrow.dataset as ds

    table = ds.dataset(dest / "events", format="parquet", partitioning="hive").to_table(
        columns=["user_id"]
    )
    return set(table.column("user_id").to_pylist())


def test_sigterm_during_a_forgets_publish_is_finished_by_the_same_forget(
    cli, tmp_path: Path
) -> None:
    """forget publishes through the run's protocol: stopped by SIGTERM once its publish has
    begun, the date stays whole (verify), and the same request run again finishes it: no row
    of the users is left, every other user's are."""
    dest = tmp_path / "lake"
    assert cli("run", "--date", DATE, "--source", SAMPLE, "--dest", dest).returncode == 0
    before = _ids_published(dest)
    request = tmp_path / "forget.txt"
    request.write_text("user_0000000\nuser_0000023\n")  # in every file of the sample
    assert {"user_0000000", "user_0000023"} <= before
    proc = subprocess.Popen(  # stops itself just before copying its files in, intent marked
        [sys.executable, "-m", "tests.faults.suspend_at", "copy", "2", "--", "forget",
         "--dest", str(dest), "--user-ids", str(request)],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("suspended before"):
            break
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # pending until it runs again
    proc.send_signal(signal.SIGCONT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "terminated: the publish had begun" in stderr.strip().splitlines()[-1]
    assert "Traceback" not in stderr
    verified = cli("verify", "--date", DATE, "--dest", dest)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert _ids_published(dest) in (before, before - {"user_0000000", "user_0000023"})

    again = cli("forget", "--dest", dest, "--user-ids", request)
    assert again.returncode == 0, again.stderr  # at once: no wait for the lock's time to live
    assert "completing the interrupted publish of forget_" in again.stderr
    assert _ids_published(dest) == before - {"user_0000000", "user_0000023"}
    verified = cli("verify", "--date", DATE, "--dest", dest)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _day_with_event_names(path: Path, names: list[str]) -> Path:
    base = {
        "timestamp": f"{DATE}T12:00:00Z",
        "user_identifiers": {"platform": "web", "id": "u1"},
        "product_information": {"name": None, "SKU": None},
    }
    path.write_text("".join(json.dumps({**base, "event_name": n}) + "\n" for n in names))
    return path


def test_a_day_of_too_many_event_names_is_refused_before_it_writes_them(
    cli, tmp_path: Path
) -> None:
    source = _day_with_event_names(tmp_path / "day.jsonl", [f"event_{i}" for i in range(5000)])
    dest = tmp_path / "lake"
    started = time.monotonic()
    done = cli("run", "--date", DATE, "--source", source, "--dest", dest)
    assert done.returncode == 3, done.stderr
    assert "more than 1000 distinct valid event names" in done.stderr
    assert "--max-event-names" in done.stderr
    assert time.monotonic() - started < 30  # not a minute of 5,000 partitions
    assert not (dest / "events").exists()
    assert not [p for p in _staging_files(dest) if p.suffix == ".parquet"]


def test_the_limit_holds_for_the_day_even_when_no_piece_alone_passes_it(
    cli, tmp_path: Path
) -> None:
    names = ["view", "click"] * 50 + ["search", "login"] * 50
    source = _day_with_event_names(tmp_path / "day.jsonl", names)
    dest = tmp_path / "lake"
    common = ["--date", DATE, "--source", source, "--dest", dest, "--batch-rows", "100"]
    done = cli("run", *common, "--max-event-names", "3", "--piece-rows", "1")
    assert done.returncode == 3, done.stderr
    assert "more than 3 distinct valid event names (4 seen" in done.stderr
    assert cli("run", *common, "--max-event-names", "4").returncode == 0


def test_a_run_that_lost_its_lock_before_its_audit_says_so(tmp_path: Path) -> None:
    dest = tmp_path / "lake"
    settings = Settings.load(
        {}, date=DAY, source=str(SAMPLE), dest=str(dest), workers=1, run_id="R"
    )  # fmt: skip
    fs, layout = fsspec.filesystem("file"), Layout(str(dest))
    lock = DateLock(fs, layout.lock(DAY), "R", ttl_seconds=60)  # held, not refreshed: paused
    lock.acquire()
    stages.begin(settings, "R", lock=lock)
    stages.process(settings, "R", lock=lock)
    # paused past its lock: another run takes the date, removing R's staging and state
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    taker = DateLock(fs, layout.lock(DAY), "taker", ttl_seconds=600, clock=lambda: later)
    taker.acquire()
    wap.prepare(fs, layout, DAY, "taker", taker)
    with pytest.raises(LockLostError, match="lost its lock") as lost:
        stages.audit(settings, "R", lock=lock)  # not "has not processed its pieces"
    assert "has not processed its pieces" in str(lost.value)  # what it then tripped on
