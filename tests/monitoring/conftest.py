"""A real Prometheus Pushgateway (Debian's prometheus-pushgateway, installed by ./dev) on a free
port of 127.0.0.1, for the tests' runs to push to and the tests to scrape."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest

BINARY = "prometheus-pushgateway"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pushgateway(tmp_path) -> Iterator[str]:
    binary = shutil.which(BINARY)
    assert binary, f"{BINARY} is needed (./dev installs Debian's package; or apt-get install it)"
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        # no persistence file: Debian's default one is shared by every gateway on the machine
        [binary, f"--web.listen-address={address}", "--persistence.file="],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "pushgateway.log").open("w"),
    )  # fmt: skip
    url = f"http://{address}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        assert proc.poll() is None, (tmp_path / "pushgateway.log").read_text()
        assert time.monotonic() < deadline, "the Pushgateway did not become ready"
        time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """(metric name, labels) -> value of what the Pushgateway exposes."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
