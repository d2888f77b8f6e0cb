"""``python -m processing``: the single entry point for people, Airflow and Kubernetes.

Exit codes: 0 success; 2 configuration error; 3 input error; 4 audit failed, lock lost, or
damage found (nothing published); 5 another run holds the date's lock; 75 transient failure
(retry); 130 / 143 stopped by SIGINT / SIGTERM (the lock released); 1 anything unexpected.
Errors print one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import logging
import os
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import fields
from typing import Any

from processing.logic.capacity import (
    DEFAULT_EVENT_NAMES,
    DEFAULT_THREADS_PER_WORKER,
    human_bytes,
)
from processing.spec.errors import (
    ConfigError,
    DamagedError,
    Interrupted,
    PipelineError,
    Terminated,
    signal_of,
)
from processing.spec.settings import (
    ENV_PREFIX,
    PRICES,
    Settings,
    parse_bool,
    parse_date,
    parse_size,
)

log = logging.getLogger("processing")


def _flag_type(parse: Callable[[str], Any], secret: bool = False) -> Callable[[str], Any]:
    """Settings' parsers as argparse types: a bad value is a usage error naming the flag."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as e:
            shown = "(value hidden)" if secret else repr(text)
            raise argparse.ArgumentTypeError(f"{shown}: {e}") from None

    convert.__name__ = getattr(parse, "__name__", "value").lstrip("_")
    return convert


def _settings_flags(parser: argparse.ArgumentParser, only: Collection[str] = ()) -> None:
    """A flag per Settings field (or per field named in ``only``); its variable is named in the
    help."""
    for f in fields(Settings):
        if only and f.name not in only:
            continue
        flag = "--" + f.name.replace("_", "-")
        text = f"{f.metadata['help']} [{ENV_PREFIX}{f.name.upper()}]".lstrip()
        if f.metadata["parse"] is parse_bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=text
            )
        else:
            parser.add_argument(
                flag, type=_flag_type(f.metadata["parse"], f.metadata["secret"]), help=text
            )


#: The settings ``capacity`` takes (as flags and PROCESSING_* variables): those of the model.
CAPACITY_SETTINGS = ("target_file_size", "bq_max_streams", "bq_compression", *PRICES)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def _positive_size(text: str) -> int:
    """A size such as 450GiB, 1.5TiB or 500GB (dask's units), more than 0 bytes."""
    try:
        return parse_size("--bytes", text)
    except ConfigError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size: give a positive number of bytes with a unit, e.g. 450GiB "
            "or 0.5TiB"
        ) from None


def _positive_duration(text: str) -> float:
    from dask.utils import parse_timedelta

    try:
        seconds = float(parse_timedelta(text, default="s"))
    except (ValueError, KeyError, TypeError):
        seconds = 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: give a positive time such as 45min, 2h or 3600"
        )
    return seconds


