"""Write-audit-publish on a real (local) filesystem: every state a killed or failed publish can
leave is completed by the next run's ``prepare``, and the date then holds exactly one run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import fsspec
import pytest

from processing.adapters import publish as wap
from processing.logic.layout import Layout

DATE = dt.date(2023, 10, 23)
OTHER = dt.date(2023, 10, 24)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def lake(tmp_path: Path) -> tuple[Path, Layout]:
    """An old published version of DATE (and of OTHER), and a new run R staged for DATE."""
    layout = Layout(str(tmp_path))
    for date, label in ((DATE, "old"), (OTHER, "other")):
        _write(Path(layout.events_date(date)) / "event_name=view/part-00000-000.parquet", label)
        _write(Path(layout.events_date(date)) / "event_name=click/part-00000-000.parquet", label)
        _write(Path(layout.manifest(date)), label)
        _write(Path(layout.rejected_date(date)) / "part-00000-000.parquet", label)
    events, rejected = layout.staged(DATE, "R")
    _write(Path(events) / "event_name=view/part-00000-000.parquet", "new")
    _write(Path(rejected) / "part-00000-000.parquet", "new")
    return tmp_path, layout


def _published(root: Path, date: dt.date = DATE) -> dict[str, str]:
    d = f"event_date={date.isoformat()}"
    return {f"events/{k}": v for k, v in _tree(root / "events" / d).items()} | {
        f"rejected/{k}": v for k, v in _tree(root / "rejected" / d).items()
    }


NEW = {
    "events/event_name=view/part-00000-000.parquet": "new",
    "events/_manifest.json": '{"run_id": "R"}',
    "rejected/part-00000-000.parquet": "new",
}


def test_publish_replaces_exactly_the_date(lake) -> None:
    root, layout = lake
    other = _published(root, OTHER)
    wap.publish(fsspec.filesystem("file"), layout, DATE, "R", {"run_id": "R"})
    assert {k: v.replace("\n", "").replace(" ", "") for k, v in _published(root).items()} == {
        k: v.replace(" ", "") for k, v in NEW.items()
    }
    assert _published(root, OTHER) == other
    assert not any((root / "_staging").rglob("*"))
    assert _tree(root / "_previous")  # the old version is kept for a rollback


# Each case stops the publish after one more of its moves (0 = marker written, nothing moved).
@pytest.mark.parametrize("moves_done", [0, 1, 2, 3], ids=lambda n: f"after-{n}-moves")
def test_an_interrupted_publish_is_completed_by_the_next_run(lake, monkeypatch, moves_done) -> None:
    root, layout = lake
    fs = fsspec.filesystem("file")
    real_move, done = wap._move, []

    def move_then_maybe_die(fs_, source, target):
        if len(done) == moves_done:
            raise KeyboardInterrupt  # the process dies here
        real_move(fs_, source, target)
        done.append(target)

    monkeypatch.setattr(wap, "_move", move_then_maybe_die)
    with pytest.raises(KeyboardInterrupt):
        wap.publish(fs, layout, DATE, "R", {"run_id": "R"})
    monkeypatch.setattr(wap, "_move", real_move)
    assert wap.publishing_started(fs, layout, DATE, "R")

    wap.prepare(fs, layout, DATE)  # what the next run of the date does first

    published = _published(root)
    assert set(published) == set(NEW)
    assert published["events/event_name=view/part-00000-000.parquet"] == "new"
    assert published["rejected/part-00000-000.parquet"] == "new"
    assert not any((root / "_staging").rglob("*"))
    assert _published(root, OTHER)["rejected/part-00000-000.parquet"] == "other"


def test_prepare_removes_every_staging_of_the_date_but_not_other_dates(lake) -> None:
    root, layout = lake
    fs = fsspec.filesystem("file")
    _write(Path(layout.staging_run(OTHER, "X")) / "events/part-00000-000.parquet", "x")
    before = _published(root)
    wap.prepare(fs, layout, DATE)  # R never started publishing: it is a failed run's staging
    assert _published(root) == before
    assert not Path(layout.staging_date(DATE)).exists()
    assert Path(layout.staging_run(OTHER, "X")).exists()
