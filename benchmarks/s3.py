"""Benchmark the S3 destination: the pipeline writing to a local S3 server versus to local disk.

    uv run python benchmarks/s3.py [--rows N] [--repeat R] [--window-file-rows F] [--workdir DIR]

Same input, same settings; the attempts alternate (disk, S3, disk, S3, ...) so a slow spell of the
machine hits both alike. The S3 server is moto's (``python -m processing emulator s3``), in its
own process on the same cores: its CPU shows as "other" and slows the pipeline, which Amazon S3
would not. Wall times include interpreter start-up and the LocalCluster; peak memory is the
pipeline's process tree (the server excluded).

Then the publish window for a day of 100+ files: the same day written twice to S3 in smaller
files, and the second run's publish measured: its whole length (keep the previous
version, copy the new one in, switch, delete the old) and the window in which a reader listing
the date's prefix could see both versions' files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from run import DATE, REPO, BenchmarkError, Timed, _flags, input_file, measure

BUCKET = "bench"
_PUBLISHED = re.compile(
    r"published .* \((?:run \S+), (\d+) files in ([\d.]+) s; both versions listed for ([\d.]+) s\)"
)


def s3_server(log_path: Path) -> tuple[subprocess.Popen[str], str]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "processing", "emulator", "s3", "--bucket", BUCKET]
    proc = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=log_path.open("w"), text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    prefix = "S3 emulator listening on "
    if not line.startswith(prefix):
        proc.kill()
        raise BenchmarkError(f"the S3 emulator did not start (see {log_path})")
    return proc, line[len(prefix) :].strip()


def _manifest(dest: str, endpoint: str) -> dict[str, Any]:
    import processing

    options = {"endpoint_url": endpoint} if dest.startswith("s3://") else None
    found = processing.read_manifest(dest, dt.date.fromisoformat(DATE), options)
    if found is None:
        raise BenchmarkError(f"no manifest under {dest}")
    return found


def _publish_line(log_path: Path) -> tuple[int, float, float]:
    for line in reversed(log_path.read_text(errors="replace").splitlines()):
        match = _PUBLISHED.search(line)
        if match:
            return int(match[1]), float(match[2]), float(match[3])
    raise BenchmarkError(f"no publish line in {log_path}")


def run_once(
    name: str, source: Path, dest: str, *, rows: int, endpoint: str, logs: Path, extra=()
) -> tuple[Timed, int, float, float]:
    command = [
        sys.executable, "-m", "processing", "run",
        *_flags(date=DATE, source=source, dest=dest), *extra,
    ]  # fmt: skip
    log_path = logs / f"{name}.log"
    timed = measure(name, command, log_path)
    manifest = _manifest(dest, endpoint)
    if manifest["rows_read"] != rows:
        raise BenchmarkError(f"{name} read {manifest['rows_read']:,} rows, not {rows:,}")
    files, publish_seconds, window = _publish_line(log_path)
    return timed, files, publish_seconds, window


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="attempts per destination")
    parser.add_argument(
        "--window-file-rows", type=int, default=65_536, help="rows per file of the 100+ files day"
    )
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "out")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    logs = args.workdir / "logs"
    source = input_file(args.workdir, args.rows, 0.01)
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    server, endpoint = s3_server(logs / "s3-emulator.log")
    os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
    print(f"[s3] moto's S3 server at {endpoint}, bucket s3://{BUCKET}", flush=True)
    walls: dict[str, list[float]] = {"disk": [], "s3": []}
    peaks: dict[str, list[int]] = {"disk": [], "s3": []}
    publish: dict[str, list[float]] = {"disk": [], "s3": []}
    try:
        with tempfile.TemporaryDirectory(dir=args.workdir) as scratch:
            for i in range(args.repeat):
                for kind in ("disk", "s3"):
                    dest = f"{scratch}/lake-{i}" if kind == "disk" else f"s3://{BUCKET}/lake-{i}"
                    timed, _, seconds, _ = run_once(
                        f"{kind}.{i + 1}", source, dest, rows=args.rows, endpoint=endpoint,
                        logs=logs,
                    )  # fmt: skip
                    walls[kind].append(timed.wall_seconds)
                    peaks[kind].append(timed.peak_rss_bytes)
                    publish[kind].append(seconds)
        window_runs = []
        for i in range(2):  # the second replaces the first: a real publish window
            window_runs.append(
                run_once(
                    f"window.{i + 1}",
                    source,
                    f"s3://{BUCKET}/window",
                    rows=args.rows,
                    endpoint=endpoint,
                    logs=logs,
                    extra=_flags(
                        row_group_rows=args.window_file_rows, max_file_rows=args.window_file_rows
                    ),
                )
            )
    finally:
        server.terminate()
        server.wait(timeout=30)

    def row(kind: str) -> str:
        best, median = min(walls[kind]), statistics.median(walls[kind])
        return (
            f"  {kind:<5} fastest {best:6.1f} s ({args.rows / best / 1e6:.2f} M rows/s), "
            f"median {median:6.1f} s, peak {max(peaks[kind]) / 2**30:.2f} GiB, "
            f"publish {statistics.median(publish[kind]):.2f} s"
        )

    ratio_best = min(walls["s3"]) / min(walls["disk"])
    ratio_median = statistics.median(s / d for s, d in zip(walls["s3"], walls["disk"], strict=True))
    _, files, seconds, window = window_runs[-1]
    report = {
        "rows": args.rows,
        "walls": walls,
        "peaks": peaks,
        "publish_seconds": publish,
        "s3_over_disk_fastest": round(ratio_best, 3),
        "s3_over_disk_median": round(ratio_median, 3),
        "window_day": {"files": files, "publish_seconds": seconds, "window_seconds": window},
    }
    print()
    print(f"{args.rows:,} rows, {args.repeat} attempts each, alternating:")
    print(row("disk"))
    print(row("s3"))
    print(f"  S3 / disk wall: {ratio_best:.2f}x (fastest), {ratio_median:.2f}x (median of pairs)")
    print(
        f"  publish of a day of {files} files over a published one: {seconds:.2f} s in all; "
        f"both versions listable for {window:.2f} s"
    )
    (args.workdir / "s3-results.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
