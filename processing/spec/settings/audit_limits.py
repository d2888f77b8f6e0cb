"""What the audit refuses to publish (``processing.app.stages.audit_stage``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from processing.spec.settings.types import Section, bad, option, parse_bool


@dataclass(frozen=True, kw_only=True)
class AuditLimits(Section):
    max_rejected_fraction: float = field(
        default=0.2, metadata=option(float, "above this share of rejected rows the audit fails")
    )
    max_event_names: int = field(
        default=1000,
        metadata=option(
            int, "distinct valid event names a day may have; more refuses the run (exit 3)"
        ),
    )
    allow_empty: bool = field(default=False, metadata=option(parse_bool, "publish a day of 0 rows"))
    allow_partial_day: bool = field(
        default=False,
        metadata=option(
            parse_bool, "process today (UTC) or a later date: a day whose events are not all in"
        ),
    )

    def _check(self) -> None:
        if not 0.0 <= self.max_rejected_fraction <= 1.0:
            raise bad("max_rejected_fraction", "max_rejected_fraction must be in [0, 1]")
        if self.max_event_names < 1:
            raise bad("max_event_names", "max_event_names must be at least 1")
