"""Which settings each command takes, their flags (grouped by section, with defaults and
variables), and the settings a command's arguments and the environment make."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, NoReturn

from processing.app.cli.values import flag_type
from processing.spec.errors import ConfigError
from processing.spec.settings import (
    PRICES,
    SECTIONS,
    AuditLimits,
    BigQuerySettings,
    GlueCatalogSettings,
    LocalClusterSettings,
    LockSettings,
    MonitoringSettings,
    RetentionSettings,
    Settings,
    StorageSettings,
    UserIdSettings,
    WriterSettings,
    flag_of,
    parse_bool,
    unknown_variables,
    variable_of,
)
from processing.spec.settings.kubernetes_cluster import KubeClusterSettings
from processing.spec.settings.prices import PriceSettings


def _names(
    *sections: type[Any], also: Collection[str] = (), but: Collection[str] = ()
) -> tuple[str, ...]:
    """The fields of ``sections``, and ``also``, but not ``but``."""
    names = [f.name for section in sections for f in dataclasses.fields(section)]
    return tuple(n for n in (*names, *also) if n not in but)


_LAKE = (LockSettings, StorageSettings)


@dataclass(frozen=True)
class Command:
    """The settings a command takes (``names``) and those it requires."""

    names: tuple[str, ...]
    required: tuple[str, ...]


_RUN_OWN: tuple[str, ...] = ("date", "source", "dest", "run_id", "piece_rows", "batch_rows")
_RUN_OWN += ("task_retries", "performance_report", "log_level")
_RUN: tuple[type[Any], ...] = (LocalClusterSettings, WriterSettings, AuditLimits, *_LAKE)
_RUN += (BigQuerySettings, MonitoringSettings, GlueCatalogSettings, UserIdSettings)
_PLAN: tuple[type[Any], ...] = (LocalClusterSettings, KubeClusterSettings, StorageSettings)
_PLAN += (BigQuerySettings, PriceSettings)
_PLAN_OWN = ("date", "source", "piece_rows", "target_file_size", "log_level")
_AIRFLOW_ONLY = ("cluster_spec", "cluster_namespace", "cluster_image")
_CAPACITY_OWN = ("target_file_size", "bq_max_streams", "bq_compression")

COMMANDS: dict[str, Command] = {
    "run": Command(_names(*_RUN, also=_RUN_OWN), ("date", "source", "dest")),
    "plan": Command(_names(*_PLAN, also=_PLAN_OWN, but=_AIRFLOW_ONLY), ("date", "source")),
    "rollback": Command(
        _names(*_LAKE, GlueCatalogSettings, also=("date", "dest", "log_level")), ("date", "dest")
    ),
    "catalog": Command(
        _names(*_LAKE, GlueCatalogSettings, also=("dest", "log_level")), ("dest", "glue_database")
    ),
    "gc": Command(_names(*_LAKE, also=("dest", "log_level")), ("dest",)),
    "verify": Command(_names(StorageSettings, also=("dest", "log_level")), ("dest",)),
    "expire": Command(
        _names(*_LAKE, RetentionSettings, also=("dest", "log_level")), ("dest", "keep_days")
    ),
    "forget": Command(
        _names(
            *_LAKE, GlueCatalogSettings, UserIdSettings, WriterSettings, also=("dest", "log_level")
        ),
        ("dest",),
    ),
    "capacity": Command(_names(PriceSettings, also=_CAPACITY_OWN), ()),
}
assert all(set(PRICES) <= set(COMMANDS[c].names) for c in ("plan", "capacity"))


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line (not the whole usage first) that says where the help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _shown_default(f: dataclasses.Field[Any]) -> str:
    shown = f.metadata.get("shown_default")
    if shown is not None:
        return str(shown)
    if f.default is dataclasses.MISSING or f.default is None or f.default == "":
        return "none"
    if isinstance(f.default, bool):
        return "on" if f.default else "off"
    if isinstance(f.default, int) and not isinstance(f.default, bool) and f.default >= 10_000:
        return f"{f.default:,}"
    return str(f.default)


def add_settings_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """A flag per setting the command takes, in a group per section, each saying its default
    (or that it is required) and its variable."""
    taken, required = COMMANDS[command].names, COMMANDS[command].required
    by_name = {f.name: f for f in dataclasses.fields(Settings)}
    for section, title in SECTIONS:
        names = [f.name for f in dataclasses.fields(section) if f.name in taken]
        if not names:
            continue
        group = parser.add_argument_group(title)
        for name in names:
            f = by_name[name]
            state = "required" if name in required else f"default: {_shown_default(f)}"
            text = f"{f.metadata['help']} ({state}) [{variable_of(name)}]"
            if f.metadata["parse"] is parse_bool:
                group.add_argument(
                    flag_of(name), action=argparse.BooleanOptionalAction, default=None, help=text
                )
                continue
            secret = bool(f.metadata.get("secret"))
            kind = flag_type(f.metadata["parse"], secret)
            metavar = name.rsplit("_", 1)[-1].upper()
            group.add_argument(flag_of(name), type=kind, metavar=metavar, help=text)
            if secret:
                group.add_argument(
                    flag_of(name) + "-file",
                    metavar="PATH",
                    help=f"{flag_of(name)} read from a file [{variable_of(name)}_FILE]",
                )


def settings_for(args: argparse.Namespace, command: str, **given: Any) -> Settings:
    """The command's settings from its flags and the environment (flags win), after a warning
    for every ``PROCESSING_*`` variable that is not a setting. Fails fast, before the heavy
    imports."""
    spec = COMMANDS[command]
    accepted = {*spec.names, *(f"{n}_file" for n in spec.names)}
    flags = {k: v for k, v in vars(args).items() if k in accepted and v is not None}
    for warning in unknown_variables(os.environ):
        print(f"warning: {warning}", file=sys.stderr)
    settings = Settings.load(
        os.environ, required=spec.required, only=spec.names, **{**flags, **given}
    )
    setup_logging(settings.log_level)
    from processing.adapters.storage import check_url

    for url in (settings.source, settings.dest):  # before any work: a URL missing its "//"
        if url and not url.startswith("bigquery://"):
            check_url(url)
    return settings


def setup_logging(level: str) -> None:
    """Our own loggers at ``level``; libraries (Dask, fsspec) only from WARNING, unless DEBUG."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ConfigError(
            f"log level {level!r} is not one of DEBUG, INFO, WARNING, ERROR (--log-level or "
            f"{variable_of('log_level')})"
        )
    logging.basicConfig(
        level=numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("processing").setLevel(numeric)
    if numeric > logging.DEBUG:  # Dask configures its loggers itself, from this, when imported
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
        if "dask" in sys.modules:  # already imported (settings parse sizes with it): read again
            import dask

            dask.config.refresh()
        logging.getLogger("distributed").setLevel(logging.WARNING)
        # a failed task is reported once, as one line, by the client: not also by the worker
        logging.getLogger("distributed.worker").setLevel(logging.CRITICAL)
