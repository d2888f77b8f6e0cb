"""The README documents what the code does: the null policy table and the settings."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from processing.app.cli.options import COMMANDS
from processing.spec.rules import POLICY
from processing.spec.settings import ENV_PREFIX, Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _policy_rows() -> dict[str, str]:
    section = README.split("### Null and missing values, field by field", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {line.split("|")[1].strip().strip("`"): line for line in rows}


@pytest.mark.parametrize("policy", POLICY, ids=[p.field for p in POLICY])
def test_every_policy_row_is_in_the_readme_table(policy) -> None:
    row = _policy_rows().get(policy.field)
    assert row is not None, f"README's null policy table has no row for {policy.field}"
    assert ("| yes |" if policy.required else "| no |") in row
    for rule in policy.rules:
        assert f"`{rule}`" in row, f"{policy.field}: rule {rule} missing from the README row"
    if policy.required and policy.field != "event_date":
        assert f"`{policy.field}:missing`" in row


def test_the_readme_table_has_no_extra_rows() -> None:
    assert set(_policy_rows()) == {p.field for p in POLICY}


@pytest.mark.parametrize("name", [f.name for f in fields(Settings)])
def test_every_setting_is_documented(name: str) -> None:
    assert f"{ENV_PREFIX}{name.upper()}" in README
    if any(name in command.names for command in COMMANDS.values()):  # a flag of some command
        assert f"--{name.replace('_', '-')}" in README
    else:  # read from its variable by the Airflow tasks only: no flag to document
        assert f"--{name.replace('_', '-')}`" not in README
