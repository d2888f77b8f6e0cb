"""The command line: one subcommand per job, each with only its own options, grouped by
section, with examples and the exit codes."""

from __future__ import annotations

import argparse

from processing.app.cli import values
from processing.app.cli.options import OneLineParser, add_settings_flags
from processing.logic.capacity import DEFAULT_THREADS_PER_WORKER
from processing.spec.settings import parse_date

EXIT_CODES = """\
exit codes:
  0    done (published, rolled back, registered, nothing damaged)
  2    bad configuration or arguments: fix them, do not retry
  3    input error (source missing, unreadable, wrong schema, no valid row): fix the source
  4    audit failed, the lock was lost, or a damaged date was found: nothing was published
  5    another run holds the date's lock: retry once it has finished
  75   transient (a worker, the network, the store, BigQuery): retry
  130, 143  stopped by SIGINT or SIGTERM (the lock released)
  1    unexpected (a bug)
every setting is a flag and a PROCESSING_* variable (flags win); a secret can also be a file
(--x-file, PROCESSING_X_FILE). Also installed as the `events-lake` command."""

_COMMANDS = {
    "run": (
        "process and publish one date",
        "Read the date from --source, validate every row, write Parquet to --dest and publish "
        "the date atomically (a rerun replaces exactly that date).",
        """\
examples:
  python -m processing run --date 2023-10-23 --source data/sample_day.jsonl.gz --dest ./lake
  python -m processing run --date 2023-10-23 --source bigquery://proj.events.day \\
      --dest s3://lake/events-lake --processes --workers 4   # 4 processes of 1 thread
  PROCESSING_DEST=s3://lake/x python -m processing run --date 2023-10-23 --source day.parquet""",
    ),
    "plan": (
        "print how a date would be read (streams, size, cost); read nothing",
        "Create the read session (or list the files) of the date and print its shape, the task "
        "threads it suits and, for BigQuery, the day's capacity and cost on this configuration.",
        """\
examples:
  python -m processing plan --date 2023-10-23 --source bigquery://proj.events.day
  python -m processing plan --date 2023-10-23 --source data/sample_day.jsonl.gz""",
    ),
    "rollback": (
        "publish the date's previous version again (a second rollback undoes the first)",
        "Switch the date back to the version published before the current one.",
        """\
examples:
  python -m processing rollback --date 2023-10-23 --dest ./lake
  python -m processing rollback --date 2023-10-23 --dest s3://lake/events-lake""",
    ),
    "gc": (
        "remove failed runs' staging and dead runs' locks (all dates, or --date); report "
        "damaged dates",
        "Dates a live run holds are skipped. Exits 4 if a published date is damaged (see verify).",
        """\
examples:
  python -m processing gc --dest ./lake
  python -m processing gc --dest s3://lake/events-lake --date 2023-10-23""",
    ),
    "verify": (
        "check published dates against their manifests (--date D, or --all)",
        "Reads every listed file's size and Parquet footer; exits 4 if anything is wrong.",
        """\
examples:
  python -m processing verify --dest ./lake --all
  python -m processing verify --dest s3://lake/events-lake --date 2023-10-23""",
    ),
    "expire": (
        "remove the dates older than the retention (--keep-days), or only their rejected rows",
        "Each date under its lock (a date a live run holds is skipped: exit 5): a date before "
        "today (UTC) minus --keep-days loses everything (events, rejected rows, the previous "
        "version, reports, staging, its alert marker and its lock); a date before today minus "
        "--rejected-keep-days loses its rejected rows, and its manifests stop listing them. "
        "--dry-run lists exactly what would go, and removes nothing.",
        """\
examples:
  python -m processing expire --dest ./lake --keep-days 400 --dry-run
  python -m processing expire --dest s3://lake/events-lake --keep-days 400 \\
      --rejected-keep-days 30""",
    ),
    "catalog": (
        "register published dates in the Glue Data Catalog (--date D, or --all)",
        "Create the database and the tables if missing (or update their definition), then "
        "make each date's partitions exactly those of its published version. What run and "
        "rollback do after a publish when given --glue-database: for dates published before, "
        "or whose registration failed. Each date under its lock; safe to repeat.",
        """\
examples:
  python -m processing catalog --dest s3://lake/events-lake --glue-database events_lake --all
  python -m processing catalog --dest s3://lake/events-lake --glue-database events_lake \\
      --glue-table-prefix prod_ --date 2023-10-23""",
    ),
    "forget": (
        "remove every row of some users from the lake (events, rejected, kept versions)",
        "Each published date (of --from/--to) under its lock: the rows of the ids in --user-ids "
        "(one raw id per line; matched as each date published them: raw, or pseudonymised "
        "with --user-id-key-file) are removed through a publish, so readers see the date "
        "before or after, never between; the version kept for a rollback that holds them is "
        "dropped. Dates without those rows are not rewritten. Writes an erasure log (counts "
        "and a hash of the request, no ids) under _erasures/. Safe to repeat: run the same "
        "request again to finish one that stopped.",
        """\
examples:
  python -m processing forget --dest ./lake --user-ids forget.txt
  python -m processing forget --dest s3://lake/events-lake --user-ids forget.txt \\
      --user-id-key-file /var/run/secrets/events-lake/user-id-key \\
      --from 2023-10-01 --to 2023-10-31""",
    ),
    "capacity": (
        "print the streams, workers, wall time, files and cost of a day of any size",
        "The capacity and cost model (processing/logic/capacity.py) for a day of --bytes in "
        "BigQuery: from the rates measured by the benchmarks and today's list prices. Reads "
        "nothing.",
        """\
examples:
  python -m processing capacity --bytes 450GiB
  python -m processing capacity --bytes 450GiB --deadline 30min --target-file-size 512MiB
  python -m processing capacity --bytes 1TiB --workers 40""",
    ),
}


