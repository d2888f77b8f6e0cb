"""``run``, ``rollback``, ``gc``, ``verify`` and ``catalog``: the commands that change, check or
register the lake."""

from __future__ import annotations

import argparse
import gc
import sys
from typing import Any

from processing.app.cli.options import settings_for
from processing.logic.capacity import human_bytes
from processing.spec.errors import ConfigError, DamagedError, DateLockedError


def run(args: argparse.Namespace) -> int:
    settings = settings_for(args, "run")
    from processing.app.pipeline import run

    # The imports above leave about a million long-lived objects (pandas, Dask, Pandera). Freezing
    # them keeps the cyclic garbage collector from walking them again on every full collection
    # during the run, and at exit (about 0.4 s of a run's wall time on 2 cores).
    gc.freeze()
    report = run(settings)
    print(summary(report))
    return 0


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
    from processing.logic.pseudonymise import key_id_of  # (after the run: loaded already)

    key = key_id_of(m)
    if key is not None:
        lines.append(f"  user ids      pseudonymised (HMAC-SHA256, key id {key})")
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
    lines += _replaced(report)
    lines += _catalog(getattr(report, "catalog", ()))
    for notice in getattr(report, "notices", ()):
        lines.append(f"  repaired      {notice}")
    if getattr(report, "performance_report", None):
        lines.append(f"  dask report   {report.performance_report}")
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


def _replaced(report: Any) -> list[str]:
    """What the run replaced, and how to have it back (nothing when not known)."""
    before = getattr(report, "replaced", None)
    if before is None:
        return []
    if not before:
        return ["  replaced      nothing: the date's first version"]
    m = report.manifest
    return [
        f"  replaced      run {before['run_id']}: rows valid {before['rows_valid']:,} -> "
        f"{m['rows_valid']:,}, rejected {before['rows_rejected']:,} -> {m['rows_rejected']:,}",
        f"                kept for a rollback: {report.rollback_command}",
    ]


def _catalog(registrations: Any) -> list[str]:
    """What registering the date in the Glue Data Catalog did, a line per table."""
    lines = [r.line() for r in registrations]
    return [f"  {'catalog' if i == 0 else '':<14}{line}" for i, line in enumerate(lines)]


def rollback(args: argparse.Namespace) -> int:
    settings = settings_for(args, "rollback")
    from processing.app.pipeline import rollback

    restored, notices, catalog = rollback(settings)
    for notice in notices:
        print(f"  repaired: {notice}")
    print(
        f"rolled back {settings.date}: run {restored['run_id']} is published again "
        f"({restored['rows_valid']:,} valid, {restored['rows_rejected']:,} rejected rows)"
    )
    for line in _catalog(catalog):
        print(line)
    return 0


def catalog(args: argparse.Namespace) -> int:
    if args.all == (args.date is not None):
        raise ConfigError("catalog needs --date D or --all (not both)")
    settings = settings_for(args, "catalog")  # catalog's --date is which dates, not a setting
    from processing.app.pipeline import register_dates

    done = register_dates(settings, args.date)
    if not done:
        print("no published date")
    for registered in done:
        if registered.skipped:
            print(f"{registered.date}: skipped, {registered.skipped}")
        for registration in registered.catalog:
            print(registration.line())
    skipped = sum(1 for r in done if r.skipped)
    if skipped:
        print(
            f"error: {skipped} date(s) held by a live run were not registered: run catalog "
            "again once it has finished (a run given --glue-database registers its date itself)",
            file=sys.stderr,
        )
        return DateLockedError.exit_code
    return 0


def collect_garbage(args: argparse.Namespace) -> int:
    settings = settings_for(args, "gc")  # gc's --date is which dates, not a setting
    from processing.app.pipeline import collect_garbage

    lines, damaged = collect_garbage(settings, args.date)
    print("\n".join(lines) if lines else "nothing to collect")
    for check in damaged:
        print("\n".join(check.lines()))
    return _damage(
        len(damaged), f"{len(damaged)} published date(s) are damaged: `verify` says more"
    )


def verify(args: argparse.Namespace) -> int:
    if args.all == (args.date is not None):
        raise ConfigError("verify needs --date D or --all (not both)")
    settings = settings_for(args, "verify")
    from processing.app.pipeline import verify

    checks = verify(settings, args.date)
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
