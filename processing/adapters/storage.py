"""Object storage through fsspec only: one place turns a URL and ``storage_options`` into a
filesystem, so a local directory, S3 and any S3-compatible store run the same code.

S3 settings (endpoint, region, server-side encryption, retries) become s3fs options here, and only
here. Credentials are never among them: s3fs uses the standard AWS chain (environment variables,
web identity / IRSA, EKS Pod Identity, ``AWS_PROFILE``, instance metadata), and botocore reads
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` when no endpoint is set.
"""

from __future__ import annotations

import contextlib
import functools
import os
import posixpath
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fsspec.core import url_to_fs

from processing.spec.errors import ConfigError

S3_PROTOCOLS = ("s3", "s3a")


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def local_path(url: str) -> str:
    """The absolute path of a local URL: ``file:///tmp/x``, ``file:/tmp/x`` (RFC 8089's form
    without an authority) and ``/tmp/x`` are all ``/tmp/x``; relative paths are made absolute."""
    if url.startswith("file://"):
        url = url.removeprefix("file://")
    elif url.startswith("file:/"):
        url = url.removeprefix("file:")
    return os.path.abspath(url)


def is_s3(url: str) -> bool:
    return url.partition("://")[0] in S3_PROTOCOLS and "://" in url


@dataclass(frozen=True)
class S3Options:
    """The S3 settings, as s3fs options (see ``Settings`` for each one's meaning)."""

    endpoint_url: str | None = None
    region: str | None = None
    sse: str | None = None
    kms_key_id: str | None = None
    max_attempts: int = 10

    def fsspec_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            # botocore's "standard" retries: 503 SlowDown and other throttling, 500/502/503/504
            # and connection errors, with exponential backoff and jitter, within a retry quota
            # (see :func:`filesystem` for what retries once the quota is spent)
            "config_kwargs": {"retries": {"max_attempts": self.max_attempts, "mode": "standard"}},
            # other processes (the workers) write what the driver lists: never list from a cache
            "use_listings_cache": False,
        }
        if self.endpoint_url:
            options["endpoint_url"] = self.endpoint_url
        if self.region:
            options["client_kwargs"] = {"region_name": self.region}
        if self.sse:  # s3fs adds these to every call that takes them: put, multipart, copy
            encryption = {"ServerSideEncryption": self.sse}
            if self.kms_key_id:
                encryption["SSEKMSKeyId"] = self.kms_key_id
            options["s3_additional_kwargs"] = encryption
        return options


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def storage_options_for(
    url: str, storage_options: Mapping[str, Any] | None, s3: S3Options | None = None
) -> dict[str, Any]:
    """The fsspec options for ``url``: the S3 settings for an S3 URL, under the explicit
    ``storage_options`` (which win, key by key)."""
    explicit = dict(storage_options or {})
    if s3 is None or not is_s3(url):
        return explicit
    return _merge(s3.fsspec_options(), explicit)


def filesystem(url: str, storage_options: Mapping[str, Any] | None = None):
    """``(fs, path)`` for ``url``. Local paths become absolute, so workers agree on them."""
    check_url(url)
    if is_local(url):
        url = local_path(url)
    try:
        fs, path = url_to_fs(url, **dict(storage_options or {}))
    except (ImportError, ValueError, TypeError) as e:
        raise ConfigError(f"cannot use {url!r} as storage: {e}") from e
    if is_s3(url):
        _retry_past_the_quota(fs, storage_options or {})
    return fs, path


def _retry_past_the_quota(fs: Any, storage_options: Mapping[str, Any]) -> None:
    """Give s3fs's own retries as many attempts as botocore's (``max_attempts``, at least its
    default 5).

    botocore's standard retries draw on a retry quota per client (500 tokens, 5 a throttled
    retry, refilled by successes): one s3fs client copies or writes a thousand files at once,
    so a burst of 503 SlowDown spends it in a moment, and from then on botocore does not retry
    at all. What retries then is s3fs (``_error_wrapper``: ``fs.retries`` attempts, waiting
    0.1 s x 1.7^i, at most 15 s). With its default 5 attempts (2 s) a publish of 2,000 files
    failed under a 5 s burst of SlowDown; with 10 (29 s) it rode out a 15 s one. ``retries`` is
    not an s3fs option, so it is set on the filesystem (cached by fsspec: every user of these
    options shares it)."""
    retries = storage_options.get("config_kwargs", {}).get("retries", {})
    attempts = retries.get("max_attempts") if isinstance(retries, Mapping) else None
    if isinstance(attempts, int) and hasattr(fs, "retries"):
        fs.retries = max(attempts, _S3FS_RETRIES)


#: s3fs's own default number of attempts.
_S3FS_RETRIES = 5


def on_local_disk(fs: Any) -> bool:
    """Whether an fsspec filesystem is the local disk (which, unlike object stores, has
    directories that must exist before a file is written in them)."""
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol


