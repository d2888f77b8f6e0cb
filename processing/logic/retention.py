"""Which dates a retention expires (pure: today comes in as an argument, a UTC date).

A date D expires **whole** when ``D < today - keep_days``: its events, rejected rows, previous
version, reports, staging and alert marker go. With ``rejected_keep_days`` (at most
``keep_days``), a date that is kept but older than ``today - rejected_keep_days`` loses only its
rejected rows. ``keep_days`` None: nothing expires. So with ``keep_days=30`` on 2024-03-31, the
cutoff is 2024-03-01: 2024-02-29 expires, 2024-03-01 is kept (30 whole days before today, and
today, are kept).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class RetentionPlan:
    """What a retention does to the dates present, oldest first."""

    #: dates before this one expire whole (None: none do)
    cutoff: dt.date | None
    #: kept dates before this one lose their rejected rows (None: none do)
    rejected_cutoff: dt.date | None
    #: dates removed whole
    expire: tuple[dt.date, ...]
    #: dates kept, whose rejected rows are removed
    rejected_only: tuple[dt.date, ...]

    @property
    def empty(self) -> bool:
        return not (self.expire or self.rejected_only)


def cutoff(today: dt.date, days: int | None) -> dt.date | None:
    """The first date a retention of ``days`` keeps (None: it keeps every date)."""
    if days is None:
        return None
    if days < 1:
        raise ValueError(f"a retention is at least 1 day, not {days}")
    try:
        return today - dt.timedelta(days=days)
    except OverflowError:
        return dt.date.min  # longer than the calendar: every date is kept


def plan(
    today: dt.date,
    keep_days: int | None,
    rejected_keep_days: int | None,
    dates: Iterable[dt.date],
) -> RetentionPlan:
    """Which of ``dates`` expire whole, and which only lose their rejected rows, on ``today``."""
    if keep_days is not None and rejected_keep_days is not None and rejected_keep_days > keep_days:
        raise ValueError(
            f"rejected rows kept {rejected_keep_days} days outlive their dates ({keep_days})"
        )
    whole = cutoff(today, keep_days)
    rejected = cutoff(today, rejected_keep_days)
    present = sorted(set(dates))
    expire = tuple(d for d in present if whole is not None and d < whole)
    rejected_only = tuple(
        d for d in present if rejected is not None and d < rejected and d not in expire
    )
    return RetentionPlan(whole, rejected, expire, rejected_only)
