"""What a day costs and how big a cluster it needs, from measured rates (pure).

For a day of N bytes in BigQuery the model gives the streams, the workers and their memory, the
expected wall time, the files written and the cost of the day. Every rate is a measurement
(:class:`Rates`, where each was measured says its comment) and every price a list price with its
source (:class:`Prices`); both are plain frozen objects, so the scale benchmark can check the
model against what it measures and the CLI can override any price.

The wall time is ``fixed + waves * (rows_per_stream / rate + seconds_per_piece) +
merged_rows / (merge_rate * slots) + files * seconds_per_file``: each BigQuery stream is one
Dask task of about the same size (the service balances them), a task thread runs one at a time,
so ``streams`` tasks on ``slots`` threads take ``ceil(streams / slots)`` waves; a slot is a core
(one thread per core, as the cluster's workers are started). Each piece also costs a fixed
``seconds_per_piece`` (its task, its files' requests, a validation's fixed cost), and the rows of
partitions whose pieces wrote files under half the target are rewritten once by the merge.
The files come from the pipeline's own rule (:mod:`processing.logic.compaction`): every stream
writes its own file per partition, and a partition's small files are packed, in order, into files
of at most the target size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from processing.logic.bigquery_plan import COMPRESSIONS, TIB, stream_counts

MIB, GIB = 2**20, 2**30
#: Rows per stream below which the service returns fewer streams than asked (the emulator's
#: default: the real service's rule is not documented, "it sizes streams to the data").
SERVICE_MIN_ROWS_PER_STREAM = 100_000
#: Distinct event names assumed when none is given (each is one partition of a day).
DEFAULT_EVENT_NAMES = 25
#: Threads per worker of the cluster's workers (``--nthreads`` in deploy/kubernetes/base/dask).
DEFAULT_THREADS_PER_WORKER = 2
#: A file up to s3fs's block size goes up in one PUT; a larger one in a multipart upload (one
#: request per block, plus the initiating and completing POSTs). Reads go by blocks likewise.
S3_BLOCK_BYTES = 50 * MIB
#: Writes of a run besides its data files: the lock (taken, intent marked and cleared,
#: released), staged and published manifests, reports.
FIXED_WRITES = 20
#: The date's lock is refreshed every quarter of its default time to live (600 s).
LOCK_REFRESH_SECONDS = 150.0
#: What Dask lets a worker use before it spills (60 % of its limit): the limit to give a worker
#: is its peak over this.
WORKER_MEMORY_TARGET = 0.6


@dataclass(frozen=True)
class Rates:
    """Measured constants: the only place to update when the benchmarks measure again.

    Measured on the benchmark machine (2 vCPUs, see benchmarks/README.md), 2026-12, by
    ``benchmarks/scale.py``: 10M, 30M and 100M rows read through the BigQuery emulator (serving
    from memory) by a ``dask scheduler`` and 2 ``dask worker`` processes of 1 thread, written to
    moto's S3 server, streams of about 1.5M rows ("Scale" in benchmarks/README.md).
    """

    #: Rows per second per core of a stream's task (read, transform, validate, write): the
    #: slope of the process stage's time (less the merge) against the rows each thread read,
    #: 670K rows/s from 5M to 50M rows a thread (640K before issue 14's Pandera on Polars).
    rows_per_core_second: float = 670_000.0
    #: Logical bytes BigQuery bills per row for the selected columns (STRING 2 + UTF-8 length,
    #: TIMESTAMP 8, NULL 0): 57.4 for the generator's day (`processing generate`, 1 % bad, the
    #: shape of data/sample_day.jsonl.gz and of the benchmarks). The issue's "450 GiB, about 7
    #: billion rows" would be 69: fewer rows than modelled here, so the model errs long.
    bigquery_bytes_per_row: float = 57.4
    #: Bytes per row on the wire, what internet egress bills: Arrow IPC in the emulator's 1 MiB
    #: messages for the same day, with LZ4_FRAME buffers (the default ``--bq-compression``),
    #: with ZSTD ones, and uncompressed. ZSTD sends 35 % less; what it costs the workers' CPU to
    #: decompress is not measured yet.
    wire_bytes_per_row: float = 43.5
    wire_bytes_per_row_zstd: float = 28.4
    wire_bytes_per_row_none: float = 72.1
    #: zstd Parquet written per valid row: 8.09, 8.28 and 8.54 at 10M, 30M and 100M rows.
    output_bytes_per_row: float = 8.5
    #: Share of rows rejected: the benchmarks' day (1 %); a real day's is in its manifest.
    rejected_fraction: float = 0.01
    #: zstd Parquet written per rejected row (its reasons and original values): 27.9-28.4.
    rejected_bytes_per_row: float = 28.0
    #: Peak RSS of a worker process (nanny included): 172 MiB idle; 741-816 MiB with one task
    #: thread at every size (the batch, the writers' buffers, then a merge). A thread more is
    #: taken to add as much again (not measured: the benchmark's workers have one thread each).
    worker_base_bytes: int = 350 * MIB
    worker_bytes_per_thread: int = 500 * MIB
    #: Wall seconds whatever the size: the client's start-up and plan, connecting to the
    #: cluster, the workers' warm-up, the performance and quality reports, the audit's fixed
    #: part and the manifests: what is left of the runs' wall time after the terms below (3-8 s).
    #: A Kubernetes cluster's pods starting come on top.
    fixed_seconds: float = 5.0
    #: Wall seconds per published file: the publish's copy and the audit's footer read against
    #: moto's S3 server (4.69 s for 32 files, 1.04 s for 8).
    seconds_per_file: float = 0.15
    #: Thread-seconds each piece costs whatever its rows: its task's round trip, its files'
    #: S3 requests, validation's fixed cost per batch. 2,000 pieces of 1,000 rows were read in
    #: 228 s on 2 threads ("Many pieces" in benchmarks/README.md); merging their 14,000 small
    #: files took 111 s more, which this model leaves out (it counts merged rows, not files).
    seconds_per_piece: float = 0.23
    #: Rows per second per core the merge moves: it copies the small files' row groups (reads
    #: them back from S3 and uploads them, nothing decoded; see processing.adapters.merger):
    #: 9.9M, 29.6M and 98.7M rows merged in 2, 6 and 16 s on 2 threads against moto's server
    #: on the same cores (rewriting them took 3, 9 and 32 s: 1.55M rows/s).
    merge_rows_per_core_second: float = 2_900_000.0

    def __post_init__(self) -> None:
        for name in (
            "rows_per_core_second",
            "bigquery_bytes_per_row",
            "wire_bytes_per_row",
            "output_bytes_per_row",
            "merge_rows_per_core_second",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"rate {name} must be positive (got {getattr(self, name)!r})")
        if not 0.0 <= self.rejected_fraction <= 1.0:
            raise ValueError(f"rejected_fraction must be in [0, 1] (got {self.rejected_fraction})")

    def wire(self, compression: str) -> float:
        """Bytes per row on the wire with the session's buffer compression."""
        return {
            "LZ4_FRAME": self.wire_bytes_per_row,
            "ZSTD": self.wire_bytes_per_row_zstd,
            "NONE": self.wire_bytes_per_row_none,
        }[compression]


