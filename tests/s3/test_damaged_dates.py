"""A damaged published date never wedges: `verify` and `gc` say what is wrong, the next run
replaces the date with a warning naming the damage, the previous version is never deleted before
its replacement is in place, and a rollback and `verify` then work. Through the CLI, on a local
disk and on moto's S3 server."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import processing
from processing.adapters.date_lock import Holder, Intent
from processing.adapters.storage import filesystem
from processing.logic.layout import Layout
from tests.conftest import DATA, ROOT
from tests.s3.conftest import CREDENTIALS

pytestmark = pytest.mark.slow

DATE = "2023-10-23"
DAY = dt.date.fromisoformat(DATE)
SAMPLE = DATA / "sample_day.jsonl.gz"


def _cli(*args: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROCESSING_")}
    env |= {**CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "processing", *map(str, args)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def _damage(kind: str, fs: Any, layout: Layout) -> str:
    """Damage the published version of DATE as ``kind`` says; return what the run must say."""
    manifest = json.loads(fs.cat_file(layout.manifest(DAY)))
    first = f"{layout.events_date(DAY)}/{manifest['files'][0]['path']}"
    if kind == "file-deleted":  # a lifecycle rule, a person
        fs.rm_file(first)
        return "is missing"
    if kind == "file-truncated":
        data = fs.cat_file(first)
        fs.rm_file(first)  # (not in place: a local disk's hard links share the kept copy)
        fs.pipe_file(first, data[: len(data) // 2])
        return "bytes, its manifest says"
    if kind == "manifest-deleted":
        fs.rm_file(layout.manifest(DAY))
        return "published files but no manifest"
    assert kind == "intent-orphaned"  # a publish left open in the lock, its staging gone
    never = dt.datetime(2000, 1, 1, tzinfo=dt.UTC).isoformat()
    holder = Holder(
        "dead-run", "elsewhere", 1, never, never, "t", "", Intent("dead-run", "p", "0" * 8)
    )
    fs.pipe_file(layout.lock(DAY), holder.encode())
    return "abandoned the interrupted publish of dead-run"


@pytest.mark.parametrize(
    ("backend", "kind"),
    [
        ("local", "file-deleted"),
        ("local", "file-truncated"),
        ("local", "manifest-deleted"),
        ("local", "intent-orphaned"),
        ("s3", "file-deleted"),
        ("s3", "manifest-deleted"),
    ],
)
def test_a_damaged_date_is_reported_then_replaced_by_the_next_run(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, kind: str
) -> None:
    if backend == "local":
        dest, flags, options = str(tmp_path / "lake"), [], {}
    else:
        endpoint = request.getfixturevalue("s3_server").endpoint_url
        dest = f"s3://{request.getfixturevalue('bucket')}/lake"
        flags, options = ["--s3-endpoint-url", endpoint], {"endpoint_url": endpoint}
    run = ["run", "--date", DATE, "--source", SAMPLE, "--dest", dest, "--workers", "1",
           "--no-performance-report", *flags]  # fmt: skip
    for run_id in ("v1", "v2"):
        assert _cli(*run, "--run-id", run_id).returncode == 0
    fs, root = filesystem(dest, options)
    layout = Layout(root)
    said = _damage(kind, fs, layout)

    if kind != "intent-orphaned":
        verified = _cli("verify", "--date", DATE, "--dest", dest, *flags)
        assert verified.returncode == 4, verified.stdout + verified.stderr
        assert "DAMAGED" in verified.stdout
        collected = _cli("gc", "--dest", dest, *flags)
        assert collected.returncode == 4 and "DAMAGED" in collected.stdout, collected.stdout

    replaced = _cli(*run, "--run-id", "v3")
    assert replaced.returncode == 0, replaced.stderr
    assert said in replaced.stdout, replaced.stdout  # the summary names what was repaired
    manifest = processing.read_manifest(dest, DAY, options)
    assert manifest is not None and manifest["run_id"] == "v3"
    verified = _cli("verify", "--date", DATE, "--dest", dest, *flags)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    rolled = _cli("rollback", "--date", DATE, "--dest", dest, *flags)
    assert rolled.returncode == 0, rolled.stderr
    kept = "v2" if kind == "intent-orphaned" else "v1"  # a damaged v2 was not kept
    assert f"run {kept} is published again" in rolled.stdout
    verified = _cli("verify", "--all", "--dest", dest, *flags)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"ok (run {kept}" in verified.stdout
