"""The paths a run is given, through the CLI: a source directory with symbolic links publishes
each row once or names the link that leads nowhere; a URL missing the "//" after its scheme is
refused before anything is written."""

from __future__ import annotations

import datetime as dt
import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import processing
from tests.conftest import _cli_env, tree_digest
from tests.integration.conftest import ROOT

pytestmark = pytest.mark.slow

DATE = "2023-10-23"
SAMPLE = ROOT / "data" / "sample_day.jsonl.gz"


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_link_to_a_file_of_the_source_directory_publishes_its_rows_once(
    cli, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(SAMPLE, source / "day.jsonl.gz")
    (source / "again.jsonl.gz").symlink_to("day.jsonl.gz")
    dest = tmp_path / "lake"
    done = cli("run", "--date", DATE, "--source", source, "--dest", dest, "--workers", "1")
    assert done.returncode == 0, done.stderr
    manifest = processing.read_manifest(str(dest), dt.date.fromisoformat(DATE))
    assert manifest is not None
    with gzip.open(SAMPLE, "rt") as f:
        lines = sum(1 for line in f if line.strip())
    assert manifest["rows_read"] == lines == manifest["rows_valid"] + manifest["rows_rejected"]
    published = processing.events_dataset(str(dest)).count_rows()
    assert published == manifest["rows_valid"]
    assert "again.jsonl.gz is the same file as" in done.stderr


def test_a_link_to_nothing_in_the_source_directory_is_an_input_error(cli, tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(SAMPLE, source / "day.jsonl.gz")
    (source / "late.jsonl.gz").symlink_to(tmp_path / "not-yet-copied.jsonl.gz")
    dest = tmp_path / "lake"
    done = cli("run", "--date", DATE, "--source", source, "--dest", dest, "--workers", "1")
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    [line] = _error_lines(done.stderr)
    assert str(source / "late.jsonl.gz") in line
    assert str(tmp_path / "not-yet-copied.jsonl.gz") in line
    assert not (dest / "events").exists()


@pytest.mark.parametrize("flag", ["--dest", "--source"])
def test_a_url_with_one_slash_is_refused_and_nothing_is_written(flag: str, tmp_path: Path) -> None:
    """Run from tmp_path, so that a local folder named "s3:" would show up there."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(SAMPLE, work / "day.jsonl.gz")
    paths = {"--source": "day.jsonl.gz", "--dest": "lake"} | {flag: "s3:/bucket/x"}
    before = tree_digest(work)
    done = subprocess.run(
        [sys.executable, "-m", "processing", "run", "--date", DATE, "--workers", "1",
         *(item for pair in paths.items() for item in pair)],
        cwd=work, env=_cli_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [line] = _error_lines(done.stderr)
    assert "did you mean 's3://bucket/x'?" in line
    assert not list(work.rglob("s3:*"))
    if flag == "--dest":  # refused before anything is written
        assert sorted(p.name for p in work.iterdir()) == ["day.jsonl.gz"]
        assert tree_digest(work) == before
    else:  # the source is opened once the date is locked: nothing published, no lock left
        assert not (work / "lake" / "events").exists()
        assert not (work / "lake" / "_locks" / f"event_date={DATE}.json").exists()
