"""The lake as the Glue Data Catalog describes it (``processing.logic.glue_catalog``): types,
tables, a date's partitions from its manifest and the plan against what the catalog has, as
tables of cases; the adapter's translation of Glue's errors, and its batches and races against
an in-memory catalog; the settings of the section."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoRegionError

from processing.adapters.glue_catalog import GlueCatalog, classify, translate
from processing.logic import glue_catalog as gc
from processing.logic.layout import Layout, partition_dir
from processing.spec import schema as s
from processing.spec.errors import ConfigError, TransientError
from processing.spec.settings import Settings

DATE = dt.date(2023, 10, 23)
DEST = "s3://bucket/lake"


@pytest.mark.parametrize(
    ("arrow", "glue"),
    [
        (pa.timestamp("us", tz="UTC"), "timestamp"),
        (pa.timestamp("ns"), "timestamp"),
        (pa.string(), "string"),
        (pa.dictionary(pa.int32(), pa.string()), "string"),
        (pa.int64(), "bigint"),
        (pa.int32(), "int"),
        (pa.date32(), "date"),
        (pa.list_(pa.string()), "array<string>"),
        (pa.bool_(), "boolean"),
        (pa.float64(), "double"),
    ],
)
def test_glue_types(arrow: pa.DataType, glue: str) -> None:
    assert gc.glue_type(arrow) == glue


def test_a_type_without_a_glue_name_is_refused() -> None:
    with pytest.raises(ValueError, match="no Glue type"):
        gc.glue_type(pa.float16())


def _events_and_rejected(prefix: str = "") -> tuple[gc.TableSpec, gc.TableSpec]:
    return gc.lake_tables(DEST, prefix)


def test_the_tables_hold_what_the_files_and_paths_hold() -> None:
    events, rejected = _events_and_rejected("prod_")
    assert (events.name, rejected.name) == ("prod_events", "prod_rejected")
    assert events.columns == (
        ("event_datetime", "timestamp"),
        ("user_id", "string"),
        ("platform", "string"),
        ("product_name", "string"),
        ("sku", "string"),  # lower case, as Athena names it
    )
    assert [n for n, _ in events.columns] == [f.name.lower() for f in s.FILE_SCHEMA]
    assert [n for n, _ in rejected.columns] == s.REJECTED_SCHEMA.names
    assert dict(rejected.columns)["reasons"] == "array<string>"
    assert events.partition_keys == (("event_date", "date"), ("event_name", "string"))
    assert rejected.partition_keys == (("event_date", "date"),)
    assert (events.location, rejected.location) == (f"{DEST}/events/", f"{DEST}/rejected/")


def test_a_table_is_parquet_as_athena_reads_it() -> None:
    table = _events_and_rejected()[0].table_input()
    sd = table["StorageDescriptor"]
    assert table["TableType"] == "EXTERNAL_TABLE"
    assert table["Parameters"]["classification"] == "parquet"
    assert sd["SerdeInfo"]["SerializationLibrary"] == (
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    )
    assert sd["InputFormat"].endswith("MapredParquetInputFormat")
    assert sd["OutputFormat"].endswith("MapredParquetOutputFormat")
    assert table["PartitionKeys"] == [
        {"Name": "event_date", "Type": "date"},
        {"Name": "event_name", "Type": "string"},
    ]


@pytest.mark.parametrize(
    ("dest", "location"),
    [
        ("s3://bucket/lake", "s3://bucket/lake"),
        ("s3://bucket/lake/", "s3://bucket/lake"),
        ("s3a://bucket/a/b", "s3://bucket/a/b"),
        ("s3://bucket", "s3://bucket"),
    ],
)
def test_lake_location(dest: str, location: str) -> None:
    assert gc.lake_location(dest) == location


@pytest.mark.parametrize("dest", ["/tmp/lake", "file:///tmp/lake", "gs://bucket/lake", "lake"])
def test_a_lake_off_s3_has_no_glue_location(dest: str) -> None:
    with pytest.raises(ValueError, match="points at S3"):
        gc.lake_location(dest)


def _file(dataset: str, path: str, rows: int = 10) -> dict[str, Any]:
    return {"dataset": dataset, "path": path, "rows": rows, "bytes": 100}


MANIFEST = {
    "run_id": "r1",
    "publish_id": "p1",
    "files": [
        _file("events", "event_name=view/merged-00000-0000000a.parquet", 5),
        _file("events", "event_name=view/part-00001-000-0000000a.parquet", 7),
        _file("events", "event_name=add_to_cart/merged-00002-0000000a.parquet", 3),
        _file("rejected", "merged-00003-0000000a.parquet", 2),
    ],
}


def test_a_dates_partitions_come_from_its_manifest_where_the_layout_puts_them() -> None:
    events, rejected = _events_and_rejected()
    found = gc.partition_inputs(events, DATE, MANIFEST)
    assert [p["Values"] for p in found] == [["2023-10-23", "add_to_cart"], ["2023-10-23", "view"]]
    view = found[1]
    layout = Layout(DEST)
    assert view["StorageDescriptor"]["Location"] == (
        f"{layout.events_date(DATE)}/{partition_dir('view')}/"
    )
    assert (
        view["StorageDescriptor"]["Columns"] == events.table_input()["StorageDescriptor"]["Columns"]
    )
    assert view["Parameters"] == {
        "events_lake.run_id": "r1",
        "events_lake.publish_id": "p1",
        "events_lake.rows": "12",
        "events_lake.files": "2",
    }
    (only,) = gc.partition_inputs(rejected, DATE, MANIFEST)
    assert only["Values"] == ["2023-10-23"]
    assert only["StorageDescriptor"]["Location"] == f"{layout.rejected_date(DATE)}/"


@pytest.mark.parametrize(
    ("files", "events", "rejected"),
    [
        pytest.param([], 0, 0, id="an-empty-day"),
        pytest.param(
            [_file("events", "event_name=view/x-0000000a.parquet")], 1, 0, id="no-rejected"
        ),
        pytest.param([_file("rejected", "x-0000000a.parquet")], 0, 1, id="only-rejected"),
    ],
)
def test_only_what_has_files_is_a_partition(files: list, events: int, rejected: int) -> None:
    manifest = {**MANIFEST, "files": files}
    tables = _events_and_rejected()
    assert [len(gc.partition_inputs(t, DATE, manifest)) for t in tables] == [events, rejected]


def test_an_events_file_outside_an_event_name_directory_is_refused() -> None:
    manifest = {**MANIFEST, "files": [_file("events", "stray.parquet")]}
    with pytest.raises(ValueError, match="event_name="):
        gc.partition_inputs(_events_and_rejected()[0], DATE, manifest)


def _found(partition: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A partition as GetPartitions returns it: what was given, plus Glue's own fields."""
    found = {**partition, "DatabaseName": "db", "TableName": "events", "CreationTime": 0}
    found["StorageDescriptor"] = {**partition["StorageDescriptor"], "NumberOfBuckets": -1}
    found["Parameters"] = {**partition["Parameters"], "transient_lastDdlTime": "1"}
    for key, value in changes.items():
        if key == "location":
            found["StorageDescriptor"]["Location"] = value
        else:
            found["Parameters"][f"events_lake.{key}"] = value
    return found


