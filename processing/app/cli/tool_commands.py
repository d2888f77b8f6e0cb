"""``emulator`` and ``generate``: local stand-ins for the cloud, and synthetic days."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import time

from processing.app.cli.options import setup_logging
from processing.spec.errors import ConfigError


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


def emulator(args: argparse.Namespace) -> int:
    if args.service == "s3":
        return _emulator_s3(args)
    from processing.emulator.bigquery_storage import Emulator, Faults

    setup_logging("INFO")
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


def generate(args: argparse.Namespace) -> int:
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
