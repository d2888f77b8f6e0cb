"""Pseudonymised ids and ``forget`` on S3 (moto's server, through s3fs): the sample day published
twice with a key, then a user forgotten; no raw id in any object, none of the user's rows left
(published or kept), every other row as it was, verify passes; then a forget killed before each kind
of its storage steps on S3 leaves the date before or after, and the same forget finishes it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from processing.app.cli import main
from processing.app.forget import forget
from processing.logic.pseudonymise import pseudonym
from processing.spec.settings import Settings
from tests.faults.storage_steps import after_its_lock_expired, killed_before, steps_of
from tests.s3.conftest import cli_env, objects, s3_flags

pytestmark = pytest.mark.slow

DATE = dt.date(2023, 10, 23)
KEY = bytes(range(100, 132))
RAW_ID = re.compile(rb"user_\d{7}|u{300}")
FORGOTTEN = ["user_0000004", "user_0000150"]


def _published(s3, root: str, only: set[str] | None = None) -> Counter[str]:
    """Every published row (through the manifest) as a hash of its values; only those of the
    users ``only`` (pseudonyms), if given."""
    manifest = json.loads(s3.cat_file(f"{root}/events/event_date={DATE}/_manifest.json"))
    rows: Counter[str] = Counter()
    for entry in manifest["files"]:
        with s3.open(f"{root}/{entry['dataset']}/event_date={DATE}/{entry['path']}", "rb") as f:
            for row in pq.ParquetFile(f).read().to_pylist():
                if only is None or _user_of(row) in only:
                    text = json.dumps(row, sort_keys=True, default=str).encode()
                    rows[hashlib.sha256(text).hexdigest()] += 1
    return rows


def _user_of(row: dict) -> str | None:
    if "user_id" in row:
        return row["user_id"]
    ids = orjson.loads(row["source_record"]).get("user_identifiers")
    return ids.get("id") if isinstance(ids, dict) else None


def _theirs(s3, root: str, hashed: set[str]) -> Counter[str]:
    """The published rows of the forgotten users."""
    return _published(s3, root, only=hashed)


@pytest.fixture
def keyed_lake(cli, s3, s3_server, bucket: str, tmp_path: Path) -> tuple[str, Path]:
    endpoint = s3_server.endpoint_url
    key = tmp_path / "key"
    key.write_bytes(KEY)
    for _ in range(2):
        done = cli(
            "run",
            "--date",
            DATE,
            "--source",
            "data/sample_day.jsonl.gz",
            "--dest",
            f"s3://{bucket}/lake",
            "--workers",
            "1",
            "--no-performance-report",
            "--user-id-key-file",
            key,
            *s3_flags(endpoint),
            env=cli_env(endpoint),
        )
        assert done.returncode == 0, done.stderr
    return f"{bucket}/lake", key


def test_forget_on_s3_then_killed_before_each_step(s3, s3_server, keyed_lake, tmp_path, capsys):
    """Both on one lake (its runs are most of the time): a whole forget, then from the same
    snapshot a forget killed before each storage step and finished by the same forget again."""
    root, key = keyed_lake
    snapshot = tmp_path / "snapshot"
    s3.get(root, str(snapshot), recursive=True)  # the lake as it was, to start each attempt
    for name in s3.find(root):  # no raw id in any object, published or kept
        data = s3.cat_file(name)
        if name.endswith(".parquet"):
            data = json.dumps(
                pq.ParquetFile(s3.open(name, "rb")).read().to_pylist(), default=str
            ).encode()
        assert not RAW_ID.search(data), name
    hashed = {pseudonym(i, KEY) for i in FORGOTTEN}
    before, theirs = _published(s3, root), _theirs(s3, root, hashed)
    assert theirs
    request = tmp_path / "forget.txt"
    request.write_text("\n".join(FORGOTTEN))
    bucket = root.split("/", 1)[0]  # the request from a prefix outside the lake, as a Job reads it
    s3.pipe_file(f"{bucket}/requests/forget.txt", request.read_bytes())
    argv = [
        "forget",
        "--dest",
        f"s3://{root}",
        "--user-ids",
        f"s3://{bucket}/requests/forget.txt",
        "--user-id-key-file",
        str(key),
        *s3_flags(s3_server.endpoint_url),
    ]

    assert main(argv) == 0
    assert f"{DATE}: removed" in capsys.readouterr().out
    assert _published(s3, root) == before - theirs
    assert not _theirs(s3, root, hashed)
    assert not any(k.startswith("_previous/") for k in objects(s3, root))
    assert (
        main(["verify", "--dest", f"s3://{root}", "--all", *s3_flags(s3_server.endpoint_url)]) == 0
    )
    log = [k for k in objects(s3, root) if k.startswith("_erasures/")]
    assert len(log) == 1 and not RAW_ID.search(s3.cat_file(f"{root}/{log[0]}"))
    _killed_before_each_step(s3, s3_server, root, key, snapshot, request)


def _killed_before_each_step(s3, s3_server, root: str, key: Path, snapshot: Path, request: Path):
    s3.rm(root, recursive=True)
    s3.put(str(snapshot) + "/", root, recursive=True)
    base = objects(s3, root)
    hashed = {pseudonym(i, KEY) for i in FORGOTTEN}
    before = _published(s3, root)
    after = before - _theirs(s3, root, hashed)
    settings = Settings.load(
        {},
        required=(),
        dest=f"s3://{root}",
        user_id_key_file=str(key),
        s3_endpoint_url=s3_server.endpoint_url,
    )
    steps = steps_of(lambda: forget(settings, str(request)))
    assert len(steps) > 5
    # every step is killed before on a local disk (tests/integration/test_data_protection.py);
    # here the first of each kind of step, and the last
    chosen = sorted({steps.index(name) for name in steps} | {len(steps) - 1})
    for k in chosen:
        s3.rm(root, recursive=True)
        s3.put(str(snapshot) + "/", root, recursive=True)
        assert set(objects(s3, root)) == set(base)
        killed_before(k, lambda: forget(settings, str(request)))
        assert _published(s3, root) in (before, after), f"killed before step {k} ({steps[k]})"
        after_its_lock_expired(lambda: forget(settings, str(request)))
        assert _published(s3, root) == after, f"resumed after step {k}"
        assert not any(k.startswith("_previous/") for k in objects(s3, root))
