"""The settings, in sections: each section belongs to the part of the pipeline that uses it
(its module names that part), and checks its own values. :class:`Settings` composes them into
one frozen object, built once at the entry point from ``PROCESSING_*`` variables and command-line
flags (flags win). Library code receives it; it never reads the environment itself.

A command takes only the sections it uses (see ``processing.app.cli``); ``Settings.load`` is
told which settings the command requires, and names the flag and the variable of anything
missing or wrong. A secret (``secret`` in a field's metadata) is a :class:`Secret`: never printed
(its code calls ``.reveal()`` where it hands the value over), and can also be given as a file:
``--x-file PATH`` or ``PROCESSING_X_FILE=PATH``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from processing.spec.errors import ConfigError
from processing.spec.settings.audit_limits import AuditLimits
from processing.spec.settings.bigquery_read import BigQuerySettings
from processing.spec.settings.date_lock import (
    MAX_LOCK_TTL_SECONDS,
    MIN_LOCK_TTL_SECONDS,
    LockSettings,
)
from processing.spec.settings.day_complete import DayCompleteSettings
from processing.spec.settings.glue_catalog import GlueCatalogSettings, check_destination
from processing.spec.settings.kubernetes_cluster import CLUSTERS, KubeClusterSettings
from processing.spec.settings.local_cluster import LocalClusterSettings
from processing.spec.settings.monitoring import MonitoringSettings
from processing.spec.settings.notices import NoticeSettings
from processing.spec.settings.parquet_writer import (
    MAX_TARGET_FILE_BYTES,
    MIN_TARGET_FILE_BYTES,
    WriterSettings,
)
from processing.spec.settings.prices import PRICES, PriceSettings
from processing.spec.settings.retention import RetentionSettings
from processing.spec.settings.run import RunSettings
from processing.spec.settings.s3_storage import S3_SSE, StorageSettings
from processing.spec.settings.types import (
    ENV_PREFIX,
    Secret,
    Section,
    flag_of,
    parse_bool,
    parse_date,
    parse_instant,
    parse_json_object,
    parse_size,
    reveal,
    variable_of,
)
from processing.spec.settings.user_ids import UserIdSettings

__all__ = [
    "CLUSTERS",
    "ENV_PREFIX",
    "MAX_LOCK_TTL_SECONDS",
    "MAX_TARGET_FILE_BYTES",
    "MIN_LOCK_TTL_SECONDS",
    "MIN_TARGET_FILE_BYTES",
    "PRICES",
    "RUN_REQUIRED",
    "S3_SSE",
    "SECTIONS",
    "RetentionSettings",
    "Secret",
    "Section",
    "Settings",
    "UserIdSettings",
    "flag_of",
    "parse_bool",
    "parse_date",
    "parse_instant",
    "parse_json_object",
    "parse_size",
    "reveal",
    "unknown_variables",
    "variable_of",
]

#: The sections in the order help shows them, with their titles.
SECTIONS: tuple[tuple[type[Section], str], ...] = (
    (RunSettings, "the run"),
    (LocalClusterSettings, "Dask: a LocalCluster, or an existing scheduler"),
    (WriterSettings, "Parquet output"),
    (AuditLimits, "audit limits"),
    (UserIdSettings, "user ids: pseudonymised, or as they come"),
    (LockSettings, "the date's lock"),
    (StorageSettings, "storage: fsspec and S3 (credentials: the AWS chain)"),
    (GlueCatalogSettings, "the Glue Data Catalog (credentials, region, endpoint: the AWS chain)"),
    (RetentionSettings, "retention: when dates expire (expire)"),
    (BigQuerySettings, "BigQuery source (bigquery://PROJECT.DATASET.TABLE)"),
    (MonitoringSettings, "monitoring"),
    (NoticeSettings, "notices from the Airflow DAG"),
    (DayCompleteSettings, "when the Airflow DAG starts on a day"),
    (KubeClusterSettings, "the cluster of a run of Airflow tasks"),
    (PriceSettings, "list prices of the capacity and cost estimate (USD, checked 2026-12)"),
)

#: What ``run`` requires (the default of :meth:`Settings.load`).
RUN_REQUIRED = ("date", "source", "dest")


@dataclass(frozen=True, kw_only=True)
class Settings(  # fields in the order of SECTIONS (a dataclass collects its bases' in reverse)
    PriceSettings,
    KubeClusterSettings,
    DayCompleteSettings,
    NoticeSettings,
    MonitoringSettings,
    BigQuerySettings,
    RetentionSettings,
    GlueCatalogSettings,
    StorageSettings,
    LockSettings,
    UserIdSettings,
    AuditLimits,
    WriterSettings,
    LocalClusterSettings,
    RunSettings,
):
    """Everything a run needs. Field ``x`` comes from ``--x`` or ``PROCESSING_X``."""

    def _check(self) -> None:  # across sections: each section checks its own values
        check_destination(self.glue_database, self.dest)

    def __repr__(self) -> str:
        return "Settings" + Section.__repr__(self).removeprefix(type(self).__name__)

    @classmethod
    def load(
        cls,
        env: Mapping[str, str],
        *,
        required: Collection[str] = RUN_REQUIRED,
        only: Collection[str] | None = None,
        **flags: Any,
    ) -> Settings:
        """Build from an environment mapping and flags (``None`` flags are ignored).

        ``required``: the settings the command needs; ``only``: the settings it takes (the
        others keep their defaults, whatever the environment says). Raises ConfigError naming
        the flag and the variable of a missing or unparseable value."""
        known = {f.name: f for f in fields(cls)}
        unknown = set(flags) - set(known) - {f"{n}_file" for n, f in known.items() if _secret(f)}
        if unknown:
            raise ConfigError(f"unknown settings: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for name, f in known.items():
            if only is not None and name not in only:
                continue
            text = _text(name, f, env, flags)
            if name in flags and flags[name] is not None:
                values[name] = flags[name]
            elif text is not None:
                try:
                    values[name] = f.metadata["parse"](text)
                except ValueError as e:
                    shown = "(value hidden)" if _secret(f) else repr(text)
                    raise ConfigError(
                        f"{variable_of(name)}={shown} is not valid for {flag_of(name)}: {e}"
                    ) from None
        for name in required:
            if values.get(name) in (None, ""):
                raise ConfigError(
                    f"missing required setting {name!r}: pass {flag_of(name)} or set "
                    f"{variable_of(name)}"
                )
        if "date" not in values:  # a command that takes no date (gc, verify, capacity)
            values["date"] = _NO_DATE
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


#: The date of a command that takes none (gc, verify, capacity): never a day the pipeline runs.
_NO_DATE = dt.date.min


def _secret(f: dataclasses.Field[Any]) -> bool:
    return bool(f.metadata.get("secret"))


def _text(
    name: str, f: dataclasses.Field[Any], env: Mapping[str, str], flags: Mapping[str, Any]
) -> str | None:
    """The setting's text from the environment, or a secret's from its file (flag or variable);
    an empty variable counts as unset."""
    if _secret(f):
        path = flags.get(f"{name}_file") or env.get(variable_of(name) + "_FILE")
        if path:
            try:
                return Path(path).read_text().rstrip("\r\n")
            except OSError as e:
                raise ConfigError(
                    f"{flag_of(name)}-file / {variable_of(name)}_FILE {path!r}: cannot read "
                    f"it ({e.strerror})"
                ) from None
    text = env.get(variable_of(name))
    return text if text not in (None, "") else None


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """A warning for every ``PROCESSING_*`` variable that is not a setting, naming the closest
    one (a misspelled variable is otherwise silently ignored)."""
    names = [variable_of(f.name) for f in fields(Settings)]
    names += [variable_of(f.name) + "_FILE" for f in fields(Settings) if _secret(f)]
    found = []
    for variable in sorted(env):
        if variable.startswith(ENV_PREFIX) and variable not in names:
            bare = [n.removeprefix(ENV_PREFIX) for n in names]  # the prefix makes all look alike
            close = difflib.get_close_matches(variable.removeprefix(ENV_PREFIX), bare, n=1)
            hint = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else ""
            found.append(f"{variable} is not a setting and is ignored{hint}")
    return found
