"""``expire`` on a lake made by the real ``run`` command: three dates (each published twice, so
each has a previous version; the oldest also with a failed run's staging and an alert marker).
With today's cutoff, the oldest date expires whole, the middle one loses its rejected rows, the
newest is kept. The dry run lists exactly what ``expire`` then removes; kept dates are untouched
byte for byte; ``verify`` passes after; a date a live run holds is skipped (exit 5)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fsspec.implementations.local import LocalFileSystem

from processing.adapters.date_lock import DateLock
from processing.app.cli import main
from processing.logic.layout import Layout
from tests.conftest import tree_digest
from tests.integration.conftest import ROOT

pytestmark = pytest.mark.slow

OLD, MIDDLE, NEW = (dt.date(2023, 10, d) for d in (20, 21, 22))


def _cli(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROCESSING_")}
    done = subprocess.run(
        [sys.executable, "-m", "processing", *map(str, args)],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert not check or done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def made_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lake, made once for the module (each test works on a copy)."""
    root = tmp_path_factory.mktemp("expire")
    lake = root / "lake"
    for date in (OLD, MIDDLE, NEW):
        source = root / f"{date}.jsonl"
        _cli("generate", "--date", date, "--rows", 3000, "--bad-fraction", 0.05, "--out", source)
        for _ in range(2):  # a rerun: the first version is kept for a rollback
            _cli("run", "--date", date, "--source", source, "--dest", lake, "--workers", 1,
                 "--no-performance-report")  # fmt: skip
    source = root / f"{OLD}.jsonl"
    failed = _cli("run", "--date", OLD, "--source", source, "--dest", lake, "--workers", 1,
                  "--max-rejected-fraction", 0.001, check=False)  # fmt: skip
    assert failed.returncode == 4, failed.stderr  # its rejected rows are kept in its staging
    (lake / "_alerts").mkdir()
    (lake / "_alerts" / f"event_date={OLD}.failed").write_text("{}")
    (lake / "_erasures").mkdir()  # another command's audit log: never expire's
    (lake / "_erasures" / "erasure-1.json").write_text('{"rows": 3}')
    return lake


@pytest.fixture
def lake(made_lake: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "lake"
    shutil.copytree(made_lake, copy)
    return copy


def _days(date: dt.date) -> str:
    """A retention whose cutoff is ``date``: dates before it expire, ``date`` is kept."""
    return str((dt.datetime.now(dt.UTC).date() - date).days)


RETENTION = ["--keep-days", _days(MIDDLE), "--rejected-keep-days", _days(NEW)]


def _expire(capsys, lake: Path, *flags: str) -> tuple[int, list[str], str]:
    code = main(["expire", "--dest", str(lake), *RETENTION, *flags])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def _of(date: dt.date, files: dict[str, str]) -> dict[str, str]:
    return {p: h for p, h in files.items() if f"event_date={date}" in p}


def _manifest(path: Path) -> dict:
    return json.loads(path.read_text())


def test_the_dry_run_lists_exactly_what_expire_then_removes(capsys, lake: Path) -> None:
    before = tree_digest(lake)
    assert _of(OLD, before) and any("_staging" in p for p in _of(OLD, before))
    rows_rejected = _manifest(lake / f"events/event_date={MIDDLE}/_manifest.json")["rows_rejected"]
    assert rows_rejected > 0

    code, dry, _ = _expire(capsys, lake, "--dry-run")
    assert code == 0
    assert tree_digest(lake) == before  # a dry run removes nothing
    listed = {str(Path(line).relative_to(lake)) for line in dry if line.startswith(str(lake))}
    assert any(line.startswith(f"{OLD}: would expire whole") for line in dry)
    assert any(line.startswith(f"{MIDDLE}: would lose its rejected rows") for line in dry)

    code, done, _ = _expire(capsys, lake)
    assert code == 0, done
    after = tree_digest(lake)
    removed = set(before) - set(after)
    assert removed == listed  # exactly what the dry run listed
    assert {str(Path(line).relative_to(lake)) for line in done if line.startswith(str(lake))} == (
        listed
    )
    assert any(line.startswith(f"{OLD}: expired whole") for line in done)

    # the old date is gone whole: published, previous, staging, alert marker, lock (on a local
    # disk, the lock's empty flock guard stays: see processing.app.retention)
    assert set(_of(OLD, after)) == {f"_locks/event_date={OLD}.json.guard"}
    assert not (lake / "events" / f"event_date={OLD}").exists()
    # the newest date, and the middle one's events, reports and lock files: byte for byte
    assert _of(NEW, after) == _of(NEW, before)
    middle = {p: h for p, h in _of(MIDDLE, before).items() if p in after}
    assert {p for p in _of(MIDDLE, before) if p not in after} == {
        p for p in listed if f"event_date={MIDDLE}" in p
    }
    assert all(after[p] == h for p, h in middle.items() if not p.endswith("_manifest.json"))
    assert all("rejected" in p or "_staging" in p for p in listed if f"event_date={MIDDLE}" in p)
    assert after["_erasures/erasure-1.json"] == before["_erasures/erasure-1.json"]

    # the middle date's manifests no longer list rejected files, and say so
    for manifest in (
        lake / f"events/event_date={MIDDLE}/_manifest.json",
        lake / f"_previous/event_date={MIDDLE}/events/_manifest.json",
    ):
        m = _manifest(manifest)
        assert [f for f in m["files"] if f["dataset"] == "rejected"] == []
        assert m["rejected_expired"]["rows"] == m["rows_rejected"] > 0
        assert m["rejected_expired"]["files"] >= 1
    assert not list((lake / "rejected").rglob(f"event_date={MIDDLE}/*"))

    # verify accepts it: nothing missing, nothing damaged, the expiry noted
    assert main(["verify", "--dest", str(lake), "--all"]) == 0
    out = capsys.readouterr().out
    assert f"{MIDDLE}: ok" in out and f"{NEW}: ok" in out and f"{OLD}" not in out
    assert f"{rows_rejected:,} rejected rows (" in out and "expired at" in out
    assert "+ 0 rejected rows" in out

    # a second expire finds nothing more to do, and changes nothing
    code, again, _ = _expire(capsys, lake)
    assert code == 0
    assert again == [f"nothing expires: no date before {MIDDLE} is left, and no rejected row "
                     f"of a date before {NEW}"]  # fmt: skip
    assert tree_digest(lake) == after


def test_a_date_a_live_run_holds_is_skipped_with_exit_5(capsys, lake: Path) -> None:
    before = tree_digest(lake)
    fs = LocalFileSystem()
    live = DateLock(fs, Layout(str(lake)).lock(OLD), "a-live-run", 600)
    with live.held():
        for flags in (["--dry-run"], []):
            code, out, err = _expire(capsys, lake, *flags)
            assert code == 5, (out, err)
            assert any(line.startswith(f"{OLD}: skipped, another run is writing") for line in out)
            assert "held by a live run and were not expired" in err
            now = tree_digest(lake)
            assert {p: now.get(p) for p in _of(OLD, before)} == _of(OLD, before)
    # the other dates were done meanwhile; the held one is expired once the run is over
    assert not list((lake / "rejected").rglob(f"event_date={MIDDLE}/*"))
    code, out, _ = _expire(capsys, lake)
    assert code == 0 and any(line.startswith(f"{OLD}: expired whole") for line in out)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], "error: missing required setting 'keep_days': pass --keep-days or set "
             "PROCESSING_KEEP_DAYS"),
        (["--keep-days", "0"], "bad setting: keep_days must be a whole number of days"),
        (["--keep-days", "30", "--rejected-keep-days", "31"],
         "rejected_keep_days (31) must be at most keep_days (30)"),
        (["--keep-days", "x"], "error: argument --keep-days"),
    ],
)  # fmt: skip
def test_bad_settings_exit_2_saying_what_to_fix(capsys, tmp_path: Path, flags, message) -> None:
    try:
        code = main(["expire", "--dest", str(tmp_path / "lake"), *flags])
    except SystemExit as e:  # a usage error (argparse)
        code = e.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "lake").exists()


