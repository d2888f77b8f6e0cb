"""``expire``: the lake's retention by date (``processing.app.retention``)."""

from __future__ import annotations

import argparse
import sys

from processing.app.cli.options import settings_for
from processing.spec.errors import DateLockedError


def expire(args: argparse.Namespace) -> int:
    """One line per path removed (or that would be), then one per date; exit 5 if a date a
    live run holds was skipped (run it again once that run has finished)."""
    settings = settings_for(args, "expire")  # --dry-run is a flag of the command, not a setting
    from processing.app.retention import expire

    done = expire(settings, dry_run=args.dry_run)
    for line in done.lines():
        print(line)
    if done.dry_run and done.paths:
        print(f"dry run: {len(done.paths)} files would be removed; nothing was")
    skipped = done.skipped
    if skipped:
        print(
            f"error: {len(skipped)} date(s) past retention are held by a live run and were not "
            "expired: run expire again once it has finished",
            file=sys.stderr,
        )
        return DateLockedError.exit_code
    return 0