@dataclass(frozen=True)
class Prices:
    """List prices in USD, as checked in 2026-12; each one a setting (``--<name>``).

    - ``bq_usd_per_tib``: BigQuery Storage Read API, on-demand, per TiB read (logical bytes of
      the selected columns and rows), https://cloud.google.com/bigquery/pricing#data_extraction_pricing.
      A monthly free allowance, where the page lists one, is not subtracted: every day is priced.
    - ``egress_usd_per_gib``: Google Cloud internet egress (the read leaves Google for AWS),
      Premium Tier, from North America, first TiB of the month, per GiB on the wire,
      https://cloud.google.com/vpc/network-pricing#internet_egress (later tiers are cheaper:
      $0.11 to 10 TiB, $0.08 beyond).
    - ``s3_usd_per_1000_put``: Amazon S3 Standard PUT, COPY, POST and LIST requests, per 1,000,
      us-east-1, https://aws.amazon.com/s3/pricing/ (DELETE is free).
    - ``s3_usd_per_1000_get``: Amazon S3 Standard GET, SELECT and all other requests, per 1,000,
      https://aws.amazon.com/s3/pricing/.
    - ``worker_usd_per_core_hour``: a worker core for an hour: EC2 m6i.large on demand in
      us-east-1, $0.096 an hour for 2 vCPUs and 8 GiB (memory included, 4 GiB a core),
      https://aws.amazon.com/ec2/pricing/on-demand/.
    """

    bq_usd_per_tib: float = 1.10
    egress_usd_per_gib: float = 0.12
    s3_usd_per_1000_put: float = 0.005
    s3_usd_per_1000_get: float = 0.0004
    worker_usd_per_core_hour: float = 0.048

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"price {name} must be a number >= 0 (got {value!r})")


