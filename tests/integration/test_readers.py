"""The lake as other engines read it: a lake of two dates, read by pyarrow (through
``processing.events_dataset``), pandas, Polars and DuckDB as the README shows them, each getting
the right rows of one date with the right types (timestamps in UTC; ``event_date`` a date
wherever the engine can type a partition)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

import processing
from tests.conftest import ROOT, _cli_env

pytestmark = pytest.mark.slow

DATES = (dt.date(2023, 10, 23), dt.date(2023, 10, 24))
DAY = DATES[1]


def _cli(*args: str | Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "processing", *map(str, args)],
        cwd=ROOT, env=_cli_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[dt.date, dict]]:
    """Two dates published by the CLI, and their manifests."""
    root = tmp_path_factory.mktemp("readers")
    manifests = {}
    for seed, date in enumerate(DATES):
        source = root / f"day-{date}.parquet"
        _cli("generate", "--date", date, "--rows", 3000 + 1000 * seed, "--bad-fraction",
             "0.02", "--seed", seed, "--out", source)  # fmt: skip
        _cli("run", "--date", date, "--source", source, "--dest", root / "lake",
             "--workers", "1")  # fmt: skip
        manifests[date] = processing.read_manifest(str(root / "lake"), date)
    return str(root / "lake"), manifests


def test_pyarrow_through_the_package(lake) -> None:
    import pyarrow as pa
    import pyarrow.dataset as ds

    root, manifests = lake
    table = processing.events_dataset(root).to_table(filter=ds.field("event_date") == DAY)
    assert table.num_rows == manifests[DAY]["rows_valid"]
    assert table.schema.field("event_date").type == pa.date32()
    assert table.schema.field("event_datetime").type == pa.timestamp("us", tz="UTC")
    rejected = processing.rejected_dataset(root).to_table(filter=ds.field("event_date") == DAY)
    assert rejected.num_rows == manifests[DAY]["rows_rejected"]


def test_pandas(lake) -> None:
    import pandas as pd

    root, manifests = lake
    frame = pd.read_parquet(f"{root}/events", filters=[("event_date", "=", str(DAY))])
    assert len(frame) == manifests[DAY]["rows_valid"]  # events only: never the rejected rows
    assert str(frame["event_datetime"].dtype) == "datetime64[us, UTC]"
    assert set(frame["event_date"].astype(str)) == {str(DAY)}  # a plain path: text, not a date
    typed = processing.events_dataset(root).to_table().to_pandas()  # the typed way
    assert len(typed[typed["event_date"] == DAY]) == manifests[DAY]["rows_valid"]


def test_polars(lake) -> None:
    import polars as pl

    root, manifests = lake
    frame = (
        pl.scan_parquet(f"{root}/events/**/*.parquet", hive_partitioning=True,
                        hive_schema={"event_date": pl.Date, "event_name": pl.String})
        .filter(pl.col("event_date") == DAY)
        .collect()
    )  # fmt: skip
    assert frame.height == manifests[DAY]["rows_valid"]
    assert frame.schema["event_date"] == pl.Date
    assert frame.schema["event_datetime"] == pl.Datetime("us", "UTC")
    assert frame.group_by("event_name").len().height == len(manifests[DAY]["valid_by_event"])


def test_duckdb(lake) -> None:
    import duckdb

    root, manifests = lake
    query = (
        "select count(*), any_value(typeof(event_date)), any_value(typeof(event_datetime)) "
        "from read_parquet(?, hive_partitioning = true, hive_types = {'event_date': 'DATE'}) "
        "where event_date = ?"
    )
    with duckdb.connect() as con:
        rows, date_type, time_type = con.execute(
            query, [f"{root}/events/*/*/*.parquet", DAY]
        ).fetchone()
    assert rows == manifests[DAY]["rows_valid"]
    assert (date_type, time_type) == ("DATE", "TIMESTAMP WITH TIME ZONE")
