"""What carrying pseudonymised user ids costs the pipeline, with no hashing at all.

    .venv/bin/python benchmarks/pseudonym_cost.py [--rows N] [--repeat R] [--wait-idle S]
                                                  [--workdir DIR] [--new-key] [--verify]

A lower bound on what any implementation of ``--user-id-key-file`` must cost: the pipeline run
without a key on a copy of the source whose user ids are *already* pseudonyms (HMAC-SHA256, 128
bits, 32 hex digits, made by ``processing.logic.pseudonymise`` under a random 32-byte key before
the clock starts) carries and writes exactly the strings a keyed run writes, and computes none.

Taking turns (as ``benchmarks/run.py`` does), ``--repeat`` times each:

- ``floor``: run.py's floor on the raw source;
- ``pipeline``: the pipeline without a key on the raw source;
- ``pre-pseudonymised``: the pipeline without a key on the pre-pseudonymised source (its writer
  writes ``user_id`` as it writes raw ids: plain pages);
- ``pre-pseudo-dict``: the same, but ``user_id`` dictionary-encoded as a keyed run writes it
  (``processing.app.stages.process_stage.write_options`` patched in the run's process to ask for
  ``dictionary_user_ids``; ``--no-dictionary-variant`` skips it);
- ``keyed``: the pipeline with ``--user-id-key-file`` (the same key) on the raw source.

Every run is measured by run.py's own helpers (wall, CPU of the children, peak RSS of the
process tree, output bytes per valid row). The pre-pseudonymised source is the benchmark's
source (``input_file`` of run.py, reused when present) with each ``user_identifiers.id`` that
the pipeline would publish (not null, not blank, at most ``MAX_LENGTH`` characters after
trimming) replaced by the pseudonym of its trimmed value, which is what a keyed run publishes;
the ids validation rejects (blank, too long, or a null ``user_identifiers``) are kept as they
are, so that the same rows are valid. Every other column, the row order and the row groups are
the source's. It is written next to its key under ``WORKDIR/pseudonym-cost/`` and reused while
the source and the key are unchanged.

The source with pseudonyms is a bigger file (the pseudonyms are random, so its id column
compresses far less): reading it costs the pre-pseudonymised runs a little more than a keyed run
pays. That part is measured separately (CPU seconds to read the id column of each file) and
printed beside the differences.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from run import (  # benchmarks/ is on the path: this script's directory
    DATE,
    DEFAULT_BAD_FRACTION,
    DEFAULT_WORKDIR,
    MIB,
    MIN_THROUGHPUT_RATIO,
    TARGET_ROWS,
    Bench,
    BenchmarkError,
    Result,
    _discard,
    _flags,
    _result,
    best_of_interleaved,
    environment,
    input_file,
    measure,
)

if TYPE_CHECKING:
    from processing.logic.pseudonymise import Pseudonymiser

FLOOR = "floor"
RAW = "pipeline"
PRE = "pre-pseudonymised"
PRE_DICT = "pre-pseudo-dict"
KEYED = "keyed"
DESCRIPTION = {
    FLOOR: "floor, raw ids",
    RAW: "pipeline, raw ids, no key",
    PRE: "pipeline, pseudonyms in the source, no key (user_id plain pages)",
    PRE_DICT: "pipeline, pseudonyms in the source, no key (user_id dictionary, as keyed)",
    KEYED: "pipeline, raw ids, --user-id-key-file",
}

#: ``python -c`` program: ``python -m processing`` with the writer asked to dictionary-encode
#: ``user_id`` as it does for a keyed run (the LocalCluster's tasks get the options from here).
_DICTIONARY_IDS_MAIN = (
    "import gc, sys; from processing.app.stages import process_stage as p; "
    "w = p.write_options; "
    "p.write_options = lambda s, *, dictionary_user_ids: w(s, dictionary_user_ids=True); "
    "from processing.app.cli import main; "
    "c = main(sys.argv[1:]); gc.freeze(); raise SystemExit(c)"
)


# --- the pre-pseudonymised source --------------------------------------------------------------
def _load_or_make_key(path: Path, new: bool) -> bytes:
    if new or not path.exists():
        path.write_bytes(os.urandom(32))
        path.chmod(0o600)
    return path.read_bytes()


def _pseudonymise_ids(table: pa.Table, pseudonymiser: Pseudonymiser) -> tuple[pa.Table, int]:
    """``table`` (the input schema) with each publishable ``user_identifiers.id`` replaced by the
    pseudonym of its trimmed value; the number replaced."""
    from processing.spec import rules as r
    from processing.spec import schema as s

    users = table.column("user_identifiers").combine_chunks()
    platform, ids = users.flatten()  # parent nulls merged into the children
    trimmed = pc.utf8_trim_whitespace(ids)
    length = pc.utf8_length(trimmed)
    publishable = pc.fill_null(
        pc.and_(pc.greater(length, 0), pc.less_equal(length, r.MAX_LENGTH[s.USER_ID])), False
    )
    hashed = pseudonymiser(pc.if_else(publishable, trimmed, pa.scalar(None, pa.string())))
    new_ids = pc.if_else(publishable, hashed, ids)
    new_users = pa.StructArray.from_arrays(
        [platform, new_ids], fields=list(users.type), mask=users.is_null()
    )
    position = table.schema.get_field_index("user_identifiers")
    replaced = table.set_column(position, table.schema.field(position), new_users)
    return replaced, int(pc.sum(publishable).as_py() or 0)


def pseudonymised_source(source: Path, directory: Path, new_key: bool) -> tuple[Path, Path]:
    """The copy of ``source`` with its user ids pseudonymised, and the key's file: reused when
    the stamp next to it names this source (size and time) and this key."""
    from processing.logic.pseudonymise import Pseudonymiser, key_id

    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / "user-id-key"
    key = _load_or_make_key(key_path, new_key)
    target = directory / f"{source.stem}-pseudonymised.parquet"
    stamp_path = target.with_name(f"{target.stem}.json")
    info = source.stat()
    stamp = {
        "source": str(source),
        "source_bytes": info.st_size,
        "source_mtime_ns": info.st_mtime_ns,
        "key_id": key_id(key),
    }
    if target.exists() and stamp_path.exists():
        previous = json.loads(stamp_path.read_text())
        if {k: previous.get(k) for k in stamp} == stamp:
            print(f"[pseudonymise] reusing {target} (key id {stamp['key_id']})", flush=True)
            return target, key_path
    print(f"[pseudonymise] {source} -> {target} (key id {stamp['key_id']})", flush=True)
    started = time.perf_counter()
    parquet = pq.ParquetFile(source)
    pseudonymiser = Pseudonymiser(key)
    partial = target.with_name(f".partial-{target.name}")
    replaced = 0
    # as the generator writes it (processing/adapters/sample_files.py): zstd, the same row groups
    with pq.ParquetWriter(partial, parquet.schema_arrow, compression="zstd") as writer:
        for group in range(parquet.num_row_groups):
            table, count = _pseudonymise_ids(parquet.read_row_group(group), pseudonymiser)
            writer.write_table(table, row_group_size=max(1, table.num_rows))
            replaced += count
    partial.replace(target)
    rows = parquet.metadata.num_rows
    stamp |= {"rows": rows, "ids_replaced": replaced, "ids_kept": rows - replaced}
    stamp_path.write_text(json.dumps(stamp, indent=2) + "\n")
    print(
        f"[pseudonymise] {replaced:,} of {rows:,} ids replaced in "
        f"{time.perf_counter() - started:.1f} s; {target.stat().st_size / MIB:,.1f} MiB "
        f"(the source: {source.stat().st_size / MIB:,.1f} MiB)",
        flush=True,
    )
    return target, key_path


def id_read_cpu_seconds(path: Path, repeat: int = 3) -> float:
    """Fewest CPU seconds (this process) to read the ``user_identifiers`` column of ``path``."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        pq.read_table(path, columns=["user_identifiers"])
        best = min(best, time.process_time() - started)
    return best


