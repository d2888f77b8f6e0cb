"""./dev hands uv the interpreter itself, never a launcher in front of it (a pyenv or asdf shim):
uv does not recognise a shim as the interpreter .venv was made with, and rebuilt the whole
environment (28-48 s) on every command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def _dev_python(env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", str(ROOT / "dev"), "python"], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_a_shim_is_resolved_to_the_interpreter_it_runs(tmp_path: Path) -> None:
    real = os.path.realpath(sys._base_executable)  # the Python this environment is made from
    shim = tmp_path / "shims" / "python3"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{real}" "$@"\n')  # what pyenv's shims do, in short
    shim.chmod(0o755)
    assert _dev_python({**os.environ, "PYTHON": str(shim)}) == real


def test_the_environment_is_built_with_the_interpreter_dev_chooses() -> None:
    """So a no-op ``./dev sync`` keeps .venv as it is (a second ``./dev demo`` takes seconds)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    chosen = Path(_dev_python({**env, "PYTHON": os.environ.get("PYTHON", "")}))
    config = dict(
        line.split(" = ", 1) for line in (ROOT / ".venv" / "pyvenv.cfg").read_text().splitlines()
    )
    assert Path(config["home"]) == chosen.parent


def test_demo_s3_copies_its_reports_out_of_the_s3_that_stops_with_it(tmp_path: Path) -> None:
    """The demo's S3 server lives as long as the command: the paths it prints must outlive it."""
    reports = tmp_path / "reports"
    env = {**os.environ, "DEMO_REPORTS": str(reports)}
    done = subprocess.run(
        ["bash", str(ROOT / "dev"), "demo-s3"], env=env, cwd=ROOT, capture_output=True,
        text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [
        line.strip() for line in done.stdout.splitlines() if line.strip().startswith(str(reports))
    ]
    names = {Path(p).name for p in printed}
    assert {n.split("-")[0] for n in names} >= {"quality", "dask"}, done.stdout[-2000:]
    for path in printed:
        assert Path(path).stat().st_size > 0
    assert (
        "<html"
        in (reports / next(n for n in names if n.endswith(".html"))).read_text()[:2000].lower()
    )
