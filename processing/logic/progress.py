"""A run's progress as a line at a steady rate, not a line per piece (pure: the clock comes in).

A day of 2,000 pieces logs a line every ``every`` seconds (and one at the end): pieces done of
the total, rows, the rate since the start and the time left at that rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


@dataclass
class ProgressMeter:
    total: int
    started: float
    every: float = 10.0
    done: int = 0
    rows: int = 0
    _last: float = -math.inf

    def add(self, rows: int, now: float) -> str | None:
        """Count a finished piece; the progress line if one is due (else None)."""
        self.done += 1
        self.rows += rows
        if self.done < self.total and now - self._last < self.every:
            return None
        self._last = now
        return self.line(now)

    def line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.rows / elapsed
        share = self.done / self.total if self.total else 1.0
        text = (
            f"pieces {self.done:,}/{self.total:,} ({share:.0%}), {self.rows:,} rows, "
            f"{rate:,.0f} rows/s"
        )
        if 0 < self.done < self.total:
            text += f", about {duration(elapsed / self.done * (self.total - self.done))} left"
        else:
            text += f", in {duration(elapsed)}"
        return text
