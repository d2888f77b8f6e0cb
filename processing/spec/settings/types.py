"""How a setting is declared, parsed from text and checked: shared by every section."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Generic, TypeVar

from processing.spec.errors import ConfigError

ENV_PREFIX = "PROCESSING_"

T = TypeVar("T")


class Secret(Generic[T]):
    """A secret setting's value: printed, logged and formatted as ``***`` whatever the way
    (``repr``, ``str``, an f-string, a settings' repr, a traceback's locals), and handed over
    only by :meth:`reveal`, at the last moment, by the adapter that uses it. An empty value
    shows as itself (nothing to hide, and help reads better)."""

    __slots__ = ("_value",)

    def __init__(self, value: T) -> None:
        self._value = value

    def reveal(self) -> T:
        return self._value

    def __repr__(self) -> str:
        return repr(self._value) if not self._value else "'***'"

    def __str__(self) -> str:
        return str(self._value) if not self._value else "***"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", repr(type(self._value))))

    def __reduce__(self) -> tuple[Any, ...]:  # pickles (to a worker) with its value
        return (Secret, (self._value,))


def reveal(value: T | Secret[T]) -> T:
    """A secret's value, or the value itself when it is not wrapped (a test's or a caller's)."""
    return value.reveal() if isinstance(value, Secret) else value


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
    """A setting's metadata: how its text is parsed, its help, whether it is a secret (parsed
    into a :class:`Secret`, never printed; can also be given as a file: ``--x-file`` or
    ``PROCESSING_X_FILE``), and the default as help shows it when the field's own default does
    not say it."""
    if secret:
        parse = _as_secret(parse)
    return {"parse": parse, "help": help, "secret": secret, "shown_default": shown_default}


def _as_secret(parse: Callable[[str], Any]) -> Callable[[str], Secret[Any]]:
    def parse_secret(text: str) -> Secret[Any]:
        return Secret(parse(text))

    parse_secret.__name__ = getattr(parse, "__name__", "value")
    return parse_secret


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
        for f in fields(self):  # a secret given as a plain value (by code) is wrapped too
            value = getattr(self, f.name)
            if f.metadata.get("secret") and value is not None and not isinstance(value, Secret):
                object.__setattr__(self, f.name, Secret(value))
        for base in type(self).__mro__:
            check = vars(base).get("_check")
            if check is not None:
                check(self)

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
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
