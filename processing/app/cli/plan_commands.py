"""``plan`` and ``capacity``: how a date would be read, and what a day of any size costs."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from processing.app.cli.options import settings_for
from processing.logic.capacity import DEFAULT_THREADS_PER_WORKER, human_bytes
from processing.spec.errors import ConfigError
from processing.spec.settings import ENV_PREFIX, PRICES, Settings


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


def capacity(args: argparse.Namespace) -> int:
    settings = settings_for(args, "capacity")
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


def plan(args: argparse.Namespace) -> int:
    event_names = args.event_names
    settings = settings_for(args, "plan")
    from processing.app.context import source_for, task_slots
    from processing.logic.bigquery_plan import suggested_slots

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