def test_nothing_to_expire_is_said_plainly(capsys, tmp_path: Path) -> None:
    code = main(["expire", "--dest", str(tmp_path / "empty"), "--keep-days", "30"])
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("nothing expires: no date before ")


def test_help_has_examples_and_exit_codes(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        main(["expire", "--help"])
    text = capsys.readouterr().out
    assert "examples:\n  python -m processing expire " in text and "exit codes:" in text
    assert "--dry-run" in text and "(required) [PROCESSING_KEEP_DAYS]" in text


def test_the_dag_task_spares_its_own_date_and_does_nothing_unconfigured(
    lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """airflow_tasks.expire: nothing without PROCESSING_KEEP_DAYS; with it, the retention on
    today's cutoff, except the date the run just published (a backfill of a date already past
    retention keeps it until the next run's expire)."""
    from types import SimpleNamespace

    from processing.app import airflow_tasks

    before = tree_digest(lake)
    context = {"params": {"date": str(OLD)}, "dag_run": SimpleNamespace(run_id="backfill__x")}
    monkeypatch.setenv("PROCESSING_DEST", str(lake))  # (and the source, as the DAG's tasks have)
    monkeypatch.setenv("PROCESSING_SOURCE", str(ROOT / "data" / "sample_day.jsonl.gz"))
    assert airflow_tasks.expire(context)["configured"] is False
    assert tree_digest(lake) == before

    monkeypatch.setenv("PROCESSING_KEEP_DAYS", _days(MIDDLE))
    monkeypatch.setenv("PROCESSING_REJECTED_KEEP_DAYS", _days(NEW))
    done = airflow_tasks.expire(context)
    assert done == {
        "configured": True, "expired": [], "rejected_expired": [str(MIDDLE)], "skipped": [],
    }  # fmt: skip
    after = tree_digest(lake)
    assert {p: after.get(p) for p in _of(OLD, before)} == _of(OLD, before)  # spared
    context = {"params": {"date": str(NEW)}, "dag_run": SimpleNamespace(run_id="scheduled__y")}
    assert airflow_tasks.expire(context)["expired"] == [str(OLD)]  # the next run's expire
