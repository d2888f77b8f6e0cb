"""The CLI end to end on hostile input: bad rows are rejected with their reasons and never fail the
day, whatever the batch size; a corrupt or ambiguous file fails with exit code 3 naming it."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import processing
from tests.unit.hostile_lines import HOSTILE, outcomes, with_raw

pytestmark = pytest.mark.slow

DATE = "2023-10-23"
NOON_US = 1_698_062_400_000_000
GOOD_ROWS = 400


def _run(cli, source: Path, dest: Path, *flags: str):
    return cli("run", "--date", DATE, "--source", source, "--dest", dest, "--workers", "1", *flags)


def _published(dest: Path) -> tuple[list[dict], dict[str, int], list[dict]]:
    """The published rows, the manifest's reasons, and the rejected rows (sorted)."""
    date = dt.date.fromisoformat(DATE)
    rows = processing.events_dataset(str(dest)).to_table(filter=ds.field("event_date") == date)
    rejected = processing.rejected_dataset(str(dest)).to_table()
    manifest = processing.read_manifest(str(dest), date)
    assert manifest is not None
    assert manifest["rows_read"] == manifest["rows_valid"] + manifest["rows_rejected"]

    def key(r: dict) -> str:
        return json.dumps(r, default=str, sort_keys=True)

    return (
        sorted(rows.to_pylist(), key=key),
        manifest["rejected_by_reason"],
        sorted(rejected.select(["source_record", "reasons"]).to_pylist(), key=key),
    )


def _typed_day(path: Path) -> None:
    """Good rows, and rows with text that is not UTF-8 (plain and dictionary-encoded columns,
    struct children) or an instant BigQuery cannot hold."""
    n = GOOD_ROWS + 4
    ids = [f"user_{i}".encode() for i in range(n)]
    names = [b"view"] * n
    skus = [b"SKU-1"] * n
    micros = [NOON_US + i for i in range(n)]
    ids[0] = b"caf\xe9"  # user_id:invalid_utf8
    names[1] = b"vi\xe9w"  # event_name:invalid_utf8 (dictionary-encoded by the file)
    skus[2] = b"\xed\xa0\x80"  # SKU:invalid_utf8
    micros[3] = 253_402_300_800_000_000  # year 10000: event_datetime:out_of_range
    table = pa.table(
        {
            "timestamp": pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "event_name": pa.array(names, pa.binary()).view(pa.string()),
            "user_identifiers": pa.StructArray.from_arrays(
                [pa.array(["web"] * n), pa.array(ids, pa.binary()).view(pa.string())],
                names=["platform", "id"],
            ),
            "product_information": pa.StructArray.from_arrays(
                [pa.array(["Mouse"] * n), pa.array(skus, pa.binary()).view(pa.string())],
                names=["name", "SKU"],
            ),
        }
    )
    pq.write_table(table, path)


def test_a_typed_day_with_bad_bytes_and_instants_publishes_the_good_rows(
    cli, tmp_path: Path
) -> None:
    source = tmp_path / "day.parquet"
    _typed_day(source)
    done = _run(cli, source, tmp_path / "lake")
    assert done.returncode == 0, done.stderr
    rows, reasons, rejected = _published(tmp_path / "lake")
    assert len(rows) == GOOD_ROWS
    assert reasons == {
        "user_id:invalid_utf8": 1,
        "event_name:invalid_utf8": 1,
        "SKU:invalid_utf8": 1,
        "event_datetime:out_of_range": 1,
    }
    records = [json.loads(r["source_record"]) for r in rejected]
    assert {r["user_identifiers"]["id"] for r in records} >= {"caf\ufffd"}
    assert 253_402_300_800_000_000 in {r["timestamp"] for r in records}


def test_hostile_json_lines_give_the_same_day_whatever_the_batch_size(cli, tmp_path: Path) -> None:
    good = [with_raw(("user_identifiers", "id"), f'"user_{i}"'.encode()) for i in range(40)]
    lines = [line for _, line in HOSTILE]
    source = tmp_path / "day.jsonl"
    source.write_bytes(b"\n".join(good[:20] + lines + good[20:]) + b"\n")
    days = []
    for batch_rows in ("1", "3", "1000"):
        dest = tmp_path / f"lake{batch_rows}"
        # few good rows around the hostile ones (a batch of one row each is slow): a third of
        # the day is rejected, above the default share that fails a run
        done = _run(cli, source, dest, "--batch-rows", batch_rows, "--max-rejected-fraction", "0.9")
        assert done.returncode == 0, done.stderr
        days.append(_published(dest))
    assert days[0] == days[1] == days[2]
    rows, reasons, rejected = days[0]
    valid_hostile = sum(1 for line in lines if outcomes([line], 1) == [()])
    assert len(rows) == len(good) + valid_hostile
    assert sum(reasons.values()) == len(rejected) == len(lines) - valid_hostile


def test_a_corrupt_parquet_page_fails_the_run_naming_the_file(cli, tmp_path: Path) -> None:
    source = tmp_path / "day.parquet"
    _typed_day(source)
    pq.write_table(pq.read_table(source), source, compression="none")
    data = bytearray(source.read_bytes())
    data[4:24] = b"\xff" * 20  # the first page's header, not the footer
    source.write_bytes(bytes(data))
    done = _run(cli, source, tmp_path / "lake")
    assert done.returncode == 3, done.stderr
    [error] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert str(source) in error and "corrupt" in error
    assert not (tmp_path / "lake" / "events").exists()


def test_a_duplicated_selected_column_fails_the_run_naming_it(cli, tmp_path: Path) -> None:
    source = tmp_path / "day.parquet"
    _typed_day(source)
    table = pq.read_table(source)
    pq.write_table(table.append_column("event_name", table.column("event_name")), source)
    done = _run(cli, source, tmp_path / "lake")
    assert done.returncode == 3, done.stderr
    assert "'event_name' appears 2 times" in done.stderr
