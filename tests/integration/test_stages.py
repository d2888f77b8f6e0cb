"""The stages of a run as separate steps, as Airflow runs them: a retried process stages under
its own id, a publish retried after its switch reports the publish instead of redoing it, and
finish lets go of the date whatever happened."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import fsspec
import pytest

import processing
from processing.adapters.date_lock import holder_of
from processing.app import stages
from processing.logic.layout import Layout
from processing.spec.settings import Settings
from tests.conftest import DATA, tree_digest

pytestmark = pytest.mark.slow

DATE = dt.date(2023, 10, 23)


def _settings(dest: Path, run_id: str = "R") -> Settings:
    return Settings.load(
        {}, date=DATE, source=str(DATA / "sample_day.jsonl.gz"), dest=str(dest), workers=1,
        run_id=run_id,
    )  # fmt: skip


def _staged_ids(dest: Path) -> set[str]:
    staging = dest / "_staging" / f"event_date={DATE}"
    return {p.name.removeprefix("run_id=") for p in staging.glob("run_id=*")}


def test_a_retried_process_stages_under_its_own_id_and_publishes_from_it(tmp_path: Path) -> None:
    dest = tmp_path / "lake"
    settings = _settings(dest)
    stages.begin(settings, "R")
    assert stages.process(settings, "R")["staging_id"] == "R"
    assert _staged_ids(dest) == {"R"}

    retried = stages.process(settings, "R", attempt=2)  # a new try of the task
    assert retried["staging_id"] == "R-a2"
    assert _staged_ids(dest) == {"R-a2"}  # the first try's files are gone
    stages.audit(settings, "R")
    report = stages.publish(settings, "R")
    m = report.manifest
    assert m["run_id"] == "R-a2"
    assert m["rows_read"] == retried["rows_read"]
    assert set(m["stage_seconds"]) == {"plan", "process", "audit"}  # each stage's own time
    assert all(0 <= s < m["duration_seconds"] for s in m["stage_seconds"].values())
    assert m["rejected_share"] == round(m["rows_rejected"] / m["rows_read"], 6) > 0
    assert _staged_ids(dest) == set()
    assert not (dest / "_staging" / f"event_date={DATE}").exists()


def _audited_over_first(dest: Path) -> Settings:
    """Run "first" publishes the date; run R is then begun, processed and audited."""
    assert processing.run(_settings(dest, "first")).manifest["run_id"] == "first"
    settings = _settings(dest)
    stages.begin(settings, "R")
    stages.process(settings, "R")
    stages.audit(settings, "R")
    return settings


def test_a_publish_retried_after_its_switch_reports_it_and_keeps_the_previous_version(
    tmp_path: Path,
) -> None:
    dest = tmp_path / "lake"
    settings = _audited_over_first(dest)
    runs = dest / "_staging" / f"event_date={DATE}" / "_runs"
    kept = {p.name: p.read_bytes() for p in runs.iterdir()}
    stages.publish(settings, "R")
    previous = tree_digest(dest / "_previous")
    published = tree_digest(dest / "events") | tree_digest(dest / "rejected")

    runs.mkdir(parents=True)  # the task died after the switch, before forgetting its state
    for name, data in kept.items():
        (runs / name).write_bytes(data)
    again = stages.publish(settings, "R")  # Airflow retries it
    assert again.manifest["run_id"] == "R"
    assert tree_digest(dest / "_previous") == previous  # still "first", for a rollback
    assert tree_digest(dest / "events") | tree_digest(dest / "rejected") == published
    assert not runs.exists()


def test_finish_after_a_failure_removes_the_staging_and_releases_the_date(tmp_path: Path) -> None:
    dest = tmp_path / "lake"
    settings = _settings(dest)
    stages.begin(settings, "R")
    stages.process(settings, "R")  # then audit fails, say
    lock = Layout(str(dest)).lock(DATE)
    fs = fsspec.filesystem("file")
    assert holder_of(fs, lock).run_id == "R"
    outcome = stages.finish(settings, "R")
    assert "released the date" in outcome
    assert holder_of(fs, lock) is None
    # what the run found stays for people to look at: its rejected rows and quality report
    assert "kept for inspection" in outcome
    run = dest / "_staging" / f"event_date={DATE}" / "run_id=R"
    kept = {p.relative_to(run).parent.as_posix() for p in run.rglob("*") if p.is_file()}
    assert kept == {"rejected", "events/_reports"}  # not its events
    assert {p.name.split("-")[0] for p in (run / "events" / "_reports").iterdir()} >= {"quality"}
    assert "not this run's" in stages.finish(settings, "R")  # idempotent
    stages.begin(settings.replace(run_id="S"), "S")  # the next run of the date removes them
    assert _staged_ids(dest) <= {"S"}


@pytest.mark.parametrize("lost", ["a-file", "the-whole-staging"])
def test_a_retried_publish_whose_staging_was_abandoned_does_not_claim_success(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lost: str
) -> None:
    from processing.adapters import publish as wap
    from processing.spec.errors import LockLostError

    dest = tmp_path / "lake"
    settings = _audited_over_first(dest)

    def crash(*args: object, **kwargs: object) -> float:
        raise RuntimeError("the task died right after marking its publish")

    with monkeypatch.context() as patch:
        patch.setattr(wap, "_complete", crash)
        with pytest.raises(RuntimeError):
            stages.publish(settings, "R")
    fs = fsspec.filesystem("file")
    holder = holder_of(fs, Layout(str(dest)).lock(DATE))
    assert holder is not None and holder.publishing is not None  # the intent, in the lock
    assert holder.publishing.staging_id == "R"
    staged = dest / "_staging" / f"event_date={DATE}" / "run_id=R"
    if lost == "a-file":  # its staging lost a file
        next(staged.rglob("*.parquet")).unlink()
    else:  # all of it (a person, a lifecycle rule)
        fs.rm(str(staged), recursive=True)

    with pytest.raises(LockLostError, match="abandoned"):
        stages.publish(settings, "R")  # the retry must not report the old version as its own
    assert processing.read_manifest(str(dest), DATE)["run_id"] == "first"  # type: ignore[index]
    assert not staged.exists()
    holder = holder_of(fs, Layout(str(dest)).lock(DATE))
    assert holder is None or holder.publishing is None  # resolved: nothing left open


def test_a_failed_run_that_lost_its_date_keeps_nothing_for_inspection(tmp_path: Path) -> None:
    """Another run holds the date now (and may be completing a publish from this staging):
    the failed run must not write into its staging or remove its events for inspection."""
    from processing.adapters.date_lock import DateLock
    from processing.app.context import date_lock
    from processing.spec.errors import LockLostError

    dest = tmp_path / "lake"
    settings = _settings(dest)
    stages.begin(settings, "R")
    stages.process(settings, "R")
    fs, layout = fsspec.filesystem("file"), Layout(str(dest))
    mine = date_lock(settings, fs, layout, "R", resume=True)
    mine.acquire()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    DateLock(fs, layout.lock(DATE), "S", ttl_seconds=600, clock=lambda: later).acquire()
    with pytest.raises(LockLostError):
        mine.check()
    assert stages.discard(settings, "R", fs=fs, layout=layout, lock=mine) is None
    assert not list((dest / "_staging").rglob("quality-*"))
