"""Argument types of the command line: a bad value is a usage error naming the flag."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from processing.logic.capacity import DEFAULT_EVENT_NAMES
from processing.spec.errors import ConfigError
from processing.spec.settings import parse_size


def flag_type(parse: Callable[[str], Any], secret: bool = False) -> Callable[[str], Any]:
    """A settings parser as an argparse type."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as e:
            shown = "(value hidden)" if secret else repr(text)
            raise argparse.ArgumentTypeError(f"{shown}: {e}") from None

    convert.__name__ = getattr(parse, "__name__", "value").lstrip("_")
    return convert


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def positive_size(text: str) -> int:
    """A size such as 450GiB, 1.5TiB or 500GB (dask's units), more than 0 bytes."""
    try:
        return parse_size("bytes", text)
    except ConfigError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size: give a positive number of bytes with a unit, e.g. 450GiB "
            "or 0.5TiB"
        ) from None


def positive_duration(text: str) -> float:
    from dask.utils import parse_timedelta

    try:
        seconds = float(parse_timedelta(text, default="s"))
    except (ValueError, KeyError, TypeError):
        seconds = 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: give a positive time such as 45min, 2h or 3600"
        )
    return seconds


def event_names_flag(parser: Any) -> None:
    """``--event-names`` of the capacity estimate (on a parser or an argument group)."""
    parser.add_argument(
        "--event-names",
        type=positive_int,
        default=DEFAULT_EVENT_NAMES,
        help="distinct event names of a day (partitions), for the capacity estimate "
        f"(default: {DEFAULT_EVENT_NAMES})",
    )
