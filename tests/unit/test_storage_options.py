"""S3 settings become s3fs options in one place; explicit storage options win key by key; other
URLs get nothing S3-specific."""

from __future__ import annotations

import pytest

from processing.adapters.storage import S3Options, is_s3, storage_options_for
from processing.app.context import s3_options
from processing.spec.settings import Settings

REQUIRED = {"PROCESSING_DATE": "2023-10-23", "PROCESSING_SOURCE": "x", "PROCESSING_DEST": "y"}


def test_settings_become_s3fs_options() -> None:
    settings = Settings.load(
        {
            **REQUIRED,
            "PROCESSING_S3_ENDPOINT_URL": "https://minio.internal:9000",
            "PROCESSING_S3_REGION": "eu-west-1",
            "PROCESSING_S3_SSE": "aws:kms",
            "PROCESSING_S3_KMS_KEY_ID": "alias/lake",
            "PROCESSING_S3_MAX_ATTEMPTS": "7",
        }
    )
    options = storage_options_for("s3://lake/prefix", {}, s3_options(settings))
    assert options == {
        "endpoint_url": "https://minio.internal:9000",
        "client_kwargs": {"region_name": "eu-west-1"},
        "s3_additional_kwargs": {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/lake"},
        "config_kwargs": {"retries": {"max_attempts": 7, "mode": "standard"}},
        "use_listings_cache": False,
    }


def test_defaults_retry_and_never_name_credentials() -> None:
    options = S3Options().fsspec_options()
    assert options["config_kwargs"]["retries"] == {"max_attempts": 10, "mode": "standard"}
    assert not {"key", "secret", "token", "endpoint_url", "s3_additional_kwargs"} & set(options)


def test_explicit_storage_options_win_key_by_key() -> None:
    explicit = {"client_kwargs": {"verify": False}, "config_kwargs": {"connect_timeout": 5}}
    options = storage_options_for("s3a://lake", explicit, S3Options(region="us-east-2"))
    assert options["client_kwargs"] == {"region_name": "us-east-2", "verify": False}
    assert options["config_kwargs"] == {
        "retries": {"max_attempts": 10, "mode": "standard"},
        "connect_timeout": 5,
    }
    overridden = storage_options_for("s3://lake", {"use_listings_cache": True}, S3Options())
    assert overridden["use_listings_cache"] is True


@pytest.mark.parametrize("url", ["/data/lake", "file:///data/lake", "gs://lake", "memory://x"])
def test_other_urls_get_only_the_explicit_options(url: str) -> None:
    assert not is_s3(url)
    assert storage_options_for(url, {"a": 1}, S3Options(sse="AES256")) == {"a": 1}
