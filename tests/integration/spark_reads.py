"""Read a lake with Spark (PySpark, local mode) and print what it found, as JSON: run by the
readers' test with the Python of Spark's own environment (.tools/spark, from the ``spark``
dependency group), so nothing here imports the package or pytest.

    python spark_reads.py LAKE_ROOT DATE WORK_DIR

Prints: the types Spark gives the columns of ``events/`` and ``rejected/``, the date's events
as [event_name, user_id, microseconds since the epoch] (instants, whatever the time zone),
its rejected rows' count, and for each dataset what its physical plan says of the scan
(batched, the date's partition filter, the columnar batches turned into rows)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Spark's log4j2 configuration: errors only (its default prints warnings and a banner). The
#: PySpark gateway's own logger needs a level of its own, else Spark resets the level to WARN.
LOG4J2 = """\
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


def session(home: Path) -> Any:
    """A local Spark session: one core, a small heap, no UI, no Hive, session time zone UTC,
    every directory it writes under ``home``."""
    from pyspark.sql import SparkSession

    (home / "tmp").mkdir(parents=True, exist_ok=True)
    (home / "log4j2.properties").write_text(LOG4J2)
    java_options = (
        f"-Dlog4j2.configurationFile=file:{home}/log4j2.properties "
        f"-Djava.io.tmpdir={home}/tmp -Dderby.system.home={home}/derby "
        # the quick JIT only: halves the start and the first queries (a few seconds of work)
        "-XX:TieredStopAtLevel=1"
    )
    return (
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
        .getOrCreate()
    )


def plan_nodes(plan: Any) -> Iterator[Any]:
    """A Spark physical plan's nodes (JVM objects), root first."""
    yield plan
    children = plan.children()
    for i in range(children.size()):
        yield from plan_nodes(children.apply(i))


def scan(day: Any) -> dict[str, Any]:
    """What the executed plan of ``day`` (collected) says of its Parquet scan."""
    rows = len(day.collect())
    plan = day._jdf.queryExecution().executedPlan()
    text = plan.toString()
    to_rows = [n for n in plan_nodes(plan) if n.nodeName() == "ColumnarToRow"]
    metrics = to_rows[0].metrics() if to_rows else None
    return {
        "rows": rows,
        "vectorised_reader": spark_conf(day, "spark.sql.parquet.enableVectorizedReader"),
        "batched": "Batched: true" in text,
        "date_pruned": "PartitionFilters: [isnotnull(event_date" in text,
        "input_batches": metrics.apply("numInputBatches").value() if metrics else 0,
        "rows_from_batches": metrics.apply("numOutputRows").value() if metrics else 0,
        "plan": text,
    }


def spark_conf(frame: Any, key: str) -> str:
    return str(frame.sparkSession.conf.get(key))


def main(root: str, date: str, home: str) -> dict[str, Any]:
    from pyspark.sql import functions as sf

    day = dt.date.fromisoformat(date)
    spark = session(Path(home))
    try:
        found: dict[str, Any] = {}
        for dataset in ("events", "rejected"):
            frame = spark.read.parquet(f"{root}/{dataset}")
            found[dataset] = {
                "types": {f.name: f.dataType.simpleString() for f in frame.schema.fields},
                "scan": scan(frame.filter(sf.col("event_date") == day)),
            }
        events = spark.read.parquet(f"{root}/events").filter(sf.col("event_date") == day)
        found["events"]["rows"] = [
            list(r)
            for r in events.select(
                "event_name", "user_id", sf.unix_micros("event_datetime")
            ).collect()
        ]
        return found
    finally:
        spark.stop()


if __name__ == "__main__":
    json.dump(main(*sys.argv[1:4]), sys.stdout)
