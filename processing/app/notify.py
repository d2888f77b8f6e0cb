"""Notices to people from the Airflow DAG: a task that failed, and a date that was published
again after a failure. Sent by Airflow's own notifiers, ``SlackWebhookNotifier`` and
``SmtpNotifier``, whose addresses and secrets are Airflow Connections (``events_lake_slack``, a
Slack incoming webhook; ``events_lake_smtp``, an SMTP server); the e-mail's recipients are
``PROCESSING_NOTIFY_EMAIL_TO``. A channel whose connection is not defined is skipped, and says so
in the log.

What is ours is one rule, :class:`DateNotifier`: a failure is told and remembered beside the
lake (``_alerts/``), and the date's next publish is told as a recovery, once, whichever DAG run
it comes in. A notice says the DAG, the date, the task, the try, the log's link and the first
line of the error; never a secret: the channels' connections are fetched first, which registers
their secrets with Airflow's masker, and the error's line goes through the masker. Sending is
best effort: a notice that cannot go out is a warning, never a failed task.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from airflow.sdk import BaseNotifier

if TYPE_CHECKING:
    from processing.spec.settings import Settings

log = logging.getLogger(__name__)

FAILED, RECOVERED = "failed", "recovered"
SLACK_CONN_ID = "events_lake_slack"  # a Slack incoming webhook (conn_type slackwebhook)
SMTP_CONN_ID = "events_lake_smtp"  # an SMTP server (conn_type smtp)
TIMEOUT_SECONDS = 10  # of the Slack request (the SMTP connection's extra "timeout" sets its own)

Event = Literal["failed", "published"]


@dataclass(frozen=True)
class Notice:
    status: str
    dag_id: str
    date: str
    task_id: str
    try_number: int
    log_url: str
    error: str

    @property
    def subject(self) -> str:
        if self.status == FAILED:
            return f"[events-lake] {self.dag_id} {self.date}: {self.task_id} failed"
        return f"[events-lake] {self.dag_id} {self.date}: published again after a failure"

    def text(self) -> str:
        lines = [self.subject, f"task {self.task_id}, try {self.try_number}"]
        if self.error:
            lines.append(f"error: {self.error}")
        if self.log_url:
            lines.append(f"log: {self.log_url}")
        return "\n".join(lines)

    def html(self) -> str:
        """The text as the e-mail's body (``SmtpNotifier`` sends HTML)."""
        return f"<pre>{html.escape(self.text())}</pre>"


def _first_line(error: object) -> str:
    """The error's first line, with every secret Airflow's masker knows of as ``***``."""
    from airflow.providers.common.compat.sdk import redact

    line = (str(error).strip().splitlines() or [""])[0][:300] if error else ""
    return str(redact(line))