def _event_names_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--event-names",
        type=_positive_int,
        default=DEFAULT_EVENT_NAMES,
        help="distinct event names of a day (partitions), for the capacity estimate "
        f"(default: {DEFAULT_EVENT_NAMES})",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m processing",
        description="Move a day of user-action events into a hive-partitioned Parquet lake.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    # the commands that take every setting as a flag (and as a PROCESSING_* variable)
    for name, help_text, description in (
        (
            "run",
            "process and publish one date",
            "Every flag may also come from PROCESSING_<FLAG> (e.g. PROCESSING_DEST).",
        ),
        (
            "plan",
            "print how a date would be read (streams, size, cost); read nothing",
            "Takes the flags of run (--dest is not needed).",
        ),
        (
            "rollback",
            "publish the date's previous version again (a second rollback undoes the first)",
            "Takes the flags of run; --date and --dest are needed, --source is not.",
        ),
        (
            "gc",
            "remove failed runs' staging and dead runs' locks (all dates, or --date); "
            "report damaged dates",
            "Takes the flags of run; --dest is needed. Dates a live run holds are skipped. "
            "Exits 4 if a published date is damaged (see verify).",
        ),
        (
            "verify",
            "check published dates against their manifests (--date D, or --all)",
            "Takes the flags of run; --dest and --date (or --all) are needed. Reads every "
            "listed file's size and Parquet footer; exits 4 if anything is wrong.",
        ),
    ):
        command = sub.add_parser(name, help=help_text, description=description)
        _settings_flags(command)
        if name == "verify":
            command.add_argument(
                "--all", action="store_true", help="every published date of --dest"
            )
        if name == "plan":
            _event_names_flag(command)

    capacity = sub.add_parser(
        "capacity",
        help="print the streams, workers, wall time, files and cost of a day of any size",
        description="The capacity and cost model (processing/logic/capacity.py) for a day of "
        "--bytes in BigQuery: from the rates measured by the benchmarks and today's list prices "
        "(each a flag, and a PROCESSING_* variable). Reads nothing.",
    )
    capacity.add_argument(
        "--bytes",
        type=_positive_size,
        required=True,
        metavar="SIZE",
        help="the day's logical bytes in BigQuery (the plan's estimated bytes), e.g. 450GiB",
    )
    capacity.add_argument(
        "--workers",
        type=_positive_int,
        help="workers of the cluster (default: the fewest that finish within --deadline)",
    )
    capacity.add_argument(
        "--threads-per-worker",
        type=_positive_int,
        default=DEFAULT_THREADS_PER_WORKER,
        help=f"task threads (cores) per worker (default: {DEFAULT_THREADS_PER_WORKER}, as "
        "deploy/kubernetes/base/dask starts them)",
    )
    capacity.add_argument(
        "--deadline",
        type=_positive_duration,
        default=3600.0,
        metavar="DURATION",
        help="the wall time to size the workers for, e.g. 45min or 2h (default: 1h)",
    )
    _event_names_flag(capacity)
    _settings_flags(capacity, CAPACITY_SETTINGS)

    emulator = sub.add_parser("emulator", help="run a local emulator of a cloud service")
    kinds = emulator.add_subparsers(dest="service", required=True)
    bq = kinds.add_parser(
        "bigquery",
        help="the BigQuery Storage Read API over plaintext gRPC",
        description="Serves local files as BigQuery tables to the real client, until stopped.",
    )
    bq.add_argument(
        "--table",
        action="append",
        required=True,
        metavar="PROJECT.DATASET.TABLE=PATH",
        help="a table and its file, directory or glob (.parquet, .arrow, .jsonl[.gz]); repeatable",
    )
    bq.add_argument("--host", default="127.0.0.1")
    bq.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    bq.add_argument("--min-rows-per-stream", type=int, default=100_000)
    bq.add_argument("--fail-after-rows", type=int, help="abort each stream once, UNAVAILABLE")
    bq.add_argument("--resource-exhausted", type=int, default=0, help="refuse N sessions")
    bq.add_argument("--delay-ms", type=float, default=0.0, help="before each message")
    bq.add_argument("--session-ttl", type=float, help="seconds a session lives (default 6 h)")
    bq.add_argument(
        "--cache-responses",
        action="store_true",
        help="serve repeated reads from memory (benchmarks: its CPU then stays off your cores)",
    )

    s3 = kinds.add_parser(
        "s3",
        help="S3 over HTTP (moto's server; needs the emulator extra)",
        description="An S3-compatible server in memory, until stopped. Any credentials work.",
    )
    s3.add_argument("--host", default="127.0.0.1")
    s3.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    s3.add_argument("--bucket", action="append", default=[], help="create it; repeatable")
    s3.add_argument(
        "--fail-every", type=int, default=0, help="answer every Nth request with 503 or 500"
    )

    gen = sub.add_parser("generate", help="write deterministic synthetic events")
    gen.add_argument("--date", type=_flag_type(parse_date), required=True)
    gen.add_argument("--rows", type=int, required=True)
    gen.add_argument("--bad-fraction", type=float, default=0.0)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--out", required=True, help="file: .parquet, .arrow, .jsonl or .jsonl.gz")
    return parser


