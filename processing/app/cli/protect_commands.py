"""``forget``: erase users from the lake on request (see :mod:`processing.app.forget`)."""

from __future__ import annotations

import argparse
import sys

from processing.app.cli.options import settings_for
from processing.spec.errors import ConfigError


def forget(args: argparse.Namespace) -> int:
    if args.first and args.last and args.first > args.last:
        raise ConfigError(f"--from {args.first} is after --to {args.last}")
    settings = settings_for(args, "forget")
    from processing.app.forget import forget

    request, done = forget(settings, args.user_ids, args.first, args.last)
    if not done:
        print("no published date in the range: nothing to erase")
    for forgotten in done:
        print(forgotten.line())
    changed = [f for f in done if f.outcome is not None and f.outcome.changed]
    valid = sum(f.outcome.rows_valid for f in changed if f.outcome is not None)
    rejected = sum(f.outcome.rows_rejected for f in changed if f.outcome is not None)
    method, _, digest = request.partition(":")
    print(
        f"request {method}:{digest[:16]}: {valid:,} valid and {rejected:,} rejected rows removed "
        f"from {len(changed)} of {len(done)} date(s); erasure log under "
        f"{settings.dest.rstrip('/')}/_erasures/request={digest[:16]}/"
    )
    skipped = [f for f in done if f.skipped]
    if skipped:
        print(
            f"error: {len(skipped)} date(s) were not served (above, why): fix that, then run the "
            "same forget again (what is done is found done)",
            file=sys.stderr,
        )
        # the most serious first: a key (2), a damaged date (4), a live run (5)
        return min(f.code for f in skipped)
    return 0
