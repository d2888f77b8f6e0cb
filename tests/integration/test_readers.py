"""The lake as other engines read it: a lake of two dates, read by pyarrow (through
``processing.events_dataset``), pandas, Polars, DuckDB and Spark (PySpark, local mode) as the
README shows them, each getting the right rows of one date with the right types (timestamps in
UTC; ``event_date`` a date wherever the engine can type a partition). Spark must also read the
files with its vectorised Parquet reader: the writer's options (zstd, dictionary-encoded
strings, DELTA_BINARY_PACKED timestamps, page index) must keep every engine on its fast path."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
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


#: Spark's own environment (the ``spark`` dependency group): not .venv, where every ``import
#: pandera`` would import PySpark too
SPARK_ENV = ROOT / ".tools" / "spark"


def _uv(*args: str | Path) -> None:
    """Run uv: the one running the tests (``uv run`` says where), else on PATH, else ./dev's."""
    uv = os.environ.get("UV") or shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    assert Path(uv).exists(), "uv is needed to make Spark's environment: run ./dev test"
    done = subprocess.run([uv, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, check=False)  # fmt: skip
    assert done.returncode == 0, f"uv {args[0]}: {done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def spark_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The Python of Spark's environment, made (or brought up to date) from uv.lock's ``spark``
    group: a second or so when it is up to date."""
    java_home = os.environ.get("JAVA_HOME")
    java = shutil.which("java", path=f"{java_home}/bin") if java_home else shutil.which("java")
    assert java, "Spark needs Java 17+: ./dev test installs Java (Debian default-jre-headless)"
    python = SPARK_ENV / "bin" / "python"
    if not python.exists():
        _uv("venv", "--quiet", "--clear", "--python", sys.executable, SPARK_ENV)
    requirements = tmp_path_factory.mktemp("spark-env") / "requirements.txt"
    _uv("export", "--frozen", "--quiet", "--only-group", "spark", "--no-hashes",
        "--no-emit-project", "--output-file", requirements)  # fmt: skip
    _uv("pip", "install", "--quiet", "--python", python, "-r", requirements)
    return str(python)


@pytest.fixture(scope="module")
def spark_read(lake, spark_python: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """What Spark (local mode, one JVM for the module) read of the lake: see spark_reads.py."""
    root, _ = lake
    work = tmp_path_factory.mktemp("spark")
    done = subprocess.run(
        [spark_python, str(Path(__file__).with_name("spark_reads.py")), root, str(DAY), work],
        cwd=work, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_spark(lake, spark_read) -> None:
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    root, manifests = lake
    events = spark_read["events"]
    assert events["types"]["event_date"] == "date"  # inferred from the partition's path
    assert events["types"]["event_name"] == "string"
    assert events["types"]["event_datetime"] == "timestamp"  # an instant (not timestamp_ntz)
    assert len(events["rows"]) == manifests[DAY]["rows_valid"]
    # as UTC instants: microseconds since the epoch, whatever the time zone of either process
    table = processing.events_dataset(root).to_table(
        columns=["event_name", "user_id", "event_datetime"], filter=ds.field("event_date") == DAY
    )
    expected = zip(
        table.column("event_name").to_pylist(),
        table.column("user_id").to_pylist(),
        pc.cast(table.column("event_datetime"), "int64").to_pylist(),
        strict=True,
    )
    assert sorted(map(tuple, events["rows"])) == sorted(expected)

    rejected = spark_read["rejected"]
    assert rejected["types"]["event_date"] == "date"
    assert rejected["scan"]["rows"] == manifests[DAY]["rows_rejected"]


@pytest.mark.parametrize(("dataset", "rows"), [("events", "rows_valid"),
                                               ("rejected", "rows_rejected")])  # fmt: skip
def test_spark_reads_with_its_vectorised_reader(lake, spark_read, dataset, rows) -> None:
    """Batched scans, their columnar batches turned into rows after: Spark's vectorised Parquet
    reader decodes every encoding the writer uses (it has no fallback: it would fail on one it
    could not decode)."""
    _, manifests = lake
    scan = spark_read[dataset]["scan"]
    assert scan["vectorised_reader"] == "true"
    assert scan["batched"], scan["plan"]
    assert scan["date_pruned"], scan["plan"]  # one date read
    assert scan["rows"] == manifests[DAY][rows]
    assert scan["input_batches"] > 0, scan["plan"]
    assert scan["rows_from_batches"] == manifests[DAY][rows]  # all in batches
