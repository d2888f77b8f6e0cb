"""The S3 destination failing as configuration or as the network: no credentials is exit 2 with
what to fix (no retry), a store that goes away in the middle of a run is exit 75 (retry), each
as one line, never "a bug"."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from processing.emulator.s3 import S3Server
from tests.conftest import ROOT
from tests.s3.conftest import CREDENTIALS, client_fs

pytestmark = pytest.mark.slow

DATE = "2023-10-23"


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PROCESSING_", "AWS_")) and k != "PYTHONPATH"
    }
    return {**env, "PYTHONPATH": str(ROOT), "AWS_DEFAULT_REGION": "us-east-1", **extra}


def test_no_aws_credentials_is_a_configuration_error(
    tmp_path: Path, s3_server: S3Server, bucket: str
) -> None:
    nowhere = str(tmp_path / "none")
    env = _env(
        AWS_CONFIG_FILE=nowhere,
        AWS_SHARED_CREDENTIALS_FILE=nowhere,
        AWS_EC2_METADATA_DISABLED="true",
    )
    done = subprocess.run(
        [sys.executable, "-m", "processing", "run", "--date", DATE,
         "--source", "data/sample_day.jsonl.gz", "--dest", f"s3://{bucket}/lake",
         "--s3-endpoint-url", s3_server.endpoint_url],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "no usable AWS credentials" in last
    assert "AWS_ACCESS_KEY_ID" in last  # what to set
    assert "Traceback" not in done.stderr


def test_a_store_that_goes_away_during_a_run_is_transient(generate, tmp_path: Path) -> None:
    big = generate("big.parquet", DATE, 300_000, bad=0.01, seed=4)
    server = S3Server()
    endpoint = server.start()
    try:
        client_fs(endpoint).call_s3("create_bucket", Bucket="going")
        s3 = client_fs(endpoint)
        proc = subprocess.Popen(
            [sys.executable, "-m", "processing", "run", "--date", DATE, "--source", str(big),
             "--dest", "s3://going/lake", "--s3-endpoint-url", endpoint, "--workers", "1",
             "--threads-per-worker", "1", "--piece-rows", "15000", "--batch-rows", "15000",
             "--s3-max-attempts", "2", "--no-performance-report"],
            cwd=ROOT, env=_env(**CREDENTIALS), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        staging = f"going/lake/_staging/event_date={DATE}"
        deadline = time.monotonic() + 120
        while not (s3.exists(staging) and any(p.endswith(".parquet") for p in s3.find(staging))):
            assert proc.poll() is None and time.monotonic() < deadline, "never staged a file"
            time.sleep(0.05)
    finally:
        server.stop()  # the store goes away in the middle of the run
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 75, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "a bug" not in last, last
