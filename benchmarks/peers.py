"""The same job written by hand, idiomatically, in Polars and in DuckDB: the peers that
``benchmarks/run.py`` measures the pipeline against.

Each reads the BigQuery-shaped Parquet day, flattens and normalises it as the pipeline does
(``processing.spec.rules``: trim, ASCII case, runs of spaces and hyphens to ``_`` in event names,
``unknown`` for a missing platform, empty text as null), checks every row against the same rules
(required fields, the run date's window, the patterns, the maximum lengths), and writes the valid
rows hive-partitioned by ``event_date`` and ``event_name`` (zstd Parquet) under ``DEST/events/``
and the rejected rows, each with its original record as JSON and its reasons, under
``DEST/rejected/``. No manifest, no write-audit-publish, no quality report.

Where they differ from the pipeline, by design of a hand-written job: Polars changes case with
Unicode's mapping, not ASCII only (only non-ASCII letters would fail differently), and neither
checks UTF-8 nor keeps a row's other reasons when the record is unreadable: the generated day has
no such rows (``processing.logic.generate.BAD_KINDS``), so the valid rows are the same, which the
benchmark checks.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from processing.spec import rules as r
from processing.spec import schema as s

_WINDOW = "event_datetime:outside_run_date"


def _window(run_date: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(run_date, dt.time(), tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


def polars_job(source: str, dest: str, run_date: dt.date) -> None:
    """Lazy Polars: one query for the day, expressions for the rules, a partitioned sink of the
    valid rows and a sink of the rejected ones, collected together (the scan is shared)."""
    import polars as pl

    start, end = _window(run_date)

    def clean(column: pl.Expr) -> pl.Expr:
        trimmed = column.str.strip_chars()
        return pl.when(trimmed == "").then(None).otherwise(trimmed)

    def pattern(field: str) -> str:
        return r.PATTERNS[field]

    raw = pl.scan_parquet(source)
    users, products = pl.col("user_identifiers"), pl.col("product_information")
    flat = raw.with_row_index("row").select(
        "row",
        pl.col("timestamp").alias(s.EVENT_DATETIME),
        clean(pl.col("event_name"))
        .str.to_lowercase()
        .str.replace_all(r"[\s\-]+", "_")
        .alias(s.EVENT_NAME),
        clean(users.struct.field("id")).alias(s.USER_ID),
        clean(users.struct.field("platform"))
        .str.to_lowercase()
        .fill_null(s.UNKNOWN_PLATFORM)
        .alias(s.PLATFORM),
        clean(products.struct.field("name")).alias(s.PRODUCT_NAME),
        clean(products.struct.field("SKU")).str.to_uppercase().alias(s.SKU),
    )
    ts, name, user = pl.col(s.EVENT_DATETIME), pl.col(s.EVENT_NAME), pl.col(s.USER_ID)
    checks = [
        pl.when(ts.is_null()).then(pl.lit("event_datetime:missing"))
        .when((ts < start) | (ts >= end)).then(pl.lit(_WINDOW)),
        pl.when(name.is_null()).then(pl.lit("event_name:missing"))
        .when(~name.str.contains(pattern(s.EVENT_NAME))).then(pl.lit("event_name:invalid_format")),
        pl.when(user.is_null()).then(pl.lit("user_id:missing"))
        .when(user.str.len_chars() > r.MAX_LENGTH[s.USER_ID]).then(pl.lit("user_id:too_long")),
        pl.when(~pl.col(s.PLATFORM).str.contains(pattern(s.PLATFORM)))
        .then(pl.lit("platform:invalid_format")),
        pl.when(pl.col(s.PRODUCT_NAME).str.len_chars() > r.MAX_LENGTH[s.PRODUCT_NAME])
        .then(pl.lit("product_name:too_long")),
        pl.when(~pl.col(s.SKU).str.contains(pattern(s.SKU))).then(pl.lit("SKU:invalid_format")),
    ]  # fmt: skip
    # the reasons as a list only for the rows that fail: a list per row costs more than the rest
    reasons = [check.alias(f"reason_{i}") for i, check in enumerate(checks)]
    checked = flat.with_columns(*reasons, ts.dt.date().alias(s.EVENT_DATE))
    bad = pl.any_horizontal(pl.col(f"reason_{i}").is_not_null() for i in range(len(checks)))
    valid = checked.filter(~bad).select(s.OUTPUT_COLUMNS)
    valid_sink = valid.sink_parquet(
        pl.PartitionBy(f"{dest}/events", key=[s.EVENT_DATE, s.EVENT_NAME], include_key=False),
        compression="zstd",
        mkdir=True,
        lazy=True,
    )
    rejected = checked.filter(bad).select(
        "row", pl.concat_list(pl.col("^reason_.*$")).list.drop_nulls().alias("reasons")
    )
    records = (
        raw.with_row_index("row")
        .join(rejected, on="row")
        .select(
            pl.struct(*s.SELECTED_FIELDS).struct.json_encode().alias("source_record"),
            "reasons",
            pl.col("reasons").list.first().alias("reason"),
        )
    )
    records_sink = records.sink_parquet(
        f"{dest}/rejected/part-0.parquet", compression="zstd", mkdir=True, lazy=True
    )
    pl.collect_all([valid_sink, records_sink])


def duckdb_job(source: str, dest: str, run_date: dt.date) -> None:
    """DuckDB SQL: the checked rows in a temporary table, then two ``COPY`` statements
    (``PARTITION_BY`` for the valid rows)."""
    import duckdb

    start, end = _window(run_date)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        f"""
        CREATE TEMP TABLE checked AS
        WITH flat AS (
            SELECT
                timestamp,
                event_name AS raw_event_name,
                user_identifiers,
                product_information,
                timestamp AS event_datetime,
                regexp_replace(lower(nullif(trim(event_name), '')), '[\\s\\-]+', '_', 'g')
                    AS event_name,
                nullif(trim(user_identifiers.id), '') AS user_id,
                coalesce(lower(nullif(trim(user_identifiers.platform), '')), 'unknown')
                    AS platform,
                nullif(trim(product_information.name), '') AS product_name,
                upper(nullif(trim(product_information.SKU), '')) AS SKU
            FROM read_parquet($source)
        )
        SELECT *,
            CAST(event_datetime AS DATE) AS event_date,
            list_filter([
                CASE WHEN event_datetime IS NULL THEN 'event_datetime:missing'
                     WHEN event_datetime < $start OR event_datetime >= $end THEN '{_WINDOW}' END,
                CASE WHEN event_name IS NULL THEN 'event_name:missing'
                     WHEN NOT regexp_full_match(event_name, $name_pattern)
                     THEN 'event_name:invalid_format' END,
                CASE WHEN user_id IS NULL THEN 'user_id:missing'
                     WHEN length(user_id) > $max_user_id THEN 'user_id:too_long' END,
                CASE WHEN NOT regexp_full_match(platform, $platform_pattern)
                     THEN 'platform:invalid_format' END,
                CASE WHEN length(product_name) > $max_product_name
                     THEN 'product_name:too_long' END,
                CASE WHEN NOT regexp_full_match(SKU, $sku_pattern) THEN 'SKU:invalid_format' END
            ], lambda x: x IS NOT NULL) AS reasons
        FROM flat
        """,
        {
            "source": source,
            "start": start,
            "end": end,
            "name_pattern": r.PATTERNS[s.EVENT_NAME].strip("^$"),
            "platform_pattern": r.PATTERNS[s.PLATFORM].strip("^$"),
            "sku_pattern": r.PATTERNS[s.SKU].strip("^$"),
            "max_user_id": r.MAX_LENGTH[s.USER_ID],
            "max_product_name": r.MAX_LENGTH[s.PRODUCT_NAME],
        },
    )
    Path(dest).mkdir(parents=True, exist_ok=True)
    columns = ", ".join(s.OUTPUT_COLUMNS)
    con.execute(
        f"COPY (SELECT {columns} FROM checked WHERE len(reasons) = 0) TO '{dest}/events' "
        "(FORMAT parquet, COMPRESSION zstd, PARTITION_BY (event_date, event_name))"
    )
    Path(f"{dest}/rejected").mkdir(parents=True, exist_ok=True)
    con.execute(
        "COPY (SELECT to_json(struct_pack(timestamp, event_name := raw_event_name, "
        "user_identifiers, product_information))::VARCHAR AS source_record, reasons, "
        "reasons[1] AS reason FROM checked WHERE len(reasons) > 0) "
        f"TO '{dest}/rejected/part-0.parquet' (FORMAT parquet, COMPRESSION zstd)"
    )
    con.close()


PEERS = {"polars": polars_job, "duckdb": duckdb_job}
