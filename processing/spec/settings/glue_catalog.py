"""Where the lake is registered for SQL engines: the AWS Glue Data Catalog
(``processing.adapters.glue_catalog``), opt-in. Credentials, region and endpoint come from the
AWS chain (``AWS_REGION``, ``AWS_ENDPOINT_URL_GLUE`` / ``AWS_ENDPOINT_URL``), never from
settings."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from processing.spec.settings.types import Section, bad, option

#: A name Athena and Glue agree on: lower-case letters, digits and underscores.
_NAME = re.compile(r"^[a-z0-9_]+$")
#: Glue's limit on a database's or a table's name, in bytes.
MAX_NAME_LENGTH = 255
#: The tables a lake has, by their names without the prefix (the longest sets the prefix's room).
TABLES = ("events", "rejected")
#: The URL schemes of a lake Glue can point at (S3, as s3fs names it).
S3_SCHEMES = ("s3", "s3a")


@dataclass(frozen=True, kw_only=True)
class GlueCatalogSettings(Section):
    glue_database: str | None = field(
        default=None,
        metadata=option(
            help="register the lake's tables and each published date's partitions in this "
            "Glue database (made if missing; needs an s3:// --dest)",
            shown_default="not registered",
        ),
    )
    glue_table_prefix: str = field(
        default="",
        metadata=option(help="prefix of the tables' names: <prefix>events, <prefix>rejected"),
    )

    def _check(self) -> None:
        if self.glue_database is not None:
            if not _NAME.fullmatch(self.glue_database):
                raise bad(
                    "glue_database",
                    f"glue_database {self.glue_database!r} must be lower-case letters, digits "
                    "and underscores (a name Athena can query)",
                )
            if len(self.glue_database) > MAX_NAME_LENGTH:
                raise bad(
                    "glue_database", f"glue_database is longer than {MAX_NAME_LENGTH} characters"
                )
        if self.glue_table_prefix:
            if self.glue_database is None:
                raise bad("glue_table_prefix", "glue_table_prefix needs --glue-database")
            if not _NAME.fullmatch(self.glue_table_prefix):
                raise bad(
                    "glue_table_prefix",
                    f"glue_table_prefix {self.glue_table_prefix!r} must be lower-case letters, "
                    "digits and underscores",
                )
            longest = max(map(len, TABLES))
            if len(self.glue_table_prefix) + longest > MAX_NAME_LENGTH:
                raise bad(
                    "glue_table_prefix",
                    f"glue_table_prefix is too long: a table's name is at most "
                    f"{MAX_NAME_LENGTH} characters",
                )


def check_destination(glue_database: str | None, dest: str) -> None:
    """Refuse a Glue database for a lake that is not on S3 (Glue's tables point at S3): a
    check across sections, run by the composed settings."""
    if glue_database is None or not dest:
        return
    scheme, sep, _ = dest.partition("://")
    if not sep or scheme not in S3_SCHEMES:
        where = f"a {scheme}:// URL" if sep else "a local path"
        raise bad(
            "glue_database",
            f"glue_database registers a lake on S3, and --dest is {where}: give an s3:// "
            "--dest, or leave --glue-database out",
        )
