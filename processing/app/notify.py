"""Notices to people from the Airflow DAG: a task that failed, and a date that succeeded again
after a failure. To Slack (an incoming webhook) and by e-mail, as configured
(``PROCESSING_NOTIFY_*``, ``PROCESSING_SMTP_*``).

A notice says the DAG, the date, the task, the try, the log's link and the first line of the
error; never a secret: the webhook URL and the SMTP password are scrubbed from the text even if
an error message held them. Sending is best effort: a notice that cannot go out is a warning,
never a failed task. Whether a date failed before is kept beside the lake (``_alerts/``), so a
rerun in another DAG run still reports the recovery.
"""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from processing.adapters.storage import put_bytes
from processing.spec.settings import Settings

log = logging.getLogger(__name__)

FAILED, RECOVERED = "failed", "recovered"


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


def _first_line(error: object, secrets: list[str]) -> str:
    line = (str(error).strip().splitlines() or [""])[0][:300] if error else ""
    for secret in secrets:
        if secret:
            line = line.replace(secret, "***")
    return line


def notice(context: Mapping[str, Any], status: str, settings: Settings) -> Notice:
    """The notice for a task's context (what Airflow passes its callbacks)."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    secrets = [settings.notify_slack_webhook or "", settings.smtp_password or ""]
    return Notice(
        status=status,
        dag_id=str(getattr(dag_run, "dag_id", "") or getattr(ti, "dag_id", "")),
        date=settings.date.isoformat(),
        task_id=str(getattr(ti, "task_id", "")),
        try_number=int(getattr(ti, "try_number", 0) or 0),
        log_url=str(getattr(ti, "log_url", "") or ""),
        error=_first_line(context.get("exception"), secrets) if status == FAILED else "",
    )


def send(notice_: Notice, settings: Settings) -> list[str]:
    """Send to every configured channel; return where it went."""
    sent = []
    if settings.notify_slack_webhook:
        try:
            body = json.dumps({"text": notice_.text()}).encode()
            request = urllib.request.Request(
                settings.notify_slack_webhook,
                data=body,
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=10):
                pass
            sent.append("slack")
        except OSError as e:  # the URL is a secret: never in the message
            log.warning("could not send the notice to Slack: %s", type(e).__name__)
    if settings.notify_email_to and settings.smtp_host:
        message = EmailMessage()
        message["Subject"] = notice_.subject
        message["From"] = settings.smtp_from
        message["To"] = settings.notify_email_to
        message.set_content(notice_.text())
        try:
            with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
                if settings.smtp_starttls:
                    smtp.starttls()
                if settings.smtp_user:
                    smtp.login(settings.smtp_user, settings.smtp_password or "")
                smtp.send_message(message)
            sent.append("email")
        except (OSError, smtplib.SMTPException) as e:
            log.warning("could not send the notice by e-mail: %s", e)
    return sent


def _marker(settings: Settings) -> tuple[Any, str]:
    from processing.app.context import destination

    fs, layout, _ = destination(settings)
    return fs, f"{layout.root}/_alerts/event_date={settings.date.isoformat()}.failed"


def on_failure(context: Mapping[str, Any], settings: Settings) -> list[str]:
    """A task failed for good (after its retries): say so, and remember the date failed."""
    try:
        fs, marker = _marker(settings)
        put_bytes(fs, marker, b"")
    except Exception as e:  # the notice matters more than the marker
        log.warning("could not record the failure of %s: %s", settings.date, e)
    return send(notice(context, FAILED, settings), settings)


def on_published(context: Mapping[str, Any], settings: Settings) -> list[str]:
    """The date was published: if it had failed before, say it recovered."""
    try:
        fs, marker = _marker(settings)
        if not fs.exists(marker):
            return []
        fs.rm_file(marker)
    except Exception as e:
        log.warning("could not check the failures of %s: %s", settings.date, e)
        return []
    return send(notice(context, RECOVERED, settings), settings)
