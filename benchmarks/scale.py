"""The scale benchmark (issue 13): one day shape at three sizes, read through the BigQuery
emulator by a distributed Dask cluster of separate processes, written to moto's S3 server.

    uv run python benchmarks/scale.py [--sizes 10M,30M,100M] [--streams 64] [--compare-streams 16]
                                      [--target-file-size 32MiB] [--workers 2]
                                      [--threads-per-worker 1] [--pieces 2000] [--pieces-rows 2M]
                                      [--mode sizes|pieces|all] [--wait-idle S] [--workdir DIR]
    ./dev bench-scale [the same flags]

What runs, all as separate processes started from the repository root:
- ``python -m processing emulator bigquery --cache-responses`` serving every size's generated day
  (``benchmarks/out/day-N.parquet``, made as ``benchmarks/run.py`` makes them) as a table; the
  cache is filled before the measured runs, so the emulator sends ready messages from memory and
  its CPU stays (almost) off the job's cores, as BigQuery's servers are off the workers';
- ``python -m processing emulator s3``: moto's S3 server, the lake's bucket (Python, in memory,
  on the same cores: its CPU is reported, never counted as the job's);
- per measured run a fresh ``dask scheduler`` and ``--workers`` ``dask worker`` processes (each
  with its nanny, as the Kubernetes pods run them), the S3 settings in their environment;
- ``python -m processing run --scheduler tcp://...``, the client: the measured subprocess.

The sizes run in ascending order into one lake, so each measured run replaces the version the
previous one published: the publish's "both versions listed" window is a real replacement. The
smallest size is preceded by an unmeasured warm-up run (fills its cache, publishes the first
version); the larger sizes' caches are filled by reading their streams once directly.

See benchmarks/README.md ("Scale") for what each number means. Exit code 0 when every run
finished, whatever the PASS/FAIL lines say; 1 when a run failed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from run import (
    DATE,
    DEFAULT_BAD_FRACTION,
    REPO,
    BenchmarkError,
    _machine_busy_seconds,
    _own_cpu_seconds,
    _tail,
    environment,
    input_file,
    revision,
    wait_until_idle,
)

MIB = 2**20
GIB = 2**30
BUCKET = "scale"
LAKE = f"s3://{BUCKET}/lake"
PROJECT = "bench.events"
SAMPLE_SECONDS = 0.1
#: the real service gives a session at most 1,000 streams; the pipeline refuses to ask for more
SERVICE_MAX_STREAMS = 1000
#: The file count may grow at most this fraction as fast as the stream count (without the
#: merge it grows exactly as fast).
MAX_FILE_GROWTH = 0.1
MODEL_TOLERANCE = 0.25  # predicted wall within 25 % of the measured
MAX_WORKER_MEMORY_SPREAD = 0.20  # per-worker peak across the sizes
MIN_FILL = 0.5  # event files average at least half the target
DEFAULT_PLOT = REPO / "benchmarks" / "scale.png"

_SESSION = re.compile(r"read session \S+: (\d+) streams, about (\d+) rows, (\d+) bytes")
_MERGED = re.compile(r"merged (\d+) small files into (\d+) in ([\d.]+) s")
_REPORT = re.compile(r"Dask performance report in ([\d.]+) s")
_PUBLISHED = re.compile(
    r"published .* \(run \S+, (\d+) files in ([\d.]+) s; both versions listed for ([\d.]+) s\)"
)


# --- pure helpers --------------------------------------------------------------------------------
_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9}
_BYTE_SUFFIXES = {"B": 1, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_count(text: str) -> int:
    """``"10M"`` -> 10_000_000; ``"2.5K"`` -> 2_500; ``"1000"`` -> 1000."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMG]?)\s*", text.upper())
    if not match:
        raise ValueError(f"not a count: {text!r} (e.g. 10M, 500K, 2000)")
    value = float(match[1]) * _SUFFIXES[match[2]]
    if value < 1 or value != int(value):
        raise ValueError(f"not a whole positive count: {text!r}")
    return int(value)


def parse_bytes(text: str) -> int:
    """``"32MiB"`` -> 33554432 (binary units only, as the pipeline's --target-file-size)."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]IB|B)?\s*", text.upper())
    if not match:
        raise ValueError(f"not a size: {text!r} (e.g. 32MiB)")
    return int(match[1]) * _BYTE_SUFFIXES[match[2] or "B"]


def human_count(n: int) -> str:
    """10_000_000 -> ``"10M"``; 2_500 -> ``"2.5K"``."""
    for suffix, unit in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= unit:
            return f"{n / unit:g}{suffix}"
    return str(n)


def distribution(sizes: Sequence[int]) -> dict[str, float]:
    """count, min, median, mean, max and total of file sizes (zeros for none)."""
    if not sizes:
        return {"count": 0, "min": 0, "median": 0, "mean": 0, "max": 0, "total": 0}
    return {
        "count": len(sizes),
        "min": min(sizes),
        "median": statistics.median(sizes),
        "mean": statistics.fmean(sizes),
        "max": max(sizes),
        "total": sum(sizes),
    }


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least squares ``y = a + b x``: (a, b). Needs two distinct xs."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if n < 2 or sxx == 0:
        raise ValueError("a fit needs at least two distinct sizes")
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - b * mx, b


def spread(values: Sequence[float]) -> float:
    """(max - min) / min: 0.0 when all equal."""
    return (max(values) - min(values)) / min(values)


def parse_log(text: str) -> dict[str, Any]:
    """What the run's log says: the session, the merge, the performance report, the publish."""
    found: dict[str, Any] = {}
    if m := _SESSION.search(text):
        found.update(streams=int(m[1]), bq_estimated_rows=int(m[2]), bq_estimated_bytes=int(m[3]))
    if m := _MERGED.search(text):
        found.update(merged_from=int(m[1]), merged_into=int(m[2]), merge_seconds=float(m[3]))
    if m := _REPORT.search(text):
        found["performance_report_seconds"] = float(m[1])
    if matches := _PUBLISHED.findall(text):
        files, seconds, window = matches[-1]
        found.update(
            publish_files=int(files), publish_seconds=float(seconds), window_seconds=float(window)
        )
    return found


