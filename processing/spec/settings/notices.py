"""Notices to people from the Airflow DAG: a failure, and a success after a failure
(``processing.app.notify``). Where they go is Airflow's: the Connections ``events_lake_slack``
(a Slack incoming webhook) and ``events_lake_smtp`` (an SMTP server); only the e-mail's
recipients are a setting."""

from __future__ import annotations

from dataclasses import dataclass, field

from processing.spec.settings.types import Section, option


@dataclass(frozen=True, kw_only=True)
class NoticeSettings(Section):
    notify_email_to: str | None = field(
        default=None,
        metadata=option(
            help="comma-separated addresses of the DAG's e-mail notices (sent through the "
            "Airflow connection events_lake_smtp)"
        ),
    )