def _wanted() -> list[dict[str, Any]]:
    return gc.partition_inputs(_events_and_rejected()[0], DATE, MANIFEST)


def _other_date(partition: dict[str, Any]) -> dict[str, Any]:
    return {**partition, "Values": ["2023-10-22", partition["Values"][1]]}


CART, VIEW = ("2023-10-23", "add_to_cart"), ("2023-10-23", "view")
PLANS = [
    # (what the catalog has, as a function of the wanted partitions; create, update, delete,
    # unchanged as values)
    pytest.param(lambda w: [], [CART, VIEW], [], [], 0, id="a-first-publish"),
    pytest.param(lambda w: [_found(p) for p in w], [], [], [], 2, id="a-repeat"),
    pytest.param(
        lambda w: [_found(w[0]), _found(w[1], publish_id="p0")], [], [VIEW], [], 1, id="a-rerun"
    ),
    pytest.param(
        lambda w: [_found(w[0], location="s3://elsewhere/"), _found(w[1])],
        [],
        [CART],
        [],
        1,
        id="moved",
    ),
    pytest.param(
        lambda w: [_found(w[1]), {**_found(w[1]), "Values": ["2023-10-23", "search"]}],
        [CART],
        [],
        [("2023-10-23", "search")],
        1,
        id="an-event-name-gone",
    ),
    pytest.param(
        lambda w: [_other_date(_found(p)) for p in w], [CART, VIEW], [], [], 0, id="other-dates"
    ),
]


@pytest.mark.parametrize(("there", "create", "update", "delete", "unchanged"), PLANS)
def test_the_plan_makes_the_dates_partitions_exactly_the_manifests(
    there, create, update, delete, unchanged
) -> None:
    wanted = _wanted()
    plan = gc.plan_partitions(DATE, wanted, there(wanted))
    assert [tuple(p["Values"]) for p in plan.create] == create
    assert [tuple(p["Values"]) for p in plan.update] == update
    assert list(plan.delete) == delete
    assert plan.unchanged == unchanged


