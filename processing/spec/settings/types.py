"""How a setting is declared, parsed from text and checked: shared by every section."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from processing.spec.errors import ConfigError

ENV_PREFIX = "PROCESSING_"


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def variable_of(name: str) -> str:
    return ENV_PREFIX + name.upper()


def option(
    parse: Callable[[str], Any] = str,
    help: str = "",
    *,
    secret: bool = False,
    shown_default: str | None = None,
) -> dict[str, Any]:
    """A setting's metadata: how its text is parsed, its help, whether it is a secret (never
    printed; can also be given as a file: ``--x-file`` or ``PROCESSING_X_FILE``), and the
    default as help shows it when the field's own default does not say it."""
    return {"parse": parse, "help": help, "secret": secret, "shown_default": shown_default}


def bad(name: str, message: str, *, flag: bool = True) -> ConfigError:
    """A value out of range, naming the setting, its flag (``flag``: a command takes it) and its
    variable."""
    where = f"{flag_of(name)} or {variable_of(name)}" if flag else variable_of(name)
    return ConfigError(f"bad setting: {message} ({where})")


@dataclass(frozen=True, kw_only=True)
class Section:
    """A group of settings owned by one part of the pipeline. Each section checks its own values
    (its ``_check``); the composed :class:`~processing.spec.settings.Settings` runs every
    section's check."""

    def __post_init__(self) -> None:
        for base in type(self).__mro__:
            check = vars(base).get("_check")
            if check is not None:
                check(self)

    def __repr__(self) -> str:
        shown = {
            f.name: ("***" if f.metadata.get("secret") and value else value)
            for f in fields(self)
            for value in [getattr(self, f.name)]
        }
        return f"{type(self).__name__}({shown})"


def parse_size(name: str, text: str) -> int:
    from dask.utils import parse_bytes

    try:
        size = parse_bytes(text)
    except ValueError:
        size = 0
    if size <= 0:
        raise bad(name, f"{name} {text!r} is not a size like 4GiB")
    return size


def parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError("expected a date as YYYY-MM-DD") from None


def parse_instant(text: str) -> dt.datetime:
    """An ISO 8601 time with its zone (``2023-10-24T06:00:00Z``), as UTC."""
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("expected an ISO 8601 time such as 2023-10-24T06:00:00Z") from None
    if moment.tzinfo is None:
        raise ValueError("the time needs its zone, e.g. 2023-10-24T06:00:00Z")
    return moment.astimezone(dt.UTC)


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected true or false")


def parse_json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value
