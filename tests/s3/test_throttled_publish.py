"""S3's request rate limit during a publish of thousands of files: a burst of 503 SlowDown while
the files are copied (concurrently: s3fs copies a thousand at once) and while the retired
version's files are deleted is retried, and the date is published exactly; throttling that
outlasts the retries fails the run as transient (exit 75) with the published version intact, and
the retry of the run completes the publish."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from typing import Any

import pytest

from processing.adapters import publish as wap
from processing.adapters import versions as v
from processing.adapters.date_lock import DateLock, holder_of
from processing.adapters.storage import S3Options, filesystem, storage_options_for
from processing.adapters.storage_errors import storage_errors
from processing.emulator.s3 import WRITE_METHODS, S3Server
from processing.logic.layout import Layout
from processing.spec.errors import TransientError
from tests.s3.conftest import objects
from tests.tags import run_tag

pytestmark = pytest.mark.slow

DATE = dt.date(2023, 10, 23)
#: Files of the version published first (retired by the next), and of the one replacing it.
OLD_FILES, NEW_FILES = 300, 2_000


def _version(run_id: str, files: int) -> dict[str, Any]:
    """A manifest of ``files`` data files (20 event names, and a rejected file), named as the run
    ``run_id`` names them, with their sizes."""
    tag = run_tag(run_id)
    entries = [
        {"dataset": "events", "path": f"event_name=e{i % 20:02d}/part-{i:05d}-000-{tag}.parquet"}
        for i in range(files - 1)
    ] + [{"dataset": "rejected", "path": f"part-00000-000-{tag}.parquet"}]
    for entry in entries:
        entry["bytes"] = len(_data(run_id, entry))
    return {"run_id": run_id, "date": DATE.isoformat(), "tag": tag, "files": entries}


def _data(run_id: str, entry: dict[str, Any]) -> bytes:
    return f"{run_id}:{entry['dataset']}/{entry['path']}".encode()


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def _destination(server: S3Server, bucket: str, attempts: int = 10) -> tuple[Any, Layout]:
    """The destination as a run opens it (the S3 settings become s3fs options), with a client
    of its own: botocore's retry quota is per client."""
    url = f"s3://{bucket}/lake"
    settings = S3Options(endpoint_url=server.endpoint_url, max_attempts=attempts)
    options = storage_options_for(url, {"skip_instance_cache": True}, settings)
    fs, root = filesystem(url, options)
    return fs, Layout(root)


def _stage(server: S3Server, bucket: str, layout: Layout, manifest: dict[str, Any]) -> None:
    """Put the version's files in its staging, straight into the emulator's store (thousands of
    PUTs through HTTP would take longer than the publish under test)."""
    staged = v.staged(layout, DATE, manifest["run_id"])
    server.put_objects(
        bucket,
        {
            staged.file(e).removeprefix(f"{bucket}/"): _data(manifest["run_id"], e)
            for e in manifest["files"]
        },
    )


def _take(fs: Any, layout: Layout, run_id: str) -> DateLock:
    lock = DateLock(fs, layout.lock(DATE), run_id, ttl_seconds=600)
    lock.acquire()
    return lock


def _publish(server: S3Server, bucket: str, fs: Any, layout: Layout, manifest: dict) -> None:
    lock = _take(fs, layout, manifest["run_id"])
    wap.prepare(fs, layout, DATE, manifest["run_id"], lock)
    _stage(server, bucket, layout, manifest)
    with storage_errors():
        wap.publish(fs, layout, DATE, manifest["run_id"], manifest, fence=lock)
    lock.release()


def _holds_exactly(
    s3: Any, version: v.Version, manifest: dict[str, Any], *, marker: bool = False
) -> None:
    """``version`` holds exactly ``manifest``'s files, each with its bytes (ETags: S3's MD5 of a
    simple upload, kept by copies), and its manifest (and the published one its marker)."""
    expected = {version.file(e): _etag(_data(manifest["run_id"], e)) for e in manifest["files"]}
    found = {
        f"{top}/{key}": etag for top in (version.events, version.rejected)
        for key, etag in objects(s3, top).items()
    }  # fmt: skip
    assert set(found) == set(expected) | {version.manifest} | (
        {version.success_marker} if marker else set()
    )
    assert {k: found[k] for k in expected} == expected


