"""Benchmark the pipeline against the "floor": the same input rewritten with plain pyarrow.

    uv run python benchmarks/run.py [--rows N] [--bad-fraction F] [--scale K] [--repeat R]
                                    [--wait-idle S] [--workers W] [--workdir DIR] [--keep]
                                    [--bigquery] [--no-peers]

The pipeline is measured beside the floor and beside the same job written by hand in Polars and
in DuckDB (``benchmarks/peers.py``).

Every measured run is a separate subprocess; its wall time includes interpreter start-up (and,
for the pipeline, starting and stopping its Dask LocalCluster). Peak memory is the peak of the
summed RSS of the subprocess and all its descendants, sampled every 50 ms. See
benchmarks/README.md for what each number means.

Exit code: 0 when every run finished, whatever the PASS/FAIL of the targets; 1 when a run failed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
DEFAULT_WORKDIR = REPO / "benchmarks" / "out"
DATE = "2023-10-23"
SEED = 1
DEFAULT_BAD_FRACTION = 0.01
SAMPLE_SECONDS = 0.05
MIB = 1024**2
GIB = 1024**3
MB = 1_000_000

# The targets (issues 4 and 14).
MIN_THROUGHPUT_RATIO = 0.9  # pipeline rows/s >= 0.9 x the (zstd) floor's
MAX_CPU_VS_POLARS = 1.0  # pipeline CPU seconds <= the Polars job's, on the same input
MAX_PEAK_BYTES = 1 * GIB  # pipeline peak memory, at TARGET_ROWS
TARGET_ROWS = 10_000_000
MAX_MEMORY_GROWTH = 0.20  # pipeline peak memory at K x N rows vs N rows
MIN_BYTES_REDUCTION = 0.25  # pipeline output bytes per valid row vs the floor's
MAX_BYTES_PER_ROW = 9.5  # pipeline output bytes per valid row
MAX_BQ_COST = 1.05  # wall through the BigQuery emulator and client vs from the file
BQ_TABLE = "bench.events.day"  # the input file, as the emulator serves it
PEER_NAMES = ("polars", "duckdb")  # benchmarks/peers.py


class BenchmarkError(RuntimeError):
    """A measured or helper subprocess failed."""


# --- the floor -----------------------------------------------------------------------------------
def floor(source: str, dest: str) -> None:
    """Rewrite ``source`` as ``dest/events/event_date=D/event_name=E/*.parquet``, no validation.

    Plain pyarrow, zstd (the pipeline's codec) and otherwise its defaults (default row groups):
    read the whole file, flatten the structs to the output columns, write a hive-partitioned
    dataset.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    table = pq.read_table(source)
    timestamp = table.column("timestamp")
    users = table.column("user_identifiers")
    products = table.column("product_information")
    columns = {
        "event_datetime": timestamp,
        "event_date": timestamp.cast(pa.date32()),
        "event_name": table.column("event_name"),
        "user_id": pc.struct_field(users, "id"),
        "platform": pc.struct_field(users, "platform"),
        "product_name": pc.struct_field(products, "name"),
        "SKU": pc.struct_field(products, "SKU"),
    }
    flat = pa.Table.from_arrays(list(columns.values()), names=list(columns))
    del table, timestamp, users, products
    ds.write_dataset(
        flat,
        f"{dest}/events",
        format="parquet",
        partitioning=["event_date", "event_name"],
        partitioning_flavor="hive",
        file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"),
    )


# --- measuring one subprocess --------------------------------------------------------------------
class TreeRssSampler(threading.Thread):
    """Samples the summed RSS of a process and all its descendants; keeps the peak."""

    def __init__(self, pid: int, interval: float = SAMPLE_SECONDS) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.peak_processes = 0
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while True:
            self._sample()
            if self._stop_event.wait(self.interval):
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def _sample(self) -> None:
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:  # the root has exited
            return
        total = counted = 0
        for process in processes:
            try:
                total += process.memory_info().rss
                counted += 1
            except psutil.Error:  # exited between listing and reading
                continue
        self.samples += 1
        if total > self.peak:
            self.peak, self.peak_processes = total, counted


@dataclass(frozen=True)
class Timed:
    wall_seconds: float
    cpu_seconds: float  # user + system of the subprocess and the descendants it waited for
    peak_rss_bytes: int
    peak_processes: int  # processes alive at the peak sample
    samples: int
    other_cpu_seconds: float  # CPU time the rest of the machine used meanwhile (contention)
    busy_before_percent: float  # machine CPU use in the second before the run started
    commit: str  # the code measured: HEAD, "+dirty" if processing/ had uncommitted changes


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _machine_busy_seconds() -> float:
    """CPU time all cores have spent busy since boot (guest time is already in user)."""
    t = psutil.cpu_times()
    return sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq"))


def wait_until_idle(max_seconds: float, busy_below: float = 20.0) -> float:
    """Wait up to ``max_seconds`` for the machine to be idle; return its last CPU use in %."""
    deadline = time.monotonic() + max_seconds
    while True:
        busy = psutil.cpu_percent(interval=1.0)
        if busy < busy_below or time.monotonic() >= deadline:
            return busy


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def measure(name: str, command: Sequence[str], log_path: Path, wait_idle: float = 0.0) -> Timed:
    """Run ``command`` from the repository root, output to ``log_path``; time it, sample memory.

    First waits up to ``wait_idle`` seconds for the machine to be idle (always at least 1 s, to
    record how busy it was).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    busy_before = wait_until_idle(wait_idle)
    print(f"[{name}] {' '.join(command)}", flush=True)
    commit = revision()
    cpu_before = _children_cpu_seconds()
    own_before = _own_cpu_seconds()
    machine_before = _machine_busy_seconds()
    with log_path.open("wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            sampler = TreeRssSampler(process.pid)
            sampler.start()
            code = process.wait()
            wall = time.perf_counter() - started
        except BaseException:
            process.kill()
            process.wait()
            raise
        sampler.stop()
    machine = _machine_busy_seconds() - machine_before
    cpu = _children_cpu_seconds() - cpu_before
    if code != 0:
        raise BenchmarkError(f"{name} exited with code {code}; log {log_path}:\n{_tail(log_path)}")
    timed = Timed(
        wall_seconds=wall,
        cpu_seconds=cpu,
        peak_rss_bytes=sampler.peak,
        peak_processes=sampler.peak_processes,
        samples=sampler.samples,
        other_cpu_seconds=max(0.0, machine - cpu - (_own_cpu_seconds() - own_before)),
        busy_before_percent=busy_before,
        commit=commit,
    )
    print(
        f"[{name}] {wall:.1f} s wall, {cpu:.1f} s CPU, peak {sampler.peak / MIB:,.0f} MiB; "
        f"other processes used {timed.other_cpu_seconds:.1f} s CPU meanwhile; code {commit}",
        flush=True,
    )
    return timed


def _flags(**flags: object) -> list[str]:
    """``_flags(bad_fraction=0.1)`` -> ``["--bad-fraction", "0.1"]``."""
    return [item for k, v in flags.items() for item in (f"--{k.replace('_', '-')}", str(v))]


# --- results ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Result:
    """One measured configuration. With --repeat, the fastest attempt and the highest peak."""

    name: str
    rows: int
    input_bytes: int
    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    peak_processes: int
    samples: int
    other_cpu_seconds: float
    busy_before_percent: float
    commit: str
    output_bytes: int  # *.parquet under events/
    output_files: int
    valid_rows: int
    reported_seconds: float | None = None  # the pipeline's own duration, from its manifest
    attempts_wall_seconds: tuple[float, ...] = ()
    attempts_peak_rss_bytes: tuple[int, ...] = ()
    attempts_commit: tuple[str, ...] = ()
    derived: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        derived = {
            "rows_per_second": self.rows / self.wall_seconds,
            "input_mb_per_second": self.input_bytes / MB / self.wall_seconds,
            "output_bytes_per_valid_row": (
                self.output_bytes / self.valid_rows if self.valid_rows else float("nan")
            ),
        }
        object.__setattr__(self, "derived", derived)

    @property
    def rows_per_second(self) -> float:
        return self.derived["rows_per_second"]

    @property
    def bytes_per_valid_row(self) -> float:
        return self.derived["output_bytes_per_valid_row"]


def _events_output(dest: Path) -> tuple[int, int]:
    files = list((dest / "events").rglob("*.parquet"))
    return sum(f.stat().st_size for f in files), len(files)


def _discard(dest: Path, keep: bool) -> None:
    if keep:
        print(f"  kept output: {dest}")
    else:
        shutil.rmtree(dest, ignore_errors=True)


def _result(
    name: str, rows: int, source: Path, dest: Path, timed: Timed, **measured: Any
) -> Result:
    """A Result from a finished run: its timing, its input and the events it wrote."""
    output_bytes, output_files = _events_output(dest)
    return Result(
        name=name,
        rows=rows,
        input_bytes=source.stat().st_size,
        **asdict(timed),
        output_bytes=output_bytes,
        output_files=output_files,
        **measured,
    )


@dataclass(frozen=True)
class Bench:
    workdir: Path
    workers: int | None  # None: the pipeline's default LocalCluster
    keep: bool
    wait_idle: float = 0.0
    processes: bool = False

    def pipeline(
        self,
        name: str,
        source: Path,
        rows: int,
        bigquery_endpoint: str | None = None,
        extra: Sequence[str] = (),
    ) -> Result:
        """The pipeline on ``source``, or on the same file served by the BigQuery emulator at
        ``bigquery_endpoint`` (which filters out the rows of other dates before sending);
        ``extra``: more flags of ``processing run``."""
        dest = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))
        try:
            origin = (
                _flags(source=f"bigquery://{BQ_TABLE}", bq_endpoint=bigquery_endpoint)
                if bigquery_endpoint
                else _flags(source=source)
            )
            command = [
                sys.executable, "-m", "processing", "run",
                *_flags(date=DATE, dest=dest), *origin,
                *(_flags(workers=self.workers) if self.workers else []),
                *(["--processes"] if self.processes else []),
                *extra,
            ]  # fmt: skip
            timed = measure(name, command, self.workdir / "logs" / f"{name}.log", self.wait_idle)
            manifest_path = dest / "events" / f"event_date={DATE}" / "_manifest.json"
            manifest = json.loads(manifest_path.read_text())
            read = manifest["rows_read"]
            if read != rows and not (bigquery_endpoint and 0.95 * rows <= read <= rows):
                raise BenchmarkError(f"{name} read {read:,} rows, not {rows:,}")
            return _result(
                name, rows, source, dest, timed,
                valid_rows=int(manifest["rows_valid"]),
                reported_seconds=float(manifest["duration_seconds"]),
            )  # fmt: skip
        finally:
            _discard(dest, self.keep)

    def floor(self, name: str, source: Path, rows: int, peer: str | None = None) -> Result:
        """The floor, or with ``peer`` the hand-written job of that name (benchmarks/peers.py)."""
        import pyarrow.dataset as ds

        dest = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))
        try:
            script = str(Path(__file__).resolve())
            only = ["--peer-only", peer] if peer else ["--floor-only"]
            command = [sys.executable, script, *only, str(source), str(dest)]
            timed = measure(name, command, self.workdir / "logs" / f"{name}.log", self.wait_idle)
            valid = ds.dataset(dest / "events", format="parquet", partitioning="hive").count_rows()
            return _result(name, rows, source, dest, timed, valid_rows=valid)
        finally:
            _discard(dest, self.keep)


@contextlib.contextmanager
def bigquery_emulator(source: Path, log_path: Path, cached: bool = False) -> Iterator[str]:
    """``python -m processing emulator bigquery`` serving ``source`` as BQ_TABLE: its address.

    It runs beside the measured pipeline: its CPU time shows as ``others``. ``cached``: it
    keeps the responses of the first read in memory and serves later reads from there.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "processing", "emulator", "bigquery",
        "--table", f"{BQ_TABLE}={source}", *(["--cache-responses"] if cached else []),
    ]  # fmt: skip
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            prefix = "BigQuery Storage emulator listening on "
            if not line.startswith(prefix):
                raise BenchmarkError(f"the BigQuery emulator did not start (see {log_path})")
            address = line[len(prefix) :].strip()
            print(f"[emulator] {address} serving bigquery://{BQ_TABLE} from {source}", flush=True)
            yield address
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def best_of(repeat: int, attempt: Callable[[str], Result], name: str) -> Result:
    """Run ``attempt`` ``repeat`` times: the fastest attempt, with the highest peak memory seen."""
    return best_of_interleaved(repeat, {name: attempt})[name]


def best_of_interleaved(
    repeat: int, attempts: Mapping[str, Callable[[str], Result]]
) -> dict[str, Result]:
    """Each of ``attempts`` ``repeat`` times, taking turns (a, b, a, b, ...), so that a slow
    spell of the machine hits every configuration alike; per configuration, as ``best_of``."""
    runs: dict[str, list[Result]] = {name: [] for name in attempts}
    for i in range(repeat):
        for name, attempt in attempts.items():
            runs[name].append(attempt(name if repeat == 1 else f"{name}.{i + 1}"))
    return {name: _fastest(name, results) for name, results in runs.items()}


def _fastest(name: str, results: Sequence[Result]) -> Result:
    fastest = min(results, key=lambda r: r.wall_seconds)
    return dataclasses.replace(
        fastest,
        name=name,
        peak_rss_bytes=max(r.peak_rss_bytes for r in results),
        attempts_wall_seconds=tuple(round(r.wall_seconds, 3) for r in results),
        attempts_peak_rss_bytes=tuple(r.peak_rss_bytes for r in results),
        attempts_commit=tuple(r.commit for r in results),
    )


def input_file(workdir: Path, rows: int, bad_fraction: float) -> Path:
    """The generated input for ``rows``: reused if a complete one exists, else generated."""
    import pyarrow.parquet as pq

    suffix = "" if bad_fraction == DEFAULT_BAD_FRACTION else f"-bad{bad_fraction:g}"
    path = workdir / f"day-{rows}{suffix}.parquet"
    if path.exists():
        if pq.ParquetFile(path).metadata.num_rows == rows:
            print(f"[generate] reusing {path}", flush=True)
            return path
        path.unlink()
    partial = path.with_name(f".partial-{path.name}")  # renamed once complete
    command = [
        sys.executable, "-m", "processing", "generate",
        *_flags(date=DATE, rows=rows, bad_fraction=bad_fraction, seed=SEED, out=partial),
    ]  # fmt: skip
    print(f"[generate] {' '.join(command)}", flush=True)
    completed = subprocess.run(command, cwd=REPO, check=False)
    if completed.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BenchmarkError(f"generating {rows:,} rows failed (exit {completed.returncode})")
    partial.replace(path)
    return path


# --- targets and report ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    required: str
    status: str  # PASS, FAIL, SKIP, or INFO (no target)
    value: float | None


def pseudonymised_verdict(floor_result: Result, base: Result, keyed: Result) -> Verdict:
    """The pipeline with user ids pseudonymised must still meet the throughput target; the
    value shown also says what the hashing costs against the same run without it."""
    ratio = keyed.rows_per_second / floor_result.rows_per_second
    cost = keyed.wall_seconds / base.wall_seconds - 1
    ok = ratio >= MIN_THROUGHPUT_RATIO
    status = "INFO" if keyed.rows < TARGET_ROWS else ("PASS" if ok else "FAIL")
    return Verdict(
        "pseudonymised throughput / floor throughput",
        f"{ratio:.2f}x ({cost:+.0%} wall time against the run without a key)",
        f">= {MIN_THROUGHPUT_RATIO:.2f}x",
        status,
        ratio,
    )


def evaluate(
    floor_result: Result,
    base: Result,
    scaled: Result | None,
    through_bq: Result | None = None,
    bq_cached: Result | None = None,
    *,
    peers: Mapping[str, Result] | None = None,
) -> list[Verdict]:
    judged = base.rows >= TARGET_ROWS

    def status(ok: bool, *, sized: bool = True) -> str:
        """A performance target is judged at TARGET_ROWS or more only: on a smaller day start-up
        dominates (a quick check with --rows 200000 shows the numbers, as INFO). What does not
        depend on the size (the peers keep the same rows) is judged at any size."""
        if sized and not judged:
            return "INFO"
        return "PASS" if ok else "FAIL"

    ratio = base.rows_per_second / floor_result.rows_per_second
    at = "" if base.rows == TARGET_ROWS else f" (the target is set at {TARGET_ROWS:,})"
    peak = base.peak_rss_bytes
    reduction = 1 - base.bytes_per_valid_row / floor_result.bytes_per_valid_row
    verdicts = [
        Verdict(
            "pipeline throughput / floor throughput",
            f"{ratio:.2f}x",
            f">= {MIN_THROUGHPUT_RATIO:.2f}x",
            status(ratio >= MIN_THROUGHPUT_RATIO),
            ratio,
        ),
    ]
    peers = peers or {}
    polars = peers.get("polars")
    if polars is None:
        verdicts.append(Verdict("pipeline CPU s / Polars CPU s", "not run", "peers", "SKIP", None))
    else:
        cpu = base.cpu_seconds / polars.cpu_seconds
        verdicts.append(
            Verdict(
                "pipeline CPU s / Polars CPU s",
                f"{cpu:.2f}x",
                f"<= {MAX_CPU_VS_POLARS:.2f}x",
                status(cpu <= MAX_CPU_VS_POLARS),
                cpu,
            )
        )
    for name, peer in peers.items():
        versus = base.rows_per_second / peer.rows_per_second
        verdicts.append(
            Verdict(
                f"  pipeline throughput / {name} throughput", f"{versus:.2f}x", "(information)",
                "INFO", versus,
            )
        )  # fmt: skip
        verdicts.append(
            Verdict(
                f"  {name} keeps the same valid rows as the pipeline (the same rules)",
                f"{peer.valid_rows:,}",
                f"{base.valid_rows:,}",
                status(peer.valid_rows == base.valid_rows, sized=False),
                peer.valid_rows,
            )
        )
    verdicts += [
        Verdict(
            f"pipeline peak memory at {base.rows:,} rows{at}",
            f"{peak / GIB:.2f} GiB",
            f"< {MAX_PEAK_BYTES / GIB:.0f} GiB",
            status(peak < MAX_PEAK_BYTES),
            peak,
        ),
    ]
    if scaled is None:
        verdicts.append(Verdict("pipeline memory growth", "not run", "--scale 3", "SKIP", None))
    else:
        growth = scaled.peak_rss_bytes / peak - 1
        verdicts.append(
            Verdict(
                f"pipeline memory growth {base.rows:,} -> {scaled.rows:,} rows",
                f"{growth:+.1%}",
                f"< {MAX_MEMORY_GROWTH:.0%}",
                status(growth < MAX_MEMORY_GROWTH),
                growth,
            )
        )
    verdicts.append(
        Verdict(
            "output bytes per valid row",
            f"{base.bytes_per_valid_row:.2f}",
            f"<= {MAX_BYTES_PER_ROW}",
            status(base.bytes_per_valid_row <= MAX_BYTES_PER_ROW),
            base.bytes_per_valid_row,
        )
    )
    verdicts.append(
        Verdict(
            "output bytes per valid row, below the floor's",
            f"{reduction:.1%}",
            f">= {MIN_BYTES_REDUCTION:.0%}",
            status(reduction >= MIN_BYTES_REDUCTION),
            reduction,
        )
    )
    if through_bq is None or bq_cached is None:
        verdicts.append(Verdict("BigQuery path / file path", "not run", "--bigquery", "SKIP", None))
    else:
        cost = bq_cached.wall_seconds / base.wall_seconds
        verdicts.append(
            Verdict(
                "BigQuery path wall / file path wall (emulator serving from memory)",
                f"{cost:.2f}x",
                f"<= {MAX_BQ_COST:.2f}x",
                status(cost <= MAX_BQ_COST),
                cost,
            )
        )
        live = through_bq.wall_seconds / base.wall_seconds
        verdicts.append(
            Verdict(
                "  the same, the emulator reading and compressing on these cores too",
                f"{live:.2f}x",
                "(for information)",
                "INFO",
                live,
            )
        )
    return verdicts


def print_report(results: Sequence[Result], verdicts: Sequence[Verdict]) -> None:
    header = (
        f"{'run':<19}{'rows':>12}{'wall s':>8}{'CPU s':>7}{'others':>8}{'rows/s':>11}"
        f"{'MB/s in':>9}{'peak MiB':>10}{'out MiB':>9}{'files':>6}{'valid rows':>12}"
        f"{'B/row':>7}  commit"
    )
    print(f"\n{header}\n{'-' * len(header)}")
    for r in results:
        print(
            f"{r.name:<19}{r.rows:>12,}{r.wall_seconds:>8.1f}{r.cpu_seconds:>7.1f}"
            f"{r.other_cpu_seconds:>8.1f}{r.rows_per_second:>11,.0f}"
            f"{r.derived['input_mb_per_second']:>9.1f}{r.peak_rss_bytes / MIB:>10,.0f}"
            f"{r.output_bytes / MIB:>9.1f}{r.output_files:>6}{r.valid_rows:>12,}"
            f"{r.bytes_per_valid_row:>7.2f}  {r.commit}"
        )
    print(
        "(others: CPU s used by other processes during the run; B/row: output bytes per valid "
        "row;\n MB = 10^6 bytes; peak: summed RSS of the process tree)"
    )
    for r in results:
        if r.reported_seconds is not None:
            print(
                f"{r.name}: the pipeline reports {r.reported_seconds:.1f} s for its run; the other "
                f"{r.wall_seconds - r.reported_seconds:.1f} s are interpreter start-up, imports, "
                "publishing and exit"
            )
        if len(set(r.attempts_commit)) > 1:
            print(f"{r.name}: WARNING, the attempts measured different code: {r.attempts_commit}")
    print()
    width = max(len(v.target) for v in verdicts)
    for v in verdicts:
        goal = v.required if v.required.startswith("(") else f"(target {v.required})"
        print(f"{v.status:<5} {v.target:<{width}}  {v.measured:>9}  {goal}")
    if results and results[0].rows < TARGET_ROWS:
        print(
            f"\nThe performance targets are judged at {TARGET_ROWS:,} rows; at "
            f"{min(r.rows for r in results):,} they are shown for information (INFO)."
        )


def _git(*args: str) -> str:
    completed = subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
    )
    return completed.stdout.strip()


def revision() -> str:
    """The short HEAD commit, with "+dirty" when processing/ has uncommitted changes."""
    dirty = "+dirty" if _git("status", "--porcelain", "processing") else ""
    return _git("rev-parse", "--short", "HEAD") + dirty


def environment() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for package in ("pyarrow", "dask", "distributed", "pandas", "numpy", "psutil"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "commit_at_start": revision(),
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus_logical": os.cpu_count(),
        "cpus_physical": psutil.cpu_count(logical=False),
        "memory_bytes": psutil.virtual_memory().total,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "processing_env": {k: v for k, v in os.environ.items() if k.startswith("PROCESSING_")},
    }


# --- entry point ---------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Measure the pipeline against a plain-pyarrow floor (see benchmarks/README.md)."
    )
    parser.add_argument("--rows", type=int, default=10_000_000, help="input rows (default 10M)")
    parser.add_argument(
        "--bad-fraction", type=float, default=DEFAULT_BAD_FRACTION, help="default 0.01"
    )
    parser.add_argument(
        "--scale", type=int, default=1, help="also run the pipeline at SCALE x rows (e.g. 3)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="attempts per run: report the fastest (default 1)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="pipeline workers (default: the pipeline's)"
    )
    parser.add_argument(
        "--processes", action="store_true", help="LocalCluster workers as processes"
    )
    parser.add_argument(
        "--workdir", type=Path, default=DEFAULT_WORKDIR, help="default benchmarks/out/"
    )
    parser.add_argument("--keep", action="store_true", help="keep the output directories")
    parser.add_argument(
        "--pseudonymise",
        action="store_true",
        help="also run the pipeline with user ids pseudonymised (a random key) and judge it",
    )
    parser.add_argument(
        "--bigquery",
        action="store_true",
        help="also run the pipeline through the BigQuery emulator serving the same file",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each run, wait up to SECONDS for the machine's CPU use to drop below 20%%",
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="skip the Polars and DuckDB jobs (peers.py)"
    )
    parser.add_argument("--floor-only", nargs=2, metavar=("SRC", "DEST"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--peer-only", nargs=3, metavar=("PEER", "SRC", "DEST"), help=argparse.SUPPRESS
    )
    return parser


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    env = environment()
    print(f"commit {env['commit_at_start']}; {env['cpus_logical']} CPUs; workdir {workdir}")
    bench = Bench(workdir, args.workers, args.keep, args.wait_idle, args.processes)

    source = input_file(workdir, args.rows, args.bad_fraction)
    attempts: dict[str, Callable[[str], Result]] = {
        "floor": lambda n: bench.floor(n, source, args.rows),
        "pipeline": lambda n: bench.pipeline(n, source, args.rows),
    }
    if args.pseudonymise:  # the same run with user ids pseudonymised (HMAC-SHA256)
        key = workdir / "user-id-key"
        key.write_bytes(os.urandom(32))
        keyed = ["--user-id-key-file", str(key)]
        attempts["pipeline-pseudonymised"] = lambda n: bench.pipeline(
            n, source, args.rows, extra=keyed
        )
    if not args.no_peers:
        attempts |= {
            peer: (lambda n, peer=peer: bench.floor(n, source, args.rows, peer=peer))
            for peer in PEER_NAMES
        }
    with contextlib.ExitStack() as stack:
        if args.bigquery:
            live = stack.enter_context(bigquery_emulator(source, workdir / "logs" / "emu.log"))
            cached = stack.enter_context(
                bigquery_emulator(source, workdir / "logs" / "emu-cached.log", cached=True)
            )
            bench.pipeline("bq-warm-up", source, args.rows, cached)  # fills the cache: unmeasured
            attempts["pipeline-bq"] = lambda n: bench.pipeline(n, source, args.rows, live)
            attempts["pipeline-bq-cached"] = lambda n: bench.pipeline(n, source, args.rows, cached)
        paired = best_of_interleaved(args.repeat, attempts)
    floor_result, base = paired["floor"], paired["pipeline"]
    through_bq, bq_cached = paired.get("pipeline-bq"), paired.get("pipeline-bq-cached")
    peers = {name: paired[name] for name in PEER_NAMES if name in paired}
    results = [floor_result, base, *peers.values(), *(r for r in (through_bq, bq_cached) if r)]
    scaled = None
    if args.scale > 1:
        rows = args.rows * args.scale
        scaled_source = input_file(workdir, rows, args.bad_fraction)
        scaled = best_of(
            args.repeat,
            lambda n: bench.pipeline(n, scaled_source, rows),
            f"pipeline-x{args.scale}",
        )
        results.append(scaled)

    keyed_result = paired.get("pipeline-pseudonymised")
    if keyed_result:
        results.insert(2, keyed_result)
    verdicts = evaluate(floor_result, base, scaled, through_bq, bq_cached, peers=peers)
    if keyed_result:
        verdicts.insert(1, pseudonymised_verdict(floor_result, base, keyed_result))
    print_report(results, verdicts)
    median_ratio = None
    if args.repeat > 1:  # context for the verdict, which compares the fastest attempts
        median_ratio = statistics.median(floor_result.attempts_wall_seconds) / statistics.median(
            base.attempts_wall_seconds
        )
        print(f"(median attempts: pipeline throughput / floor throughput {median_ratio:.2f}x)")
    report = {
        "config": {
            "rows": args.rows,
            "bad_fraction": args.bad_fraction,
            "scale": args.scale,
            "repeat": args.repeat,
            "workers": args.workers,
            "processes": args.processes,
            "date": DATE,
            "seed": SEED,
            "sample_seconds": SAMPLE_SECONDS,
            "wait_idle": args.wait_idle,
            "pseudonymise": args.pseudonymise,
        },
        "environment": env,
        "runs": {r.name: asdict(r) for r in results},
        "targets": [asdict(v) for v in verdicts],
        "median_throughput_ratio": median_ratio,
    }
    out = workdir / "results.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nresults written to {out}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.floor_only:
        floor(*args.floor_only)
        return 0
    if args.peer_only:
        from peers import PEERS  # benchmarks/ is on the path: this script's directory

        peer, source, dest = args.peer_only
        PEERS[peer](source, dest, dt.date.fromisoformat(DATE))
        return 0
    if min(args.rows, args.scale, args.repeat, args.workers or 1) < 1 or args.wait_idle < 0:
        raise SystemExit("--rows, --scale, --repeat and --workers must be >= 1, --wait-idle >= 0")
    try:
        benchmark(args)
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
