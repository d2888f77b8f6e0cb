"""The BigQuery source with the real client, against the emulator over gRPC.

Projection, the date window and its boundaries, nested structs, empty tables and streams, many
streams, compression, resume after a dropped stream, snapshots, and each error as one line.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from google.cloud.bigquery_storage_v1 import types

from processing.adapters.sources.bigquery import make_client
from processing.logic.generate import GenerateParams, generate
from processing.spec import schema as s
from processing.spec.errors import (
    ConfigError,
    InputError,
    SessionExpiredError,
    TransientError,
)
from tests.bigquery.conftest import (
    DATE,
    TABLE,
    events,
    read_all,
    sorted_rows,
    source,
    utc,
    write,
)

BOUNDARIES = [
    (utc(2023, 10, 22, 23, 59, 59, 999999), "before", "web", "u0", "Mouse", "SKU-1"),
    (utc(2023, 10, 23, 0, 0, 0, 0), "first", "web", "u1", "Mouse", "SKU-1"),
    (utc(2023, 10, 23, 12, 0, 0, 0), "middle", "ios", "u2", None, None),
    (utc(2023, 10, 23, 23, 59, 59, 999999), "last", "android", "u3", "Stand", "SKU-2"),
    (utc(2023, 10, 24, 0, 0, 0, 0), "after", "web", "u4", "Stand", "SKU-2"),
    (None, "no-time", "web", "u5", "Stand", "SKU-2"),
]


def _generated(path: Path, rows: int, row_group_rows: int = 10_000, seed: int = 3) -> pa.Table:
    [table] = list(generate(GenerateParams(DATE, rows, 0.0, seed, chunk_rows=rows)))
    write(path, table, row_group_rows)
    return table


def _in_window(table: pa.Table) -> pa.Table:
    ts = table.column("timestamp")
    mask = pc.and_(
        pc.greater_equal(ts, pa.scalar(utc(2023, 10, 23), ts.type)),
        pc.less(ts, pa.scalar(utc(2023, 10, 24), ts.type)),
    )
    return table.filter(pc.fill_null(mask, False))


def test_window_boundaries_and_nested_structs(emulator, tmp_path: Path) -> None:
    server = emulator({TABLE: write(tmp_path / "t.parquet", events(BOUNDARIES))})
    got = read_all(source(server.address))
    assert got.column("event_name").to_pylist() == ["first", "middle", "last"]
    assert got.column("user_identifiers").to_pylist()[1] == {"platform": "ios", "id": "u2"}
    assert got.column("product_information").to_pylist() == [
        {"name": "Mouse", "SKU": "SKU-1"},
        None,
        {"name": "Stand", "SKU": "SKU-2"},
    ]
    assert got.column("timestamp").to_pylist()[0] == utc(2023, 10, 23)


def test_only_the_selected_columns_are_read(emulator, tmp_path: Path) -> None:
    table = events(BOUNDARIES[1:3], ingested_by=["loader", "loader"], secret_note=["x", "y"])
    server = emulator({TABLE: write(tmp_path / "t.parquet", table)})
    plan = source(server.address).plan(DATE, 1000)
    batches = [t for piece in plan.pieces for t in piece.read(1000)]
    assert sum(b.num_rows for b in batches) == 2
    assert all(b.column_names == list(s.SELECTED_FIELDS) for b in batches)
    assert plan.details["estimated_rows"] == 2


def test_a_realistic_day_over_many_streams_is_read_exactly_once(emulator, tmp_path: Path) -> None:
    table = _generated(tmp_path / "day.parquet", 20_000, row_group_rows=3_000)
    server = emulator({TABLE: tmp_path / "day.parquet"}, min_rows_per_stream=500)
    src = source(server.address, max_streams=25, slots=4)
    plan = src.plan(DATE, 1000)
    assert len(plan.pieces) == 25
    got = pa.concat_tables(t for piece in plan.pieces for t in piece.read(700))
    assert sorted_rows(got) == sorted_rows(_in_window(table))


def test_empty_table_gives_no_stream(emulator, tmp_path: Path) -> None:
    server = emulator({TABLE: write(tmp_path / "t.parquet", events([]))})
    plan = source(server.address).plan(DATE, 1000)
    assert plan.pieces == ()
    assert plan.details["estimated_rows"] == 0


def test_empty_streams_are_fine(emulator, tmp_path: Path) -> None:
    # three row groups, the middle one holds no row of the date: its stream is empty
    rows = [BOUNDARIES[1], BOUNDARIES[4], BOUNDARIES[3]]
    server = emulator({TABLE: write(tmp_path / "t.parquet", events(rows), 1)})
    src = source(server.address, max_streams=3, slots=3)
    plan = src.plan(DATE, 1000)
    per_stream = [sum(t.num_rows for t in p.read(10)) for p in plan.pieces]
    assert sorted(per_stream) == [0, 1, 1]


@pytest.mark.parametrize("compression", ["LZ4_FRAME", "ZSTD", "NONE"])
def test_each_compression_reads_the_same_rows(emulator, tmp_path: Path, compression) -> None:
    table = _generated(tmp_path / "day.parquet", 3_000)
    server = emulator({TABLE: tmp_path / "day.parquet"})
    got = read_all(source(server.address, compression=compression))
    assert sorted_rows(got) == sorted_rows(_in_window(table))


def test_a_stream_dropped_mid_way_resumes_at_its_offset(emulator, tmp_path: Path) -> None:
    table = _generated(tmp_path / "day.parquet", 30_000, row_group_rows=30_000)
    server = emulator({TABLE: tmp_path / "day.parquet"})
    server.faults.unavailable_after_rows = 7_000  # each stream fails once, after 7,000+ rows
    got = read_all(source(server.address, max_streams=1, slots=1))
    assert sorted_rows(got) == sorted_rows(_in_window(table))
    assert got.num_rows == _in_window(table).num_rows  # no row twice
    assert server.servicer.calls["ReadRows"] == 2  # the first call and the resumed one


def test_the_raw_client_resumes_from_an_offset(emulator, tmp_path: Path) -> None:
    table = _generated(tmp_path / "day.parquet", 5_000)
    server = emulator({TABLE: tmp_path / "day.parquet"})
    plan = source(server.address, max_streams=1, slots=1).plan(DATE, 1000)
    client = make_client(server.address)
    stream, schema = plan.pieces[0].args["stream"], plan.pieces[0].args["schema"]

    def rows_from(offset: int) -> pa.Table:
        schema_ = pa.ipc.read_schema(pa.py_buffer(schema))
        return pa.Table.from_batches(
            [
                pa.ipc.read_record_batch(
                    pa.py_buffer(m.arrow_record_batch.serialized_record_batch), schema_
                )
                for m in client.read_rows(stream, offset=offset)
            ],
            schema=schema_,
        )

    whole, rest = rows_from(0), rows_from(1234)
    assert rest.to_pylist() == whole.slice(1234).to_pylist()
    assert whole.num_rows == _in_window(table).num_rows


def test_a_file_written_after_the_snapshot_is_not_read(emulator, tmp_path: Path) -> None:
    folder = tmp_path / "table"
    write(folder / "a.parquet", events(BOUNDARIES[1:2]), age=3600)
    server = emulator({TABLE: folder})
    snapshot = dt.datetime.fromtimestamp(time.time() - 600, tz=dt.UTC)
    write(folder / "b.parquet", events(BOUNDARIES[2:3]), age=60)  # after the snapshot
    at_snapshot = read_all(source(server.address, snapshot_time=snapshot))
    assert at_snapshot.column("event_name").to_pylist() == ["first"]
    latest = read_all(source(server.address))
    assert sorted(latest.column("event_name").to_pylist()) == ["first", "middle"]
    plan = source(server.address, snapshot_time=snapshot).plan(DATE, 1000)
    assert plan.details["snapshot_time"].startswith(snapshot.strftime("%Y-%m-%dT%H:%M:%S"))


def test_unknown_table_is_a_configuration_error(emulator, tmp_path: Path) -> None:
    server = emulator({"demo.events.other": write(tmp_path / "t.parquet", events([]))})
    with pytest.raises(ConfigError, match=r"not found.*check the project, dataset and table"):
        source(server.address).plan(DATE, 1000)


@pytest.mark.parametrize(
    ("table", "field"),
    [
        pytest.param(
            events(BOUNDARIES).drop_columns(["product_information"]),
            "product_information",
            id="missing",
        ),
        pytest.param(
            events(BOUNDARIES).set_column(1, "event_name", pa.array(range(6))),
            "event_name",
            id="wrong-type",
        ),
    ],
)
def test_schema_drift_fails_the_plan_naming_the_field(
    emulator, tmp_path: Path, table: pa.Table, field: str
) -> None:
    server = emulator({TABLE: write(tmp_path / "t.parquet", table)})
    with pytest.raises(InputError, match=repr(field)):
        source(server.address).plan(DATE, 1000)


def test_a_restriction_the_service_cannot_parse_is_invalid_argument(
    emulator, tmp_path: Path
) -> None:
    from google.api_core import exceptions as gx

    server = emulator({TABLE: write(tmp_path / "t.parquet", events(BOUNDARIES))})
    client = make_client(server.address)
    session = types.ReadSession(
        table="projects/demo/datasets/events/tables/events",
        data_format=types.DataFormat.ARROW,
        read_options=types.ReadSession.TableReadOptions(row_restriction="timestamp > 'yesterday'"),
    )
    with pytest.raises(gx.InvalidArgument, match="unsupported row restriction"):
        client.create_read_session(parent="projects/demo", read_session=session)


def test_quota_exhaustion_is_transient(emulator, tmp_path: Path) -> None:
    server = emulator({TABLE: write(tmp_path / "t.parquet", events(BOUNDARIES))})
    server.faults.resource_exhausted = 1
    with pytest.raises(TransientError, match="quota or rate limit"):
        source(server.address).plan(DATE, 1000)
    assert read_all(source(server.address)).num_rows == 3  # the next session is served


def test_an_expired_session_says_so(emulator, tmp_path: Path) -> None:
    server = emulator({TABLE: write(tmp_path / "t.parquet", events(BOUNDARIES))})
    server.faults.expire_sessions = 1
    plan = source(server.address).plan(DATE, 1000)
    with pytest.raises(SessionExpiredError, match="expired"):
        list(plan.pieces[0].read(1000))


def test_an_unreachable_endpoint_fails_within_the_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"did not answer within 2 s"):
        source("127.0.0.1:9", deadline_seconds=2).plan(DATE, 1000)
    assert time.monotonic() - started < 15


def test_bad_credentials_configuration_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    with pytest.raises(ConfigError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        make_client(None)


def test_cached_responses_serve_the_same_rows(emulator, tmp_path: Path) -> None:
    table = _generated(tmp_path / "day.parquet", 8_000, row_group_rows=2_000)
    server = emulator({TABLE: tmp_path / "day.parquet"}, cache_responses=True)
    first = read_all(source(server.address, max_streams=3, slots=3))
    assert server.servicer.cache  # filled by the first read
    cached = dict(server.servicer.cache)
    second = read_all(source(server.address, max_streams=3, slots=3))
    assert server.servicer.cache == cached  # nothing read again
    assert sorted_rows(second) == sorted_rows(first) == sorted_rows(_in_window(table))
    server.faults.unavailable_after_rows = 1_000  # a resumed read skips rows: not from the cache
    assert sorted_rows(read_all(source(server.address, max_streams=3, slots=3))) == sorted_rows(
        first
    )


def test_a_stream_that_stalls_is_abandoned_within_the_deadline(emulator, tmp_path: Path) -> None:
    server = emulator({TABLE: write(tmp_path / "t.parquet", events(BOUNDARIES))})
    plan = source(server.address, deadline_seconds=1).plan(DATE, 1000)
    server.faults.delay_seconds = 30  # the server goes quiet before its first message
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"no data for 1 s"):
        list(plan.pieces[0].read(1000))
    assert time.monotonic() - started < 10


def test_a_slow_consumer_is_not_a_stalled_stream(emulator, tmp_path: Path) -> None:
    _generated(tmp_path / "day.parquet", 1_000, row_group_rows=250)
    server = emulator({TABLE: tmp_path / "day.parquet"})
    plan = source(server.address, deadline_seconds=1, max_streams=1, slots=1).plan(DATE, 1000)
    rows = 0
    for batch in plan.pieces[0].read(500):
        time.sleep(1.5)  # longer than the deadline, spent by the consumer, not the stream
        rows += batch.num_rows
    assert rows == plan.details["estimated_rows"]


def test_access_denied_is_a_configuration_error_naming_the_roles(emulator, tmp_path) -> None:
    server = emulator({TABLE: write(tmp_path / "t.parquet", events(BOUNDARIES))})
    server.faults.permission_denied = True
    with pytest.raises(ConfigError, match=r"access denied.*roles/bigquery.readSessionUser"):
        source(server.address).plan(DATE, 1000)


def test_streams_share_the_days_rows_evenly_on_a_table_of_several_days(
    emulator, tmp_path: Path
) -> None:
    day = [(utc(2023, 10, 23, h % 24, m), "view", "web", f"u{h}-{m}", None, None)
           for h in range(24) for m in range(0, 60, 5)]  # fmt: skip
    before = [(utc(2023, 10, 22, 12), "view", "web", "x", None, None)] * 1_000
    after = [(utc(2023, 10, 24, 12), "view", "web", "y", None, None)] * 1_000
    server = emulator({TABLE: write(tmp_path / "t.parquet", events(before + day + after), 100)})
    plan = source(server.address, max_streams=4, slots=4).plan(DATE, 1000)
    per_stream = [sum(t.num_rows for t in p.read(10_000)) for p in plan.pieces]
    assert sum(per_stream) == len(day)
    assert max(per_stream) - min(per_stream) <= 1  # not one stream with the day, three without


def test_the_watermark_read_finds_the_first_row_at_or_after_a_moment(
    emulator, tmp_path: Path
) -> None:
    """Whether the day is complete: a row at or after its end plus the lateness (the DAG's
    wait_for_day asks this of the table, through the real client)."""
    server = emulator({TABLE: write(tmp_path / "t.parquet", events(BOUNDARIES))})
    src = source(server.address)
    assert src.has_rows_from(utc(2023, 10, 24))  # the "after" row, exactly at the moment
    assert not src.has_rows_from(utc(2023, 10, 24, 0, 0, 1))  # nothing later
    assert src.has_rows_from(utc(2023, 10, 23, 12))
    assert not src.has_rows_from(utc(2023, 10, 26))