def _setup_logging(level: str) -> None:
    """Our own loggers at ``level``; libraries (Dask, fsspec) only from WARNING, unless DEBUG."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ConfigError(f"log level {level!r} is not one of DEBUG, INFO, WARNING, ERROR")
    logging.basicConfig(
        level=numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("processing").setLevel(numeric)
    if numeric > logging.DEBUG:  # Dask configures its loggers itself, from this, when imported
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
        if "dask" in sys.modules:  # already imported (settings parse sizes with it): read again
            import dask

            dask.config.refresh()
        logging.getLogger("distributed").setLevel(logging.WARNING)
        # a failed task is reported once, as one line, by the client: not also by the worker
        logging.getLogger("distributed.worker").setLevel(logging.CRITICAL)


def summary(report: Any) -> str:
    m = report.manifest
    lines = [
        "",
        f"published {m['date']}  run {m['run_id']}",
        f"  rows read     {m['rows_read']:>12,}",
        f"  rows valid    {m['rows_valid']:>12,}",
        f"  rows rejected {m['rows_rejected']:>12,}",
    ]
    for reason, count in sorted(m["rejected_by_reason"].items(), key=lambda kv: -kv[1]):
        lines.append(f"    {reason:<34} {count:>10,}")
    events = sum(1 for f in m["files"] if f["dataset"] == "events")
    lines += [
        f"  files         {events} events + {len(m['files']) - events} rejected, "
        f"{human_bytes(m['bytes_written'])}",
        f"  duration      {m['duration_seconds']:.1f} s  ({m['rows_per_second']:,.0f} rows/s)",
        "  stages        "
        + ", ".join(f"{k} {v:.1f} s" for k, v in m.get("stage_seconds", {}).items()),
        f"  events        {report.events_path}",
        f"  rejected      {report.rejected_path}",
        f"  manifest      {report.manifest_path}",
        f"  publish       both versions listable for {report.publish_window_seconds:.2f} s",
    ]
    for notice in getattr(report, "notices", ()):
        lines.append(f"  repaired      {notice}")
    if report.quality_report:
        warnings = [f["message"] for f in report.findings if f["severity"] == "warning"]
        notes = [f["message"] for f in report.findings if f["severity"] != "warning"]
        lines.append(f"  quality       {report.quality_report}")
        if warnings:
            lines.append(f"                {len(warnings)} warning(s):")
        lines += [f"                - {message}" for message in warnings or notes]
        if not report.findings:
            lines.append("                nothing unusual against the days before")
    return "\n".join(lines)


def _settings(args: argparse.Namespace, **unused: Any) -> Settings:
    """The settings from the command's flags and the environment (flags win); ``unused`` fills
    required settings the command does not use. Fails fast, before the heavy imports."""
    flags = {k: v for k, v in vars(args).items() if k != "command" and v is not None}
    settings = Settings.load(os.environ, **{**unused, **flags})
    _setup_logging(settings.log_level)
    from processing.adapters.storage import check_url

    for url in (settings.source, settings.dest):  # before any work: a URL missing its "//"
        if not url.startswith(("(not used", "bigquery://")):
            check_url(url)
    return settings


def _run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from processing.app.pipeline import run

    # The imports above leave about a million long-lived objects (pandas, Dask, Pandera). Freezing
    # them keeps the cyclic garbage collector from walking them again on every full collection
    # during the run, and at exit (about 0.4 s of a run's wall time on 2 cores).
    gc.freeze()
    report = run(settings)
    print(summary(report))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    settings = _settings(args, source="(not used by rollback)")
    from processing.app.pipeline import rollback

    restored, notices = rollback(settings)
    for notice in notices:
        print(f"  repaired: {notice}")
    print(
        f"rolled back {settings.date}: run {restored['run_id']} is published again "
        f"({restored['rows_valid']:,} valid, {restored['rows_rejected']:,} rejected rows)"
    )
    return 0


def _gc(args: argparse.Namespace) -> int:
    only, args.date = args.date, None  # gc: every date, or the one asked for
    settings = _settings(args, source="(not used by gc)", date=dt.date(1970, 1, 1))
    from processing.app.pipeline import collect_garbage

    lines, damaged = collect_garbage(settings, only)
    print("\n".join(lines) if lines else "nothing to collect")
    for check in damaged:
        print("\n".join(check.lines()))
    return _damage(
        len(damaged), f"{len(damaged)} published date(s) are damaged: `verify` says more"
    )


def _verify(args: argparse.Namespace) -> int:
    every = args.all
    if every == (args.date is not None):
        raise ConfigError("verify needs --date D or --all (not both)")
    only, args.date = args.date, None
    del args.all
    settings = _settings(args, source="(not used by verify)", date=dt.date(1970, 1, 1))
    from processing.app.pipeline import verify

    checks = verify(settings, only)
    if not checks:
        print("no published date")
    for check in checks:
        print("\n".join(check.lines()))
    damaged = sum(c.damaged for c in checks)
    return _damage(damaged, f"{damaged} of {len(checks)} date(s) damaged")


def _damage(damaged: int, summary: str) -> int:
    """Exit 4 if any date is damaged, saying what repairs them; else 0."""
    if not damaged:
        return 0
    print(
        f"error: {summary}; the next run of a date replaces it (or `rollback` restores its "
        "kept version)",
        file=sys.stderr,
    )
    return DamagedError.exit_code


def _prices(settings: Settings) -> Any:
    from processing.logic.capacity import Prices

    return Prices(**{name: getattr(settings, name) for name in PRICES})


def _cluster_shape(settings: Settings, estimated_bytes: int) -> tuple[int, int]:
    """(workers, threads per worker) a run of these settings gets: the per-run DaskCluster's
    size from the plan, or the LocalCluster's (or the scheduler's) task threads."""
    from processing.app.context import task_slots

    if settings.cluster == "kubernetes":
        from dask.utils import parse_bytes

        from processing.logic.cluster_plan import workers_for

        workers = workers_for(
            estimated_bytes,
            parse_bytes(settings.cluster_bytes_per_worker),
            settings.cluster_min_workers,
            settings.cluster_max_workers,
        )
        return max(1, workers), settings.threads_per_worker or DEFAULT_THREADS_PER_WORKER
    slots = task_slots(settings)
    threads = settings.threads_per_worker or (
        1 if settings.processes else max(1, slots // (settings.workers or 1))
    )
    return max(1, slots // threads), threads


def _capacity_lines(settings: Settings, details: Mapping[str, Any], event_names: int) -> list[str]:
    """The capacity and cost of the day a BigQuery plan read the session of."""
    from processing.logic.capacity import estimate, render

    workers, threads = _cluster_shape(settings, details["estimated_bytes"])
    prices = _prices(settings)
    found = estimate(
        details["estimated_rows"],
        workers=workers,
        threads_per_worker=threads,
        target_file_bytes=settings.target_file_bytes,
        event_names=event_names,
        prices=prices,
        streams=details["streams"],
        bigquery_bytes=details["estimated_bytes"],
        compression=details["compression"],
    )
    return [
        "capacity and cost of the day on this configuration's cluster (`capacity` for any size)",
        *render(found, prices),
    ]


def _capacity(args: argparse.Namespace) -> int:
    flags = {name: getattr(args, name) for name in CAPACITY_SETTINGS}
    unused = {"date": dt.date(1970, 1, 1), "source": "(not used)", "dest": "(not used)"}
    settings = Settings.load(
        os.environ, **unused, **{k: v for k, v in flags.items() if v is not None}
    )
    from processing.logic.capacity import estimate, render, rows_for_bytes, size_for_deadline

    prices = _prices(settings)
    rows = rows_for_bytes(args.bytes)
    options: dict[str, Any] = {
        "threads_per_worker": args.threads_per_worker,
        "target_file_bytes": settings.target_file_bytes,
        "event_names": args.event_names,
        "prices": prices,
        "max_streams": settings.bq_max_streams,
        "compression": settings.bq_compression,
        "bigquery_bytes": args.bytes,
    }
    if args.workers:
        found = estimate(rows, workers=args.workers, **options)
        sized = "--workers given"
    else:
        try:
            found = size_for_deadline(rows, args.deadline, **options)
        except ValueError as e:
            raise ConfigError(f"--deadline: {e}") from None
        sized = f"the fewest workers done within --deadline {_duration(args.deadline)}"
    print(f"capacity for {human_bytes(args.bytes)} in BigQuery ({sized})")
    print("\n".join(render(found, prices)))
    print(
        "  prices           list prices checked 2026-12 (sources: capacity --help), each a flag\n"
        f"{'':19}and a variable: --egress-usd-per-gib, {ENV_PREFIX}EGRESS_USD_PER_GIB, ..."
    )
    return 0


def _duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g}min"
    return f"{seconds:g}s"


def _plan(args: argparse.Namespace) -> int:
    event_names = args.event_names
    del args.event_names
    settings = _settings(args, dest="(not used by plan)")
    from processing.app.context import source_for, task_slots
    from processing.logic.bigquery import suggested_slots

    plan = source_for(settings).plan(settings.date, settings.piece_rows)
    d = plan.details
    lines = [f"plan for {settings.date} from {d.get('table', plan.source)}"]
    if "session" in d:
        lines += [
            f"  session          {d['session']}",
            f"  snapshot         {d['snapshot_time']}  (replay: --snapshot-time "
            f"{d['snapshot_time']})",
            f"  row restriction  {d['row_restriction']}",
            f"  streams          {d['streams']} (asked for at most {d['max_stream_count']})",
        ]
        if d["streams"] < d["max_stream_count"]:
            lines.append(
                f"                   the service returned {d['streams']} of at most "
                f"{d['max_stream_count']} streams: it sizes streams to the data; each stream is "
                "one task"
            )
        lines += [
            f"  estimated rows   {d['estimated_rows']:,}",
            f"  estimated bytes  {human_bytes(d['estimated_bytes'])} "
            f"({d['compression']} on the wire)",
            f"  estimated cost   ${d['estimated_cost_usd']:.4f} "
            f"(at ${settings.bq_usd_per_tib:.2f} per TiB read)",
        ]
        suggested = suggested_slots(d["estimated_bytes"], d["streams"])
    else:
        rows = plan.estimated_rows
        lines += [
            f"  pieces           {len(plan.pieces)} (files: {d.get('files', '?')})",
            f"  estimated rows   {'unknown (text)' if rows is None else f'{rows:,}'}",
            f"  bytes to read    {human_bytes(plan.estimated_bytes)}",
        ]
        suggested = max(1, min(len(plan.pieces), task_slots(settings)))
    lines.append(
        f"  suggested        {suggested} task thread(s) (this configuration has "
        f"{task_slots(settings)}); nothing was read"
    )
    if "session" in d:
        lines += _capacity_lines(settings, d, event_names)
    print("\n".join(lines))
    return 0


def _serve_until_stopped() -> None:
    import signal
    import threading

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()


def _emulator_s3(args: argparse.Namespace) -> int:
    try:
        from processing.emulator.s3 import S3Server
    except ImportError as e:
        raise ConfigError(f"the S3 emulator needs the emulator extra ({e})") from None
    try:
        server = S3Server(args.host, args.port)
    except OSError as e:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {e}") from None
    endpoint = server.start()
    if args.bucket:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="emulator",
            aws_secret_access_key="emulator",
        )
        from botocore.exceptions import ClientError

        for bucket in args.bucket:
            try:
                client.create_bucket(Bucket=bucket)
            except ClientError as e:
                server.stop()
                raise ConfigError(f"--bucket {bucket!r}: {e}") from None
    server.faults.every = args.fail_every
    print(f"S3 emulator listening on {endpoint}", flush=True)
    print(f"  use it with: --s3-endpoint-url {endpoint} (or AWS_ENDPOINT_URL_S3={endpoint})")
    print("  and any credentials, e.g. AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test")
    for bucket in args.bucket:
        print(f"  bucket s3://{bucket}", flush=True)
    _serve_until_stopped()
    server.stop()
    return 0


def _emulator(args: argparse.Namespace) -> int:
    if args.service == "s3":
        return _emulator_s3(args)
    from processing.emulator.bigquery import Emulator, Faults

    _setup_logging("INFO")
    tables = {}
    for item in args.table:
        name, sep, path = item.partition("=")
        if not sep or name.count(".") != 2 or not path:
            raise ConfigError(f"--table {item!r}: expected PROJECT.DATASET.TABLE=PATH")
        tables[name] = path
    faults = Faults(
        unavailable_after_rows=args.fail_after_rows,
        resource_exhausted=args.resource_exhausted,
        delay_seconds=args.delay_ms / 1000,
        session_ttl_seconds=args.session_ttl,
    )
    try:
        server = Emulator(
            tables,
            host=args.host,
            port=args.port,
            faults=faults,
            min_rows_per_stream=args.min_rows_per_stream,
            cache_responses=args.cache_responses,
        )
    except FileNotFoundError as e:
        raise ConfigError(f"--table: {e}") from None
    except OSError as e:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {e}") from None
    address = server.start()
    print(f"BigQuery Storage emulator listening on {address}", flush=True)
    print(f"  use it with: --bq-endpoint {address} (or PROCESSING_BQ_ENDPOINT={address})")
    for name, path in tables.items():
        print(f"  table bigquery://{name} <- {path}", flush=True)
    _serve_until_stopped()
    server.stop()
    return 0


def _generate(args: argparse.Namespace) -> int:
    from processing.adapters.sample_files import is_text, write_chunks
    from processing.logic.generate import GenerateParams, generate

    if args.rows < 0 or args.seed < 0 or not 0.0 <= args.bad_fraction <= 1.0:
        raise ConfigError("--rows and --seed must be >= 0, --bad-fraction between 0 and 1")
    if not dt.date(1, 1, 2) <= args.date <= dt.date(9999, 12, 30):
        raise ConfigError("--date must leave a day on each side (bad rows use the next day)")
    started = time.perf_counter()
    params = GenerateParams(
        date=args.date,
        rows=args.rows,
        bad_fraction=args.bad_fraction,
        seed=args.seed,
        text=is_text(args.out),
    )
    try:
        rows = write_chunks(args.out, generate(params))
    except OSError as e:
        raise ConfigError(f"cannot write {args.out}: {e}") from e
    print(
        f"wrote {rows:,} events for {args.date} to {args.out} "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return 0


def _on_terminate(signal_number: int, frame: object) -> None:
    """SIGTERM (Kubernetes stopping the pod, Airflow killing the task): stop the work like
    Ctrl-C, so the lock is released and the summary says what was published; a second one
    exits at once."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: os._exit(128 + signal.SIGTERM))
    raise Terminated(signal_number)


