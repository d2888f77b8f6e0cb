"""Fixtures for tests of the BigQuery path: the real ``google-cloud-bigquery-storage`` client
against the emulator's gRPC server, started in this process on a free port."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from processing.adapters.sources.bigquery import BigQueryOptions, BigQuerySource
from processing.emulator.bigquery_storage import Emulator
from processing.spec import schema as s

DATE = dt.date(2023, 10, 23)
TABLE = "demo.events.events"
URL = f"bigquery://{TABLE}"

EmulatorFactory = Callable[..., Emulator]


@pytest.fixture
def emulator() -> Iterator[EmulatorFactory]:
    """``emulator({"p.d.t": path}, **options)``: a started emulator, stopped after the test."""
    started: list[Emulator] = []

    def start(tables: Mapping[str, str | Path], **options: Any) -> Emulator:
        server = Emulator({k: str(v) for k, v in tables.items()}, **options)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(grace=None)


def events(rows: list[tuple[Any, ...]], **extra: list[Any]) -> pa.Table:
    """A table in the BigQuery shape from (timestamp, event, platform, id, product, sku) rows;
    ``extra`` adds columns the pipeline does not select."""
    table = pa.table(
        {
            "timestamp": pa.array([r[0] for r in rows], pa.timestamp("us", tz="UTC")),
            "event_name": pa.array([r[1] for r in rows], pa.string()),
            "user_identifiers": pa.array(
                [{"platform": r[2], "id": r[3]} for r in rows], s.USER_IDENTIFIERS
            ),
            "product_information": pa.array(
                [None if r[4] is None else {"name": r[4], "SKU": r[5]} for r in rows],
                s.PRODUCT_INFORMATION,
            ),
        }
    )
    for name, values in extra.items():
        table = table.append_column(name, pa.array(values))
    return table


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.UTC)  # type: ignore[misc]


def write(
    path: Path, table: pa.Table, row_group_rows: int | None = None, age: float = 3600
) -> Path:
    """Write ``table`` as a Parquet table file, loaded ``age`` seconds ago (the emulator shows a
    file to snapshots taken after its modification time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_rows)
    loaded = time.time() - age
    os.utime(path, (loaded, loaded))
    return path


def source(address: str, **options: Any) -> BigQuerySource:
    return BigQuerySource(URL, BigQueryOptions(endpoint=address, **options))


def read_all(src: BigQuerySource, date: dt.date = DATE, batch_rows: int = 1_000_000) -> pa.Table:
    """Every row of every stream of a fresh plan, in stream order."""
    plan = src.plan(date, 1_000_000)
    tables = [t for piece in plan.pieces for t in piece.read(batch_rows)]
    if not tables:
        return s.INPUT_SCHEMA.empty_table()
    return pa.concat_tables(tables).cast(s.INPUT_SCHEMA)


def sorted_rows(table: pa.Table) -> list[dict[str, Any]]:
    return sorted(table.to_pylist(), key=repr)
