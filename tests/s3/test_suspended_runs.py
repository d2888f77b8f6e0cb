"""A whole CLI run (or rollback) stopped with SIGSTOP at a step of its publish, past its lock's
time to live, while a second run takes the date over and publishes; then resumed with SIGCONT.
On a local disk and on moto's S3 server. (``test_fencing.py`` covers every step in-process.)

After each case: the published date is exactly the second run's version (its manifest, its files,
their row counts: ``verify`` passes), the resumed run exits non-zero saying it lost its lock, and
the next run publishes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import processing
from tests.conftest import DATA, ROOT
from tests.s3.conftest import CREDENTIALS

pytestmark = pytest.mark.slow

DATE = "2023-10-23"
SAMPLE = DATA / "sample_day.jsonl.gz"
TTL = 2.0


@pytest.fixture
def where(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, list[str], dict]:
    """(dest, the flags every command needs, the storage options to read it back)."""
    if request.param == "local":
        return str(tmp_path / "lake"), [], {}
    server = request.getfixturevalue("s3_server")
    bucket = request.getfixturevalue("bucket")
    endpoint = server.endpoint_url
    return f"s3://{bucket}/lake", ["--s3-endpoint-url", endpoint], {"endpoint_url": endpoint}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROCESSING_")}
    return {**env, **CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1", "PYTHONPATH": str(ROOT)}


def _command(*args: Any, prefix: tuple[str, ...] = ("-m", "processing")) -> list[str]:
    return [sys.executable, *prefix, *map(str, args)]


def _cli(*args: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(*args), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip


def _run_args(dest: str, flags: list[str], run_id: str) -> list[str]:
    return [
        "run", "--date", DATE, "--source", SAMPLE, "--dest", dest, "--run-id", run_id,
        "--workers", "1", "--no-performance-report", *flags,
    ]  # fmt: skip


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def _suspend_at(operation: str, nth: int, args: list[str]) -> subprocess.Popen[str]:
    """Start a command that stops itself before the ``nth`` call of ``operation``; return once
    it is stopped."""
    proc = subprocess.Popen(
        _command(operation, nth, "--", *args, prefix=("-m", "tests.faults.suspend_at")),
        cwd=ROOT,
        env=_env(),
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("suspended before"):
            break
    else:
        raise AssertionError(f"it never reached {operation} #{nth}:\n{''.join(seen[-20:])}")
    deadline = time.monotonic() + 30
    while not _stopped(proc.pid):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return proc


def _published_files(dest: str, options: dict) -> set[str]:
    from processing.adapters.storage import filesystem

    fs, root = filesystem(dest, options)
    found = set()
    for dataset in ("events", "rejected"):
        top = f"{root}/{dataset}/event_date={DATE}"
        if fs.exists(top):
            found |= {p[len(top) + 1 :] for p in fs.find(top)}
    return found


def _check_second_published(dest: str, flags: list[str], options: dict) -> None:
    import datetime as dt

    manifest = processing.read_manifest(dest, dt.date.fromisoformat(DATE), options)
    assert manifest is not None and manifest["run_id"] == "second"
    listed = {f["path"] for f in manifest["files"]} | {r["path"] for r in manifest["reports"]}
    # the _SUCCESS marker may be gone: a suspended run's late delete of it (publish.py says so)
    assert _published_files(dest, options) - {"_SUCCESS"} == listed | {"_manifest.json"}
    verified = _cli("verify", "--date", DATE, "--dest", dest, *flags)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "ok (run second" in verified.stdout


#: Every case on a local disk; on S3 (slower: each case is seven CLI runs) the issue's case and the
#: rollback's, which differ there in kind (conditional requests, not a guarded flock).
#: ``test_fencing.py`` pauses at every step on both.
CASES = [
    # the case: right after its last lock check, before deleting the old version's files
    *(
        pytest.param(where, "run", "delete", 2, id=f"{where}-run-after-its-last-check")
        for where in ("local", "s3")
    ),
    pytest.param("local", "run", "swap", 2, id="local-run-before-the-switch"),
    pytest.param("local", "run", "copy", 1, id="local-run-before-keeping-the-previous"),
    *(
        pytest.param(where, "rollback", "delete", 2, id=f"{where}-rollback-after-its-last-check")
        for where in ("local", "s3")
    ),
    # forget publishes the date without a request's rows: the same fencing, the same cases
    pytest.param("local", "forget", "swap", 2, id="local-forget-before-the-switch"),
    pytest.param("local", "forget", "delete", 2, id="local-forget-after-its-last-check"),
    pytest.param("s3", "forget", "delete", 2, id="s3-forget-after-its-last-check"),
]


@pytest.mark.parametrize(("where", "command", "operation", "nth"), CASES, indirect=["where"])
def test_a_run_suspended_past_its_lock_changes_nothing_when_resumed(
    where: tuple[str, list[str], dict], command: str, operation: str, nth: int, tmp_path: Path
) -> None:
    dest, flags, options = where
    for run_id in ("v1", "v2"):  # a published version, and one kept for a rollback
        done = _cli(*_run_args(dest, flags, run_id))
        assert done.returncode == 0, done.stderr

    if command == "run":
        args = _run_args(dest, [*flags, "--lock-ttl-seconds", str(TTL)], "first")
    elif command == "forget":
        request = tmp_path / "forget.txt"
        request.write_text("user_0000000\nuser_0000023\n")  # in every file of the sample
        args = ["forget", "--dest", dest, "--user-ids", request, "--lock-ttl-seconds", str(TTL),
                *flags]  # fmt: skip
    else:
        args = ["rollback", "--date", DATE, "--dest", dest, "--lock-ttl-seconds", str(TTL), *flags]
    first = _suspend_at(operation, nth, args)
    try:
        time.sleep(TTL + 0.5)  # its lock expires: nobody refreshes it
        second = _cli(*_run_args(dest, flags, "second"))
        assert second.returncode == 0, second.stderr
        assert "took over the lock" in second.stderr
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 4, stderr
    assert "this run lost its lock" in stderr.splitlines()[-1], stderr
    _check_second_published(dest, flags, options)

    third = _cli(*_run_args(dest, flags, "third"))
    assert third.returncode == 0, third.stderr
    verified = _cli("verify", "--date", DATE, "--dest", dest, *flags)
    assert verified.returncode == 0 and "ok (run third" in verified.stdout, verified.stdout


def test_a_run_suspended_while_merging_its_files_loses_its_staging_not_the_date(
    tmp_path: Path, generate
) -> None:
    """Before the publish: stopped while merging its small staged files, past its lock's TTL; the
    second run takes the date, clears that staging and publishes; the first resumes into a
    staging that is gone, and says it lost its lock."""
    dest = str(tmp_path / "lake")
    pieces = generate("day.jsonl", DATE, 40_000, seed=3)  # byte ranges: pieces to merge
    done = _cli(*_run_args(dest, [], "v1"))
    assert done.returncode == 0, done.stderr

    args = _run_args(dest, ["--lock-ttl-seconds", str(TTL), "--piece-rows", "4000"], "first")
    args[args.index("--source") + 1] = str(pieces)
    first = _suspend_at("merge_files", 1, args)
    try:
        time.sleep(TTL + 0.5)
        second = _cli(*_run_args(dest, [], "second"))
        assert second.returncode == 0, second.stderr
        assert "took over the lock" in second.stderr
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 4, stderr
    assert "this run lost its lock" in stderr.splitlines()[-1], stderr
    _check_second_published(dest, [], {})
