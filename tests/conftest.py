"""Shared fixtures. Tests are organised by what they need: unit/ (pure logic, no I/O beyond
tmp files), integration/ (the CLI and a LocalCluster, subprocesses, notebooks)."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
SAMPLE_DATE = dt.date(2023, 10, 23)

# Airflow, wherever a test imports it: a throwaway home and sqlite database, the repository's
# DAGs, no examples. Set before anything imports Airflow, which reads them once.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="events-lake-airflow-")
os.environ.update(
    {
        "AIRFLOW_HOME": _AIRFLOW_HOME,
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    }
)


@pytest.fixture(autouse=True)
def _no_processing_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up the developer's own PROCESSING_* settings or cloud config."""
    import os

    for name in list(os.environ):
        if name.startswith(("PROCESSING_", "AWS_", "GOOGLE_APPLICATION_CREDENTIALS")):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sample_date() -> dt.date:
    return SAMPLE_DATE


CliRunner = Callable[..., subprocess.CompletedProcess[str]]


def _cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROCESSING_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def run_cli(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m processing ARGS`` and return the completed process (never raises)."""
    return subprocess.run(
        [sys.executable, "-m", "processing", *map(str, args)],
        cwd=ROOT,
        env={**_cli_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def cli() -> CliRunner:
    """Run ``python -m processing ARGS`` and return the completed process (never raises)."""
    return run_cli


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under root (empty if root does not exist)."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def random_events(rows: int, seed: int = 7):
    """Valid rows of one event name with random (incompressible) user ids, in random time order:
    about 20 bytes a row once written (``pyarrow.Table`` of the input schema)."""
    import numpy as np
    import pyarrow as pa

    from processing.spec import schema as s

    rng = np.random.default_rng(seed)
    start = np.datetime64("2023-10-23T00:00:00", "us")
    times = start + rng.integers(0, 86_400_000_000, rows).astype("timedelta64[us]")
    ids = [f"{x:032x}" for x in rng.integers(0, 2**63, rows)]
    return pa.table(
        {
            "timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
            "event_name": pa.array(["view"] * rows),
            "user_identifiers": pa.array(
                [{"platform": "web", "id": i} for i in ids], s.USER_IDENTIFIERS
            ),
            "product_information": pa.nulls(rows, s.PRODUCT_INFORMATION),
        }
    )


@pytest.fixture
def generate(cli: CliRunner, tmp_path: Path) -> Callable[..., Path]:
    def make(name: str, date: str, rows: int, bad: float = 0.0, seed: int = 0) -> Path:
        out = tmp_path / "input" / name
        done = cli(
            "generate",
            "--date",
            date,
            "--rows",
            rows,
            "--bad-fraction",
            bad,
            "--seed",
            seed,
            "--out",
            out,
        )
        assert done.returncode == 0, done.stderr
        return out

    return make


class Webhook:
    """A local HTTP server that records the JSON bodies POSTed to it (a Slack webhook)."""

    def __init__(self) -> None:
        import http.server
        import json
        import threading

        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/SECRETTOKEN"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def texts(self) -> list[str]:
        return [body["text"] for body in self.received]


@pytest.fixture
def webhook():
    server = Webhook()
    yield server
    server.server.shutdown()
