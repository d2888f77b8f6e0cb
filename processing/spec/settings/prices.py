"""List prices of the capacity and cost estimate, checked 2026-12 (``plan``, ``capacity``;
``processing.logic.capacity.Prices``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from processing.spec.settings.types import Section, bad, option

PRICES = (
    "bq_usd_per_tib",
    "egress_usd_per_gib",
    "s3_usd_per_1000_put",
    "s3_usd_per_1000_get",
    "worker_usd_per_core_hour",
)


@dataclass(frozen=True, kw_only=True)
class PriceSettings(Section):
    bq_usd_per_tib: float = field(
        default=1.1,
        metadata=option(
            float,
            "BigQuery Storage Read API, on demand, USD per TiB read "
            "(cloud.google.com/bigquery/pricing#data_extraction_pricing)",
        ),
    )
    egress_usd_per_gib: float = field(
        default=0.12,
        metadata=option(
            float,
            "Google Cloud internet egress, Premium Tier from North America, first TiB of the "
            "month, USD per GiB on the wire (cloud.google.com/vpc/network-pricing)",
        ),
    )
    s3_usd_per_1000_put: float = field(
        default=0.005,
        metadata=option(
            float,
            "S3 Standard PUT, COPY, POST, LIST requests, USD per 1,000 (aws.amazon.com/s3/pricing)",
        ),
    )
    s3_usd_per_1000_get: float = field(
        default=0.0004,
        metadata=option(
            float, "S3 Standard GET and other requests, USD per 1,000 (aws.amazon.com/s3/pricing)"
        ),
    )
    worker_usd_per_core_hour: float = field(
        default=0.048,
        metadata=option(
            float,
            "a worker core for an hour, USD: EC2 m6i.large on demand, us-east-1, 2 vCPUs "
            "(aws.amazon.com/ec2/pricing/on-demand)",
        ),
    )

    def _check(self) -> None:
        for name in PRICES:
            price = getattr(self, name)
            if not (math.isfinite(price) and price >= 0):
                raise bad(name, f"{name} must be a price >= 0 in USD (got {price!r})")
