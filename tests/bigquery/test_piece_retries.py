"""Retries at the grain of a piece, counted at the emulator: a stream that fails is read again
alone, in its task; a ``process`` retried (as Airflow retries a task) keeps the pieces an
earlier attempt completed and staged, and reads only the rest, in the same read session."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from processing.app import stages
from processing.spec.errors import TransientError
from processing.spec.settings import Settings
from tests.bigquery.conftest import DATE, TABLE, URL
from tests.bigquery.test_runs import _day

pytestmark = pytest.mark.slow

ROWS = 12_000  # in 6 streams of about 2,000 rows


def _settings(dest: Path, address: str, **overrides: object) -> Settings:
    return Settings.load(
        {}, date=DATE, source=URL, dest=str(dest), bq_endpoint=address, workers=1,
        threads_per_worker=2, processes=False, bq_max_streams=6, run_id="R", **overrides,
    )  # fmt: skip


class Sizes(dict):
    """Rows of each piece (by stream index) as the run reports them: ``process(on_progress=)``."""

    def __call__(self, done: int, total: int, result) -> None:
        self[int(result.piece.rsplit("stream", 1)[-1])] = result.rows_read


def _completed(dest: Path, staging_id: str) -> dict[int, int]:
    """Rows of each piece the tasks of ``staging_id`` recorded as completed, by stream index."""
    records = dest / "_staging" / f"event_date={DATE}" / f"run_id={staging_id}" / "_pieces"
    return {
        int(r.stem): json.loads(r.read_text())["result"]["rows_read"] for r in records.iterdir()
    }


def _by_index(server) -> dict[int, int]:
    return {int(k.rsplit("/", 1)[-1]): v for k, v in server.servicer.rows_sent.items()}


def _rows(dest: Path) -> int:
    return ds.dataset(dest / "events", format="parquet", partitioning="hive").count_rows()


@pytest.fixture
def day(tmp_path: Path) -> Path:
    return _day(tmp_path / "day.parquet", ROWS, 500)


def test_a_stream_that_fails_is_read_again_alone_in_its_task(emulator, day, tmp_path) -> None:
    server = emulator({TABLE: day}, min_rows_per_stream=1_000)
    sizes = Sizes()
    server.faults.internal_errors = {2: 1}  # stream 2 fails once, after its first message
    server.faults.internal_after_rows = 1
    dest = tmp_path / "lake"
    settings = _settings(dest, server.address)
    stages.begin(settings, "R")
    done = stages.process(settings, "R", on_progress=sizes)
    stages.audit(settings, "R")
    manifest = stages.publish(settings, "R").manifest

    sent = _by_index(server)
    assert server.servicer.calls["CreateReadSession"] == 1  # process read begin's session
    assert len(sizes) == 6
    assert {i: n for i, n in sent.items() if i != 2} == {i: n for i, n in sizes.items() if i != 2}
    assert sizes[2] < sent[2] < 2 * sizes[2]  # read again from its start, once
    assert done["rows_read"] == manifest["rows_read"] == sum(sizes.values())  # every row once
    assert _rows(dest) == manifest["rows_valid"]


def test_a_retried_process_reads_only_the_pieces_not_completed(emulator, day, tmp_path) -> None:
    server = emulator({TABLE: day}, min_rows_per_stream=1_000)
    server.faults.internal_errors = {4: -1}  # stream 4 fails every time
    dest = tmp_path / "lake"
    settings = _settings(dest, server.address, task_retries=1)
    stages.begin(settings, "R")
    with pytest.raises(TransientError, match="stream 4"):
        stages.process(settings, "R")
    sizes = _completed(dest, "R")
    assert sorted(sizes) == [0, 1, 2, 3, 5]
    assert {i: _by_index(server)[i] for i in sizes} == sizes  # each read once

    server.faults.internal_errors = {}  # the cause goes away; Airflow retries the task
    server.servicer.rows_sent.clear()
    retried = stages.process(settings, "R", attempt=2)
    assert retried["staging_id"] == "R-a2"
    [(stream, rows)] = _by_index(server).items()  # only the failed stream, once
    assert stream == 4 and 0 < rows < max(sizes.values()) * 2
    assert server.servicer.calls["CreateReadSession"] == 1  # the same session throughout
    assert retried["rows_read"] == sum(sizes.values()) + rows and retried["pieces"] == 6

    stages.audit(settings, "R")
    manifest = stages.publish(settings, "R").manifest
    assert manifest["run_id"] == "R-a2"
    assert (manifest["rows_read"], _rows(dest)) == (retried["rows_read"], manifest["rows_valid"])
    assert not (dest / "_staging" / f"event_date={DATE}").exists()


def test_pieces_whose_files_are_gone_are_read_again(emulator, day, tmp_path) -> None:
    server = emulator({TABLE: day}, min_rows_per_stream=1_000)
    server.faults.internal_errors = {0: -1}
    dest = tmp_path / "lake"
    settings = _settings(dest, server.address, task_retries=0)
    stages.begin(settings, "R")
    with pytest.raises(TransientError):
        stages.process(settings, "R")
    staging = dest / "_staging" / f"event_date={DATE}" / "run_id=R"
    sizes = _completed(dest, "R")
    assert sorted(sizes) == [1, 2, 3, 4, 5]
    records = sorted((staging / "_pieces").iterdir())
    lost = json.loads(records[0].read_text())["result"]["files"][0]
    (staging / lost["dataset"] / lost["path"]).unlink()  # piece 1 lost a file: not trusted
    records[-1].write_text("{not json")  # piece 5's record is unreadable: read again too

    server.faults.internal_errors = {}
    server.servicer.rows_sent.clear()
    retried = stages.process(settings, "R", attempt=2)
    reread = _by_index(server)
    assert sorted(reread) == [0, 1, 5] and (reread[1], reread[5]) == (sizes[1], sizes[5])
    stages.audit(settings, "R")
    manifest = stages.publish(settings, "R").manifest
    assert retried["rows_read"] == manifest["rows_read"] == sum(sizes.values()) + reread[0]
    assert _rows(dest) == manifest["rows_valid"]