# --- the runs ------------------------------------------------------------------------------------
def pipeline_dictionary_ids(bench: Bench, name: str, source: Path, rows: int) -> Result:
    """``Bench.pipeline`` (run.py) with the writer dictionary-encoding ``user_id`` as for a
    keyed run, through ``_DICTIONARY_IDS_MAIN`` instead of ``python -m processing``."""
    dest = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=bench.workdir))
    try:
        command = [
            sys.executable, "-c", _DICTIONARY_IDS_MAIN, "run",
            *_flags(date=DATE, dest=dest, source=source),
            *(_flags(workers=bench.workers) if bench.workers else []),
            *(["--processes"] if bench.processes else []),
        ]  # fmt: skip
        log = bench.workdir / "logs" / f"{name}.log"
        timed = measure(name, command, log, bench.wait_idle)
        manifest_path = dest / "events" / f"event_date={DATE}" / "_manifest.json"
        manifest = json.loads(manifest_path.read_text())
        if manifest["rows_read"] != rows:
            raise BenchmarkError(f"{name} read {manifest['rows_read']:,} rows, not {rows:,}")
        return _result(
            name, rows, source, dest, timed,
            valid_rows=int(manifest["rows_valid"]),
            reported_seconds=float(manifest["duration_seconds"]),
        )  # fmt: skip
    finally:
        _discard(dest, bench.keep)


