"""The capacity and cost model: a case computed by hand, the shapes the numbers must keep
(monotone in size and workers, files within the target, costs that add up), and the prices as
settings."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import pytest

from processing.logic import capacity as cap
from processing.logic.bigquery_plan import TIB, stream_counts
from processing.spec.errors import ConfigError
from processing.spec.settings import PRICES, Settings

MIB, GIB = cap.MIB, cap.GIB
DATE = dt.date(2023, 10, 23)
#: Round rates, so the hand computation below is readable.
ROUND = cap.Rates(
    rows_per_core_second=1_000,
    bigquery_bytes_per_row=100,
    wire_bytes_per_row=50,
    output_bytes_per_row=10,
    rejected_fraction=0.1,
    rejected_bytes_per_row=20,
    worker_base_bytes=100 * MIB,
    worker_bytes_per_thread=50 * MIB,
    fixed_seconds=10,
    seconds_per_file=1,
    seconds_per_piece=2,
    merge_rows_per_core_second=10_000,
)


def test_a_small_day_computed_by_hand() -> None:
    e = cap.estimate(
        1_000_000,
        workers=2,
        threads_per_worker=2,
        target_file_bytes=MIB,
        event_names=3,
        rates=ROUND,
    )
    # 4 task threads ask for 4 x 4 = 16 streams; the service cuts 100,000 rows a stream: 10
    assert e.streams == 10
    assert e.waves == 3  # 10 tasks on 4 threads
    assert e.processing_seconds == pytest.approx(3 * (100_000 / 1_000 + 2))
    # 900,000 valid rows x 10 B over 3 names: 3 MB a partition, 300,000 B from each stream;
    # 3 of those fit in 1 MiB: ceil(10 / 3) = 4 files a partition
    assert e.output_bytes == 9_000_000
    assert e.event_files == 12
    # 100,000 rejected rows x 20 B: 200,000 B from each stream, 5 to a file: 2 files
    assert e.rejected_bytes == 2_000_000
    assert e.rejected_files == 2
    assert e.staged_files == 10 * 3 + 10
    assert e.files_seconds == 14
    # every partition's pieces wrote files under half the target: all 1,000,000 rows merged,
    # at 10,000 rows a second on each of the 4 threads
    assert e.merged_rows == 1_000_000
    assert e.merge_seconds == pytest.approx(25)
    assert e.wall_seconds == pytest.approx(10 + 306 + 25 + 14)
    assert e.worker_memory_bytes == 200 * MIB
    assert e.worker_memory_limit_bytes == 512 * MIB  # 200 / 0.6 = 333 MiB, in 256 MiB steps
    # PUT: 20 fixed + 3 lock refreshes + 30 + 10 staged + 12 + 2 merged; GET: each merged
    # source read (footer and a block), then the audit's footers and samples
    assert e.requests == {"put": 77, "copy": 14 + 4, "list": 4, "get": 60 + 18 + 20 + 4}
    prices = cap.Prices()
    assert e.cost_usd == pytest.approx(
        {
            "BigQuery read": 100_000_000 / TIB * prices.bq_usd_per_tib,
            "egress": 50_000_000 / GIB * prices.egress_usd_per_gib,
            "S3 PUT, COPY, LIST": (77 + 18 + 4) / 1000 * prices.s3_usd_per_1000_put,
            "S3 GET": 102 / 1000 * prices.s3_usd_per_1000_get,
            "workers": 4 * 355 / 3600 * prices.worker_usd_per_core_hour,
        }
    )
    assert e.core_hours == pytest.approx(4 * 355 / 3600)


@pytest.mark.parametrize(
    ("rows", "streams", "measured"),
    [(9_975_042, 7, 19.4), (29_924_719, 20, 38.4), (99_750_680, 64, 104.7)],
)
def test_the_wall_time_model_against_the_scale_benchmark(
    rows: int, streams: int, measured: float
) -> None:
    """The three sizes benchmarks/scale.py measured (2 workers x 1 thread, 32 MiB files, the
    benchmarks' day of 6 event names): the model within 25 %, as the issue asks (the benchmark
    itself prints the same check for what it measures each time)."""
    e = cap.estimate(
        rows, workers=2, threads_per_worker=1, target_file_bytes=32 * MIB, event_names=6,
        streams=streams,
    )  # fmt: skip
    assert abs(e.wall_seconds / measured - 1) <= 0.25


@pytest.mark.parametrize("slots", [1, 2, 7, 64, 250, 5_000])
@pytest.mark.parametrize("max_streams", [None, 1, 30, 5_000])
def test_streams_are_what_the_pipeline_asks_for_capped_by_the_service(
    slots: int, max_streams: int | None
) -> None:
    most, least = stream_counts(slots, max_streams)
    assert cap.service_streams(10**12, slots, max_streams) == most <= 1000
    assert cap.service_streams(1, slots, max_streams) == least  # a tiny day: the least asked
    assert cap.service_streams(0, slots, max_streams) == 0


def test_a_session_s_own_streams_and_bytes_are_used_as_given() -> None:
    e = cap.estimate(1_000_000, workers=4, streams=3, bigquery_bytes=123_456_789)
    assert e.streams == 3
    assert e.waves == 1
    assert e.bigquery_bytes == 123_456_789


def test_more_data_costs_more_and_takes_longer() -> None:
    previous = None
    for gib in (1, 10, 100, 400, 450, 500, 2_000):
        e = cap.estimate(cap.rows_for_bytes(gib * GIB), workers=16)
        if previous is not None:
            assert e.rows > previous.rows
            assert e.wall_seconds >= previous.wall_seconds
            assert e.total_usd > previous.total_usd
            assert e.event_files >= previous.event_files
            for name, amount in e.cost_usd.items():
                assert amount >= previous.cost_usd[name], name
        previous = e


def test_more_workers_never_take_longer_and_read_the_same_bytes() -> None:
    rows = cap.rows_for_bytes(450 * GIB)
    estimates = [cap.estimate(rows, workers=w) for w in (1, 2, 5, 16, 64, 250, 500, 1_000)]
    walls = [e.wall_seconds for e in estimates]
    assert walls == sorted(walls, reverse=True)
    assert len({e.cost_usd["BigQuery read"] for e in estimates}) == 1
    assert len({e.cost_usd["egress"] for e in estimates}) == 1
    # past 1,000 task threads there are no more streams to share out
    assert estimates[-1].streams == estimates[-2].streams == 1000
    assert estimates[-1].wall_seconds == pytest.approx(estimates[-2].wall_seconds, rel=0.01)


@pytest.mark.parametrize("gib", [0.01, 1, 50, 450])
@pytest.mark.parametrize("target_mib", [1, 32, 256, 2048])
@pytest.mark.parametrize("workers", [1, 8, 300])
@pytest.mark.parametrize("event_names", [1, 25, 1000])
def test_files_respect_the_target(
    gib: float, target_mib: int, workers: int, event_names: int
) -> None:
    target = target_mib * MIB
    e = cap.estimate(
        cap.rows_for_bytes(int(gib * GIB)),
        workers=workers,
        target_file_bytes=target,
        event_names=event_names,
    )
    partition = e.output_bytes / event_names
    per_partition = e.event_files // event_names
    assert e.event_files == per_partition * event_names
    assert partition / per_partition <= target  # no file above the target, on average
    # at most one file a partition under half the target (its last), unless the streams'
    # own files are already over half of it
    assert per_partition <= max(math.ceil(partition / (target / 2)) + 1, e.streams)
    assert per_partition <= e.staged_files // event_names


@pytest.mark.parametrize(
    ("share", "pieces", "target", "expected"),
    [
        (0, 5, 100, (0, 0)),
        (30, 10, 100, (10, 4)),  # 3 a file: ceil(10 / 3)
        (50, 10, 100, (10, 10)),  # half the target: kept as written
        (99, 10, 100, (10, 10)),
        (150, 4, 100, (8, 8)),  # a piece closes its file at the target: two of 75
        (1, 1000, 100, (1000, 10)),
    ],
)
def test_partition_files(share: int, pieces: int, target: int, expected: tuple[int, int]) -> None:
    assert cap.partition_files(share * pieces, pieces, target) == expected


def test_costs_add_up() -> None:
    e = cap.estimate(cap.rows_for_bytes(450 * GIB), workers=20)
    assert e.total_usd == pytest.approx(sum(e.cost_usd.values()))
    assert set(e.cost_usd) == {"BigQuery read", "egress", "S3 PUT, COPY, LIST", "S3 GET", "workers"}
    assert all(amount > 0 for amount in e.cost_usd.values())
    free = cap.estimate(e.rows, workers=20, prices=cap.Prices(0, 0, 0, 0, 0))
    assert free.total_usd == 0


def test_prices_scale_their_own_line_only() -> None:
    rows = cap.rows_for_bytes(450 * GIB)
    base = cap.estimate(rows, workers=20)
    double = cap.estimate(rows, workers=20, prices=cap.Prices(egress_usd_per_gib=0.24))
    assert double.cost_usd["egress"] == pytest.approx(2 * base.cost_usd["egress"])
    assert {k: v for k, v in double.cost_usd.items() if k != "egress"} == {
        k: v for k, v in base.cost_usd.items() if k != "egress"
    }


def test_zstd_on_the_wire_costs_less_egress() -> None:
    rows = cap.rows_for_bytes(450 * GIB)
    lz4 = cap.estimate(rows, workers=20)
    zstd = cap.estimate(rows, workers=20, compression="ZSTD")
    assert (
        zstd.wire_bytes
        < lz4.wire_bytes
        < cap.estimate(rows, workers=20, compression="NONE").wire_bytes
    )
    with pytest.raises(ValueError, match="compression must be one of"):
        cap.estimate(rows, workers=20, compression="GZIP")


def test_an_empty_day() -> None:
    e = cap.estimate(0, workers=3)
    assert (e.streams, e.waves, e.event_files, e.rejected_files, e.staged_files) == (0, 0, 0, 0, 0)
    assert e.wall_seconds == cap.Rates().fixed_seconds
    assert cap.render(e) == ["  capacity         an empty day: nothing to read, write or pay for"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"workers": 0}, "workers must be at least 1"),
        ({"workers": 1, "threads_per_worker": 0}, "threads_per_worker must be at least 1"),
        ({"workers": 1, "event_names": 0}, "event_names must be at least 1"),
        ({"workers": 1, "target_file_bytes": 0}, "target_file_bytes must be at least 1"),
    ],
)
def test_bad_arguments_are_named(arguments: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cap.estimate(1_000, **arguments)  # type: ignore[arg-type]


def test_bad_rates_and_prices_are_named() -> None:
    with pytest.raises(ValueError, match="rows_per_core_second must be positive"):
        cap.Rates(rows_per_core_second=0)
    with pytest.raises(ValueError, match="price egress_usd_per_gib must be a number >= 0"):
        cap.Prices(egress_usd_per_gib=-0.1)
    with pytest.raises(ValueError, match="price bq_usd_per_tib"):
        cap.Prices(bq_usd_per_tib=math.nan)


def test_the_deadline_gets_the_fewest_workers_that_meet_it() -> None:
    rows = cap.rows_for_bytes(450 * GIB)
    for deadline in (600.0, 1800.0, 3600.0, 4 * 3600.0):
        e = cap.size_for_deadline(rows, deadline)
        assert e.wall_seconds <= deadline
        if e.workers > 1:
            fewer = cap.estimate(rows, workers=e.workers - 1)
            assert fewer.wall_seconds > deadline


def test_a_deadline_no_cluster_meets_says_so() -> None:
    with pytest.raises(ValueError, match=r"no cluster of up to 500 workers .* within 10 s"):
        cap.size_for_deadline(cap.rows_for_bytes(450 * GIB), 10.0)
    with pytest.raises(ValueError, match="the deadline must be positive"):
        cap.size_for_deadline(1_000, 0.0)


def test_rows_for_bytes() -> None:
    rates = cap.Rates()
    assert cap.rows_for_bytes(0) == 0
    assert cap.rows_for_bytes(450 * GIB) == round(450 * GIB / rates.bigquery_bytes_per_row)
    assert cap.rows_for_bytes(1000, dataclasses.replace(rates, bigquery_bytes_per_row=10)) == 100


def test_render_shows_every_number_aligned() -> None:
    e = cap.estimate(cap.rows_for_bytes(450 * GIB), workers=20)
    lines = cap.render(e)
    text = "\n".join(lines)
    for label in (
        "rows",
        "streams",
        "workers",
        "worker memory",
        "wall time",
        "event files",
        "rejected files",
        "S3 requests",
        "cost of the day",
        *e.cost_usd,
    ):
        assert f"  {label} " in text, label
    assert all(line.startswith("  ") for line in lines)
    for line in lines:  # labels in one column, values in the next
        if line.startswith("    "):
            assert line[4:23].strip() in e.cost_usd
            assert line[23:33].strip().startswith(("$", "<$")) and line[33:35] == "  "
        else:
            assert line[19] != " " and line[17:19] == "  "


def test_settings_prices_default_to_the_model_s() -> None:
    settings = Settings.load({}, date=DATE, source="s", dest="d")
    assert {name: getattr(settings, name) for name in PRICES} == dataclasses.asdict(cap.Prices())


@pytest.mark.parametrize("name", PRICES)
def test_a_negative_price_setting_is_refused_naming_it(name: str) -> None:
    variable = "PROCESSING_" + name.upper()
    with pytest.raises(ConfigError, match=rf"{name} must be a price >= 0 .*{variable}"):
        Settings.load({variable: "-1"}, date=DATE, source="s", dest="d")
