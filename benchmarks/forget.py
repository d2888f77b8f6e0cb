"""Benchmark: `forget` over a lake of many dates (default 30 dates of 1M rows, ids pseudonymised).

A measurement tool, not a test. It makes the lake with the real pipeline (one `processing run` per
date, from generated days; reused when it exists), then measures `processing forget` of a request
of --ids users (drawn from the generator's ids, so most dates hold rows of them) on a copy of it:
wall time, CPU, peak memory, rows scanned per second, and what the command did. A second forget
of the same request (every date found done) is measured too: the cost of a resumed or repeated
request. Results go to WORKDIR/forget-results.json.

    uv run python benchmarks/forget.py                      # 30 dates x 1M rows (~3 min to build)
    uv run python benchmarks/forget.py --dates 2 --rows 20000  # a quick check
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import REPO, measure

FIRST = dt.date(2023, 10, 1)


def _run(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "processing", *args], cwd=REPO,
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"processing {args[0]} failed:\n{done.stderr[-3000:]}")


def build_lake(workdir: Path, dates: int, rows: int, key: Path) -> Path:
    """A lake of ``dates`` days of ``rows`` each, pseudonymised under ``key`` (reused if whole)."""
    lake = workdir / f"forget-lake-{dates}x{rows}"
    done = lake / "_complete"
    if done.exists():
        return lake
    shutil.rmtree(lake, ignore_errors=True)
    inputs = workdir / "forget-inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    for i in range(dates):
        date = (FIRST + dt.timedelta(days=i)).isoformat()
        source = inputs / f"day-{date}-{rows}.parquet"
        if not source.exists():
            _run("generate", "--date", date, "--rows", str(rows), "--bad-fraction", "0.01",
                 "--seed", str(i), "--out", str(source))  # fmt: skip
        _run("run", "--date", date, "--source", str(source), "--dest", str(lake),
             "--user-id-key-file", str(key), "--no-performance-report")  # fmt: skip
        print(f"  built {date}", flush=True)
    done.write_text("")
    return lake


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dates", type=int, default=30)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per date")
    parser.add_argument("--ids", type=int, default=10, help="users in the request")
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "out")
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    key = workdir / "forget-user-id-key"
    if not key.exists():
        key.write_bytes(os.urandom(32))
    print(f"building the lake: {args.dates} dates x {args.rows:,} rows", flush=True)
    lake = build_lake(workdir, args.dates, args.rows, key)
    copy = workdir / "forget-lake-copy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(lake, copy)
    request = workdir / "forget-request.txt"
    # the generator's users: user_0000000.. with a heavy tail; every 7th of the first ids
    request.write_text("".join(f"user_{7 * i:07d}\n" for i in range(args.ids)))
    command = [sys.executable, "-m", "processing", "forget", "--dest", str(copy),
               "--user-ids", str(request), "--user-id-key-file", str(key)]  # fmt: skip
    results = {}
    for name in ("forget", "forget-again"):
        log = workdir / "logs" / f"{name}.log"
        timed = measure(name, command, log)
        text = log.read_text()
        removed = re.search(r"request \S+: ([\d,]+) valid and ([\d,]+) rejected rows removed "
                            r"from (\d+) of (\d+)", text)  # fmt: skip
        assert removed, text[-2000:]
        valid, rejected, changed, dates = (int(g.replace(",", "")) for g in removed.groups())
        scanned = args.dates * args.rows
        results[name] = {
            "wall_seconds": round(timed.wall_seconds, 2),
            "cpu_seconds": round(timed.cpu_seconds, 2),
            "peak_rss_gib": round(timed.peak_rss_bytes / 2**30, 3),
            "rows_scanned_per_second": round(scanned / timed.wall_seconds),
            "rows_removed": valid + rejected,
            "dates_rewritten": changed,
            "dates": dates,
        }
        print(
            f"{name:<13} {timed.wall_seconds:7.1f} s wall, {timed.cpu_seconds:7.1f} s CPU, peak "
            f"{timed.peak_rss_bytes / 2**30:.2f} GiB; {scanned / timed.wall_seconds:,.0f} rows "
            f"scanned/s; removed {valid:,} valid + {rejected:,} rejected rows, rewrote "
            f"{changed} of {dates} dates",
            flush=True,
        )
    out = workdir / "forget-results.json"
    config = {"dates": args.dates, "rows": args.rows, "ids": args.ids}
    out.write_text(json.dumps({"config": config, "runs": results}, indent=2) + "\n")
    print(f"results written to {out}")
    shutil.rmtree(copy, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
