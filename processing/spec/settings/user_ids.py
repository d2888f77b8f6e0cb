"""How user ids are published (``processing.logic.pseudonymise``): as they come, or pseudonymised
with a keyed hash whose key is read from a file (a mounted Kubernetes Secret), never from a
flag's or a variable's value."""

from __future__ import annotations

from dataclasses import dataclass, field

from processing.spec.settings.types import Section, bad, option


@dataclass(frozen=True, kw_only=True)
class UserIdSettings(Section):
    user_id_key_file: str | None = field(
        default=None,
        metadata=option(
            help="file holding the key (at least 32 bytes) that pseudonymises user ids with "
            "HMAC-SHA256, in events and rejected rows",
            shown_default="ids published as they come",
        ),
    )

    def _check(self) -> None:
        if self.user_id_key_file is not None and not self.user_id_key_file.strip():
            raise bad("user_id_key_file", "user_id_key_file is empty: give the key file's path")