@dataclass(frozen=True)
class Estimate:
    """The model's answer for one day (see the module for how each number is made)."""

    rows: int
    bigquery_bytes: int
    wire_bytes: int
    output_bytes: int  # events, zstd Parquet as written
    rejected_bytes: int
    streams: int
    workers: int
    threads_per_worker: int
    worker_memory_bytes: int  # peak RSS of one worker
    worker_memory_limit_bytes: int  # the --memory-limit to give it: peak / WORKER_MEMORY_TARGET
    waves: int
    fixed_seconds: float
    processing_seconds: float
    files_seconds: float
    merge_seconds: float  # rewriting the small files of partitions (see the module)
    merged_rows: int
    staged_files: int  # what the streams write before the merge, events and rejected
    event_files: int
    rejected_files: int
    target_file_bytes: int
    event_names: int
    compression: str
    requests: Mapping[str, int]  # put, copy, list, get
    cost_usd: Mapping[str, float] = field(default_factory=dict)

    @property
    def cores(self) -> int:
        return self.workers * self.threads_per_worker

    @property
    def wall_seconds(self) -> float:
        return (
            self.fixed_seconds + self.processing_seconds + self.merge_seconds + self.files_seconds
        )

    @property
    def core_hours(self) -> float:
        return self.cores * self.wall_seconds / 3600

    @property
    def total_usd(self) -> float:
        return sum(self.cost_usd.values())


def rows_for_bytes(day_bytes: int, rates: Rates = Rates()) -> int:
    """Rows in a day of ``day_bytes`` logical BigQuery bytes."""
    return max(0, round(day_bytes / rates.bigquery_bytes_per_row))


def service_streams(rows: int, slots: int, max_streams: int | None = None) -> int:
    """Streams a session returns: what the pipeline asks for (:func:`stream_counts`, capped at
    the service's 1,000), fewer for a small day, none for an empty one."""
    if rows <= 0:
        return 0
    most, least = stream_counts(slots, max_streams)
    return min(most, max(least, math.ceil(rows / SERVICE_MIN_ROWS_PER_STREAM)))


def partition_files(partition_bytes: float, pieces: int, target: int) -> tuple[int, int]:
    """(files staged, files published) of one partition written in equal shares by ``pieces``.

    A piece closes its file at ``target`` bytes; files under half the target are packed, in
    order, into files of at most ``target`` (:func:`processing.logic.compaction.plan_merges`).
    """
    if partition_bytes <= 0 or pieces <= 0:
        return 0, 0
    share = partition_bytes / pieces
    per_piece = max(1, math.ceil(share / target))
    staged = pieces * per_piece
    size = share / per_piece
    if size >= target / 2:
        return staged, staged
    per_merge = max(1, math.floor(target / size))
    return staged, math.ceil(staged / per_merge)


def _puts(size: float) -> int:
    """Write requests of one upload of ``size`` bytes."""
    return 1 if size <= S3_BLOCK_BYTES else math.ceil(size / S3_BLOCK_BYTES) + 2


def _gets(size: float) -> int:
    """Read requests of one whole file: its footer, then its blocks."""
    return 1 + math.ceil(size / S3_BLOCK_BYTES)


