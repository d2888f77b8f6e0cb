"""When a day is complete in its source, and how long the DAG waits for it: pure arithmetic on
the day, its watermark and its deadline (the check itself is the source's)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


def day_end(date: dt.date) -> dt.datetime:
    return dt.datetime.combine(date + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)


def watermark(date: dt.date, lateness_seconds: int) -> dt.datetime:
    """The moment a row of which tells the day is complete: its end plus the lateness."""
    return day_end(date) + dt.timedelta(seconds=lateness_seconds)


def deadline(date: dt.date, timeout_seconds: int) -> dt.datetime:
    """After this, the DAG stops waiting for the day and fails (its failure notice alerts)."""
    return day_end(date) + dt.timedelta(seconds=timeout_seconds)


@dataclass(frozen=True)
class Wait:
    """What the DAG does next: go on (``complete``), look again in ``seconds``, or give up
    (``late``), with a sentence for its log and notice."""

    complete: bool
    late: bool
    seconds: float
    message: str


def next_step(
    date: dt.date,
    complete: bool,
    now: dt.datetime,
    *,
    lateness_seconds: int,
    timeout_seconds: int,
    poll_seconds: int,
) -> Wait:
    mark, limit = watermark(date, lateness_seconds), deadline(date, timeout_seconds)
    if complete:
        return Wait(
            True,
            False,
            0.0,
            f"{date} is complete: the source has rows from {mark:%Y-%m-%d %H:%M} UTC",
        )
    if now >= limit:
        return Wait(
            False,
            True,
            0.0,
            f"{date} is not complete in the source at {limit:%Y-%m-%d %H:%M} UTC (no row from "
            f"{mark:%Y-%m-%d %H:%M} UTC on): its events have not landed. Check the loads into "
            "the table; once they are in, rerun the date (trigger the DAG with its date)",
        )
    seconds = min(float(poll_seconds), (limit - now).total_seconds())
    return Wait(
        False,
        False,
        seconds,
        f"{date} is not complete yet (no row from {mark:%Y-%m-%d %H:%M} UTC): looking again in "
        f"{seconds:.0f} s, until {limit:%Y-%m-%d %H:%M} UTC",
    )