def notice(context: Mapping[str, Any], status: str, date: str) -> Notice:
    """The notice for a task's context (what Airflow passes its callbacks)."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    return Notice(
        status=status,
        dag_id=str(getattr(dag_run, "dag_id", "") or getattr(ti, "dag_id", "")),
        date=date,
        task_id=str(getattr(ti, "task_id", "")),
        try_number=int(getattr(ti, "try_number", 0) or 0),
        log_url=str(getattr(ti, "log_url", "") or ""),
        error=_first_line(context.get("exception")) if status == FAILED else "",
    )


class DateNotifier(BaseNotifier):
    """The notices of the date of ``settings``, through the channels whose connection is
    defined: ``failed`` (``on_failure_callback``) tells of the failure and remembers the date
    failed; ``published`` (publish's ``on_success_callback``) tells of the recovery if the date
    had failed, once. ``sent`` is where the last notice went (``slack``, ``email``)."""

    def __init__(
        self,
        event: Event,
        settings: Settings,
        *,
        slack_conn_id: str = SLACK_CONN_ID,
        smtp_conn_id: str = SMTP_CONN_ID,
    ) -> None:
        super().__init__()
        self.event = event
        self.settings = settings
        self.slack_conn_id = slack_conn_id
        self.smtp_conn_id = smtp_conn_id
        self.sent: list[str] = []

    def notify(self, context: Any) -> None:
        self.sent = []
        if self.event == "failed":
            self._remember_failure()
            self.sent = self._send(context, FAILED)
        elif self._forget_failure():
            self.sent = self._send(context, RECOVERED)

    # --- the rule: the date's failure, remembered beside the lake ------------------------------

    def _marker(self) -> tuple[Any, str]:
        from processing.app.context import destination

        fs, layout, _ = destination(self.settings)
        return fs, layout.failure_marker(self.settings.date)

    @property
    def date(self) -> str:
        return self.settings.date.isoformat()

    def _remember_failure(self) -> None:
        from processing.adapters.storage import put_bytes

        try:
            fs, marker = self._marker()
            put_bytes(fs, marker, b"")
        except Exception as e:  # the notice matters more than the marker
            log.warning("could not record the failure of %s: %s", self.date, e)

    def _forget_failure(self) -> bool:
        """Whether the date had failed (and the marker is gone now)."""
        try:
            fs, marker = self._marker()
            if not fs.exists(marker):
                return False
            fs.rm_file(marker)
        except Exception as e:
            log.warning("could not check the failures of %s: %s", self.date, e)
            return False
        return True

    # --- the channels: Airflow's notifiers -------------------------------------------------------

    def _channels(self) -> list[str]:
        """The channels whose connection is defined. Fetching a connection registers its secrets
        with Airflow's masker: done before the notice's text is made."""
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        channels = []
        for channel, conn_id in (("slack", self.slack_conn_id), ("email", self.smtp_conn_id)):
            try:
                BaseHook.get_connection(conn_id)
            except AirflowNotFoundException:
                log.info("no %s notices: the Airflow connection %r is not defined", channel,
                         conn_id)  # fmt: skip
                continue
            except Exception as e:
                log.warning("no %s notices: the Airflow connection %r cannot be read: %s",
                            channel, conn_id, type(e).__name__)  # fmt: skip
                continue
            if channel == "email" and not self.settings.notify_email_to:
                log.warning("no e-mail notices: the connection %r is defined but no recipients "
                            "(PROCESSING_NOTIFY_EMAIL_TO)", conn_id)  # fmt: skip
                continue
            channels.append(channel)
        if not channels:
            log.warning("the notice reaches no one: define the Airflow connection %r or %r (README,"
                        " Monitoring)", self.slack_conn_id, self.smtp_conn_id)  # fmt: skip
        return channels

    def _notifier(self, channel: str, notice_: Notice) -> BaseNotifier:
        if channel == "slack":
            from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

            return SlackWebhookNotifier(
                slack_webhook_conn_id=self.slack_conn_id,
                text=notice_.text(),
                timeout=TIMEOUT_SECONDS,
            )
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        return SmtpNotifier(  # the sender: the connection's extra "from_email"
            to=str(self.settings.notify_email_to),
            subject=notice_.subject,
            html_content=notice_.html(),
            smtp_conn_id=self.smtp_conn_id,
        )

    def _send(self, context: Any, status: str) -> list[str]:
        """Send to every channel that is defined; return where it went."""
        from airflow.providers.common.compat.sdk import redact

        channels = self._channels()
        notice_ = notice(context, status, self.date)
        sent = []
        for channel in channels:
            try:  # notify(), not __call__: the error's text is sent as is, never as a template
                self._notifier(channel, notice_).notify(context)
                sent.append(channel)
            except Exception as e:
                first = (str(e).strip().splitlines() or [""])[0][:300]
                log.warning("could not send the notice %s: %s: %s",
                            "to Slack" if channel == "slack" else "by e-mail",
                            type(e).__name__, redact(first))  # fmt: skip
        return sent
