"""The workflow files as GitHub reads them, for the tests of tests/delivery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def workflow(name: str) -> dict[str, Any]:
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as "on"
    loaded = yaml.safe_load((WORKFLOWS / name).read_text())
    return {("on" if k is True else k): v for k, v in loaded.items()}


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job.get("steps", [])


def uses(step: dict[str, Any], action: str) -> bool:
    return step.get("uses", "").split("@")[0] == action


def step(job: dict[str, Any], *, action: str | None = None, name: str | None = None) -> Any:
    """The one step of the job that uses `action` or is called `name`."""
    (found,) = [
        s for s in steps(job) if (action and uses(s, action)) or (name and s.get("name") == name)
    ]
    return found


def label(step: dict[str, Any]) -> str:
    return str(step.get("id") or step.get("name") or step["uses"])


def position(job: dict[str, Any], step: dict[str, Any]) -> int:
    return steps(job).index(step)
