"""Which files a file source reads: a path that exists is taken literally (glob characters and
all), only a path that does not exist is a glob; on a local disk each file is read once, however
many symbolic links lead to it, and a link to nothing is an input error, not a silent skip."""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

import pytest

from processing.adapters.sources import FileSource
from processing.spec.errors import InputError


def _write(path: Path, text: str = '{"event_name": "view"}\n') -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _files(url: Path | str) -> list[str]:
    return FileSource(str(url)).files()


def test_a_file_name_with_glob_characters_is_read_as_given(tmp_path: Path) -> None:
    literal = _write(tmp_path / "day[1].jsonl")
    _write(tmp_path / "day1.jsonl")  # what "day[1].jsonl" matches as a glob
    assert _files(literal) == [str(literal)]
    plan = FileSource(str(literal)).plan(dt.date(2023, 10, 23), 1_000)
    assert {p.args["path"] for p in plan.pieces} == {str(literal)}


def test_a_directory_name_with_glob_characters_is_read_as_given(tmp_path: Path) -> None:
    folder = tmp_path / "run[1]"
    inside = _write(folder / "a.jsonl")
    _write(tmp_path / "run1" / "b.jsonl")
    assert _files(folder) == [str(inside)]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        pytest.param("day[12].jsonl", ["day1.jsonl", "day2.jsonl"], id="brackets"),
        pytest.param("day?.jsonl", ["day1.jsonl", "day2.jsonl"], id="question-mark"),
        pytest.param("*.jsonl", ["day1.jsonl", "day2.jsonl", "other.jsonl"], id="star"),
        pytest.param("d*/*.jsonl", ["dir/x.jsonl"], id="star-in-folder"),
    ],
)
def test_a_path_that_does_not_exist_is_a_glob(
    tmp_path: Path, pattern: str, expected: list[str]
) -> None:
    for name in ("day1.jsonl", "day2.jsonl", "other.jsonl", "dir/x.jsonl", "_hidden.jsonl"):
        _write(tmp_path / name)
    assert _files(tmp_path / pattern) == [str(tmp_path / name) for name in expected]


def test_a_glob_that_matches_nothing_and_a_missing_path_are_input_errors(tmp_path: Path) -> None:
    _write(tmp_path / "day1.jsonl")
    with pytest.raises(InputError, match="no readable files"):
        _files(tmp_path / "day[9].jsonl")
    with pytest.raises(InputError, match="does not exist"):
        _files(tmp_path / "nothing.jsonl")


def test_a_link_to_a_file_of_the_directory_is_read_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    real = _write(tmp_path / "src" / "b.jsonl")
    _write(tmp_path / "src" / "c.jsonl")
    (tmp_path / "src" / "a-copy.jsonl").symlink_to("b.jsonl")  # sorts before the file itself
    (tmp_path / "src" / "sub").mkdir()
    (tmp_path / "src" / "sub" / "again.jsonl").symlink_to(real)
    with caplog.at_level(logging.WARNING):
        found = _files(tmp_path / "src")
    assert found == [str(real), str(tmp_path / "src" / "c.jsonl")]
    warned = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert str(tmp_path / "src" / "a-copy.jsonl") in warned
    assert str(tmp_path / "src" / "sub" / "again.jsonl") in warned
    assert str(real) in warned


def test_a_glob_that_matches_a_file_and_a_link_to_it_reads_it_once(tmp_path: Path) -> None:
    real = _write(tmp_path / "day1.jsonl")
    (tmp_path / "day2.jsonl").symlink_to(real)
    assert _files(tmp_path / "day*.jsonl") == [str(real)]


def test_links_to_files_elsewhere_are_read_once_each(tmp_path: Path) -> None:
    outside = _write(tmp_path / "elsewhere" / "x.jsonl")
    source = tmp_path / "src"
    _write(source / "a.jsonl")
    (source / "x.jsonl").symlink_to(outside)
    (source / "y.jsonl").symlink_to(tmp_path / "elsewhere" / ".." / "elsewhere" / "x.jsonl")
    assert _files(source) == [str(source / "a.jsonl"), str(source / "x.jsonl")]


def test_a_link_to_nothing_is_an_input_error_naming_it_and_its_target(tmp_path: Path) -> None:
    source = tmp_path / "src"
    _write(source / "a.jsonl")
    (source / "b.jsonl").symlink_to("gone.jsonl")
    with pytest.raises(InputError) as raised:
        _files(source)
    message = str(raised.value)
    assert str(source / "b.jsonl") in message
    assert str(source / "gone.jsonl") in message
    assert "\n" not in message
    with pytest.raises(InputError, match=r"gone\.jsonl"):  # named as the source itself
        _files(source / "b.jsonl")
    with pytest.raises(InputError, match=r"gone\.jsonl"):  # or matched by a glob
        _files(source / "*.jsonl")


def test_a_link_loop_is_an_input_error(tmp_path: Path) -> None:
    source = tmp_path / "src"
    _write(source / "a.jsonl")
    (source / "b.jsonl").symlink_to("c.jsonl")
    (source / "c.jsonl").symlink_to("b.jsonl")
    with pytest.raises(InputError, match=r"b\.jsonl"):
        _files(source)


def test_a_source_reached_through_a_linked_folder_keeps_its_paths(tmp_path: Path) -> None:
    """Paths stay as listed (the workers read those); only duplicates are dropped."""
    real = tmp_path / "real"
    _write(real / "a.jsonl")
    os.symlink(real, tmp_path / "alias")
    assert _files(tmp_path / "alias") == [str(tmp_path / "alias" / "a.jsonl")]