def main(argv: Sequence[str] | None = None) -> int:
    import signal
    import threading

    args = _parser().parse_args(argv)
    handled = args.command != "emulator" and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_terminate) if handled else None
    try:
        commands = {
            "run": _run,
            "plan": _plan,
            "capacity": _capacity,
            "rollback": _rollback,
            "gc": _gc,
            "verify": _verify,
            "emulator": _emulator,
            "generate": _generate,
        }
        return commands[args.command](args)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except Interrupted as e:
        what = "terminated" if e.signal_number == signal.SIGTERM else "interrupted"
        if e.publishing:
            print(
                f"{what}: the publish had begun; the lock was released with it, and the next "
                "run of the date completes it",
                file=sys.stderr,
            )
        else:
            print(f"{what}: the lock was released; nothing was published", file=sys.stderr)
        return e.exit_code
    except (KeyboardInterrupt, Terminated) as e:
        signal_number = signal_of(e)
        what = "terminated" if signal_number == signal.SIGTERM else "interrupted"
        print(f"{what}: nothing was published by this command", file=sys.stderr)
        return 128 + int(signal_number)
    except Exception as e:  # a bug, or a storage failure no stage translated
        from processing.adapters.storage_errors import translate

        translated = translate(e)
        if translated is not None:
            print(f"error: {translated}", file=sys.stderr)
            return translated.exit_code
        log.exception("unexpected error")
        print(
            f"error: unexpected {type(e).__name__}: {e} (a bug: please report it)", file=sys.stderr
        )
        return PipelineError.exit_code
    finally:
        if handled:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
