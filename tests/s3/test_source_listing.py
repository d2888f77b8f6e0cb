"""A file source on S3 lists as on a local disk: a key that exists is read as given (brackets and
all), a prefix is read whole, only what does not exist is a glob."""

from __future__ import annotations

import pytest
import s3fs

from processing.adapters.sources import FileSource
from processing.adapters.storage import S3Options, storage_options_for
from processing.spec.errors import InputError


def _files(url: str, endpoint: str) -> list[str]:
    options = storage_options_for(url, {}, S3Options(endpoint_url=endpoint))
    return FileSource(url, options).files()


def test_keys_prefixes_and_globs(s3: s3fs.S3FileSystem, bucket: str, s3_server) -> None:
    for key in ("day[1].jsonl", "day1.jsonl", "day2.jsonl", "_SUCCESS", "sub/x.jsonl"):
        s3.pipe_file(f"{bucket}/in/{key}", b'{"event_name": "view"}\n')
    endpoint = s3_server.endpoint_url
    root = f"{bucket}/in"
    assert _files(f"s3://{root}/day[1].jsonl", endpoint) == [f"{root}/day[1].jsonl"]
    assert _files(f"s3://{root}/day[12].jsonl", endpoint) == [
        f"{root}/day1.jsonl",
        f"{root}/day2.jsonl",
    ]
    assert _files(f"s3://{root}", endpoint) == [
        f"{root}/day1.jsonl",
        f"{root}/day2.jsonl",
        f"{root}/day[1].jsonl",
        f"{root}/sub/x.jsonl",
    ]
    with pytest.raises(InputError, match="does not exist"):
        _files(f"s3://{root}/nothing.jsonl", endpoint)
