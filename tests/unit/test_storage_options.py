"""S3 settings become s3fs options in one place; explicit storage options win key by key; other
URLs get nothing S3-specific. A URL missing the "//" after its scheme is refused, not taken for a
local folder named "s3:"."""

from __future__ import annotations

import os
import re

import pytest

from processing.adapters.storage import (
    S3Options,
    check_url,
    filesystem,
    is_local,
    is_s3,
    storage_options_for,
)
from processing.app.context import s3_options
from processing.spec.errors import ConfigError
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


ONE_SLASH = [
    pytest.param("s3:/bucket/x", "s3://bucket/x", id="s3-one-slash"),
    pytest.param("s3:bucket/x", "s3://bucket/x", id="s3-no-slash"),
    pytest.param("S3:/bucket/x", "s3://bucket/x", id="upper-case"),
    pytest.param("s3a:/bucket", "s3a://bucket", id="s3a"),
    pytest.param("gs:/x", "gs://x", id="gs"),
    pytest.param("gcs:bucket/day", "gcs://bucket/day", id="gcs-no-slash"),
    pytest.param("abfs:/container/x", "abfs://container/x", id="abfs"),
    pytest.param("memory:/lake", "memory://lake", id="memory"),
    pytest.param("https:/host/x", "https://host/x", id="https"),
    pytest.param("minio:/bucket/x", "minio://bucket/x", id="unknown-scheme-one-slash"),
    pytest.param("simplecache::s3:/bucket/x", "simplecache::s3://bucket/x", id="chained"),
    pytest.param("file:tmp/x", "tmp/x", id="relative-file-uri"),
]


@pytest.mark.parametrize(("url", "meant"), ONE_SLASH)
def test_a_scheme_without_its_two_slashes_is_refused_saying_what_was_meant(
    url: str, meant: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"did you mean {meant!r}")) as raised:
        check_url(url)
    assert "\n" not in str(raised.value)
    with pytest.raises(ConfigError):  # every path goes through check_url
        filesystem(url)


def test_credentials_in_a_one_slash_url_are_not_repeated() -> None:
    with pytest.raises(ConfigError) as raised:
        check_url("s3:/AKIAKEY:topsecret@bucket/x")
    assert "topsecret" not in str(raised.value)
    assert "s3://***@bucket/x" in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "lake:2023",  # a relative folder with a colon in its name
        "lake:2023/events",
        "events_2023-10-23T00:00",
        "./s3:bucket/x",  # a local folder named "s3:", asked for explicitly
        "/data/s3:/x",
        "data/gs:x",
        "s3://bucket/x",
        "s3a://bucket",
        "gs://bucket/x",
        "file:///tmp/x",
        "memory://lake",
        "simplecache::s3://bucket/x",
    ],
)
def test_paths_and_full_urls_pass(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("file:/tmp/x", "/tmp/x"),  # RFC 8089: a file URI with an absolute path, no authority
        ("file:///tmp/x", "/tmp/x"),
        ("/tmp/x", "/tmp/x"),
        ("lake:2023", os.path.join(os.getcwd(), "lake:2023")),
    ],
)
def test_local_urls_become_absolute_paths(url: str, path: str) -> None:
    assert is_local(url)
    fs, found = filesystem(url)
    assert "file" in fs.protocol
    assert found == path
