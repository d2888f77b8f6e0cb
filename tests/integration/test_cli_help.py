"""The command line as people read it: each command's own options, grouped, with defaults,
variables, examples and exit codes; usage errors and misspelled variables in one line."""

from __future__ import annotations

import re
import shlex

import pytest

from processing.app.cli import main
from tests.conftest import ROOT


@pytest.fixture(autouse=True)
def _wide(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps help to the terminal's width


def _help(capsys, *command: str) -> str:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_rollback_lists_only_rollbacks_options(capsys) -> None:
    text = _help(capsys, "rollback")
    for flag in ("--date", "--dest", "--lock-ttl-seconds", "--s3-endpoint-url", "--log-level",
                 "--glue-database", "--glue-table-prefix"):  # fmt: skip
        assert flag in text
    for flag in ("--source", "--workers", "--bq-endpoint", "--zstd-level", "--pushgateway",
                 "--smtp-host", "--cluster-spec", "--egress-usd-per-gib"):  # fmt: skip
        assert flag not in text
    assert len(text.splitlines()) < 56


def test_run_help_groups_options_with_defaults_variables_and_examples(capsys) -> None:
    text = _help(capsys, "run")
    titles = ("the run:", "Parquet output:", "audit limits:", "the date's lock:", "monitoring:")
    for title in (*titles, "BigQuery source (bigquery://PROJECT.DATASET.TABLE):"):
        assert f"\n{title}\n" in text
    assert "(required) [PROCESSING_SOURCE]" in text
    assert "zstd compression level, 1-22 (default: 1) [PROCESSING_ZSTD_LEVEL]" in text
    assert "(default: 1,000,000) [PROCESSING_PIECE_ROWS]" in text
    assert "--storage-options-file PATH" in text  # a secret can be a file
    assert "examples:\n  python -m processing run --date 2023-10-23" in text
    assert "\n  75   transient" in text
    assert "--egress-usd-per-gib" not in text  # plan's and capacity's, not run's
    assert "\nthe Glue Data Catalog (credentials, region, endpoint: the AWS chain):\n" in text
    assert "(default: not registered)" in text and "[PROCESSING_GLUE_DATABASE]" in text


@pytest.mark.parametrize("command", ["gc", "verify", "plan", "capacity", "catalog"])
def test_every_command_has_examples_and_exit_codes(capsys, command: str) -> None:
    text = _help(capsys, command)
    assert f"examples:\n  python -m processing {command} " in text
    assert "exit codes:" in text


def test_a_date_typo_is_one_line_naming_the_flag(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--date", "2023-13-01", "--source", "x", "--dest", "y"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "error: argument --date: '2023-13-01': expected a date as YYYY-MM-DD "
        "(see `python -m processing run --help`)\n"
    )


def test_a_misspelled_variable_is_a_warning_and_the_missing_setting_an_error(
    capsys, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("PROCESSING_DESTT", str(tmp_path))
    assert main(["rollback", "--date", "2023-10-23"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "warning: PROCESSING_DESTT is not a setting and is ignored; did you mean PROCESSING_DEST?",
        "error: missing required setting 'dest': pass --dest or set PROCESSING_DEST",
    ]


def _documented_commands() -> list[list[str]]:
    """Every ``python -m processing ...`` line of the README's shell blocks, as arguments
    (continued lines joined, comments dropped)."""
    text = (ROOT / "README.md").read_text()
    found = []
    for language, block in re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S):
        if language not in ("bash", "sh", "console", ""):
            continue
        for line in block.replace("\\\n", " ").splitlines():
            if "python -m processing " not in line:
                continue
            words = shlex.split(line, comments=True)
            while words and "=" in words[0] and not words[0].startswith("-"):
                words = words[1:]  # PROCESSING_X=... python -m processing ...
            if words[:3] == ["python", "-m", "processing"]:
                found.append([w for w in words[3:] if w != "..."])  # "..." elides the rest
    return found


def test_every_command_the_readme_shows_parses() -> None:
    """A documented flag that was renamed or removed fails here, not in a reader's terminal."""
    from processing.app.cli import parser

    commands = _documented_commands()
    assert len(commands) >= 10, commands
    for argv in commands:
        try:
            parser.build().parse_args(argv)
        except SystemExit as e:
            raise AssertionError(f"README: python -m processing {shlex.join(argv)}") from e
