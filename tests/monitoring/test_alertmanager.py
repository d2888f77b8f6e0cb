"""The Alertmanager configuration: valid for amtool, and routing each severity where the README
says (pages to PagerDuty and Slack, warnings to Slack and e-mail), with secrets only in files."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT

CONFIG = ROOT / "deploy" / "kubernetes" / "monitoring" / "alertmanager.yml"
SECRETS = ROOT / "deploy" / "kubernetes" / "monitoring" / "alertmanager-secrets.yaml"


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    amtool = shutil.which("amtool")
    assert amtool, "amtool is needed (./dev installs Debian's prometheus-alertmanager)"
    return subprocess.run([amtool, *args], capture_output=True, text=True, check=False)


def test_the_configuration_is_valid() -> None:
    done = _amtool("check-config", str(CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["severity=page", "alertname=EventsLakeYesterdayNotPublished"],
         {"pagerduty-on-call", "slack-data-platform"}),
        (["severity=warning", "alertname=EventsLakeRunFailed"],
         {"slack-data-platform", "email-data-platform"}),
        (["severity=info"], {"slack-data-platform"}),
    ],
)  # fmt: skip
def test_each_severity_reaches_its_receivers(labels: list[str], receivers: set[str]) -> None:
    done = _amtool("config", "routes", "test", f"--config.file={CONFIG}", *labels)
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(done.stdout.strip().split(",")) == receivers


def test_secrets_are_files_with_mock_templates() -> None:
    config = CONFIG.read_text()
    for secret in ("api_url:", "routing_key:", "service_key:", "auth_password:"):
        assert secret not in config  # only the *_file forms
    template = yaml.safe_load(SECRETS.read_text())
    files = {
        line.split("/etc/alertmanager/secrets/", 1)[1].strip()
        for line in config.splitlines()
        if "/etc/alertmanager/secrets/" in line and not line.lstrip().startswith("#")
    }
    assert files == set(template["stringData"])
    assert all("MOCK" in v for v in template["stringData"].values())
