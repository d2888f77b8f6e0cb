"""When the DAG may start on a day (``processing.app.day_sensor``): once the source has a row
some time after the day's end (the day's late events have landed), or, past a deadline, never:
the DAG's ``wait_for_day`` then fails, and its failure notice is the alert."""

from __future__ import annotations

from dataclasses import dataclass, field

from processing.spec.settings.types import Section, bad, option

#: How the DAG decides a day is complete in its source.
DAY_COMPLETE_CHECKS = ("watermark", "none")


@dataclass(frozen=True, kw_only=True)
class DayCompleteSettings(Section):
    day_complete_check: str = field(
        default="watermark",
        metadata=option(
            help="`watermark`: the DAG waits until the BigQuery table has a row at least "
            "--day-complete-lateness-seconds after the day's end; `none`: it starts at once "
            "(a file source is always complete)"
        ),
    )
    day_complete_lateness_seconds: int = field(
        default=7_200,
        metadata=option(
            int,
            "how late an event of the day may land: the watermark's distance from the day's end",
        ),
    )
    day_complete_timeout_seconds: int = field(
        default=43_200,
        metadata=option(
            int, "past the day's end, how long the DAG waits for it before it fails and alerts"
        ),
    )
    day_complete_poll_seconds: int = field(
        default=600,
        metadata=option(
            int, "how often the DAG looks again (deferred in between: no worker slot is held)"
        ),
    )

    def _check(self) -> None:
        if self.day_complete_check not in DAY_COMPLETE_CHECKS:
            raise bad(
                "day_complete_check",
                f"day_complete_check must be one of {', '.join(DAY_COMPLETE_CHECKS)} "
                f"(got {self.day_complete_check!r})",
                flag=False,
            )
        for name, least in (
            ("day_complete_lateness_seconds", 0),
            ("day_complete_timeout_seconds", 0),
            ("day_complete_poll_seconds", 1),
        ):
            value = getattr(self, name)  # (checked before the two are compared below)
            if not least <= value <= 7 * 86_400:
                raise bad(name, f"{name} must be between {least} and 604,800 (seconds; got "
                          f"{value!r})", flag=False)  # fmt: skip
        if self.day_complete_timeout_seconds <= self.day_complete_lateness_seconds:
            raise bad(
                "day_complete_timeout_seconds",
                "day_complete_timeout_seconds must be longer than "
                "day_complete_lateness_seconds (the deadline would come before the watermark)",
                flag=False,
            )
