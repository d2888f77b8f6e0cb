"""The alert rules pass promtool's checks, and each rule's unit tests (synthetic series that
must fire it, and series that must not) pass: tests/monitoring/rules_test.yml."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import ROOT

RULES = ROOT / "deploy" / "kubernetes" / "monitoring" / "events-lake.rules.yml"
TESTS = Path(__file__).parent / "rules_test.yml"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is needed (./dev installs Debian's prometheus package)"
    return subprocess.run(
        [promtool, *args], cwd=TESTS.parent, capture_output=True, text=True, check=False
    )


def test_the_rules_are_valid() -> None:
    done = _promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout


def test_every_rule_fires_when_it_should_and_only_then() -> None:
    done = _promtool("test", "rules", TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set(TESTS.read_text().split("alertname: ")[1:])
    tested_names = {t.split()[0] for t in tested}
    rules = {line.split(":", 1)[1].strip() for line in RULES.read_text().splitlines()
             if line.strip().startswith("- alert:")}  # fmt: skip
    assert rules == tested_names  # no rule without a test


def test_a_broken_rule_fails_its_test(tmp_path: Path) -> None:
    broken = tmp_path / "events-lake.rules.yml"
    broken.write_text(RULES.read_text().replace("> 0.05", "> 0.5"))
    tests = tmp_path / "rules_test.yml"
    tests.write_text(TESTS.read_text().replace(
        "../../deploy/kubernetes/monitoring/events-lake.rules.yml", str(broken)
    ))  # fmt: skip
    done = _promtool("test", "rules", str(tests))
    assert done.returncode != 0
    assert "EventsLakeRejectedShareHigh" in done.stdout + done.stderr
