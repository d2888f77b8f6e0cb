"""Notices to people, through Airflow's notifiers and Connections, against a local Slack-like
webhook and a local SMTP server: what a failure says (never a secret), that a recovery is
reported once, that a channel that is down does not raise, and that a channel without its
connection is skipped."""

from __future__ import annotations

import datetime as dt
import email
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiosmtpd.controller import Controller

from processing.app import notify
from processing.spec.settings import Settings
from tests.monitoring.conftest import free_port

SLACK_VARIABLE = f"AIRFLOW_CONN_{notify.SLACK_CONN_ID.upper()}"
SMTP_VARIABLE = f"AIRFLOW_CONN_{notify.SMTP_CONN_ID.upper()}"


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's API
        self.messages.append((envelope.rcpt_tos, envelope.content.decode()))
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def _connections(monkeypatch: pytest.MonkeyPatch, webhook_url: str | None, port: int | None):
    """The two Airflow Connections, as a deployment defines them: AIRFLOW_CONN_<ID> (JSON)."""
    for variable in (SLACK_VARIABLE, SMTP_VARIABLE):
        monkeypatch.delenv(variable, raising=False)
    if webhook_url:
        slack = {"conn_type": "slackwebhook", "password": webhook_url}
        monkeypatch.setenv(SLACK_VARIABLE, json.dumps(slack))
    if port:
        extra = {"from_email": "events-lake@localhost", "disable_ssl": True, "disable_tls": True,
                 "timeout": 10, "retry_limit": 0}  # fmt: skip
        smtp = {"conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": extra}
        monkeypatch.setenv(SMTP_VARIABLE, json.dumps(smtp))


def _settings(tmp_path: Path) -> Settings:
    return Settings.load(
        {}, date=dt.date(2023, 10, 23), source="x", dest=str(tmp_path / "lake"),
        notify_email_to="oncall@example.com",
    )  # fmt: skip


def _context(error: str = "") -> dict:
    ti = SimpleNamespace(
        task_id="process", try_number=4, dag_id="events_daily",
        log_url="http://airflow.example.com/dags/events_daily/runs/r1/tasks/process?try_number=4",
    )  # fmt: skip
    return {"ti": ti, "dag_run": SimpleNamespace(dag_id="events_daily"), "exception": error}


def _notify(event: notify.Event, settings: Settings, context: dict) -> list[str]:
    notifier = notify.DateNotifier(event, settings)
    notifier(context)  # as Airflow calls a callback
    return notifier.sent


def _body(mail: str) -> str:
    """The e-mail's text, decoded (it is sent as base64 HTML)."""
    parts = email.message_from_string(mail).walk()
    (text,) = [p for p in parts if p.get_content_maintype() == "text"]
    return text.get_payload(decode=True).decode()


def test_a_failure_notice_says_what_failed_and_never_a_secret(
    webhook, smtp, tmp_path, monkeypatch, caplog
) -> None:
    inbox, port = smtp
    _connections(monkeypatch, webhook.url, port)
    settings = _settings(tmp_path)
    error = f"TransientError: the destination failed: POST {webhook.url} refused\nTraceback..."
    assert _notify("failed", settings, _context(error)) == ["slack", "email"]

    assert "SECRETTOKEN" not in repr(settings)  # the secret is the connection's alone
    (text,) = webhook.texts()
    for expected in (
        "events_daily",
        "2023-10-23",
        "process failed",
        "try 4",
        "log: http://airflow.example.com/dags/events_daily",
        "TransientError",
    ):
        assert expected in text, expected  # fmt: skip
    assert "SECRETTOKEN" not in text and "Traceback" not in text
    ((recipients, mail),) = inbox.messages
    assert recipients == ["oncall@example.com"]
    assert "Subject: [events-lake] events_daily 2023-10-23: process failed" in mail
    body = _body(mail)
    assert "try 4" in body and "TransientError" in body
    assert "SECRETTOKEN" not in mail and "SECRETTOKEN" not in body
    assert "SECRETTOKEN" not in caplog.text


def test_an_error_is_sent_as_text_never_as_a_template(webhook, tmp_path, monkeypatch) -> None:
    _connections(monkeypatch, webhook.url, None)
    _notify("failed", _settings(tmp_path), _context("InputError: {{ 6 * 7 }} in a row"))
    assert "{{ 6 * 7 }}" in webhook.texts()[-1]  # Jinja would give conn.* and var.* away


def test_a_recovery_is_reported_once_after_a_failure(webhook, tmp_path, monkeypatch) -> None:
    _connections(monkeypatch, webhook.url, None)
    settings = _settings(tmp_path)
    assert _notify("published", settings, _context()) == []  # never failed: nothing to say
    _notify("failed", settings, _context("InputError: corrupt"))
    assert _notify("published", settings, _context()) == ["slack"]
    assert "published again after a failure" in webhook.texts()[-1]
    assert _notify("published", settings, _context()) == []  # once


def test_channels_that_are_down_are_warnings(tmp_path, monkeypatch, caplog) -> None:
    _connections(monkeypatch, "http://127.0.0.1:9/hook/SECRETTOKEN", 9)
    assert _notify("failed", _settings(tmp_path), _context("boom")) == []
    assert "could not send the notice to Slack" in caplog.text
    assert "could not send the notice by e-mail" in caplog.text
    assert "SECRETTOKEN" not in caplog.text


def test_a_channel_without_its_connection_is_skipped(webhook, tmp_path, monkeypatch, caplog):
    _connections(monkeypatch, webhook.url, None)
    caplog.set_level(logging.INFO, logger=notify.__name__)
    assert _notify("failed", _settings(tmp_path), _context("boom")) == ["slack"]
    assert f"no email notices: the Airflow connection '{notify.SMTP_CONN_ID}'" in caplog.text

    _connections(monkeypatch, None, None)
    assert _notify("failed", _settings(tmp_path), _context("boom")) == []
    assert "the notice reaches no one" in caplog.text
