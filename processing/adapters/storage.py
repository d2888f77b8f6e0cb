"""Object storage through fsspec only: one place turns a URL and ``storage_options`` into a
filesystem, so a local directory, S3 and any S3-compatible store run the same code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from fsspec.core import url_to_fs

from processing.spec.errors import ConfigError


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def filesystem(url: str, storage_options: Mapping[str, Any] | None = None):
    """``(fs, path)`` for ``url``. Local paths become absolute, so workers agree on them."""
    if is_local(url):
        url = os.path.abspath(url.removeprefix("file://"))
    try:
        fs, path = url_to_fs(url, **dict(storage_options or {}))
    except (ImportError, ValueError) as e:
        raise ConfigError(f"cannot use {url!r} as storage: {e}") from e
    return fs, path


def redact_url(url: str) -> str:
    """``s3://key:secret@bucket/x`` -> ``s3://***@bucket/x``: safe for logs and manifests."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
