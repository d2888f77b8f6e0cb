"""Where the run's metrics go (``processing.adapters.metrics_push``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from processing.spec.settings.types import Secret, Section, option


@dataclass(frozen=True, kw_only=True)
class MonitoringSettings(Section):
    pushgateway: Secret[str] | None = field(
        default=None,
        metadata=option(
            help="Prometheus Pushgateway URL for the run's metrics (none: no push); basic auth "
            "as https://USER:PASSWORD@host",
            secret=True,
        ),
    )
    pushgateway_password_file: str | None = field(
        default=None,
        metadata=option(
            help="file holding the Pushgateway's basic-auth password (the user goes in the URL: "
            "https://USER@host)"
        ),
    )