def copy_files(fs: Any, pairs: list[tuple[str, str]]) -> None:
    """Copy files, (source, target) pairs: server-side and concurrently on object stores, hard
    links on a local disk (a copy where links cannot be made, never leaving a short target).
    A missing source fails the copy; an existing target on a local disk is kept."""
    if not pairs:
        return
    if not on_local_disk(fs):
        fs.copy([a for a, _ in pairs], [b for _, b in pairs])
        return
    for source, target in pairs:
        os.makedirs(posixpath.dirname(target), exist_ok=True)
        if os.path.exists(target):
            continue
        try:
            os.link(source, target)
        except FileExistsError:
            continue
        except FileNotFoundError:
            raise
        except OSError:  # a filesystem without hard links, or across devices
            partial = f"{target}.partial-{os.getpid()}"  # a crash never leaves a short target
            shutil.copyfile(source, partial)
            os.replace(partial, target)


def put_bytes(fs: Any, path: str, data: bytes) -> None:
    """Write a small object at ``path`` (its directory made first on a local disk)."""
    if on_local_disk(fs):
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, data)


@functools.cache
def transient_storage_errors() -> tuple[type[BaseException], ...]:
    """Storage errors a retry may cure: OSError (s3fs translates most S3 errors to it),
    timeouts, and what botocore and aiohttp raise themselves (a refused connection, an endpoint
    that does not answer). botocore's ParamValidationError is among them: check
    :func:`is_bad_request` first."""
    errors: list[type[BaseException]] = [OSError, TimeoutError]
    with contextlib.suppress(ImportError):
        from botocore.exceptions import BotoCoreError

        errors.append(BotoCoreError)
    with contextlib.suppress(ImportError):
        from aiohttp import ClientError

        errors.append(ClientError)
    return tuple(errors)


def is_bad_request(error: BaseException) -> bool:
    """A request our configuration made invalid (botocore refuses it before sending)."""
    return type(error).__name__ in {"ParamValidationError", "InvalidRegionError"}


def check_url(url: str) -> str:
    """Refuse what would silently go to the wrong place: credentials in a URL (they would reach
    paths, logs and lock objects) and a scheme without its "//" (``s3:/bucket/x`` would be a
    local folder named ``s3:``). ``file:/tmp/x`` is the local path ``/tmp/x``; a relative path
    with a colon in it (``lake:2023``) is a local path."""
    _, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        raise ConfigError(
            f"{redact_url(url)}: credentials do not belong in the URL; use the AWS chain "
            "(environment, IRSA, Pod Identity, profile) or --storage-options"
        )
    meant = _missing_slashes(url)
    if meant is not None:
        shown = _redact_any(url)
        raise ConfigError(
            f"{shown!r} is not a usable URL, a scheme needs '://' after it: did you mean "
            f"{_redact_any(meant)!r}? (for a local path that starts so, write './{shown}')"
        )
    return url


#: A URL scheme (RFC 3986) and its colon, at the start of a URL or of a link of an fsspec chain
#: (``simplecache::s3://...``).
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):(?!:)")


@functools.cache
def _protocols() -> frozenset[str]:
    """The protocols fsspec knows, but ``data:`` (its URLs have no "//")."""
    from fsspec.registry import available_protocols

    return frozenset(available_protocols()) - {"data"}


def _missing_slashes(url: str) -> str | None:
    """What ``url`` meant if one of its links is a scheme without its "//" (``s3:/b``,
    ``s3:b``, ``minio:/b``), else None. A link that starts with a protocol fsspec knows, or with
    any scheme and one slash, is such a URL; ``file:/abs`` is a valid file URI."""
    links = url.split("::")
    for i, link in enumerate(links):
        match = _SCHEME.match(link)
        if match is None:
            continue
        scheme, rest = match.group(1).lower(), link[match.end() :]
        if rest.startswith("//"):
            continue
        if scheme == "file":
            if rest.startswith("/"):
                continue
            links[i] = rest  # file:tmp/x is no file URI: the relative path tmp/x
            return "::".join(links)
        if scheme in _protocols() or rest.startswith("/"):
            links[i] = f"{scheme}://{rest.lstrip('/')}"
            return "::".join(links)
    return None


def _redact_any(url: str) -> str:
    """:func:`redact_url` for each link of an fsspec chain, with or without its "//"."""
    shown = []
    for link in url.split("::"):
        match = _SCHEME.match(link)
        if match:
            start = match.end() + len(link[match.end() :]) - len(link[match.end() :].lstrip("/"))
            host, slash, path = link[start:].partition("/")
            if "@" in host:
                shown.append(f"{link[:start]}***@{host.rsplit('@', 1)[1]}{slash}{path}")
                continue
        shown.append(link)
    return "::".join(shown)


def redact_url(url: str) -> str:
    """``s3://key:secret@bucket/x`` -> ``s3://***@bucket/x``: safe for logs and manifests."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
