"""Run metrics against a real Pushgateway: a run pushes what its manifest says, a failed run
adds its failure without erasing the date's last success, and a Pushgateway that is down does
not stop a run. A Pushgateway behind basic auth takes the credentials from the URL or from a
password file, and no log line ever shows the password."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import processing
from processing.adapters import metrics_push
from processing.logic.run_metrics import JOB, Sample
from tests.conftest import DATA
from tests.monitoring.conftest import BINARY, free_port, scrape

pytestmark = pytest.mark.slow

DATE = "2023-10-23"


def _group(metrics, name: str, **labels: str) -> float:
    key = frozenset({"job": JOB, "date": DATE, "instance": "", **labels}.items())
    return metrics[(name, key)]


def test_a_run_pushes_its_manifest_and_a_failure_keeps_the_last_success(
    cli, pushgateway: str, tmp_path: Path
) -> None:
    dest = tmp_path / "lake"
    before = time.time()
    done = cli("run", "--date", DATE, "--source", DATA / "sample_day.jsonl.gz", "--dest", dest,
               "--workers", "1", "--pushgateway", pushgateway)  # fmt: skip
    assert done.returncode == 0, done.stderr
    m = processing.read_manifest(str(dest), dt.date.fromisoformat(DATE))
    assert m is not None
    metrics = scrape(pushgateway)
    assert _group(metrics, "events_lake_rows", outcome="read") == m["rows_read"]
    assert _group(metrics, "events_lake_rows", outcome="valid") == m["rows_valid"]
    assert _group(metrics, "events_lake_rows", outcome="rejected") == m["rows_rejected"]
    assert _group(metrics, "events_lake_rejected_share") == pytest.approx(m["rejected_share"])
    assert _group(metrics, "events_lake_bytes_written") == m["bytes_written"]
    assert _group(metrics, "events_lake_bytes_read") == m["bytes_read"]
    assert m["bytes_read"] == (DATA / "sample_day.jsonl.gz").stat().st_size
    assert _group(metrics, "events_lake_files") == len(m["files"])
    for reason, n in m["rejected_by_reason"].items():
        assert _group(metrics, "events_lake_rejected_rows", reason=reason) == n
    for name, n in m["valid_by_event"].items():
        assert _group(metrics, "events_lake_valid_rows", event_name=name) == n
    for stage in ("plan", "process", "audit", "publish"):
        assert _group(metrics, "events_lake_stage_seconds", stage=stage) >= 0
    success = _group(metrics, "events_lake_last_success_timestamp_seconds")
    assert before <= success <= time.time()
    assert _group(metrics, "events_lake_published_run_info", run_id=m["run_id"]) == 1

    bad = DATA / "bad_records.jsonl"  # too many rejected rows: the audit fails
    failed = cli("run", "--date", DATE, "--source", bad, "--dest", dest, "--workers", "1",
                 "--pushgateway", pushgateway)  # fmt: skip
    assert failed.returncode == 4, failed.stderr
    metrics = scrape(pushgateway)
    assert _group(metrics, "events_lake_last_failure_timestamp_seconds") >= success
    assert _group(metrics, "events_lake_last_failure_info", error="AuditError") == 1
    assert _group(metrics, "events_lake_last_success_timestamp_seconds") == success  # kept


def test_a_pushgateway_that_is_down_does_not_stop_the_run(cli, tmp_path: Path) -> None:
    done = cli("run", "--date", DATE, "--source", DATA / "sample_day.jsonl.gz",
               "--dest", tmp_path / "lake", "--workers", "1",
               "--pushgateway", "http://127.0.0.1:9")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "could not push the run's metrics" in done.stderr


def test_the_volume_against_the_week_before_is_pushed_as_the_report_says(
    cli, generate, pushgateway: str, tmp_path: Path
) -> None:
    dest = tmp_path / "lake"
    week_ago = (dt.date.fromisoformat(DATE) - dt.timedelta(7)).isoformat()
    for date, rows in ((week_ago, 3_000), (DATE, 1_200)):
        done = cli("run", "--date", date, "--source", generate(f"{date}.jsonl.gz", date, rows),
                   "--dest", dest, "--workers", "1", "--no-performance-report",
                   "--pushgateway", pushgateway)  # fmt: skip
        assert done.returncode == 0, done.stderr
    m = processing.read_manifest(str(dest), dt.date.fromisoformat(DATE))
    assert m is not None
    entry = next(e for e in m["reports"] if e["kind"] == "quality_json")
    report = json.loads((dest / "events" / f"event_date={DATE}" / entry["path"]).read_text())
    metrics = scrape(pushgateway)
    ratio = _group(metrics, "events_lake_volume_ratio", baseline="same_weekday")
    assert ratio == report["comparison"]["volume"]["same_weekday"]["ratio"] == 0.4
    # one day of history is too few for a trailing mean: no sample, rather than a wrong one
    assert not [k for k in metrics if k[0] == "events_lake_volume_ratio"
                and ("baseline", "trailing_mean") in k[1]]  # fmt: skip


USER = "pusher"
PASSWORD = "pushgateway-s3cret"
#: bcrypt of PASSWORD (cost 4, for speed), as the Pushgateway's web config wants it
PASSWORD_HASH = "$2b$04$gF6PEe5QZ1yAERtWUQ780OUtso/sfbtM8oJ7GbFRj1LGWAHqk/iqS"
SAMPLES = [Sample("events_lake_rows", "rows", 42.0, {"outcome": "read"})]


def _authorized(url: str, user: str = USER, password: str = PASSWORD) -> urllib.request.Request:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})


@pytest.fixture
def secured_pushgateway(tmp_path: Path) -> Iterator[str]:
    """A real Pushgateway that takes nothing without USER and PASSWORD (basic auth); its
    address as host:port."""
    binary = shutil.which(BINARY)
    assert binary, f"{BINARY} is needed (./dev installs Debian's package; or apt-get install it)"
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  {USER}: '{PASSWORD_HASH}'\n")
    address = f"127.0.0.1:{free_port()}"
    log_file = tmp_path / "pushgateway.log"
    proc = subprocess.Popen(
        # no persistence: Debian's default file is shared by every Pushgateway of the machine
        [binary, f"--web.listen-address={address}", f"--web.config.file={config}",
         "--persistence.file="],
        stdout=subprocess.DEVNULL, stderr=log_file.open("w"),
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(_authorized(f"http://{address}/-/ready"), timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        assert proc.poll() is None, log_file.read_text()
        assert time.monotonic() < deadline, "the Pushgateway did not become ready"
        time.sleep(0.1)
    yield address
    proc.terminate()
    proc.wait(timeout=10)


def _pushed_rows(address: str) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(_authorized(f"http://{address}/metrics"), timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "events_lake_rows" and s.labels.get("date") == DATE:
                return s.value
    return None


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


def test_credentials_in_the_url_reach_a_pushgateway_that_requires_them(
    secured_pushgateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    date = dt.date.fromisoformat(DATE)
    caplog.set_level(logging.INFO, logger=metrics_push.__name__)
    assert not metrics_push.push(f"http://{secured_pushgateway}", date, SAMPLES, replace=True)
    assert _pushed_rows(secured_pushgateway) is None  # the server does require them
    url = f"http://{USER}:{PASSWORD}@{secured_pushgateway}"
    assert metrics_push.push(url, date, SAMPLES, replace=True)
    assert _pushed_rows(secured_pushgateway) == 42.0
    logged = _logged(caplog)
    assert f"to http://***@{secured_pushgateway}" in logged
    assert PASSWORD not in logged and USER not in logged


def test_the_password_can_come_from_a_file(
    secured_pushgateway: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "pushgateway-password"
    secret.write_text(PASSWORD + "\n")  # as a Kubernetes Secret or `echo` leaves it
    date = dt.date.fromisoformat(DATE)
    caplog.set_level(logging.INFO, logger=metrics_push.__name__)
    url = f"http://{USER}@{secured_pushgateway}"
    assert metrics_push.push(url, date, SAMPLES, replace=True, password_file=str(secret))
    assert _pushed_rows(secured_pushgateway) == 42.0
    assert PASSWORD not in _logged(caplog)
    # a password file without a user name to go with it, or one that cannot be read: a warning
    for gateway, path in ((f"http://{secured_pushgateway}", secret), (url, tmp_path / "none")):
        caplog.clear()
        assert not metrics_push.push(gateway, date, SAMPLES, replace=True, password_file=str(path))
        assert "could not push" in _logged(caplog)


@pytest.mark.parametrize(
    "gateway",
    [
        pytest.param("http://{user}:wrong-{password}@{address}", id="refused"),
        pytest.param("http://{user}:{password}@127.0.0.1:9", id="down"),
        pytest.param("{user}:{password}@127.0.0.1:9", id="no-scheme"),
        pytest.param("http://{user}:{password}@[127.0.0.1", id="malformed"),
        pytest.param("http://{user}:{password}@{address}/a b", id="space-in-path"),
    ],
)
def test_a_failed_push_never_shows_the_password(
    secured_pushgateway: str, caplog: pytest.LogCaptureFixture, gateway: str
) -> None:
    url = gateway.format(user=USER, password=PASSWORD, address=secured_pushgateway)
    caplog.set_level(logging.INFO, logger=metrics_push.__name__)
    assert not metrics_push.push(url, dt.date.fromisoformat(DATE), SAMPLES, replace=False)
    logged = _logged(caplog)
    assert "could not push the run's metrics to the Pushgateway http://***@" in logged
    assert PASSWORD not in logged


def test_an_error_that_quotes_the_url_is_shown_redacted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """urllib and prometheus_client may put the whole URL in their messages."""
    import prometheus_client.exposition

    url = f"https://{USER}:{PASSWORD}@push.example.com"

    def fail(url_: str, *args: object, **kwargs: object) -> None:
        raise OSError(f"cannot open {url}/metrics/job/{JOB} (as {url_})")

    monkeypatch.setattr(prometheus_client.exposition, "default_handler", fail)
    caplog.set_level(logging.INFO, logger=metrics_push.__name__)
    assert not metrics_push.push(url, dt.date.fromisoformat(DATE), SAMPLES, replace=True)
    logged = _logged(caplog)
    assert "https://***@push.example.com" in logged
    assert "cannot open" in logged
    assert PASSWORD not in logged