def estimate(
    rows: int,
    *,
    workers: int,
    threads_per_worker: int = DEFAULT_THREADS_PER_WORKER,
    target_file_bytes: int = 256 * MIB,
    event_names: int = DEFAULT_EVENT_NAMES,
    rates: Rates = Rates(),
    prices: Prices = Prices(),
    max_streams: int | None = None,
    streams: int | None = None,
    bigquery_bytes: int | None = None,
    compression: str = "LZ4_FRAME",
) -> Estimate:
    """The capacity and cost of a day of ``rows`` rows on ``workers`` x ``threads_per_worker``.

    ``streams`` and ``bigquery_bytes`` are what a read session said, when there is one (``plan``);
    otherwise they follow from the rows. Raises ValueError naming a bad argument.
    """
    for name, value in (
        ("workers", workers),
        ("threads_per_worker", threads_per_worker),
        ("target_file_bytes", target_file_bytes),
        ("event_names", event_names),
    ):
        if value < 1:
            raise ValueError(f"{name} must be at least 1 (got {value})")
    if rows < 0:
        raise ValueError(f"rows must be >= 0 (got {rows})")
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}")
    slots = workers * threads_per_worker
    if streams is None:
        streams = service_streams(rows, slots, max_streams)
    streams = streams if rows else 0
    read = round(rows * rates.bigquery_bytes_per_row) if bigquery_bytes is None else bigquery_bytes
    wire = rows * rates.wire(compression)
    rejected_rows = rows * rates.rejected_fraction
    output = (rows - rejected_rows) * rates.output_bytes_per_row
    rejected = rejected_rows * rates.rejected_bytes_per_row

    staged_per_name, published_per_name = partition_files(
        output / event_names, streams, target_file_bytes
    )
    staged_rejected, rejected_files = partition_files(rejected, streams, target_file_bytes)
    staged = staged_per_name * event_names + staged_rejected
    event_files = published_per_name * event_names
    published = event_files + rejected_files

    waves = math.ceil(streams / slots) if streams else 0
    per_task = (
        rows / streams / rates.rows_per_core_second + rates.seconds_per_piece if streams else 0
    )
    processing = waves * per_task
    events_merged = staged_per_name > published_per_name
    rejected_merged = staged_rejected > rejected_files
    merged_rows = (rows - rejected_rows) * events_merged + rejected_rows * rejected_merged
    merges = event_files * events_merged + rejected_files * rejected_merged  # a task each
    merge_seconds = (
        merged_rows / (rates.merge_rows_per_core_second * min(slots, merges)) if merges else 0.0
    )
    files_seconds = published * rates.seconds_per_file
    wall = rates.fixed_seconds + processing + merge_seconds + files_seconds

    requests = _requests(
        [
            (output / event_names, event_names, staged_per_name, published_per_name),
            (rejected, 1, staged_rejected, rejected_files),
        ],
        wall,
    )
    peak = rates.worker_base_bytes + rates.worker_bytes_per_thread * threads_per_worker
    limit = math.ceil(peak / WORKER_MEMORY_TARGET / (256 * MIB)) * 256 * MIB
    cost = {
        "BigQuery read": read / TIB * prices.bq_usd_per_tib,
        "egress": wire / GIB * prices.egress_usd_per_gib,
        "S3 PUT, COPY, LIST": (requests["put"] + requests["copy"] + requests["list"])
        / 1000
        * prices.s3_usd_per_1000_put,
        "S3 GET": requests["get"] / 1000 * prices.s3_usd_per_1000_get,
        "workers": slots * wall / 3600 * prices.worker_usd_per_core_hour,
    }
    return Estimate(
        rows=rows,
        bigquery_bytes=int(read),
        wire_bytes=round(wire),
        output_bytes=round(output),
        rejected_bytes=round(rejected),
        streams=streams,
        workers=workers,
        threads_per_worker=threads_per_worker,
        worker_memory_bytes=peak,
        worker_memory_limit_bytes=limit,
        waves=waves,
        fixed_seconds=rates.fixed_seconds,
        processing_seconds=processing,
        files_seconds=files_seconds,
        merge_seconds=merge_seconds,
        merged_rows=round(merged_rows),
        staged_files=staged,
        event_files=event_files,
        rejected_files=rejected_files,
        target_file_bytes=target_file_bytes,
        event_names=event_names,
        compression=compression,
        requests=requests,
        cost_usd=cost,
    )


def _requests(
    datasets: Sequence[tuple[float, int, int, int]], wall_seconds: float
) -> dict[str, int]:
    """S3 requests of a run, from (bytes of a partition, partitions, files staged and published
    per partition) of each dataset: the streams' files, the merges (read back, written once
    more), the audit (a footer per published file, a sample per partition), the publish (a COPY
    per file; a rerun of a published date also copies the previous version), the listings
    (1,000 keys a page, about four times: merge, audit, publish, retire)."""
    put = FIXED_WRITES + math.ceil(wall_seconds / LOCK_REFRESH_SECONDS)
    get = 0
    published_total = staged_total = 0
    for size, names, staged, published in datasets:
        if not staged:
            continue
        staged_size = size / staged
        put += names * staged * _puts(staged_size)
        if published < staged:  # merged: every staged file read, every merged file written
            get += names * staged * _gets(staged_size)
            put += names * published * _puts(size / published)
        get += names * (published + 2)  # the audit: footers, and a sample of one file
        published_total += names * published
        staged_total += names * staged
    return {
        "put": put,
        "copy": published_total + 4,  # and the manifest and reports
        "list": 4 * max(1, math.ceil((staged_total + published_total) / 1000)),
        "get": get,
    }


