"""First-use imports happen once per worker, before its task threads run: on the workers a run
starts with and on those that join later (an adaptive cluster starts empty), and a cold
interpreter running many small pieces on many threads at once gets through (a lazy import
raced by two threads once failed a run with ModuleNotFoundError: pyarrow.pandas_compat)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster

from processing.app.piece_task import WarmUp
from processing.logic.generate import GenerateParams, generate

pytestmark = pytest.mark.slow

DATE = "2023-10-23"


def _warmed(dask_worker) -> bool:  # runs on the worker
    return WarmUp.name in dask_worker.plugins and "pyarrow.pandas_compat" in sys.modules


def test_a_worker_that_joins_later_is_warmed_up_before_its_tasks(tmp_path: Path) -> None:
    with (
        LocalCluster(
            n_workers=0, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(WarmUp(dt.date.fromisoformat(DATE)))
        cluster.scale(1)  # a fresh interpreter, after the plugin was registered
        client.wait_for_workers(1, timeout=60)
        assert list(client.run(_warmed).values()) == [True]


def test_a_cold_run_of_many_pieces_on_many_threads(cli, tmp_path: Path) -> None:
    [table] = generate(GenerateParams(dt.date.fromisoformat(DATE), 20_000, 0.02, 3, 20_000))
    source = tmp_path / "day.parquet"
    pq.write_table(table, source, row_group_size=500)
    dest = tmp_path / "lake"
    done = cli(
        "run", "--date", DATE, "--source", source, "--dest", dest, "--workers", "1",
        "--threads-per-worker", "8", "--piece-rows", "500", "--no-performance-report",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    manifest = json.loads((dest / "events" / f"event_date={DATE}" / "_manifest.json").read_text())
    assert manifest["pieces"] == 40
    assert manifest["rows_read"] == manifest["rows_valid"] + manifest["rows_rejected"] == 20_000
