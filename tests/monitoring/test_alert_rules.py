"""The alert rules pass promtool's checks, and each rule's unit tests (synthetic series that
must fire it, and series that must not) pass: tests/monitoring/rules_test.yml. The unit tests
catch mistakes made on purpose, and the volume alert's bounds are the quality report's."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from processing.logic import quality
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
    assert "SUCCESS: 9 rules found" in done.stdout


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


def test_the_volume_bounds_are_the_quality_reports() -> None:
    """The alert's bounds are the ones the quality report flags a day by (both strict)."""
    _, rule, _ = _volume_rule(RULES.read_text())
    bounds = {
        baseline: tuple(
            float(re.search(rf'baseline="{baseline}"}}\) {op} ([0-9.]+)', rule).group(1))
            for op in ("<", ">")
        )
        for baseline in ("same_weekday", "trailing_mean")
    }
    assert bounds == {
        "same_weekday": quality.SAME_WEEKDAY_BOUNDS,
        "trailing_mean": quality.TRAILING_BOUNDS,
    }


def _volume_tests(tmp_path: Path, rules: str) -> subprocess.CompletedProcess[str]:
    """promtool test rules with ``rules`` and only the tests of EventsLakeVolumeAnomaly (the whole
    file takes promtool several seconds: it evaluates every minute of every test's timeline)."""
    broken = tmp_path / "events-lake.rules.yml"
    broken.write_text(rules)
    tests = yaml.safe_load(TESTS.read_text())
    tests["rule_files"] = [str(broken)]
    tests["tests"] = [
        group for group in tests["tests"]
        if {t["alertname"] for t in group["alert_rule_test"]} == {"EventsLakeVolumeAnomaly"}
    ]  # fmt: skip
    assert len(tests["tests"]) == 2  # firing, not firing
    path = tmp_path / "rules_test.yml"
    path.write_text(yaml.safe_dump(tests))
    return _promtool("test", "rules", str(path))


def _volume_rule(rules: str) -> tuple[str, str, str]:
    """(before, the EventsLakeVolumeAnomaly rule, after) of the rule file's text."""
    start = rules.index("      - alert: EventsLakeVolumeAnomaly")
    end = rules.index("      - alert:", start + 1)
    return rules[:start], rules[start:end], rules[end:]


def test_the_volume_rule_passes_its_tests_alone(tmp_path: Path) -> None:
    done = _volume_tests(tmp_path, RULES.read_text())
    assert done.returncode == 0, done.stdout + done.stderr


#: mistakes in EventsLakeVolumeAnomaly that its tests must catch: (what, text, replaced by)
VOLUME_MISTAKES = {
    "fallback-used-beside-same-weekday": (
        'unless on (date) events_lake_volume_ratio{baseline="same_weekday"}',
        "",
    ),
    "same-weekday-bounds-too-wide": ("< 0.5", "< 0.4"),
    "fallback-bounds-too-narrow": ("> 2.5", "> 2"),
    "no-spikes": ('{baseline="same_weekday"}) > 2', '{baseline="same_weekday"}) > 20'),
    "old-dates-too": ("< 86400", "< 86400 * 30"),
}


@pytest.mark.parametrize("mistake", VOLUME_MISTAKES)
def test_a_broken_volume_rule_fails_its_tests(tmp_path: Path, mistake: str) -> None:
    old, new = VOLUME_MISTAKES[mistake]
    before, rule, after = _volume_rule(RULES.read_text())
    assert rule.count(old) == 1, mistake
    done = _volume_tests(tmp_path, before + rule.replace(old, new) + after)
    assert done.returncode != 0, mistake
    assert "EventsLakeVolumeAnomaly" in done.stdout + done.stderr, mistake
