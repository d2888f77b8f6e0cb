"""Writes to S3: a file larger than s3fs's block size goes up as a multipart upload, encrypted
like every other object, with the size S3 stores; small files merged by copying their row groups
through s3fs (ranged reads, a multipart upload); and the emulator command that serves S3."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import s3fs

from processing.adapters.merger import merge_files
from processing.adapters.storage import S3Options, filesystem, storage_options_for
from processing.adapters.writer import PieceWriter, WriteOptions
from processing.emulator.s3 import S3Server
from processing.logic.batch import split_batch
from tests.conftest import ROOT, random_events

DATE = dt.date(2023, 10, 23)
PART = 5 * 2**20  # S3's smallest part


def _lake(s3_server: S3Server, bucket: str) -> tuple[Any, str]:
    """The bucket's lake through s3fs, with parts of S3's smallest size and SSE."""
    options = storage_options_for(
        f"s3://{bucket}",
        {"default_block_size": PART},
        S3Options(endpoint_url=s3_server.endpoint_url, sse="AES256"),
    )
    return filesystem(f"s3://{bucket}/lake", options)


def test_a_large_file_is_uploaded_in_parts_and_encrypted(
    s3_server: S3Server, s3, bucket: str
) -> None:
    fs, root = _lake(s3_server, bucket)
    writer = PieceWriter(
        fs, f"{root}/events", f"{root}/rejected", 0, WriteOptions(zstd_level=1), tag="0a1b2c3d"
    )
    writer.add(split_batch(random_events(600_000), DATE, "p0"))
    (written,) = writer.close()

    key = f"lake/events/{written.path}"
    head = s3.call_s3("head_object", Bucket=bucket, Key=key)
    assert written.bytes > PART
    assert head["ContentLength"] == written.bytes
    assert head["ETag"].strip('"').endswith(f"-{-(-written.bytes // PART)}")  # parts
    assert head["ServerSideEncryption"] == "AES256"
    assert pq.read_metadata(s3.open(f"{bucket}/{key}")).num_rows == written.rows == 600_000


def test_small_files_are_merged_by_copying_their_row_groups_through_s3fs(
    s3_server: S3Server, s3, bucket: str
) -> None:
    fs, root = _lake(s3_server, bucket)
    sources = []
    for piece in range(3):  # each piece's file of one event name, as a run stages them
        writer = PieceWriter(fs, f"{root}/e", f"{root}/r", piece, WriteOptions(), tag="0a1b2c3d")
        result = split_batch(random_events(250_000, seed=piece), DATE, f"p{piece}")
        writer.add(result)
        sources += [f"{root}/e/{f.path}" for f in writer.close() if f.event_name]
    dest = f"{root}/e/merged.parquet"
    rows, size = merge_files(fs, sources, dest, WriteOptions(min_copied_row_group_rows=1_000))

    expected = pa.concat_tables([pq.read_table(s3.open(path)) for path in sources])
    merged = pq.ParquetFile(s3.open(dest))
    assert merged.metadata.num_row_groups == len(sources)  # copied, not rewritten
    assert rows == expected.num_rows == merged.metadata.num_rows
    assert size == s3.info(dest)["size"] > PART  # uploaded in parts
    assert merged.read().equals(expected)


def test_the_emulator_command_serves_s3_with_its_buckets_until_stopped() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "processing", "emulator", "s3", "--bucket", "cmd-bucket"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("S3 emulator listening on http://127.0.0.1:"), line
        endpoint = line.split(" on ", 1)[1].strip()
        fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
        fs.pipe_file("cmd-bucket/x.txt", b"hello")
        assert fs.cat_file("cmd-bucket/x.txt") == b"hello"
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0  # SIGTERM stops it cleanly
