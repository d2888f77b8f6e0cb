"""Fixtures for tests of the S3 path: s3fs, pyarrow and DuckDB against moto's S3 server, over real
HTTP on 127.0.0.1, started once per session in this process (subprocess runs reach it too)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import s3fs

from processing.emulator.s3 import S3Server

#: Any credentials work with the emulator; these stand in for the AWS chain's.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
_buckets = itertools.count()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


@pytest.fixture(autouse=True)
def _aws_environment(monkeypatch: pytest.MonkeyPatch, s3_server: S3Server) -> Iterator[None]:
    """The standard credential variables, and no faults left over from another test."""
    for name, value in {**CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    s3_server.faults.reset()
    yield
    s3_server.faults.reset()


def client_fs(endpoint: str) -> s3fs.S3FileSystem:
    """A separate s3fs client (no listing cache) to look at what the pipeline wrote."""
    return s3fs.S3FileSystem(
        endpoint_url=endpoint, use_listings_cache=False, skip_instance_cache=True
    )


@pytest.fixture
def s3(s3_server: S3Server) -> s3fs.S3FileSystem:
    return client_fs(s3_server.endpoint_url)


@pytest.fixture
def bucket(s3: s3fs.S3FileSystem) -> str:
    """A new empty bucket for the test."""
    name = f"lake-{os.getpid()}-{next(_buckets)}"
    s3.call_s3("create_bucket", Bucket=name)
    return name


def objects(fs: s3fs.S3FileSystem, prefix: str) -> dict[str, str]:
    """Key (relative to prefix) -> ETag of every object under prefix."""
    if not fs.exists(prefix):
        return {}
    found = fs.find(prefix, detail=True)
    return {k[len(prefix) :].lstrip("/"): v["ETag"] for k, v in sorted(found.items())}


def cli_env(endpoint: str, **extra: str) -> dict[str, str]:
    return {**CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1", **extra}


def s3_flags(endpoint: str) -> list[str]:
    return ["--s3-endpoint-url", endpoint]


Lake = tuple[Any, str]  # (fs, root) of a lake on local disk or S3


@pytest.fixture(params=["local", "s3"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Lake:
    """An empty lake root, on a local disk and on S3: the protocol must hold on both."""
    if request.param == "local":
        import fsspec

        return fsspec.filesystem("file"), str(tmp_path / "lake")
    fs = request.getfixturevalue("s3")
    return fs, f"{request.getfixturevalue('bucket')}/lake"
