"""The README's Athena tables (partition projection, no catalog crawler) parsed as Athena SQL and
held against what the pipeline writes: the files' columns and types, the partition columns, and
a projected location that is where the layout puts a date (and an event name)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

from processing.logic.layout import Layout, partition_dir
from processing.spec import schema as s

README = Path(__file__).resolve().parents[2] / "README.md"
ROOT = "s3://bucket/prefix"
DATE = dt.date(2024, 2, 29)
#: Athena's names for the Arrow types the files hold.
ATHENA_TYPES = {
    pa.timestamp("us", tz="UTC"): "TIMESTAMP",
    pa.string(): "TEXT",  # sqlglot's name for Athena's string
    pa.int64(): "BIGINT",
    pa.list_(pa.string()): "ARRAY<TEXT>",
    pa.date32(): "DATE",
}


def _tables() -> dict[str, exp.Create]:
    blocks = re.findall(r"```sql\n(.*?)```", README.read_text(), flags=re.S)
    statements = [
        sqlglot.parse_one(statement, read="athena")
        for block in blocks
        if "projection.enabled" in block
        for statement in block.split(";")
        if statement.strip()
    ]
    return {t.this.this.name: t for t in statements}


def _columns(table: exp.Create) -> list[tuple[str, str]]:
    return [(c.name, c.args["kind"].sql()) for c in table.this.expressions]


def _partitions(table: exp.Create) -> list[tuple[str, str]]:
    partitioned = table.find(exp.PartitionedByProperty)
    assert partitioned is not None
    return [(c.name, c.args["kind"].sql()) for c in partitioned.this.expressions]


def _properties(table: exp.Create) -> dict[str, str]:
    return {
        p.name: p.args["value"].name
        for p in table.find_all(exp.Property)
        if isinstance(p.args.get("value"), exp.Literal)
    }


def _expected(schema: pa.Schema) -> list[tuple[str, str]]:
    return [(f.name, ATHENA_TYPES[f.type]) for f in schema]


def test_both_tables_are_there() -> None:
    assert set(_tables()) == {"events", "rejected"}


@pytest.mark.parametrize("name", ["events", "rejected"])
def test_columns_and_partitions_are_what_the_files_and_paths_hold(name: str) -> None:
    table = _tables()[name]
    files = s.FILE_SCHEMA if name == "events" else s.REJECTED_SCHEMA
    assert _columns(table) == _expected(files)
    partitions = s.PARTITION_SCHEMA if name == "events" else pa.schema([s.PARTITION_SCHEMA[0]])
    assert _partitions(table) == _expected(partitions)
    assert table.find(exp.FileFormatProperty).name.upper() == "PARQUET"


@pytest.mark.parametrize("name", ["events", "rejected"])
def test_the_projected_location_is_where_the_layout_puts_a_date(name: str) -> None:
    table = _tables()[name]
    props = _properties(table)
    assert props["projection.enabled"] == "true"
    assert props["projection.event_date.type"] == "date"
    assert props["projection.event_date.format"] == "yyyy-MM-dd"  # the path's isoformat
    first, last = props["projection.event_date.range"].split(",")
    assert dt.date.fromisoformat(first) and last == "NOW"
    layout = Layout(ROOT)
    template = props["storage.location.template"].replace("${event_date}", DATE.isoformat())
    if name == "events":
        assert props["projection.event_name.type"] == "injected"
        where = f"{layout.events_date(DATE)}/{partition_dir('view')}/"
        template = template.replace("${event_name}", "view")
    else:
        where = f"{layout.rejected_date(DATE)}/"
    assert template == where
    location = table.find(exp.LocationProperty).this.name
    assert template.startswith(location) and location == f"{ROOT}/{name}/"
