"""The lake as other engines read it: a lake of two dates, read by pyarrow (through
``processing.events_dataset``), pandas, Polars, DuckDB and Spark (PySpark, local mode) as the
README shows them, each getting the right rows of one date with the right types (timestamps in
UTC; ``event_date`` a date wherever the engine can type a partition). Spark must also read the
files with its vectorised Parquet reader: the writer's options (zstd, dictionary-encoded
strings, DELTA_BINARY_PACKED timestamps, page index) must keep every engine on its fast path."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
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


#: Spark's log4j2 configuration: errors only (its default prints warnings and a banner). The
#: PySpark gateway's own logger needs a level of its own, else Spark resets the level to WARN.
_SPARK_LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = stderr
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = error
"""


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """One local Spark session for the module (its JVM takes seconds to start): one core, a
    small heap, no UI, no Hive, session time zone UTC, every directory it writes in tmp."""
    java_home = os.environ.get("JAVA_HOME")
    java = shutil.which("java", path=f"{java_home}/bin") if java_home else shutil.which("java")
    assert java, "Spark needs Java 17+: ./dev test installs Java (Debian default-jre-headless)"
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    home = tmp_path_factory.mktemp("spark")
    (home / "tmp").mkdir()
    (home / "log4j2.properties").write_text(_SPARK_LOG4J2)
    java_options = (
        f"-Dlog4j2.configurationFile=file:{home}/log4j2.properties "
        f"-Djava.io.tmpdir={home}/tmp -Dderby.system.home={home}/derby "
        # the quick JIT only: halves the start and the first queries (a few seconds of work)
        "-XX:TieredStopAtLevel=1"
    )
    builder = (
        SparkSession.builder.master("local[1]")
        .appName("test_readers")
        .config("spark.driver.memory", "512m")
        .config("spark.driver.extraJavaOptions", java_options)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.catalogImplementation", "in-memory")  # no Hive metastore
        .config("spark.sql.warehouse.dir", str(home / "warehouse"))
        .config("spark.local.dir", str(home / "tmp"))
        .config("spark.sql.shuffle.partitions", "1")
    )
    with warnings.catch_warnings():
        # PySpark probes pandas when it starts and warns that it "does not yet fully support
        # pandas >= 3.0.0": these tests convert nothing to pandas
        warnings.filterwarnings("ignore", "PySpark does not yet fully support", FutureWarning)
        session = builder.getOrCreate()
    yield session
    session.stop()
    # stop() keeps the JVM for a next session; end it (it exits when its stdin closes) rather
    # than leave its heap held until the end of the test run.
    gateway = SparkContext._gateway
    if gateway is not None and gateway.proc is not None:
        gateway.shutdown()
        gateway.proc.stdin.close()
        gateway.proc.wait(timeout=60)
        SparkContext._gateway = SparkContext._jvm = None


def test_spark(lake, spark) -> None:
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    from pyspark.sql import functions as sf
    from pyspark.sql.types import DateType, StringType, TimestampType

    root, manifests = lake
    events = spark.read.parquet(f"{root}/events")
    types = {f.name: f.dataType for f in events.schema.fields}
    assert types["event_date"] == DateType()  # inferred from the partition's path
    assert types["event_name"] == StringType()
    assert types["event_datetime"] == TimestampType()  # an instant (not TIMESTAMP_NTZ)
    day = events.filter(sf.col("event_date") == DAY)
    # as UTC instants: microseconds since the epoch, whatever the time zone of either process
    rows = day.select("event_name", "user_id", sf.unix_micros("event_datetime")).collect()
    assert len(rows) == manifests[DAY]["rows_valid"]
    table = processing.events_dataset(root).to_table(
        columns=["event_name", "user_id", "event_datetime"], filter=ds.field("event_date") == DAY
    )
    expected = zip(
        table.column("event_name").to_pylist(),
        table.column("user_id").to_pylist(),
        pc.cast(table.column("event_datetime"), "int64").to_pylist(),
        strict=True,
    )
    assert sorted(map(tuple, rows)) == sorted(expected)

    rejected = spark.read.parquet(f"{root}/rejected")
    assert rejected.schema["event_date"].dataType == DateType()
    assert rejected.filter(sf.col("event_date") == DAY).count() == manifests[DAY]["rows_rejected"]


def _plan_nodes(plan) -> Iterator:
    """A Spark physical plan's nodes (JVM objects), root first."""
    yield plan
    children = plan.children()
    for i in range(children.size()):
        yield from _plan_nodes(children.apply(i))


def test_spark_reads_with_its_vectorised_reader(lake, spark) -> None:
    """Batched scans, their columnar batches turned into rows after: Spark's vectorised Parquet
    reader decodes every encoding the writer uses (it has no fallback: it would fail on one it
    could not decode)."""
    from pyspark.sql import functions as sf

    root, manifests = lake
    assert spark.conf.get("spark.sql.parquet.enableVectorizedReader") == "true"
    for dataset, rows in (("events", "rows_valid"), ("rejected", "rows_rejected")):
        day = spark.read.parquet(f"{root}/{dataset}").filter(sf.col("event_date") == DAY)
        assert len(day.collect()) == manifests[DAY][rows]
        plan = day._jdf.queryExecution().executedPlan()
        assert "Batched: true" in plan.toString(), plan.toString()
        assert "PartitionFilters: [isnotnull(event_date" in plan.toString()  # one date read
        to_rows = [n for n in _plan_nodes(plan) if n.nodeName() == "ColumnarToRow"]
        assert to_rows, plan.toString()
        metrics = to_rows[0].metrics()
        assert metrics.apply("numInputBatches").value() > 0, dataset
        assert metrics.apply("numOutputRows").value() == manifests[DAY][rows]  # all in batches