# --- processes and what they use -----------------------------------------------------------------
class Group:
    """A process and its descendants: peak summed RSS and CPU used since ``start()``."""

    def __init__(self, name: str, pid: int) -> None:
        self.name = name
        self.root = psutil.Process(pid)
        self.peak_rss = 0
        self.peak_at = 0.0  # time.perf_counter() of the peak
        self.first_cpu: dict[int, float] = {}
        self.last_cpu: dict[int, float] = {}

    def _processes(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return []

    def rss(self) -> int:
        total = 0
        for p in self._processes():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def sample(self) -> None:
        total = 0
        for p in self._processes():
            try:
                total += p.memory_info().rss
                t = p.cpu_times()
            except psutil.Error:
                continue
            self.last_cpu[p.pid] = t.user + t.system
            self.first_cpu.setdefault(p.pid, 0.0)  # born during the run: all its CPU counts
        if total > self.peak_rss:
            self.peak_rss, self.peak_at = total, time.perf_counter()

    def start(self) -> None:
        self.peak_rss = 0
        self.last_cpu.clear()
        self.sample()
        self.first_cpu = dict(self.last_cpu)
        self.peak_rss = 0
        self.sample()

    @property
    def cpu_seconds(self) -> float:
        return sum(self.last_cpu[p] - self.first_cpu.get(p, 0.0) for p in self.last_cpu)


class Sampler(threading.Thread):
    """Samples every group every SAMPLE_SECONDS until stopped."""

    def __init__(self, groups: Sequence[Group]) -> None:
        super().__init__(daemon=True)
        self.groups = list(groups)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(SAMPLE_SECONDS):
            for g in self.groups:
                g.sample()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        for g in self.groups:
            g.sample()


def _popen(command: Sequence[str], log_path: Path, **kwargs: Any) -> subprocess.Popen[str]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("w")
    return subprocess.Popen(
        list(command), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True, **kwargs
    )


def _wait_for(log_path: Path, pattern: str, proc: subprocess.Popen[str], what: str) -> str:
    """The first group of ``pattern`` once it appears in ``log_path``."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if m := re.search(pattern, log_path.read_text(errors="replace")):
            return m[1]
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise BenchmarkError(f"{what} did not start; log {log_path}:\n{_tail(log_path)}")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def s3_server(logs: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    log_path = logs / "s3.log"
    proc = _popen(
        [sys.executable, "-m", "processing", "emulator", "s3", "--bucket", BUCKET], log_path
    )
    try:
        yield _wait_for(log_path, r"S3 emulator listening on (\S+)", proc, "moto"), proc
    finally:
        _stop(proc)


@contextlib.contextmanager
def bigquery_emulator(
    tables: Mapping[str, Path], min_rows_per_stream: int, logs: Path
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    log_path = logs / "bigquery.log"
    command = [
        sys.executable, "-m", "processing", "emulator", "bigquery", "--cache-responses",
        "--min-rows-per-stream", str(min_rows_per_stream),
        *(x for name, path in tables.items() for x in ("--table", f"{PROJECT}.{name}={path}")),
    ]  # fmt: skip
    proc = _popen(command, log_path)
    try:
        yield (
            _wait_for(log_path, r"emulator listening on (\S+)", proc, "the BigQuery emulator"),
            proc,
        )
    finally:
        _stop(proc)


@dataclass
class Cluster:
    """``dask scheduler`` and ``workers`` x ``dask worker`` (with nannies), as on Kubernetes."""

    address: str
    scheduler: subprocess.Popen[str]
    workers: list[subprocess.Popen[str]]

    def client(self) -> Any:
        from distributed import Client

        return Client(self.address, timeout="30s")


@contextlib.contextmanager
def cluster(workers: int, threads: int, logs: Path, name: str) -> Iterator[Cluster]:
    dask = str(Path(sys.executable).with_name("dask"))
    log_path = logs / f"{name}.scheduler.log"
    scheduler = _popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0"],
        log_path,
    )
    procs: list[subprocess.Popen[str]] = []
    try:
        address = _wait_for(log_path, r"Scheduler at:\s+(tcp://\S+)", scheduler, "the scheduler")
        for i in range(workers):
            command = [
                dask, "worker", address, "--nworkers", "1", "--nthreads", str(threads),
                "--name", f"{name}-w{i + 1}", "--host", "127.0.0.1", "--dashboard-address", ":0",
            ]  # fmt: skip
            procs.append(_popen(command, logs / f"{name}.worker{i + 1}.log"))
        found = Cluster(address, scheduler, procs)
        with found.client() as client:
            client.wait_for_workers(workers, timeout=120)
        yield found
    finally:
        for proc in procs:
            _stop(proc)
        _stop(scheduler)


def _task_counts(dask_scheduler: Any) -> dict[str, dict[str, int]]:
    """Per task prefix, how many tasks ever reached each state (run on the scheduler)."""
    return {name: dict(p.state_counts) for name, p in dask_scheduler.task_prefixes.items()}


# --- warming the emulator's cache ----------------------------------------------------------------
def warm_cache(address: str, table: str, streams: int, slots: int) -> tuple[int, float]:
    """Read every stream of a session like the pipeline's once, discarding it: the emulator then
    holds the messages of this table and stream count in memory. Returns (rows, seconds).

    The session asks what the pipeline asks (its fields, its window, LZ4, ``streams``), so the
    emulator cuts the same units, which is what its cache is keyed by."""
    import grpc
    from google.cloud import bigquery_storage_v1
    from google.cloud.bigquery_storage_v1 import types
    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
        BigQueryReadGrpcTransport,
    )

    from processing.logic.bigquery_plan import row_restriction, stream_counts
    from processing.spec.schema import SELECTED_FIELDS

    started = time.perf_counter()
    channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", -1)])
    client = bigquery_storage_v1.BigQueryReadClient(
        transport=BigQueryReadGrpcTransport(channel=channel)
    )
    most, least = stream_counts(slots, streams)
    project, dataset = PROJECT.split(".")
    request = types.CreateReadSessionRequest(
        parent=f"projects/{project}",
        read_session=types.ReadSession(
            table=f"projects/{project}/datasets/{dataset}/tables/{table}",
            data_format=types.DataFormat.ARROW,
            read_options=types.ReadSession.TableReadOptions(
                selected_fields=list(SELECTED_FIELDS),
                row_restriction=row_restriction("timestamp", dt.date.fromisoformat(DATE)),
                arrow_serialization_options=types.ArrowSerializationOptions(
                    buffer_compression=types.ArrowSerializationOptions.CompressionCodec.LZ4_FRAME
                ),
            ),
        ),
        max_stream_count=most,
        preferred_min_stream_count=least,
    )
    session = client.create_read_session(request=request)

    def drain(name: str) -> int:
        return sum(r.row_count for r in client.read_rows(name))

    with ThreadPoolExecutor(4) as pool:
        rows = sum(pool.map(drain, [s.name for s in session.streams]))
    channel.close()
    return rows, time.perf_counter() - started


# --- one measured run ----------------------------------------------------------------------------
@dataclass
class Run:
    """One measured ``processing run``; sizes in bytes, times in seconds."""

    name: str
    source: str
    input_rows: int
    pieces_asked: int
    workers: int
    threads_per_worker: int
    target_file_bytes: int
    wall_seconds: float
    cpu_seconds: dict[str, float]  # client, scheduler, workers, emulator, s3, others
    peak_rss: dict[str, Any]  # client, scheduler, workers (list), emulator, s3
    idle_rss: dict[str, Any]  # scheduler and workers before the run
    peak_seconds: list[float]  # when each worker's peak came, seconds after the run started
    tasks: dict[str, int]  # per task prefix: tasks that finished
    manifest: dict[str, Any]  # the counts of the published manifest
    events_files: dict[str, float]
    rejected_files: dict[str, float]
    listed_event_files: int  # a listing of the published prefix, to check the manifest's count
    log: dict[str, Any]  # parse_log of the run's output
    commit: str
    busy_before_percent: float
    derived: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rows = self.manifest["rows_read"]
        job_cpu = sum(self.cpu_seconds[k] for k in ("client", "scheduler", "workers"))
        cores = self.workers * self.threads_per_worker
        self.derived = {
            "cores": cores,
            "rows_per_second": rows / self.wall_seconds,
            "rows_per_second_per_core": rows / self.wall_seconds / cores,
            "job_cpu_seconds": job_cpu,
            "cpu_seconds_per_million_rows": job_cpu / rows * 1e6,
            "rows_per_cpu_second": rows / job_cpu,
            "worker_peak_rss_max": max(self.peak_rss["workers"]),
            "tasks": sum(self.tasks.values()),
            "bq_bytes_per_row": self.log.get("bq_estimated_bytes", 0)
            / max(1, self.log.get("bq_estimated_rows", 0)),
            "output_bytes_per_valid_row": self.events_files["total"]
            / max(1, self.manifest["rows_valid"]),
            "rejected_bytes_per_rejected_row": self.rejected_files["total"]
            / max(1, self.manifest["rows_rejected"]),
            "seconds_per_piece": self.wall_seconds / max(1, self.manifest["pieces"]),
        }


@dataclass
class Bench:
    workdir: Path
    logs: Path
    s3_endpoint: str
    emulator: str
    helpers: dict[str, subprocess.Popen[str]]  # emulator, s3: measured, never counted
    workers: int
    threads: int
    target_file_size: str
    wait_idle: float

    @property
    def slots(self) -> int:
        return self.workers * self.threads

    def command(self, source: str, dest: str, scheduler: str, extra: Sequence[str]) -> list[str]:
        origin = (
            ["--source", f"bigquery://{PROJECT}.{source}", "--bq-endpoint", self.emulator]
            if not source.endswith(".parquet")
            else ["--source", source]
        )
        return [
            sys.executable, "-m", "processing", "run", "--date", DATE, *origin,
            "--dest", dest, "--scheduler", scheduler,
            "--target-file-size", self.target_file_size, *extra,
        ]  # fmt: skip

    def unmeasured(self, name: str, source: str, dest: str, extra: Sequence[str]) -> str:
        """A run on its own throw-away cluster; returns its log."""
        with cluster(self.workers, self.threads, self.logs, name) as c:
            log_path = self.logs / f"{name}.log"
            command = self.command(source, dest, c.address, extra)
            print(f"[{name}] {' '.join(command)}", flush=True)
            started = time.perf_counter()
            with log_path.open("w") as log:
                code = subprocess.run(
                    command, check=False, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
                ).returncode
            if code:
                raise BenchmarkError(f"{name} exited {code}; log {log_path}:\n{_tail(log_path)}")
            print(f"[{name}] {time.perf_counter() - started:.1f} s (not measured)", flush=True)
            return log_path.read_text(errors="replace")

    def measured(  # noqa: PLR0917
        self, name: str, source: str, rows: int, pieces: int, dest: str, extra: Sequence[str]
    ) -> Run:
        """A run on a fresh cluster, started and idle before the clock starts."""
        with cluster(self.workers, self.threads, self.logs, name) as c:
            busy = wait_until_idle(self.wait_idle)
            command = self.command(source, dest, c.address, extra)
            log_path = self.logs / f"{name}.log"
            print(f"[{name}] {' '.join(command)}", flush=True)
            groups = {
                "scheduler": Group("scheduler", c.scheduler.pid),
                **{
                    f"worker{i + 1}": Group(f"worker{i + 1}", w.pid)
                    for i, w in enumerate(c.workers)
                },
                **{k: Group(k, p.pid) for k, p in self.helpers.items()},
            }
            for g in groups.values():
                g.start()
            idle = {
                "scheduler": groups["scheduler"].rss(),
                "workers": [groups[f"worker{i + 1}"].rss() for i in range(self.workers)],
            }
            commit = revision()
            machine_before, own_before = _machine_busy_seconds(), _own_cpu_seconds()
            children_before = _children_cpu()
            with log_path.open("w") as log:
                started = time.perf_counter()
                proc = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
                client = Group("client", proc.pid)
                client.start()
                sampler = Sampler([client, *groups.values()])
                sampler.start()
                code = proc.wait()
                wall = time.perf_counter() - started
                sampler.stop()
            client_cpu = _children_cpu() - children_before
            machine = _machine_busy_seconds() - machine_before
            own = _own_cpu_seconds() - own_before
            if code:
                raise BenchmarkError(f"{name} exited {code}; log {log_path}:\n{_tail(log_path)}")
            with c.client() as dask_client:
                counts = dask_client.run_on_scheduler(_task_counts)
        workers = [groups[f"worker{i + 1}"] for i in range(self.workers)]
        cpu = {
            "client": client_cpu,
            "scheduler": groups["scheduler"].cpu_seconds,
            "workers": sum(w.cpu_seconds for w in workers),
            **{k: groups[k].cpu_seconds for k in self.helpers},
        }
        cpu["others"] = max(0.0, machine - sum(cpu.values()) - own)
        text = log_path.read_text(errors="replace")
        manifest, events, rejected, listed = self.outputs(dest)
        run = Run(
            name=name,
            source=source,
            input_rows=rows,
            pieces_asked=pieces,
            workers=self.workers,
            threads_per_worker=self.threads,
            target_file_bytes=parse_bytes(self.target_file_size),
            wall_seconds=wall,
            cpu_seconds=cpu,
            peak_rss={
                "client": client.peak_rss,
                "scheduler": groups["scheduler"].peak_rss,
                "workers": [w.peak_rss for w in workers],
                **{k: groups[k].peak_rss for k in self.helpers},
            },
            idle_rss=idle,
            peak_seconds=[round(w.peak_at - started, 1) for w in workers],
            tasks={k: v.get("memory", 0) for k, v in counts.items() if v.get("memory")},
            manifest=manifest,
            events_files=distribution(events),
            rejected_files=distribution(rejected),
            listed_event_files=listed,
            log=parse_log(text),
            commit=commit,
            busy_before_percent=busy,
        )
        print(
            f"[{name}] {wall:.1f} s wall; job CPU {run.derived['job_cpu_seconds']:.1f} s "
            f"(emulator {cpu.get('emulator', 0):.1f}, S3 {cpu.get('s3', 0):.1f}, "
            f"others {cpu['others']:.1f}); {run.derived['tasks']} tasks; code {commit}",
            flush=True,
        )
        return run

    def outputs(self, dest: str) -> tuple[dict[str, Any], list[int], list[int], int]:
        """The published manifest's counts, its event and rejected file sizes, and the number of
        Parquet files a listing of the published events prefix finds."""
        import s3fs

        import processing

        options = {"endpoint_url": self.s3_endpoint}
        found = processing.read_manifest(dest, dt.date.fromisoformat(DATE), options)
        if found is None:
            raise BenchmarkError(f"nothing published under {dest}")
        files = found["files"]
        events = [int(f["bytes"]) for f in files if f["dataset"] == "events"]
        rejected = [int(f["bytes"]) for f in files if f["dataset"] == "rejected"]
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": self.s3_endpoint})
        prefix = f"{dest.removeprefix('s3://')}/events/event_date={DATE}"
        listed = sum(1 for p in fs.find(prefix) if p.endswith(".parquet"))
        keys = ("run_id", "rows_read", "rows_valid", "rows_rejected", "pieces", "bytes_written",
                "duration_seconds", "stage_seconds", "bytes_read")  # fmt: skip
        counts = {k: found.get(k) for k in keys}
        counts["event_names"] = len(
            {f.get("event_name") for f in files if f["dataset"] == "events"}
        )
        return counts, events, rejected, listed


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- the model -----------------------------------------------------------------------------------
def predict(run: Run) -> dict[str, Any] | None:
    """The capacity model's estimate for the run's day and cluster, or None if unavailable."""
    try:
        from processing.logic import capacity
    except ImportError:
        return None
    event_names = max(1, int(run.manifest.get("event_names") or 1))
    kwargs: dict[str, Any] = {
        "workers": run.workers,
        "threads_per_worker": run.threads_per_worker,
        "target_file_bytes": run.target_file_bytes,
        "event_names": event_names,
        "streams": run.manifest["pieces"],  # what the session gave
    }
    try:
        e = capacity.estimate(run.manifest["rows_read"], **kwargs)
    except (TypeError, AttributeError, ValueError) as error:
        print(f"model: not available ({error})")
        return None
    return {
        "wall_seconds": e.wall_seconds,
        "event_files": e.event_files,
        "worker_memory_bytes": e.worker_memory_bytes,
        "streams": getattr(e, "streams", None),
        "event_names": event_names,
    }


# --- report --------------------------------------------------------------------------------------
def _merge_start(r: Run) -> float:
    """About when the merge began, seconds after the run started: the process stage ends with
    it, and only the audit and publish come after (their seconds from the log)."""
    after = r.log.get("publish_seconds", 0.0) + r.manifest.get("stage_seconds", {}).get("audit", 0)
    return r.wall_seconds - after - r.log.get("merge_seconds", 0.0)


def _mib(n: float) -> str:
    return f"{n / MIB:,.1f}"


def print_sizes(runs: Sequence[Run], predictions: Sequence[dict[str, Any] | None]) -> None:
    rows = [
        ("rows read", lambda r, p: f"{r.manifest['rows_read']:,}"),
        ("streams (pieces)", lambda r, p: f"{r.manifest['pieces']}"),
        ("wall s", lambda r, p: f"{r.wall_seconds:.1f}"),
        ("  predicted wall s", lambda r, p: f"{p['wall_seconds']:.1f}" if p else "n/a"),
        ("  process+merge / merge / audit", lambda r, p: _stages(r)),
        ("  publish s (files)", lambda r, p: f"{r.log.get('publish_seconds', 0):.2f} "
                                             f"({r.log.get('publish_files', 0)})"),
        ("  both versions listed s", lambda r, p: f"{r.log.get('window_seconds', 0):.2f}"),
        ("rows/s per core", lambda r, p: f"{r.derived['rows_per_second_per_core']:,.0f}"),
        ("CPU s per M rows", lambda r, p: f"{r.derived['cpu_seconds_per_million_rows']:.2f}"),
        ("  CPU s client/sched/workers", lambda r, p: f"{r.cpu_seconds['client']:.0f}/"
         f"{r.cpu_seconds['scheduler']:.0f}/{r.cpu_seconds['workers']:.0f}"),
        ("  CPU s emulator/S3/others", lambda r, p: f"{r.cpu_seconds.get('emulator', 0):.0f}/"
         f"{r.cpu_seconds.get('s3', 0):.0f}/{r.cpu_seconds['others']:.0f}"),
        ("peak MiB per worker", lambda r, p: "/".join(f"{w / MIB:,.0f}" for w in r.peak_rss["workers"])),  # noqa: E501
        ("  at s (merge from s)", lambda r, p: "/".join(f"{t:.0f}" for t in r.peak_seconds)
         + f" ({_merge_start(r):.0f})"),
        ("peak MiB scheduler", lambda r, p: f"{r.peak_rss['scheduler'] / MIB:,.0f}"),
        ("peak MiB client", lambda r, p: f"{r.peak_rss['client'] / MIB:,.0f}"),
        ("Dask tasks", lambda r, p: f"{r.derived['tasks']} ({_task_split(r)})"),
        ("event files (listed)", lambda r, p: f"{r.events_files['count']:.0f} ({r.listed_event_files})"),  # noqa: E501
        ("  MiB min/median", lambda r, p: _sizes(r.events_files, "min", "median")),
        ("  MiB mean/max", lambda r, p: _sizes(r.events_files, "mean", "max")),
        ("rejected files", lambda r, p: f"{r.rejected_files['count']:.0f}"),
        ("  MiB min/median", lambda r, p: _sizes(r.rejected_files, "min", "median")),
        ("  MiB mean/max", lambda r, p: _sizes(r.rejected_files, "mean", "max")),
    ]  # fmt: skip
    width = 30
    header = f"{'':<{width}}" + "".join(f"{human_count(r.input_rows) + ' rows':>18}" for r in runs)
    print(f"\n{header}\n{'-' * len(header)}")
    for label, cell in rows:
        print(
            f"{label:<{width}}"
            + "".join(f"{cell(r, p):>18}" for r, p in zip(runs, predictions, strict=True))
        )


def _sizes(d: Mapping[str, float], a: str, b: str) -> str:
    return f"{_mib(d[a])}/{_mib(d[b])}"


def _files(r: Run) -> int:
    return int(r.events_files["count"] + r.rejected_files["count"])


def _stages(r: Run) -> str:
    stages = r.manifest.get("stage_seconds") or {}
    merge = r.log.get("merge_seconds", 0.0)
    return f"{stages.get('process', 0):.0f}/{merge:.0f}/{stages.get('audit', 0):.0f}"


def _task_split(r: Run) -> str:
    merges = r.log.get("merged_into", 0)
    return f"{r.manifest['pieces']}+{merges}"


def verdict(ok: bool | None) -> str:
    return "SKIP" if ok is None else "PASS" if ok else "FAIL"


def size_verdicts(
    runs: Sequence[Run],
    predictions: Sequence[dict[str, Any] | None],
    compared: tuple[int, int, int, int] | None,
) -> list[str]:
    lines = []
    for r, p in zip(runs, predictions, strict=True):
        size = human_count(r.input_rows)
        if p is None:
            lines.append(f"INFO  model at {size}: not available")
            continue
        ratio = p["wall_seconds"] / r.wall_seconds
        ok = abs(ratio - 1) <= MODEL_TOLERANCE
        lines.append(
            f"{verdict(ok)}  model at {size}: predicted {p['wall_seconds']:.1f} s, measured "
            f"{r.wall_seconds:.1f} s, ratio {ratio:.2f} (within {MODEL_TOLERANCE:.0%})"
        )
    largest = max(runs, key=lambda r: r.input_rows)
    mean, target = largest.events_files["mean"], largest.target_file_bytes
    lines.append(
        f"{verdict(mean >= MIN_FILL * target)}  at {human_count(largest.input_rows)} rows with "
        f"{largest.manifest['pieces']} streams, event files average {_mib(mean)} MiB, target "
        f"{_mib(target)} MiB (at least {MIN_FILL:.0%})"
    )
    if compared is None:
        lines.append("SKIP  file count against the stream count: not run (--compare-streams 0)")
    else:
        few, few_files, many, many_files = compared
        # without the merge the count grows as the streams do (a file per stream and partition);
        # with it, a partition's files follow its bytes: packing may leave a file more or less
        grows = (many_files / max(1, few_files) - 1) / max(1e-9, many / max(1, few) - 1)
        lines.append(
            f"{verdict(grows <= MAX_FILE_GROWTH)}  file count does not grow with the streams "
            f"(at {human_count(runs[-1].input_rows)} rows): {few} streams {few_files} event "
            f"files, {many} streams {many_files} (grows {grows:.2f}x as fast as the streams; at "
            f"most {MAX_FILE_GROWTH:.1f}x)"
        )
    if len(runs) > 1:
        peaks = [r.derived["worker_peak_rss_max"] for r in runs]
        s = spread(peaks)
        lines.append(
            f"{verdict(s <= MAX_WORKER_MEMORY_SPREAD)}  memory per worker flat across the sizes: "
            f"{' / '.join(f'{p / MIB:,.0f}' for p in peaks)} MiB, spread {s:.1%} "
            f"(within {MAX_WORKER_MEMORY_SPREAD:.0%})"
        )
    return lines


def calibration(runs: Sequence[Run]) -> list[str]:
    """The numbers the capacity model's constants come from."""
    lines = ["calibration (for processing.logic.capacity.Rates):"]
    for r in runs:
        d = r.derived
        lines.append(
            f"  {human_count(r.input_rows):>5}: {d['rows_per_second_per_core']:,.0f} rows/s per "
            f"core (wall), {d['rows_per_cpu_second']:,.0f} rows per job CPU s; BigQuery "
            f"{d['bq_bytes_per_row']:.1f} B/row (estimated bytes / rows of the session); output "
            f"{d['output_bytes_per_valid_row']:.2f} B/valid row, rejected "
            f"{d['rejected_bytes_per_rejected_row']:.1f} B/rejected row; worker peak "
            f"{d['worker_peak_rss_max'] / MIB:,.0f} MiB (idle "
            f"{max(r.idle_rss['workers']) / MIB:,.0f}); {_files(r)} files published"
        )
    if len({r.manifest["rows_read"] for r in runs}) > 1:
        cores = runs[0].derived["cores"]
        a, b = linear_fit([r.manifest["rows_read"] for r in runs], [r.wall_seconds for r in runs])
        lines.append(
            f"  fit wall = {a:.1f} s + rows / ({1 / b / cores:,.0f} rows/s per core x {cores} "
            f"cores): fixed_seconds {a:.1f}, rows_per_core_second {1 / b / cores:,.0f}"
        )
        a, b = linear_fit(
            [r.manifest["rows_read"] for r in runs], [r.derived["job_cpu_seconds"] for r in runs]
        )
        lines.append(
            f"  fit job CPU = {a:.1f} s + rows / {1 / b:,.0f} rows per CPU s (the CPU fit is what "
            "other processes on the machine disturb least; the fixed part is mostly the "
            f"{runs[0].manifest['pieces']} pieces' own cost: {a / runs[0].manifest['pieces']:.2f} "
            "CPU s each)"
        )
    return lines


def plot(runs: Sequence[Run], predictions: Sequence[dict[str, Any] | None], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r.manifest["rows_read"] / 1e6 for r in runs]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    ax = axes[0][0]
    ax.plot(x, [r.wall_seconds for r in runs], "o-", label="measured")
    if all(predictions):
        ax.plot(x, [p["wall_seconds"] for p in predictions if p], "s--", label="model")
    ax.set(title="Wall time", xlabel="rows read (M)", ylabel="seconds")
    ax.legend()
    ax = axes[0][1]
    ax.plot(x, [r.derived["rows_per_second_per_core"] / 1e3 for r in runs], "o-", color="C0")
    ax.set(title="Throughput and CPU", xlabel="rows read (M)")
    ax.set_ylabel("K rows/s per core (wall)", color="C0")
    twin = ax.twinx()
    twin.plot(x, [r.derived["cpu_seconds_per_million_rows"] for r in runs], "s--", color="C1")
    twin.set_ylabel("CPU s per M rows (client+scheduler+workers)", color="C1")
    ax = axes[1][0]
    for i in range(runs[0].workers):
        ax.plot(x, [r.peak_rss["workers"][i] / MIB for r in runs], "o-", label=f"worker {i + 1}")
    ax.plot(x, [r.peak_rss["scheduler"] / MIB for r in runs], "s--", label="scheduler")
    ax.plot(x, [r.peak_rss["client"] / MIB for r in runs], "^:", label="client")
    ax.set(title="Peak RSS", xlabel="rows read (M)", ylabel="MiB", ylim=(0, None))
    ax.legend()
    ax = axes[1][1]
    ax.plot(x, [r.events_files["count"] for r in runs], "o-", color="C0")
    ax.set(title="Event files", xlabel="rows read (M)")
    ax.set_ylabel("files", color="C0")
    twin = ax.twinx()
    twin.plot(x, [r.events_files["mean"] / MIB for r in runs], "s--", color="C1", label="mean")
    twin.axhline(runs[0].target_file_bytes / MIB, color="grey", lw=0.8, label="target")
    twin.set_ylabel("mean file MiB", color="C1")
    twin.legend(loc="lower right")
    fig.suptitle(
        f"Scale: {runs[0].workers} workers x {runs[0].threads_per_worker} thread, "
        f"{runs[0].manifest['pieces']} streams, emulator -> moto S3"
    )
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- the two modes -------------------------------------------------------------------------------
def run_sizes(bench: Bench, args: argparse.Namespace, sources: dict[int, Path]) -> dict[str, Any]:
    sizes = sorted(sources)
    tables = {size: f"d{human_count(size)}" for size in sizes}
    streams = ["--bq-max-streams", str(args.streams)]
    # the first version of the date, and the smallest table's cache
    bench.unmeasured("warm-up", tables[sizes[0]], LAKE, streams)
    for size in sizes[1:]:
        rows, seconds = warm_cache(bench.emulator, tables[size], args.streams, bench.slots)
        print(f"[warm] {tables[size]}: {rows:,} rows read once in {seconds:.1f} s", flush=True)
    runs = [
        bench.measured(f"size-{human_count(s)}", tables[s], s, args.streams, LAKE, streams)
        for s in sizes
    ]
    compared = None
    if args.compare_streams:
        bench.unmeasured(
            f"streams-{args.compare_streams}", tables[sizes[-1]], f"{LAKE}-streams",
            ["--bq-max-streams", str(args.compare_streams)],
        )  # fmt: skip
        manifest, events, _, _ = bench.outputs(f"{LAKE}-streams")
        compared = (manifest["pieces"], len(events), runs[-1].manifest["pieces"],
                    int(runs[-1].events_files["count"]))  # fmt: skip
    predictions = [predict(r) for r in runs]
    print_sizes(runs, predictions)
    print("(CPU: user+system seconds; the job's is client + scheduler + workers, the emulator's "
          "and moto's are not counted;\n others: the rest of the machine meanwhile)")  # fmt: skip
    print()
    print("\n".join(calibration(runs)))
    lines = size_verdicts(runs, predictions, compared)
    print()
    print("\n".join(lines))
    plot(runs, predictions, args.plot)
    print(f"\nplot written to {args.plot}")
    return {
        "runs": [asdict(r) for r in runs],
        "predictions": predictions,
        "compared_streams": compared,
        "verdicts": lines,
    }


def pieces_source(workdir: Path, rows: int, pieces: int) -> Path:
    """The day of ``rows`` rewritten in ``pieces`` row groups (a file's pieces are row groups)."""
    import pyarrow.parquet as pq

    path = workdir / f"day-{rows}-rg{pieces}.parquet"
    if path.exists() and pq.ParquetFile(path).metadata.num_row_groups >= pieces:
        return path
    table = pq.read_table(input_file(workdir, rows, DEFAULT_BAD_FRACTION))
    partial = path.with_name(f".partial-{path.name}")
    pq.write_table(table, partial, row_group_size=math.ceil(rows / pieces), compression="zstd")
    partial.replace(path)
    return path


def run_pieces(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """``args.pieces`` small pieces against the same rows in ``args.streams`` pieces."""
    rows, many, few = args.pieces_rows, args.pieces, args.streams
    if many <= SERVICE_MAX_STREAMS:
        source, kind = f"p{human_count(rows)}", "BigQuery emulator"
        for n in (few, many):  # both sessions' messages into the emulator's cache
            read, seconds = warm_cache(bench.emulator, source, n, bench.slots)
            print(f"[warm] {source} in {n} streams: {read:,} rows read once in {seconds:.1f} s")
        extra = {n: ["--bq-max-streams", str(n)] for n in (few, many)}
    else:
        # the client asks for at most 1,000 streams (the service's cap): a file's pieces instead
        source, kind = str(pieces_source(bench.workdir, rows, many)), "file (row groups)"
        extra = {n: ["--piece-rows", str(math.ceil(rows / n))] for n in (few, many)}
    runs = {
        n: bench.measured(f"pieces-{n}", source, rows, n, f"{LAKE}-pieces", extra[n])
        for n in (few, many)
    }
    a, b = runs[few], runs[many]
    overhead = (b.wall_seconds - a.wall_seconds) / (b.manifest["pieces"] - a.manifest["pieces"])
    lines = [
        f"{'':<26}{a.manifest['pieces']:>12} pieces{b.manifest['pieces']:>12} pieces",
        f"{'source':<26}{kind:>38}",
        f"{'rows read':<26}{a.manifest['rows_read']:>19,}{b.manifest['rows_read']:>19,}",
        f"{'wall s':<26}{a.wall_seconds:>19.1f}{b.wall_seconds:>19.1f}",
        f"{'wall / pieces s':<26}{a.derived['seconds_per_piece']:>19.3f}"
        f"{b.derived['seconds_per_piece']:>19.3f}",
        f"{'Dask tasks':<26}{a.derived['tasks']:>19}{b.derived['tasks']:>19}",
        f"{'peak MiB scheduler':<26}{a.peak_rss['scheduler'] / MIB:>19,.0f}"
        f"{b.peak_rss['scheduler'] / MIB:>19,.0f}",
        f"{'  idle before the run':<26}{a.idle_rss['scheduler'] / MIB:>19,.0f}"
        f"{b.idle_rss['scheduler'] / MIB:>19,.0f}",
        f"{'peak MiB client':<26}{a.peak_rss['client'] / MIB:>19,.0f}"
        f"{b.peak_rss['client'] / MIB:>19,.0f}",
        f"{'peak MiB per worker':<26}{a.derived['worker_peak_rss_max'] / MIB:>19,.0f}"
        f"{b.derived['worker_peak_rss_max'] / MIB:>19,.0f}",
        f"{'CPU s client/sched/workers':<26}"
        + "".join(
            f"{r.cpu_seconds['client']:>9.0f}/{r.cpu_seconds['scheduler']:.0f}/"
            f"{r.cpu_seconds['workers']:.0f}".rjust(19)
            for r in (a, b)
        ),
        f"{'CPU s S3 server':<26}{a.cpu_seconds['s3']:>19.0f}{b.cpu_seconds['s3']:>19.0f}",
        f"{'files merged -> published':<26}"
        + "".join(f"{r.log.get('merged_from', 0)} -> {_files(r)}".rjust(19) for r in (a, b)),
        f"{'merge s':<26}"
        + "".join(f"{r.log.get('merge_seconds', 0):>19.1f}" for r in (a, b)),
        "",
        f"per-piece overhead: ({b.wall_seconds:.1f} - {a.wall_seconds:.1f}) s / "
        f"({b.manifest['pieces']} - {a.manifest['pieces']}) pieces = {overhead * 1000:.0f} ms "
        f"of wall per extra piece on {bench.slots} task threads "
        f"({overhead * bench.slots * 1000:.0f} ms of a thread)",
    ]  # fmt: skip
    print("\n" + "\n".join(lines))
    return {"runs": [asdict(a), asdict(b)], "overhead_seconds_per_piece": overhead, "table": lines}


# --- entry point ---------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sizes", default="10M,30M,100M", help="input rows per size (default 10M,30M,100M)"
    )
    p.add_argument("--streams", type=int, default=64, help="--bq-max-streams (default 64)")
    p.add_argument(
        "--compare-streams", type=int, default=16,
        help="also the largest size at this many streams, to compare file counts (0: skip)",
    )  # fmt: skip
    p.add_argument("--target-file-size", default="32MiB", help="--target-file-size (default 32MiB)")
    p.add_argument("--workers", type=int, default=2, help="dask worker processes (default 2)")
    p.add_argument("--threads-per-worker", type=int, default=1, help="default 1")
    p.add_argument(
        "--min-rows-per-stream", type=int, default=1_500_000,
        help="of the emulator (default 1.5M: streams sized to the data as the service sizes "
        "them, so each size's streams are as long as 100M rows' 64)",
    )  # fmt: skip
    p.add_argument("--pieces", type=int, default=2000, help="pieces of the many-pieces mode")
    p.add_argument("--pieces-rows", default="2M", help="rows of the many-pieces mode (default 2M)")
    p.add_argument(
        "--mode", choices=("sizes", "pieces", "all"), default="sizes",
        help="sizes (default): the three sizes; pieces: many small pieces against the same rows "
        "in --streams pieces; all: both",
    )  # fmt: skip
    p.add_argument(
        "--wait-idle", type=float, default=15.0, metavar="SECONDS",
        help="before each measured run, wait up to SECONDS for the machine to go idle (default 15)",
    )  # fmt: skip
    p.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "out")
    p.add_argument("--plot", type=Path, default=DEFAULT_PLOT, help="default benchmarks/scale.png")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        sizes = sorted({parse_count(s) for s in args.sizes.split(",")})
        args.pieces_rows = parse_count(args.pieces_rows)
        parse_bytes(args.target_file_size)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if min(args.streams, args.workers, args.threads_per_worker, args.pieces) < 1:
        raise SystemExit("error: --streams, --workers, --threads-per-worker, --pieces must be >= 1")
    if args.streams > SERVICE_MAX_STREAMS:
        raise SystemExit(f"error: --streams at most {SERVICE_MAX_STREAMS} (the service's cap)")
    started = time.perf_counter()
    workdir = args.workdir.resolve()
    logs = workdir / "logs" / "scale"
    logs.mkdir(parents=True, exist_ok=True)
    env = environment()
    print(f"commit {env['commit_at_start']}; {env['cpus_logical']} CPUs; workdir {workdir}")
    modes = ["sizes", "pieces"] if args.mode == "all" else [args.mode]
    sources = (
        {n: input_file(workdir, n, DEFAULT_BAD_FRACTION) for n in sizes} if "sizes" in modes else {}
    )
    tables = {f"d{human_count(n)}": path for n, path in sources.items()}
    if "pieces" in modes and args.pieces <= SERVICE_MAX_STREAMS:
        tables[f"p{human_count(args.pieces_rows)}"] = input_file(
            workdir, args.pieces_rows, DEFAULT_BAD_FRACTION
        )
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    report: dict[str, Any] = {"config": {**vars(args), "sizes": sizes}, "environment": env}
    try:
        with contextlib.ExitStack() as stack:
            endpoint, s3 = stack.enter_context(s3_server(logs))
            os.environ["AWS_ENDPOINT_URL_S3"] = endpoint  # the client's, the workers' S3
            helpers = {"s3": s3}
            address = ""
            if tables:
                address, emulator = stack.enter_context(
                    bigquery_emulator(tables, args.min_rows_per_stream, logs)
                )
                helpers["emulator"] = emulator
            print(f"[services] moto S3 {endpoint}; BigQuery emulator {address or '(none)'}")
            bench = Bench(
                workdir, logs, endpoint, address, helpers, args.workers,
                args.threads_per_worker, args.target_file_size, args.wait_idle,
            )  # fmt: skip
            if "sizes" in modes:
                report["sizes"] = run_sizes(bench, args, sources)
            if "pieces" in modes:
                report["pieces"] = run_pieces(bench, args)
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    total = time.perf_counter() - started
    report["total_seconds"] = total
    name = f"scale-{args.mode}.json"
    out = workdir / name
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nresults written to {out}; the benchmark took {total / 60:.1f} minutes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
