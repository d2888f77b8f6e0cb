"""The run: which day, from where, to where, and how the work is cut (``processing.app``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from processing.spec.settings.types import Section, bad, option, parse_bool, parse_date


@dataclass(frozen=True, kw_only=True)
class RunSettings(Section):
    date: dt.date = field(metadata=option(parse_date, "the UTC day to process (YYYY-MM-DD)"))
    source: str = field(default="", metadata=option(help="where events come from (path or URL)"))
    dest: str = field(default="", metadata=option(help="the data lake root (path or fsspec URL)"))
    run_id: str | None = field(
        default=None,
        metadata=option(help="names the run's staging and manifest", shown_default="generated"),
    )
    piece_rows: int = field(default=1_000_000, metadata=option(int, "rows per Dask task"))
    batch_rows: int = field(
        default=1_000_000, metadata=option(int, "rows per source batch (validated at once)")
    )
    task_retries: int = field(
        default=2,
        metadata=option(
            int, "retries of a task whose worker died, and of a piece after a transient error"
        ),
    )
    performance_report: bool = field(
        default=True,
        metadata=option(parse_bool, "keep the Dask performance report beside the manifest"),
    )
    log_level: str = field(default="INFO", metadata=option(help="DEBUG, INFO, WARNING or ERROR"))

    def _check(self) -> None:
        if self.piece_rows < 1:
            raise bad("piece_rows", "piece_rows must be at least 1")
        if self.batch_rows < 1:
            raise bad("batch_rows", "batch_rows must be at least 1")
        if self.task_retries < 0:
            raise bad("task_retries", "task_retries must be >= 0")
