"""environment.yml (for conda/mamba users) must install what uv.lock installs."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _direct_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    names = list(project["project"]["dependencies"])
    for extra in project["project"].get("optional-dependencies", {}).values():
        names += extra
    for name, group in project.get("dependency-groups", {}).items():
        if name in project["tool"]["uv"]["default-groups"]:  # the groups .venv has
            names += [g for g in group if isinstance(g, str)]
    return [Requirement(n) for n in names]


def _locked_versions() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {canonicalize_name(p["name"]): p["version"] for p in lock["package"] if "version" in p}


def _environment_pins() -> dict[str, Requirement]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {canonicalize_name(r.name): r for r in map(Requirement, (p for p in pip if p != "-e ."))}


def test_environment_yml_pins_every_direct_dependency_at_the_locked_version() -> None:
    locked = _locked_versions()
    pins = _environment_pins()
    problems = []
    for req in _direct_requirements():
        name = canonicalize_name(req.name)
        pin = pins.get(name)
        expected = f"=={locked[name]}"
        if pin is None:
            problems.append(f"{req.name} is missing")
        elif str(pin.specifier) != expected:
            problems.append(f"{req.name}{pin.specifier} should be {expected}")
        elif pin.extras != req.extras:
            problems.append(
                f"{req.name} extras {sorted(pin.extras)} should be {sorted(req.extras)}"
            )
    extra = set(pins) - {canonicalize_name(r.name) for r in _direct_requirements()}
    if extra:
        problems.append(f"not in pyproject.toml: {sorted(extra)}")
    assert not problems, (
        "environment.yml is out of date (run: python scripts/sync_environment.py): "
        + "; ".join(problems)
    )


def test_environment_yml_python_matches_requires_python() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert python == "python" + project["project"]["requires-python"]