def _valid_events(dest: Path) -> pa.Table:
    import pyarrow.dataset as ds

    events = dest / "events"
    table = ds.dataset(events, format="parquet", partitioning="hive").to_table()
    names = sorted(table.column_names)
    table = table.select(names)
    return table.sort_by([(n, "ascending") for n in names])


def verify(bench: Bench, raw: Path, pre: Path, key_path: Path, rows: int) -> bool:
    """Untimed: whether the valid rows the pipeline publishes from the pre-pseudonymised
    source, without a key, are those a keyed run publishes from the raw source."""
    kept = dataclasses.replace(bench, keep=True, wait_idle=0.0)
    dests = {}
    try:
        for name, source, extra in (
            ("verify-pre", pre, []),
            ("verify-keyed", raw, ["--user-id-key-file", str(key_path)]),
        ):
            before = set(bench.workdir.glob(f"{name}-*"))
            kept.pipeline(name, source, rows, extra=extra)
            (dests[name],) = set(bench.workdir.glob(f"{name}-*")) - before
        same = _valid_events(dests["verify-pre"]).equals(_valid_events(dests["verify-keyed"]))
    finally:
        for dest in dests.values():
            _discard(dest, False)
    print(
        "[verify] valid rows from the pre-pseudonymised source (no key) "
        f"{'ARE' if same else 'are NOT'} those of the keyed run on the raw source",
        flush=True,
    )
    return same


# --- the report ----------------------------------------------------------------------------------
def _median_wall(r: Result) -> float:
    return statistics.median(r.attempts_wall_seconds or (r.wall_seconds,))


