"""``expire`` on S3 (moto's server): the sample day published twice, then expired whole; the
dry run lists exactly the objects ``expire`` then deletes, and the date's lock goes too."""

from __future__ import annotations

import datetime as dt

import pytest

from processing.app.cli import main
from tests.s3.conftest import cli_env, objects, s3_flags

pytestmark = pytest.mark.slow

DATE = dt.date(2023, 10, 23)


def test_expire_on_s3_removes_exactly_what_its_dry_run_lists(
    cli, capsys, s3, s3_server, bucket: str
) -> None:
    endpoint = s3_server.endpoint_url
    dest = f"s3://{bucket}/lake"
    for _ in range(2):
        done = cli("run", "--date", DATE, "--source", "data/sample_day.jsonl.gz", "--dest", dest,
                   "--workers", "1", "--no-performance-report", *s3_flags(endpoint),
                   env=cli_env(endpoint))  # fmt: skip
        assert done.returncode == 0, done.stderr
    s3.pipe_file(f"{bucket}/lake/_alerts/event_date={DATE}.failed", b"{}")
    s3.pipe_file(f"{bucket}/lake/_erasures/erasure-1.json", b"{}")
    before = objects(s3, f"{bucket}/lake")
    keep = str((dt.datetime.now(dt.UTC).date() - DATE).days - 1)  # the date is 1 day past it
    argv = ["expire", "--dest", dest, "--keep-days", keep, *s3_flags(endpoint)]

    assert main([*argv, "--dry-run"]) == 0
    listed = {
        line.removeprefix(f"{bucket}/lake/")
        for line in capsys.readouterr().out.splitlines()
        if line.startswith(f"{bucket}/")
    }
    assert objects(s3, f"{bucket}/lake") == before
    assert main(argv) == 0
    assert f"{DATE}: expired whole" in capsys.readouterr().out
    after = objects(s3, f"{bucket}/lake")
    assert set(before) - set(after) == listed
    assert set(after) == {"_erasures/erasure-1.json"}  # no lock, no guard: S3 has none
