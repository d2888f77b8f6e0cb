"""The lake as the Glue Data Catalog describes it (pure: no client, no clock).

Two tables per lake, ``<prefix>events`` (partitioned by ``event_date`` date and ``event_name``
string) and ``<prefix>rejected`` (by ``event_date``), their columns and Glue types derived from
the schemas the writer uses, stored as Parquet the way Athena reads it. A date's partitions are
derived from its published manifest (its ``files`` list: an event name with files is a
partition, and the rejected rows one more), never from a listing of the store; what to add,
update and remove is a plan against the partitions the catalog already has for the date.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pyarrow as pa

from processing.logic.layout import EVENTS, REJECTED, Layout, partition_dir
from processing.spec import schema as s

#: How Athena (and Hive, Spark, Trino) read a Parquet table.
SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
INPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

#: Our own keys among a table's and a partition's parameters (others' keys are left alone).
_OWN = "events_lake."
#: Glue's limits on a batch: 100 partitions created or updated, 25 deleted, per call.
CREATE_BATCH, UPDATE_BATCH, DELETE_BATCH = 100, 100, 25


#: Glue (Hive) names of the flat Arrow types the lake's files hold.
_GLUE_TYPES = {
    pa.string(): "string",
    pa.large_string(): "string",
    pa.date32(): "date",
    pa.int64(): "bigint",
    pa.int32(): "int",
    pa.bool_(): "boolean",
    pa.float64(): "double",
}


def glue_type(arrow: pa.DataType) -> str:
    """The Glue (Hive) type of an Arrow type the lake's files hold; timestamps are
    ``timestamp`` whatever their unit and zone (Athena reads UTC microseconds as such)."""
    if pa.types.is_dictionary(arrow):
        return glue_type(arrow.value_type)
    if pa.types.is_timestamp(arrow):
        return "timestamp"
    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow):
        return f"array<{glue_type(arrow.value_type)}>"
    if arrow in _GLUE_TYPES:
        return _GLUE_TYPES[arrow]
    raise ValueError(f"no Glue type for {arrow}")


def columns(schema: pa.Schema) -> list[dict[str, str]]:
    """Glue columns for ``schema``: names in lower case (Athena lowers them; its Parquet reader
    matches the files' columns whatever their case)."""
    return [{"Name": f.name.lower(), "Type": glue_type(f.type)} for f in schema]


def lake_location(dest: str) -> str:
    """The lake's root as Glue and Athena name it: ``s3://bucket/prefix`` (``s3a://`` is
    s3fs's alias of the same store)."""
    scheme, sep, rest = dest.partition("://")
    if not sep or scheme not in ("s3", "s3a"):
        raise ValueError(f"a Glue table points at S3, not at {dest!r}")
    return "s3://" + rest.strip("/")


@dataclass(frozen=True)
class TableSpec:
    """One of the lake's tables: its name, its location (``.../events/``), its columns (what
    the files hold) and its partition keys (what the paths hold)."""

    name: str
    dataset: str  # "events" or "rejected"
    location: str
    columns: tuple[tuple[str, str], ...]
    partition_keys: tuple[tuple[str, str], ...]

    def storage(self, location: str) -> dict[str, Any]:
        """A StorageDescriptor: Parquet at ``location``."""
        return {
            "Columns": [{"Name": n, "Type": t} for n, t in self.columns],
            "Location": location,
            "InputFormat": INPUT_FORMAT,
            "OutputFormat": OUTPUT_FORMAT,
            "Compressed": False,
            "SerdeInfo": {
                "SerializationLibrary": SERDE,
                "Parameters": {"serialization.format": "1"},
            },
            "StoredAsSubDirectories": False,
        }

    def table_input(self) -> dict[str, Any]:
        """The table as CreateTable and UpdateTable take it."""
        return {
            "Name": self.name,
            "Description": f"events-lake: the {self.dataset} of the lake, one partition per "
            + ("date and event name" if self.dataset == EVENTS else "date"),
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {
                "classification": "parquet",
                "EXTERNAL": "TRUE",
                f"{_OWN}schema_version": s.SCHEMA_VERSION,
            },
            "StorageDescriptor": self.storage(self.location),
            "PartitionKeys": [{"Name": n, "Type": t} for n, t in self.partition_keys],
        }


def lake_tables(dest: str, prefix: str = "") -> tuple[TableSpec, TableSpec]:
    """The lake's two tables, ``<prefix>events`` and ``<prefix>rejected``."""
    layout = Layout(lake_location(dest))
    keys = tuple((c["Name"], c["Type"]) for c in columns(s.PARTITION_SCHEMA))
    events = TableSpec(
        name=f"{prefix}{EVENTS}",
        dataset=EVENTS,
        location=f"{layout.root}/{EVENTS}/",
        columns=tuple((c["Name"], c["Type"]) for c in columns(s.FILE_SCHEMA)),
        partition_keys=keys,
    )
    rejected = TableSpec(
        name=f"{prefix}{REJECTED}",
        dataset=REJECTED,
        location=f"{layout.root}/{REJECTED}/",
        columns=tuple((c["Name"], c["Type"]) for c in columns(s.REJECTED_SCHEMA)),
        partition_keys=keys[:1],
    )
    return events, rejected


def _columns_of(found: Iterable[Mapping[str, Any]]) -> tuple[tuple[str, str], ...]:
    return tuple((str(c.get("Name", "")).lower(), str(c.get("Type", "")).lower()) for c in found)


def _own(parameters: Mapping[str, Any] | None, keys: Iterable[str]) -> dict[str, Any]:
    found = parameters or {}
    return {k: found.get(k) for k in keys}


def _storage_shape(sd: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        _columns_of(sd.get("Columns", ())),
        str(sd.get("Location", "")).rstrip("/"),
        sd.get("InputFormat"),
        sd.get("OutputFormat"),
        (sd.get("SerdeInfo") or {}).get("SerializationLibrary"),
    )


def _table_shape(table: Mapping[str, Any], own_keys: Iterable[str]) -> tuple[Any, ...]:
    return (
        table.get("TableType"),
        _storage_shape(table.get("StorageDescriptor") or {}),
        _columns_of(table.get("PartitionKeys", ())),
        _own(table.get("Parameters"), own_keys),
    )


def table_differs(found: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether a table as GetTable returns it differs from ``wanted`` (a TableInput) in what
    readers use: type, columns, location, formats, SerDe, partition keys, our parameters.
    What Glue or other tools add (times, versions, their own parameters) is not compared."""
    keys = list(wanted.get("Parameters", {}))
    return _table_shape(found, keys) != _table_shape(wanted, keys)


def same_location(found: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether a table found in the catalog points where ``wanted`` does (the same lake)."""

    def where(table: Mapping[str, Any]) -> str:
        location = str((table.get("StorageDescriptor") or {}).get("Location", ""))
        return location.replace("s3a://", "s3://", 1).rstrip("/")

    return where(found) == where(wanted)


def partition_inputs(
    table: TableSpec, date: dt.date, manifest: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The partitions of ``table`` that the published ``manifest`` of ``date`` has, as
    PartitionInputs: one per event name with files (events), one if the date has rejected
    files (rejected); each with its location in the layout, its columns, and which version it
    describes (run, publish, rows and files, among its parameters)."""
    rows: dict[tuple[str, ...], int] = {}
    files: dict[tuple[str, ...], int] = {}
    for f in manifest.get("files", ()):
        if f.get("dataset") != table.dataset:
            continue
        values: tuple[str, ...] = (date.isoformat(),)
        if table.dataset == EVENTS:
            values += (_event_name(str(f["path"])),)
        rows[values] = rows.get(values, 0) + int(f.get("rows", 0))
        files[values] = files.get(values, 0) + 1
    root = table.location.rstrip("/")
    found = []
    for values in sorted(rows):
        where = f"{root}/{s.EVENT_DATE}={values[0]}/"
        if len(values) > 1:
            where += f"{partition_dir(values[1])}/"
        found.append(
            {
                "Values": list(values),
                "StorageDescriptor": table.storage(where),
                "Parameters": {
                    f"{_OWN}run_id": str(manifest.get("run_id", "")),
                    f"{_OWN}publish_id": str(manifest.get("publish_id", "")),
                    f"{_OWN}rows": str(rows[values]),
                    f"{_OWN}files": str(files[values]),
                },
            }
        )
    return found


def _event_name(path: str) -> str:
    """The event name of a published file, from its path relative to the date directory
    (``event_name=view/merged-00005-3f9a1c2e.parquet``)."""
    directory = path.split("/", 1)[0]
    key, sep, name = directory.partition("=")
    if not sep or key != s.EVENT_NAME or "/" not in path:
        raise ValueError(f"{path!r} is not under an {s.EVENT_NAME}=... directory")
    partition_dir(name)  # a safe partition value, as the layout made it
    return name


@dataclass(frozen=True)
class PartitionPlan:
    """What to change in one table for one date: partitions to create and to update
    (PartitionInputs), the values of those to delete, and how many are already as wanted."""

    create: tuple[dict[str, Any], ...]
    update: tuple[dict[str, Any], ...]
    delete: tuple[tuple[str, ...], ...]
    unchanged: int


def _partition_shape(partition: Mapping[str, Any], own_keys: Iterable[str]) -> tuple[Any, ...]:
    return (
        _storage_shape(partition.get("StorageDescriptor") or {}),
        _own(partition.get("Parameters"), own_keys),
    )


def plan_partitions(
    date: dt.date, wanted: Sequence[Mapping[str, Any]], found: Iterable[Mapping[str, Any]]
) -> PartitionPlan:
    """Make the catalog's partitions of ``date`` (``found``, as GetPartitions returns them; other
    dates' are ignored) exactly ``wanted``: create the missing, update those that differ, delete
    those the published version no longer has (an event name gone after a rerun)."""
    day = date.isoformat()
    there = {tuple(p["Values"]): p for p in found if p.get("Values", [None])[0] == day}
    create, update, unchanged = [], [], 0
    for partition in wanted:
        values = tuple(partition["Values"])
        existing = there.get(values)
        keys = list(partition.get("Parameters", {}))
        if existing is None:
            create.append(dict(partition))
        elif _partition_shape(existing, keys) != _partition_shape(partition, keys):
            update.append(dict(partition))
        else:
            unchanged += 1
    kept = {tuple(p["Values"]) for p in wanted}
    delete = tuple(sorted(v for v in there if v not in kept))
    return PartitionPlan(tuple(create), tuple(update), delete, unchanged)


T = TypeVar("T")


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in runs of at most ``size`` (a Glue batch call's limit)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def date_expression(date: dt.date) -> str:
    """GetPartitions' filter for the partitions of ``date`` (the key is typed ``date``)."""
    return f"{s.EVENT_DATE} = '{date.isoformat()}'"


@dataclass(frozen=True)
class TableRegistration:
    """What registering one date did to one table: small facts, for the summary and logs."""

    database: str
    table: str
    date: str  # ISO date
    partitions: int  # the date's partitions now
    added: int
    updated: int
    removed: int
    unchanged: int
    #: "created", "updated" or None: what was done to the table's own definition
    table_change: str | None = None

    def line(self) -> str:
        """``glue db.events: 7 partitions of 2023-10-23 (2 added, 5 updated, 0 removed)``."""
        noun = "partition" if self.partitions == 1 else "partitions"
        counts = f"{self.added} added, {self.updated} updated, {self.removed} removed"
        if self.unchanged:
            counts += f", {self.unchanged} unchanged"
        if self.table_change:
            counts += f"; table {self.table_change}"
        return (
            f"glue {self.database}.{self.table}: {self.partitions} {noun} of {self.date} ({counts})"
        )