def report(
    results: dict[str, Result], read_cpu: dict[str, float], rows: int
) -> tuple[list[str], dict[str, Any]]:
    """The lines printed and the numbers behind them."""
    floor = results[FLOOR]
    lines = []
    header = (
        f"{'run':<19}{'wall s':>8}{'CPU s':>7}{'others':>8}{'peak MiB':>10}{'B/row':>7}"
        f"{'valid rows':>12}{'÷ floor':>9}{'÷ floor med':>13}  attempts wall s"
    )
    lines += [header, "-" * len(header)]
    for name, r in results.items():
        ratio = floor.wall_seconds / r.wall_seconds  # rows/s ÷ floor rows/s, same rows
        median_ratio = _median_wall(floor) / _median_wall(r)
        attempts = ", ".join(f"{w:.2f}" for w in r.attempts_wall_seconds)
        lines.append(
            f"{name:<19}{r.wall_seconds:>8.2f}{r.cpu_seconds:>7.1f}{r.other_cpu_seconds:>8.1f}"
            f"{r.peak_rss_bytes / MIB:>10,.0f}{r.bytes_per_valid_row:>7.2f}{r.valid_rows:>12,}"
            f"{ratio:>8.2f}x{median_ratio:>12.2f}x  {attempts}"
        )
    lines.append(
        "(fastest attempt's wall, CPU and others; highest peak of the attempts; ÷ floor: "
        "throughput ÷ the floor's, fastest attempts; med: medians)"
    )
    lines += ["", *(f"  {name:<19}{DESCRIPTION[name]}" for name in results)]

    raw = results[RAW]
    pipelines = [r for n, r in results.items() if n != FLOOR]
    if len({r.valid_rows for r in pipelines}) > 1:
        lines.append("\nWARNING: the pipeline runs kept different numbers of valid rows")

    def diff(a: str, b: str) -> dict[str, float]:
        ra, rb = results[a], results[b]
        return {
            "wall_seconds": ra.wall_seconds - rb.wall_seconds,
            "wall_fraction_of_b": ra.wall_seconds / rb.wall_seconds - 1,
            "median_wall_seconds": _median_wall(ra) - _median_wall(rb),
            "cpu_seconds": ra.cpu_seconds - rb.cpu_seconds,
            "peak_mib": (ra.peak_rss_bytes - rb.peak_rss_bytes) / MIB,
            "bytes_per_row": ra.bytes_per_valid_row - rb.bytes_per_valid_row,
        }

    pairs = [(PRE, RAW, "carrying pseudonyms (plain pages)")]
    if PRE_DICT in results:
        pairs.append((PRE_DICT, RAW, "carrying pseudonyms (dictionary, as keyed)"))
    pairs.append((KEYED, PRE, "computing them (vs plain pages)"))
    if PRE_DICT in results:
        pairs.append((KEYED, PRE_DICT, "computing them (same encoding)"))
    pairs.append((KEYED, RAW, "the whole of pseudonymising"))
    extra_read = read_cpu["pseudonymised"] - read_cpu["raw"]
    lines += [
        "",
        f"{'difference':<44}{'wall s':>8}{'%':>7}{'median s':>10}{'CPU s':>7}{'peak MiB':>10}"
        f"{'B/row':>7}",
    ]
    differences = {}
    for a, b, what in pairs:
        d = diff(a, b)
        differences[f"{a} - {b}"] = d
        label = f"{a} − {b}"
        lines.append(
            f"{label:<44}{d['wall_seconds']:>+8.2f}{d['wall_fraction_of_b']:>+7.0%}"
            f"{d['median_wall_seconds']:>+10.2f}{d['cpu_seconds']:>+7.1f}{d['peak_mib']:>+10,.0f}"
            f"{d['bytes_per_row']:>+7.2f}  {what}"
        )
    lines.append(
        f"(reading the source's id column: {read_cpu['raw']:.2f} CPU s raw, "
        f"{read_cpu['pseudonymised']:.2f} with pseudonyms, {extra_read:+.2f}: part of the "
        "pre-pseudonymised runs' cost that a keyed run, reading raw ids, does not pay)"
    )

    allowed = floor.wall_seconds / MIN_THROUGHPUT_RATIO
    budget = allowed - raw.wall_seconds
    carried = [PRE, *([PRE_DICT] if PRE_DICT in results else [])]
    cheapest = min(carried, key=lambda n: results[n].wall_seconds)
    carrying = results[cheapest].wall_seconds - raw.wall_seconds
    lines += [
        "",
        f"target: pipeline wall <= floor wall / {MIN_THROUGHPUT_RATIO:.2f} = "
        f"{floor.wall_seconds:.2f} / {MIN_THROUGHPUT_RATIO:.2f} = {allowed:.2f} s; the pipeline "
        f"without a key takes {raw.wall_seconds:.2f} s: the budget left is {budget:+.2f} s "
        f"({budget / raw.wall_seconds:+.0%} of its wall)",
        f"carrying pseudonyms alone (the cheaper encoding, {cheapest}): {carrying:+.2f} s, "
        f"{carrying - extra_read:+.2f} s less the larger input's read "
        f"({results[cheapest].wall_seconds:.2f} s: "
        f"{floor.wall_seconds / results[cheapest].wall_seconds:.2f}x the floor)",
    ]
    exceeds = carrying > budget  # i.e. the cheaper pre-pseudonymised run misses the target
    exceeds_corrected = carrying - extra_read > budget
    judged = rows >= TARGET_ROWS
    verdict = "YES" if exceeds else "NO"
    if exceeds != exceeds_corrected:
        verdict += f" (but {'YES' if exceeds_corrected else 'NO'} less the larger input's read)"
    if budget <= 0:
        verdict += ": the pipeline without a key already misses the target"
    elif exceeds:
        verdict += f": {carrying / budget:.1f}x the budget, {carrying - budget:.2f} s over it"
    else:
        verdict += f": {carrying / budget:.0%} of the budget"
    lines.append(
        f"carrying cost alone exceeds the budget: {verdict}"
        + ("" if judged else f" (INFO: the target is set at {TARGET_ROWS:,} rows)")
    )
    numbers = {
        "allowed_wall_seconds": allowed,
        "budget_seconds": budget,
        "carrying_seconds": carrying,
        "carrying_run": cheapest,
        "extra_read_cpu_seconds": extra_read,
        "read_cpu_seconds": read_cpu,
        "carrying_exceeds_budget": exceeds,
        "carrying_less_read_exceeds_budget": exceeds_corrected,
        "differences": differences,
        "throughput_vs_floor": {n: floor.wall_seconds / r.wall_seconds for n, r in results.items()},
    }
    return lines, numbers


