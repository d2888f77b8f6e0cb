"""How long the lake keeps a date (``processing.app.retention``, the ``expire`` command and the
DAG's optional last task). Opt-in: without ``keep_days`` nothing ever expires."""

from __future__ import annotations

from dataclasses import dataclass, field

from processing.spec.settings.types import Section, bad, option

#: The longest retention a setting may ask for (100 years): beyond it, dates before the cutoff
#: would predate the calendar's first day.
MAX_KEEP_DAYS = 36_500


@dataclass(frozen=True, kw_only=True)
class RetentionSettings(Section):
    keep_days: int | None = field(
        default=None,
        metadata=option(
            int,
            "a date older than this many days (before today UTC minus N) is removed whole by "
            "expire: events, rejected rows, previous version, reports",
            shown_default="nothing expires",
        ),
    )
    rejected_keep_days: int | None = field(
        default=None,
        metadata=option(
            int,
            "a date older than this many days loses its rejected rows (their files and their "
            "entries in the manifests); at most --keep-days",
            shown_default="--keep-days",
        ),
    )

    def _check(self) -> None:
        for name in ("keep_days", "rejected_keep_days"):
            days = getattr(self, name)
            if days is not None and not 1 <= days <= MAX_KEEP_DAYS:
                raise bad(
                    name,
                    f"{name} must be a whole number of days between 1 and {MAX_KEEP_DAYS:,} "
                    f"(got {days})",
                )
        if self.rejected_keep_days is None:
            return
        if self.keep_days is None:
            raise bad(
                "rejected_keep_days",
                "rejected_keep_days needs --keep-days (the retention of whole dates): set both",
            )
        if self.rejected_keep_days > self.keep_days:
            raise bad(
                "rejected_keep_days",
                f"rejected_keep_days ({self.rejected_keep_days}) must be at most keep_days "
                f"({self.keep_days}): rejected rows cannot outlive their date",
            )
