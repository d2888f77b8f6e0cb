"""The lock a run holds on its date (``processing.adapters.date_lock``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from processing.spec.settings.types import Section, bad, option

#: Bounds of a lock's time to live: refreshed every quarter of it, so a second is the least a
#: store's round trips leave room for; a day the most a dead run may keep a date.
MIN_LOCK_TTL_SECONDS, MAX_LOCK_TTL_SECONDS = 1.0, 86_400.0


@dataclass(frozen=True, kw_only=True)
class LockSettings(Section):
    lock_ttl_seconds: float = field(
        default=600.0,
        metadata=option(float, "a run's lock on its date expires this long after its refresh"),
    )

    def _check(self) -> None:
        ttl = self.lock_ttl_seconds
        if not (math.isfinite(ttl) and MIN_LOCK_TTL_SECONDS <= ttl <= MAX_LOCK_TTL_SECONDS):
            raise bad(
                "lock_ttl_seconds",
                f"lock_ttl_seconds must be between {MIN_LOCK_TTL_SECONDS:g} and "
                f"{MAX_LOCK_TTL_SECONDS:g} (seconds; got {ttl!r})",
            )