def _listed(manifest: dict[str, Any] | None) -> list[tuple[str, str]]:
    return sorted((e["dataset"], e["path"]) for e in (manifest or {}).get("files", []))


def _staged_over(
    s3_server: S3Server, bucket: str, fs: Any, layout: Layout, old: dict, new: dict
) -> DateLock:
    """``old`` published, then ``new`` staged by the run that now holds the date's lock."""
    _publish(s3_server, bucket, fs, layout, old)
    lock = _take(fs, layout, "new-run")
    wap.prepare(fs, layout, DATE, "new-run", lock)
    _stage(s3_server, bucket, layout, new)
    return lock


def test_a_publish_of_thousands_of_files_rides_out_a_burst_of_slow_down(
    s3_server: S3Server, s3: Any, bucket: str
) -> None:
    fs, layout = _destination(s3_server, bucket)
    old, new = _version("old-run", OLD_FILES), _version("new-run", NEW_FILES)
    lock = _staged_over(s3_server, bucket, fs, layout, old, new)

    faults = s3_server.faults
    faults.reset()
    # S3 refusing the prefix's writes for a while, from the 101st copy of the new version on
    # (the old version's copies into _previous/ come first); and then its deletes at a trickle
    faults.slow_down_for(4, after=OLD_FILES + 100, of="CopyObject", methods=WRITE_METHODS)
    faults.slow_down_above(1, burst=1, operations={"DeleteObjects"})
    began = time.perf_counter()
    with storage_errors():
        wap.publish(fs, layout, DATE, "new-run", new, fence=lock)
    took = time.perf_counter() - began
    faults.lift()
    lock.release()

    print(f"publish of {NEW_FILES} files under SlowDown: {took:.1f} s, {dict(faults.injected_by)}")
    assert faults.requests["CopyObject"] >= OLD_FILES + NEW_FILES
    assert faults.injected_by["CopyObject"] >= 300  # the burst met hundreds of copies in flight
    assert faults.injected_by["DeleteObjects"] >= 1  # the retired version's and the staging's
    assert _listed(wap.published_manifest(fs, layout, DATE)) == _listed(new)
    _holds_exactly(s3, v.published(layout, DATE), new, marker=True)  # the old files are gone
    _holds_exactly(s3, v.previous(layout, DATE), old)  # ... but kept for a rollback, as designed
    assert not objects(s3, layout.staging_date(DATE))
    assert holder_of(fs, layout.lock(DATE)) is None


def test_slow_down_past_the_retries_is_transient_and_the_retry_completes(
    s3_server: S3Server, s3: Any, bucket: str
) -> None:
    fs, layout = _destination(s3_server, bucket, attempts=2)  # botocore: 2 attempts, s3fs: 5
    old, new = _version("old-run", 50), _version("new-run", 200)
    lock = _staged_over(s3_server, bucket, fs, layout, old, new)

    faults = s3_server.faults
    faults.reset()
    faults.slow_down_for(after=50 + 20, of="CopyObject", operations={"CopyObject"})  # for good
    began = time.perf_counter()
    with pytest.raises(TransientError) as failed, storage_errors():
        wap.publish(fs, layout, DATE, "new-run", new, fence=lock)
    took = time.perf_counter() - began
    print(f"gave up after {took:.1f} s and {faults.injected} SlowDown")
    assert failed.value.exit_code == 75
    assert "reduce your request rate" in str(failed.value)
    assert faults.injected_by["CopyObject"] >= 100

    # the published version is untouched: its manifest, its files, their bytes
    assert wap.published_manifest(fs, layout, DATE)["publish_id"]
    assert _listed(wap.published_manifest(fs, layout, DATE)) == _listed(old)
    published = v.published(layout, DATE)
    for entry in old["files"][::10]:
        assert fs.cat_file(published.file(entry)) == _data("old-run", entry)
    lock.release()  # the run ends: its open publish stays in the lock for the next holder

    faults.lift()
    retry = _take(fs, layout, "new-run")  # the run retried (exit 75): it completes the publish
    assert retry.intent is not None
    with storage_errors():
        outcome = wap.resolve(fs, layout, DATE, retry)
    retry.release()
    assert outcome.completed == ["new-run"]
    assert _listed(wap.published_manifest(fs, layout, DATE)) == _listed(new)
    _holds_exactly(s3, published, new, marker=True)
    _holds_exactly(s3, v.previous(layout, DATE), old)
    assert took < 30