# --- entry point ---------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="What carrying 32-hex-digit pseudonyms costs the pipeline, no hashing."
    )
    parser.add_argument("--rows", type=int, default=10_000_000, help="input rows (default 10M)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="attempts per run: the fastest (default 3)"
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each run, wait up to SECONDS for the machine's CPU use to drop below 20%%",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help="where run.py's source is (reused); runs, logs and the pseudonymised source go "
        "to WORKDIR/pseudonym-cost/ (default benchmarks/out/)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="pipeline workers (default: the pipeline's)"
    )
    parser.add_argument(
        "--processes", action="store_true", help="LocalCluster workers as processes"
    )
    parser.add_argument(
        "--new-key", action="store_true", help="a new random key (and pseudonymised source)"
    )
    parser.add_argument(
        "--no-dictionary-variant",
        action="store_true",
        help="skip the pre-pseudonymised run whose user_id is dictionary-encoded",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="first check (untimed) that the pre-pseudonymised source publishes the keyed "
        "run's valid rows",
    )
    parser.add_argument("--keep", action="store_true", help="keep the output directories")
    return parser


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    workdir: Path = args.workdir.resolve()
    here = workdir / "pseudonym-cost"
    here.mkdir(parents=True, exist_ok=True)
    env = environment()
    print(f"commit {env['commit_at_start']}; {env['cpus_logical']} CPUs; runs in {here}")
    bench = Bench(here, args.workers, args.keep, args.wait_idle, args.processes)
    raw = input_file(workdir, args.rows, DEFAULT_BAD_FRACTION)
    pre, key_path = pseudonymised_source(raw, here, args.new_key)
    read_cpu = {"raw": id_read_cpu_seconds(raw), "pseudonymised": id_read_cpu_seconds(pre)}
    verified = verify(bench, raw, pre, key_path, args.rows) if args.verify else None

    keyed = ["--user-id-key-file", str(key_path)]
    rows = args.rows
    attempts: dict[str, Callable[[str], Result]] = {
        FLOOR: lambda n: bench.floor(n, raw, rows),
        RAW: lambda n: bench.pipeline(n, raw, rows),
        PRE: lambda n: bench.pipeline(n, pre, rows),
    }
    if not args.no_dictionary_variant:
        attempts[PRE_DICT] = lambda n: pipeline_dictionary_ids(bench, n, pre, rows)
    attempts[KEYED] = lambda n: bench.pipeline(n, raw, rows, extra=keyed)
    results = best_of_interleaved(args.repeat, attempts)

    lines, numbers = report(results, read_cpu, rows)
    print("\n" + "\n".join(lines))
    out = here / "results.json"
    summary = {
        "config": {
            "rows": rows,
            "repeat": args.repeat,
            "wait_idle": args.wait_idle,
            "workers": args.workers,
            "processes": args.processes,
            "source": str(raw),
            "pseudonymised_source": str(pre),
            "source_bytes": raw.stat().st_size,
            "pseudonymised_source_bytes": pre.stat().st_size,
        },
        "environment": env,
        "verified": verified,
        "runs": {name: dataclasses.asdict(r) for name, r in results.items()},
        **numbers,
    }
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nresults written to {out}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if min(args.rows, args.repeat, args.workers or 1) < 1 or args.wait_idle < 0:
        raise SystemExit("--rows, --repeat and --workers must be >= 1, --wait-idle >= 0")
    try:
        benchmark(args)
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