def _glue_table(table_input: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A table as GetTable returns it."""
    found = {**table_input, "DatabaseName": "db", "VersionId": "3", "CreateTime": 0}
    found["Parameters"] = {**table_input["Parameters"], "transient_lastDdlTime": "1"}
    found["StorageDescriptor"] = {**table_input["StorageDescriptor"], **changes}
    return found


def test_a_table_differs_only_in_what_readers_use() -> None:
    wanted = _events_and_rejected()[0].table_input()
    assert not gc.table_differs(_glue_table(wanted), wanted)
    upper = [{**c, "Name": c["Name"].upper()} for c in wanted["StorageDescriptor"]["Columns"]]
    assert not gc.table_differs(_glue_table(wanted, Columns=upper), wanted)
    fewer = wanted["StorageDescriptor"]["Columns"][:-1]
    assert gc.table_differs(_glue_table(wanted, Columns=fewer), wanted)
    assert gc.table_differs(_glue_table(wanted, InputFormat="TextInputFormat"), wanted)
    assert gc.table_differs({**_glue_table(wanted), "PartitionKeys": []}, wanted)
    older = {**_glue_table(wanted)}
    older["Parameters"] = {**older["Parameters"], "events_lake.schema_version": "0.9"}
    assert gc.table_differs(older, wanted)


def test_a_table_of_another_lake_is_told_apart() -> None:
    wanted = _events_and_rejected()[0].table_input()
    assert gc.same_location(_glue_table(wanted, Location=f"{DEST}/events"), wanted)
    assert not gc.same_location(_glue_table(wanted, Location="s3://other/events/"), wanted)


@pytest.mark.parametrize(
    ("n", "size", "lengths"), [(0, 25, []), (25, 25, [25]), (101, 100, [100, 1])]
)
def test_batches(n: int, size: int, lengths: list[int]) -> None:
    assert [len(b) for b in gc.batches(list(range(n)), size)] == lengths


def test_the_filter_of_a_date() -> None:
    assert gc.date_expression(DATE) == "event_date = '2023-10-23'"


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        (
            {"partitions": 7, "added": 2, "updated": 5},
            "glue db.events: 7 partitions of 2023-10-23 (2 added, 5 updated, 0 removed)",
        ),
        (
            {"partitions": 1, "unchanged": 1},
            "glue db.events: 1 partition of 2023-10-23 (0 added, 0 updated, 0 removed, "
            "1 unchanged)",
        ),
        (
            {"partitions": 3, "added": 3, "table_change": "created"},
            "glue db.events: 3 partitions of 2023-10-23 (3 added, 0 updated, 0 removed; "
            "table created)",
        ),
    ],
)
def test_a_registration_in_one_line(changes: dict[str, Any], line: str) -> None:
    counts = {"added": 0, "updated": 0, "removed": 0, "unchanged": 0, **changes}
    assert gc.TableRegistration("db", "events", "2023-10-23", **counts).line() == line


# --- the adapter: Glue's errors, as the pipeline's ---


def _client_error(code: str, status: int = 400) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": "no"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "CreateTable")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "kind", "says"),
    [
        (_client_error("AccessDeniedException", 400), ConfigError, "glue:BatchCreatePartition"),
        (_client_error("UnrecognizedClientException"), ConfigError, "credentials"),
        (_client_error("InvalidInputException"), ConfigError, "--glue-database"),
        (_client_error("ResourceNumberLimitExceededException"), ConfigError, "quota"),
        (_client_error("ThrottlingException"), TransientError, "retry"),
        (_client_error("InternalServiceException", 500), TransientError, "retry"),
        (_client_error("", 503), TransientError, "retry"),
        (NoRegionError(), ConfigError, "AWS_REGION"),
        (EndpointConnectionError(endpoint_url="http://x"), TransientError, "cannot reach"),
    ],
)
def test_glue_errors_say_what_to_fix_and_whether_to_retry(error, kind, says: str) -> None:
    translated = translate(error, "db")
    assert type(translated) is kind
    assert says in str(translated)


def test_an_error_that_is_not_glues_stays_itself() -> None:
    assert translate(KeyError("x"), "db") is None


def test_an_error_of_one_partition_of_a_batch_is_classified_by_its_code() -> None:
    assert isinstance(classify("ThrottlingException", 0, "x", "db"), TransientError)
    assert isinstance(classify("InvalidInputException", 0, "x", "db"), ConfigError)


# --- the adapter against an in-memory catalog: batches, races, repeats ---


class MemoryGlue:
    """The few Glue calls the adapter makes, in memory, as Glue answers them (per-partition
    errors in batch calls; keyword arguments named as Glue's). ``meanwhile``: called before
    each batch call (another writer of the catalog)."""

    def __init__(self) -> None:
        self.databases: set[str] = set()
        self.tables: dict[str, dict[str, Any]] = {}
        self.partitions: dict[str, dict[tuple[str, ...], dict[str, Any]]] = {}
        self.calls: list[str] = []
        self.meanwhile: Any = lambda: None

    def get_database(self, **call: Any) -> dict[str, Any]:
        if call["Name"] not in self.databases:
            raise _client_error("EntityNotFoundException")
        return {"Database": {"Name": call["Name"]}}

    def create_database(self, **call: Any) -> None:
        self.databases.add(call["DatabaseInput"]["Name"])

    def get_table(self, **call: Any) -> dict[str, Any]:
        if call["Name"] not in self.tables:
            raise _client_error("EntityNotFoundException")
        return {"Table": self.tables[call["Name"]]}

    def create_table(self, **call: Any) -> None:
        table = call["TableInput"]
        self.tables[table["Name"]] = table
        self.partitions[table["Name"]] = {}

    def update_table(self, **call: Any) -> None:
        self.calls.append("update_table")
        self.tables[call["TableInput"]["Name"]] = call["TableInput"]

    def get_paginator(self, name: str) -> Any:
        assert name == "get_partitions"
        glue = self

        class Pages:
            def paginate(self, **call: Any) -> Any:
                day = call["Expression"].split("'")[1]
                found = glue.partitions[call["TableName"]].values()
                return [{"Partitions": [p for p in found if p["Values"][0] == day]}]

        return Pages()

    def batch_create_partition(self, **call: Any) -> dict[str, Any]:
        self.meanwhile()
        inputs, there = call["PartitionInputList"], self.partitions[call["TableName"]]
        self.calls.append(f"create {len(inputs)}")
        assert len(inputs) <= gc.CREATE_BATCH
        errors = []
        for p in inputs:
            values = tuple(p["Values"])
            if values in there:
                errors.append(_entry(values, "AlreadyExistsException", "PartitionValues"))
            else:
                there[values] = p
        return {"Errors": errors}

    def batch_update_partition(self, **call: Any) -> dict[str, Any]:
        self.meanwhile()
        entries, there = call["Entries"], self.partitions[call["TableName"]]
        self.calls.append(f"update {len(entries)}")
        assert len(entries) <= gc.UPDATE_BATCH
        errors = []
        for entry in entries:
            values = tuple(entry["PartitionValueList"])
            if values not in there:
                errors.append(_entry(values, "EntityNotFoundException", "PartitionValueList"))
            else:
                there[values] = entry["PartitionInput"]
        return {"Errors": errors}

    def batch_delete_partition(self, **call: Any) -> dict[str, Any]:
        self.meanwhile()
        values, there = call["PartitionsToDelete"], self.partitions[call["TableName"]]
        self.calls.append(f"delete {len(values)}")
        assert len(values) <= gc.DELETE_BATCH
        errors = []
        for p in values:
            if there.pop(tuple(p["Values"]), None) is None:
                errors.append(_entry(p["Values"], "EntityNotFoundException", "PartitionValues"))
        return {"Errors": errors}


def _entry(values: tuple[str, ...], code: str, key: str) -> dict[str, Any]:
    return {key: list(values), "ErrorDetail": {"ErrorCode": code, "ErrorMessage": "x"}}


def _day(names: list[str], run: str = "r1") -> dict[str, Any]:
    files = [_file("events", f"event_name={n}/merged-00000-0000000a.parquet") for n in names]
    return {"run_id": run, "publish_id": run, "files": files}


def _counts(done: tuple[gc.TableRegistration, ...]) -> list[tuple[int, ...]]:
    return [(r.partitions, r.added, r.updated, r.removed, r.unchanged) for r in done]


def test_a_day_of_many_event_names_goes_in_batches_and_a_repeat_changes_nothing() -> None:
    glue = MemoryGlue()
    catalog = GlueCatalog("db", client=glue)
    names = [f"e{i:03d}" for i in range(130)]
    first = catalog.register(DEST, DATE, _day(names))
    assert _counts(first) == [(130, 130, 0, 0, 0), (0, 0, 0, 0, 0)]
    assert [r.table_change for r in first] == ["created", "created"]
    assert glue.calls == ["create 100", "create 30"]
    glue.calls.clear()
    again = GlueCatalog("db", client=glue).register(DEST, DATE, _day(names))
    assert _counts(again) == [(130, 0, 0, 0, 130), (0, 0, 0, 0, 0)]
    assert [r.table_change for r in again] == [None, None]
    assert glue.calls == []  # nothing written
    rerun = catalog.register(DEST, DATE, _day(names[:3], run="r2"))
    assert _counts(rerun) == [(3, 0, 3, 127, 0), (0, 0, 0, 0, 0)]
    assert glue.calls == ["update 3", *[f"delete {n}" for n in (25, 25, 25, 25, 25, 2)]]


def test_a_partition_another_writer_made_or_removed_meanwhile_is_updated_or_created() -> None:
    glue = MemoryGlue()
    catalog = GlueCatalog("db", client=glue)
    catalog.register(DEST, DATE, _day(["view", "search"]))
    events = glue.partitions["events"]
    view = ("2023-10-23", "view")

    def another_writer() -> None:  # before the first batch call: "view" vanishes, "cart" appears
        glue.meanwhile = lambda: None
        events.pop(view)
        events[("2023-10-23", "cart")] = {"Values": ["2023-10-23", "cart"], "Parameters": {}}

    glue.meanwhile = another_writer
    (done, _) = catalog.register(DEST, DATE, _day(["view", "search", "cart"], run="r2"))
    assert (done.added, done.updated, done.removed) == (1, 2, 0)
    assert set(events) == {view, ("2023-10-23", "search"), ("2023-10-23", "cart")}
    assert all(p["Parameters"]["events_lake.run_id"] == "r2" for p in events.values())


def test_a_table_of_another_lake_is_refused_and_a_changed_definition_updated() -> None:
    glue = MemoryGlue()
    GlueCatalog("db", client=glue).register("s3://other/lake", DATE, _day(["view"]))
    with pytest.raises(ConfigError, match=r"another lake's .* --glue-table-prefix"):
        GlueCatalog("db", client=glue).register(DEST, DATE, _day(["view"]))
    done = GlueCatalog("db", "mine_", client=glue).register(DEST, DATE, _day(["view"]))
    assert [r.table for r in done] == ["mine_events", "mine_rejected"]
    glue.tables["mine_events"]["StorageDescriptor"]["Columns"] = []  # an older definition
    done = GlueCatalog("db", "mine_", client=glue).register(DEST, DATE, _day(["view"]))
    assert [r.table_change for r in done] == ["updated", None]
    assert glue.calls[-1] == "update_table"


# --- the settings ---


BASE = {"PROCESSING_DATE": "2023-10-23", "PROCESSING_SOURCE": "x", "PROCESSING_DEST": DEST}


def test_the_catalog_is_off_unless_a_database_is_given() -> None:
    settings = Settings.load(BASE)
    assert (settings.glue_database, settings.glue_table_prefix) == (None, "")
    given = Settings.load({**BASE, "PROCESSING_GLUE_DATABASE": "lake_db"}, glue_table_prefix="p_")
    assert (given.glue_database, given.glue_table_prefix) == ("lake_db", "p_")


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"PROCESSING_GLUE_DATABASE": "Lake"}, "--glue-database or PROCESSING_GLUE_DATABASE"),
        ({"PROCESSING_GLUE_DATABASE": "lake-db"}, "lower-case letters, digits and underscores"),
        ({"PROCESSING_GLUE_DATABASE": "x" * 256}, "longer than 255"),
        ({"PROCESSING_GLUE_TABLE_PREFIX": "p_"}, "glue_table_prefix needs --glue-database"),
        (
            {"PROCESSING_GLUE_DATABASE": "db", "PROCESSING_GLUE_TABLE_PREFIX": "P-"},
            "--glue-table-prefix or PROCESSING_GLUE_TABLE_PREFIX",
        ),
        (
            {"PROCESSING_GLUE_DATABASE": "db", "PROCESSING_DEST": "/tmp/lake"},
            "--dest is a local path: give an s3:// --dest",
        ),
        (
            {"PROCESSING_GLUE_DATABASE": "db", "PROCESSING_DEST": "gs://b/lake"},
            "--dest is a gs:// URL",
        ),
    ],
)
def test_a_wrong_catalog_setting_names_its_flag_and_variable(env: dict, says: str) -> None:
    with pytest.raises(ConfigError, match="bad setting") as info:
        Settings.load({**BASE, **env})
    assert says in str(info.value)


def test_a_lake_off_s3_is_fine_without_the_catalog() -> None:
    assert Settings.load({**BASE, "PROCESSING_DEST": "/tmp/lake"}).glue_database is None
