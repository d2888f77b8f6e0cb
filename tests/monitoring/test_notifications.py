"""Notices to people, against a local Slack-like webhook and a local SMTP server: what a failure
says (never a secret), that a recovery is reported once, and that a channel that is down does
not raise."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiosmtpd.controller import Controller

from processing.app import notify
from processing.spec.settings import Settings
from tests.monitoring.conftest import free_port


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


def _settings(tmp_path: Path, webhook_url: str | None, port: int | None) -> Settings:
    return Settings.load(
        {}, date=dt.date(2023, 10, 23), source="x", dest=str(tmp_path / "lake"),
        notify_slack_webhook=webhook_url, notify_email_to="oncall@example.com",
        smtp_host="127.0.0.1" if port else None, smtp_port=port or 25, smtp_starttls=False,
    )  # fmt: skip


def _context(error: str = "") -> dict:
    ti = SimpleNamespace(
        task_id="process", try_number=4, dag_id="events_daily",
        log_url="http://airflow.example.com/dags/events_daily/runs/r1/tasks/process?try_number=4",
    )  # fmt: skip
    return {"ti": ti, "dag_run": SimpleNamespace(dag_id="events_daily"), "exception": error}


def test_a_failure_notice_says_what_failed_and_never_a_secret(webhook, smtp, tmp_path) -> None:
    inbox, port = smtp
    settings = _settings(tmp_path, webhook.url, port)
    error = f"TransientError: the destination failed: POST {webhook.url} refused\nTraceback..."
    assert notify.on_failure(_context(error), settings) == ["slack", "email"]

    assert "SECRETTOKEN" not in repr(settings)  # settings never show their secrets
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
    assert "SECRETTOKEN" not in mail


def test_a_recovery_is_reported_once_after_a_failure(webhook, tmp_path) -> None:
    settings = _settings(tmp_path, webhook.url, None)
    assert notify.on_published(_context(), settings) == []  # never failed: nothing to say
    notify.on_failure(_context("InputError: corrupt"), settings)
    assert notify.on_published(_context(), settings) == ["slack"]
    assert "published again after a failure" in webhook.texts()[-1]
    assert notify.on_published(_context(), settings) == []  # once


def test_channels_that_are_down_are_warnings(tmp_path, caplog) -> None:
    settings = _settings(tmp_path, "http://127.0.0.1:9/hook/SECRETTOKEN", 9)
    assert notify.on_failure(_context("boom"), settings) == []
    assert "could not send the notice to Slack" in caplog.text
    assert "SECRETTOKEN" not in caplog.text