def size_for_deadline(
    rows: int,
    deadline_seconds: float,
    *,
    threads_per_worker: int = DEFAULT_THREADS_PER_WORKER,
    max_workers: int | None = None,
    **options: Any,
) -> Estimate:
    """The estimate with the fewest workers whose wall time is within ``deadline_seconds``.

    ``options`` are :func:`estimate`'s. Past 1,000 task threads (the most streams a session
    has) more workers change nothing; raises ValueError when even that many miss the deadline.
    """
    if not deadline_seconds > 0:
        raise ValueError(f"the deadline must be positive (got {deadline_seconds!r} s)")
    most = max_workers or math.ceil(1000 / max(1, threads_per_worker))
    best = None
    for workers in range(1, most + 1):
        best = estimate(
            rows,
            workers=workers,
            threads_per_worker=threads_per_worker,
            **options,
        )
        if best.wall_seconds <= deadline_seconds:
            return best
    assert best is not None
    raise ValueError(
        f"no cluster of up to {most} workers of {threads_per_worker} threads reads "
        f"{rows:,} rows within {_duration(deadline_seconds)}: {most} take about "
        f"{_duration(best.wall_seconds)}; allow more time (or more threads per worker)"
    )


def human_bytes(n: float) -> str:
    """Bytes as B, KiB, MiB, GiB or TiB with one decimal."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _usd(amount: float) -> str:
    return f"${amount:,.2f}" if amount >= 0.005 or amount == 0 else "<$0.01"


def _price(amount: float) -> str:
    return f"${amount:,.2f}" if round(amount, 2) == amount else f"${amount:g}"


def render(e: Estimate, prices: Prices = Prices(), rates: Rates = Rates()) -> list[str]:
    """The estimate as aligned lines, for ``capacity`` and ``plan``."""
    if not e.rows:
        return ["  capacity         an empty day: nothing to read, write or pay for"]
    per_file = (e.output_bytes / e.event_files) if e.event_files else 0
    r = e.requests
    lines = [
        f"  rows             {e.rows:,}",
        f"  streams          {e.streams:,} (one task each; a session has at most 1,000)",
        f"  workers          {e.workers:,} x {e.threads_per_worker} threads = {e.cores:,} cores",
        f"  worker memory    {human_bytes(e.worker_memory_bytes)} peak each: give each "
        f"--memory-limit {human_bytes(e.worker_memory_limit_bytes)} or more",
        f"  wall time        about {_duration(e.wall_seconds)} ({e.fixed_seconds:.0f} s fixed, "
        f"{e.waves} wave(s) of tasks {_duration(e.processing_seconds)}, merge "
        f"{_duration(e.merge_seconds)}, files {_duration(e.files_seconds)})",
        f"  event files      {e.event_files:,} of about {human_bytes(per_file)} "
        f"({human_bytes(e.output_bytes)}; target {human_bytes(e.target_file_bytes)}, "
        f"{e.event_names} event names)",
        f"  rejected files   {e.rejected_files:,} ({human_bytes(e.rejected_bytes)}; "
        f"{rates.rejected_fraction:.0%} of rows rejected)",
        f"  staged files     {e.staged_files:,} (each stream's, before they are merged)",
        f"  S3 requests      {r['put']:,} PUT, {r['copy']:,} COPY, {r['list']:,} LIST, "
        f"{r['get']:,} GET",
        f"  cost of the day  {_usd(e.total_usd)}",
    ]
    details = {
        "BigQuery read": f"{human_bytes(e.bigquery_bytes)} at "
        f"{_price(prices.bq_usd_per_tib)} per TiB",
        "egress": f"{human_bytes(e.wire_bytes)} on the wire ({e.compression}) at "
        f"{_price(prices.egress_usd_per_gib)} per GiB",
        "S3 PUT, COPY, LIST": f"{r['put'] + r['copy'] + r['list']:,} requests at "
        f"{_price(prices.s3_usd_per_1000_put)} per 1,000",
        "S3 GET": f"{r['get']:,} requests at {_price(prices.s3_usd_per_1000_get)} per 1,000",
        "workers": f"{e.core_hours:,.1f} core-hours at {_price(prices.worker_usd_per_core_hour)}",
    }
    lines += [
        f"    {name:<19}{_usd(amount):>10}  {details[name]}" for name, amount in e.cost_usd.items()
    ]
    return lines
