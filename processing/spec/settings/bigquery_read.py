"""How a BigQuery table is read: the endpoint, billing, snapshot and read session's shape
(``processing.adapters.sources.bigquery``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from processing.spec.bigquery_limits import check_options
from processing.spec.errors import ConfigError
from processing.spec.settings.types import Section, option, parse_instant


@dataclass(frozen=True, kw_only=True)
class BigQuerySettings(Section):
    bq_endpoint: str | None = field(
        default=None,
        metadata=option(help="HOST:PORT of a BigQuery Storage emulator (plaintext gRPC)"),
    )
    billing_project: str | None = field(
        default=None,
        metadata=option(help="project billed for the read", shown_default="the table's"),
    )
    snapshot_time: dt.datetime | None = field(
        default=None,
        metadata=option(
            parse_instant, "read the table as of this time (replays a run)", shown_default="now"
        ),
    )
    bq_time_column: str = field(
        default="timestamp",
        metadata=option(help="column the date window filters on, e.g. _PARTITIONTIME"),
    )
    bq_compression: str = field(
        default="LZ4_FRAME", metadata=option(help="Arrow buffer compression: LZ4_FRAME, ZSTD, NONE")
    )
    bq_max_streams: int | None = field(
        default=None,
        metadata=option(int, "streams at most", shown_default="4 per task thread"),
    )
    bq_deadline_seconds: float = field(
        default=600.0, metadata=option(float, "give up on an unreachable BigQuery after this")
    )

    def _check(self) -> None:
        problem = check_options(
            self.bq_compression, self.bq_time_column, self.bq_deadline_seconds, self.bq_max_streams
        )
        if problem:
            raise ConfigError(f"bad setting: {problem}")
