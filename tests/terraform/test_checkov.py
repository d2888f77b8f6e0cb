"""checkov over deploy/terraform (both roots with the modules they call): no failed check, no
file it cannot parse, and every skip justified in place (``#checkov:skip=CKV_X:why``). checkov
runs once, in its own environment through uv (its pins clash with ours), as tests/kubernetes
runs it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.terraform.configuration import ROOT, TERRAFORM, tf_files

CHECKOV = "checkov==3.3.30"
#: A skip comment: the check's id, then a reason of a sentence at least.
_SKIP = re.compile(r"#\s*checkov:skip=(?P<check>CKV2?_[A-Z0-9]+_\d+):(?P<reason>.*)$")


@pytest.fixture(scope="module")
def checkov_report() -> dict[str, Any]:
    uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    assert Path(uv).exists(), "uv runs checkov in its own environment (its pins clash with ours)"
    done = subprocess.run(
        [uv, "tool", "run", "--from", CHECKOV, "checkov", "-d", str(TERRAFORM),
         "--framework", "terraform", "--output", "json", "--skip-download"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.stdout.strip(), done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert isinstance(report, dict), "one framework, one report"
    return report


def skip_problems(lines: list[str]) -> list[str]:
    """Skip comments that are malformed or give no reason."""
    problems = []
    for line in lines:
        if "checkov:skip" not in line:
            continue
        found = _SKIP.search(line)
        if not found or len(found["reason"].strip()) < 30:
            problems.append(line.strip())
    return problems


@pytest.mark.slow
def test_checkov_passes(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for c in checkov_report["results"]["failed_checks"]
    ]
    assert summary["failed"] == 0, failed
    assert summary["parsing_errors"] == 0, checkov_report["results"]["parsing_errors"]
    assert summary["passed"] > 100 and summary["resource_count"] >= 20, summary


@pytest.mark.slow
def test_every_skip_checkov_applied_is_justified_in_place(checkov_report: dict[str, Any]) -> None:
    for skipped in checkov_report["results"]["skipped_checks"]:
        reason = skipped["check_result"].get("suppress_comment", "")
        assert len(reason) >= 30, (skipped["check_id"], skipped["resource"], reason)


def test_every_skip_comment_names_a_check_and_says_why() -> None:
    lines = [line for path in tf_files() for line in path.read_text().splitlines()]
    assert any("checkov:skip" in line for line in lines)
    assert skip_problems(lines) == []


@pytest.mark.parametrize(
    "line",
    [
        "  #checkov:skip=CKV_AWS_21",
        "  #checkov:skip=CKV_AWS_21:",
        "  #checkov:skip=CKV_AWS_21:not needed",
        "  #checkov:skip=versioning:because erasure must not leave copies of a row",
    ],
)
def test_the_skip_check_catches(line: str) -> None:
    assert skip_problems([line])