def build() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m processing",
        description="Move a day of user-action events into a hive-partitioned Parquet lake.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    commands = {}
    for name, (help_text, description, examples) in _COMMANDS.items():
        commands[name] = sub.add_parser(
            name,
            help=help_text,
            description=description,
            epilog=f"{examples}\n\n{EXIT_CODES}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    for name in ("gc", "verify", "catalog"):
        commands[name].add_argument(
            "--date", type=values.flag_type(parse_date), help="only this date (YYYY-MM-DD)"
        )
    for name in ("verify", "catalog"):
        commands[name].add_argument(
            "--all", action="store_true", help="every published date of --dest"
        )
    _forget_flags(commands["forget"])
    commands["expire"].add_argument(
        "--dry-run",
        action="store_true",
        help="list what would be removed (taking each date's lock, as expire does); remove nothing",
    )
    values.event_names_flag(commands["plan"])
    _capacity_flags(commands["capacity"])
    for name in _COMMANDS:
        add_settings_flags(commands[name], name)
    _emulator_commands(sub)
    _generate_command(sub)
    return parser


def _forget_flags(forget: argparse.ArgumentParser) -> None:
    own = forget.add_argument_group("the request")
    own.add_argument(
        "--user-ids",
        required=True,
        metavar="FILE",
        help="the users to forget, one raw user id per line: a local file, or s3://... read "
        "with the lake's storage settings (required)",
    )
    own.add_argument(
        "--from", dest="first", type=values.flag_type(parse_date), help="first date (YYYY-MM-DD)"
    )
    own.add_argument(
        "--to", dest="last", type=values.flag_type(parse_date), help="last date (YYYY-MM-DD)"
    )


def _capacity_flags(capacity: argparse.ArgumentParser) -> None:
    own = capacity.add_argument_group("the day and the cluster")
    own.add_argument(
        "--bytes",
        type=values.positive_size,
        required=True,
        metavar="SIZE",
        help="the day's logical bytes in BigQuery (the plan's estimated bytes), e.g. 450GiB "
        "(required)",
    )
    own.add_argument(
        "--workers",
        type=values.positive_int,
        help="workers of the cluster (default: the fewest that finish within --deadline)",
    )
    own.add_argument(
        "--threads-per-worker",
        type=values.positive_int,
        default=DEFAULT_THREADS_PER_WORKER,
        help=f"task threads (cores) per worker (default: {DEFAULT_THREADS_PER_WORKER}, as "
        "deploy/kubernetes/base/dask starts them)",
    )
    own.add_argument(
        "--deadline",
        type=values.positive_duration,
        default=3600.0,
        metavar="DURATION",
        help="the wall time to size the workers for, e.g. 45min or 2h (default: 1h)",
    )
    values.event_names_flag(own)


def _emulator_commands(sub: argparse._SubParsersAction) -> None:
    emulator = sub.add_parser("emulator", help="run a local emulator of a cloud service")
    kinds = emulator.add_subparsers(dest="service", required=True, parser_class=OneLineParser)
    bq = kinds.add_parser(
        "bigquery",
        help="the BigQuery Storage Read API over plaintext gRPC",
        description="Serves local files as BigQuery tables to the real client, until stopped.",
        epilog="example:\n  python -m processing emulator bigquery "
        "--table demo.events.day=data/sample_day.jsonl.gz",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        epilog="example:\n  python -m processing emulator s3 --bucket lake",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s3.add_argument("--host", default="127.0.0.1")
    s3.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    s3.add_argument("--bucket", action="append", default=[], help="create it; repeatable")
    s3.add_argument(
        "--fail-every", type=int, default=0, help="answer every Nth request with 503 or 500"
    )


def _generate_command(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser(
        "generate",
        help="write deterministic synthetic events",
        epilog="example:\n  python -m processing generate --date 2023-10-23 --rows 10000000 "
        "--bad-fraction 0.01 --out day.parquet",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gen.add_argument("--date", type=values.flag_type(parse_date), required=True)
    gen.add_argument("--rows", type=int, required=True)
    gen.add_argument("--bad-fraction", type=float, default=0.0)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--out", required=True, help="file: .parquet, .arrow, .jsonl or .jsonl.gz")
