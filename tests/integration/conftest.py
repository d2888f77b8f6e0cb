"""Fixtures for tests that run the real CLI in a subprocess (a LocalCluster each time)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliRunner

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def generate(cli: CliRunner, tmp_path: Path) -> Callable[..., Path]:
    def make(name: str, date: str, rows: int, bad: float = 0.0, seed: int = 0) -> Path:
        out = tmp_path / "input" / name
        done = cli(
            "generate",
            "--date",
            date,
            "--rows",
            rows,
            "--bad-fraction",
            bad,
            "--seed",
            seed,
            "--out",
            out,
        )
        assert done.returncode == 0, done.stderr
        return out

    return make
