"""Where the lake is stored: fsspec options and S3 (``processing.adapters.storage``). AWS
credentials come from the standard AWS chain, never from settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from processing.spec.settings.types import Secret, Section, bad, option, parse_json_object

#: Server-side encryption modes S3 applies to an object on write.
S3_SSE = ("AES256", "aws:kms")


@dataclass(frozen=True, kw_only=True)
class StorageSettings(Section):
    storage_options: Secret[Mapping[str, Any]] = field(
        default_factory=lambda: Secret({}),
        metadata=option(parse_json_object, "fsspec options, as JSON", secret=True),
    )
    s3_endpoint_url: str | None = field(
        default=None,
        metadata=option(help="S3-compatible endpoint", shown_default="AWS, or AWS_ENDPOINT_URL_S3"),
    )
    s3_region: str | None = field(
        default=None,
        metadata=option(help="the bucket's region", shown_default="the AWS chain's"),
    )
    s3_sse: str | None = field(
        default=None,
        metadata=option(help="server-side encryption of every object: AES256, aws:kms"),
    )
    s3_kms_key_id: str | None = field(
        default=None,
        metadata=option(help="KMS key id or ARN for aws:kms", shown_default="the S3 key"),
    )
    s3_max_attempts: int = field(
        default=10,
        metadata=option(
            int, "attempts per S3 request on 503 SlowDown and 5xx (botocore, then s3fs)"
        ),
    )

    def _check(self) -> None:
        if self.s3_endpoint_url is not None and not self.s3_endpoint_url.startswith(
            ("http://", "https://")
        ):
            raise bad(
                "s3_endpoint_url",
                "s3_endpoint_url must be a URL such as https://s3.example.com:9000",
            )
        if self.s3_sse not in (None, *S3_SSE):
            raise bad("s3_sse", f"s3_sse must be one of {', '.join(S3_SSE)} (got {self.s3_sse!r})")
        if self.s3_kms_key_id is not None and self.s3_sse != "aws:kms":
            raise bad("s3_kms_key_id", "s3_kms_key_id needs --s3-sse aws:kms")
        if self.s3_max_attempts < 1:
            raise bad("s3_max_attempts", "s3_max_attempts must be at least 1")
