"""The benchmark's documented quick check runs, and says what it is: every run finishes, the
peers keep the same rows, and no performance target is judged on a day too small for it."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def _quick_check() -> list[str]:
    text = (ROOT / "benchmarks" / "README.md").read_text()
    line = next(ln for ln in text.splitlines() if "a quick check that everything works" in ln)
    words = shlex.split(line, comments=True)
    assert words[:3] == ["uv", "run", "python"] and words[3] == "benchmarks/run.py", line
    return words[4:]


def _script(script: str, args: list[str], workdir: Path) -> subprocess.CompletedProcess[str]:
    """Run a benchmark script with ``args`` in ``workdir``; it must succeed."""
    done = subprocess.run(
        [sys.executable, script, *args, "--workdir", str(workdir)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_the_documented_quick_check_passes(tmp_path: Path) -> None:
    done = _script("benchmarks/run.py", _quick_check(), tmp_path)
    verdicts = re.findall(r"^(PASS|FAIL|INFO|SKIP) ", done.stdout, flags=re.M)
    assert "FAIL" not in verdicts, done.stdout
    assert verdicts.count("PASS") == 2, done.stdout  # Polars and DuckDB keep the pipeline's rows
    assert "judged at 10,000,000 rows" in done.stdout


def test_the_documented_forget_quick_check_passes(tmp_path: Path) -> None:
    text = (ROOT / "benchmarks" / "README.md").read_text()
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("uv run python benchmarks/forget.py") and "quick check" in ln
    )
    _script("benchmarks/forget.py", shlex.split(line, comments=True)[4:], tmp_path)
    runs = json.loads((tmp_path / "forget-results.json").read_text())["runs"]
    assert runs["forget"]["rows_removed"] > 0 and runs["forget"]["dates_rewritten"] == 2
    assert runs["forget-again"]["rows_removed"] == 0  # the request again finds nothing left


def test_the_documented_pseudonym_cost_quick_check_passes(tmp_path: Path) -> None:
    text = (ROOT / "benchmarks" / "README.md").read_text()
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("uv run python benchmarks/pseudonym_cost.py") and "quick check" in ln
    )
    done = _script("benchmarks/pseudonym_cost.py", shlex.split(line, comments=True)[4:], tmp_path)
    results = json.loads((tmp_path / "pseudonym-cost" / "results.json").read_text())
    # the pre-pseudonymised source, run without a key, publishes the keyed run's rows exactly
    assert results["verified"] is True, done.stdout
    assert set(results["throughput_vs_floor"]) == {
        "floor", "pipeline", "pre-pseudonymised", "pre-pseudo-dict", "keyed",
    }  # fmt: skip
    assert "the target is set at 10,000,000 rows" in done.stdout
