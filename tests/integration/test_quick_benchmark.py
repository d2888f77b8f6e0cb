"""The benchmark's documented quick check runs, and says what it is: every run finishes, the
peers keep the same rows, and no performance target is judged on a day too small for it."""

from __future__ import annotations

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


def test_the_documented_quick_check_passes(tmp_path: Path) -> None:
    args = _quick_check()
    done = subprocess.run(
        [sys.executable, "benchmarks/run.py", *args, "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    verdicts = re.findall(r"^(PASS|FAIL|INFO|SKIP) ", done.stdout, flags=re.M)
    assert "FAIL" not in verdicts, done.stdout
    assert verdicts.count("PASS") == 2, done.stdout  # Polars and DuckDB keep the pipeline's rows
    assert "judged at 10,000,000 rows" in done.stdout
