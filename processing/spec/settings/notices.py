"""Notices to people from the Airflow DAG: a failure, and a success after a failure
(``processing.app.notify``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from processing.spec.settings.types import Section, option, parse_bool


@dataclass(frozen=True, kw_only=True)
class NoticeSettings(Section):
    notify_slack_webhook: str | None = field(
        default=None,
        metadata=option(help="Slack incoming-webhook URL for the DAG's notices", secret=True),
    )
    notify_email_to: str | None = field(
        default=None, metadata=option(help="comma-separated addresses for the DAG's notices")
    )
    smtp_host: str | None = field(default=None, metadata=option(help="SMTP server for e-mails"))
    smtp_port: int = field(default=587, metadata=option(int, "SMTP port"))
    smtp_from: str = field(
        default="events-lake@localhost", metadata=option(help="sender of the e-mails")
    )
    smtp_user: str | None = field(default=None, metadata=option(help="SMTP login, if any"))
    smtp_password: str | None = field(
        default=None, metadata=option(help="SMTP password, if any", secret=True)
    )
    smtp_starttls: bool = field(
        default=True, metadata=option(parse_bool, "upgrade the SMTP connection to TLS")
    )
