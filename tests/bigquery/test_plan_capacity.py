"""``plan`` from BigQuery prints the capacity and cost of the day it planned, from the session's
own estimate, and says so when the service returned fewer streams than asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from processing.logic import capacity as cap
from processing.logic.generate import GenerateParams, generate
from tests.bigquery.conftest import DATE, TABLE, URL, write

pytestmark = pytest.mark.slow
D = DATE.isoformat()


def _table(path: Path, rows: int) -> Path:
    [table] = list(generate(GenerateParams(DATE, rows, 0.0, 5, chunk_rows=rows)))
    return write(path, table, 1_000)


def _plan(cli, address: str, *flags: str):
    done = cli(
        "plan", "--date", D, "--source", URL, "--bq-endpoint", address,
        "--workers", "1", "--threads-per-worker", "2", *flags,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_plan_prints_the_capacity_of_its_day_and_fewer_streams_plainly(
    cli, emulator, tmp_path
) -> None:
    server = emulator({TABLE: _table(tmp_path / "day.parquet", 5_000)}, min_rows_per_stream=1_000)
    out = _plan(cli, server.address, "--event-names", "6", "--egress-usd-per-gib", "0.09")
    # 2 task threads ask for at most 8 streams; 5,000 rows at 1,000 a stream make 5
    assert "  streams          5 (asked for at most 8)" in out
    assert (
        "the service returned 5 of at most 8 streams: it sizes streams to the data; "
        "each stream is one task"
    ) in out
    [session] = server.servicer.sessions.values()
    e = cap.estimate(
        session.rows,
        workers=1,
        threads_per_worker=2,
        event_names=6,
        streams=5,
        bigquery_bytes=_estimated_bytes(out),
        prices=cap.Prices(egress_usd_per_gib=0.09),
    )
    assert "capacity and cost of the day on this configuration's cluster" in out
    assert "  workers          1 x 2 threads = 2 cores\n" in out
    assert f"  event files      {e.event_files} of about" in out
    assert f"  cost of the day  {cap._usd(e.total_usd)}\n" in out
    assert "at $0.09 per GiB" in out
    assert server.servicer.calls["ReadRows"] == 0


def test_plan_says_nothing_of_streams_when_it_got_all_it_asked_for(cli, emulator, tmp_path) -> None:
    server = emulator({TABLE: _table(tmp_path / "day.parquet", 5_000)}, min_rows_per_stream=1_000)
    out = _plan(cli, server.address, "--bq-max-streams", "2")
    assert "  streams          2 (asked for at most 2)" in out
    assert "the service returned" not in out
    assert "  streams          2 (one task each" in out


def _estimated_bytes(out: str) -> int:
    """The session's estimated bytes: ``plan`` prints them rounded, the emulator's estimate is
    rows times its bytes per row (88 for the selected columns)."""
    [line] = [line for line in out.splitlines() if line.startswith("  estimated rows")]
    return int(line.split()[-1].replace(",", "")) * 88
