"""Compare-and-swap on one small object: what the date lock and the publish's switch stand on.

- S3 (and S3-compatible stores): conditional requests. Create with ``If-None-Match: *``, replace
  and delete with ``If-Match`` on the ETag read.
- A local disk: the same operations under an exclusive ``flock`` of a guard file beside the
  object, with a hash of the content as the ETag.

Every operation answers "done" or "not done" (the object changed, is gone, or exists); errors of
the store itself (network, access) are raised.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import posixpath
import time
from collections.abc import Iterator
from typing import Any, Protocol

from processing.spec.errors import ConfigError, TransientError

#: How long a local compare-and-swap waits for the guard's flock (held for microseconds by a
#: live process; longer only by a process stopped inside it) before giving up as transient.
GUARD_TIMEOUT_SECONDS = 60.0


class ObjectStore(Protocol):
    """Compare-and-swap on one small object. ETags are opaque strings."""

    def read(self) -> tuple[bytes, str] | None: ...
    def create(self, data: bytes) -> str | None: ...  # None: it exists
    def replace(self, data: bytes, etag: str) -> str | None: ...  # None: it changed or is gone
    def delete(self, etag: str) -> bool: ...  # False: it changed or is gone


def error_code(error: BaseException) -> str | None:
    """The S3 error code behind an s3fs error (s3fs chains botocore's ClientError)."""
    current: BaseException | None = error
    while current is not None:
        response = getattr(current, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code"))
        current = current.__cause__
    return None


#: Answers to a conditional request that mean "not done": the object changed, is gone, or a
#: concurrent conditional write is in flight (409). The caller reads the lock again and decides.
_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404", "412", "409"}


class S3Object:
    def __init__(self, fs: Any, path: str) -> None:
        self.fs = fs
        self.bucket, self.key, _ = fs.split_path(path)

    def _call(self, method: str, **kwargs: Any) -> dict[str, Any] | None:
        try:
            return self.fs.call_s3(method, Bucket=self.bucket, Key=self.key, **kwargs)
        except (OSError, ValueError) as e:
            code = error_code(e)
            if code in _CONFLICT or isinstance(e, FileExistsError | FileNotFoundError):
                if code == "NoSuchBucket":
                    raise
                return None
            raise

    def read(self) -> tuple[bytes, str] | None:
        from fsspec.asyn import sync

        async def get() -> tuple[bytes, str]:
            response = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=self.key)
            async with response["Body"] as body:
                return await body.read(), response["ETag"]

        try:
            return sync(self.fs.loop, get)
        except FileNotFoundError:
            return None

    def create(self, data: bytes) -> str | None:
        done = self._call("put_object", Body=data, IfNoneMatch="*", ContentType="application/json")
        return None if done is None else done["ETag"]

    def replace(self, data: bytes, etag: str) -> str | None:
        done = self._call("put_object", Body=data, IfMatch=etag, ContentType="application/json")
        return None if done is None else done["ETag"]

    def delete(self, etag: str) -> bool:
        return self._call("delete_object", IfMatch=etag) is not None


class LocalObject:
    """The same operations on a local file, each under an exclusive flock of a guard file (beside
    the object unless ``guard`` names another place). Writes replace the file by a rename, so
    readers that do not take the flock still see the old or the new content, never a part."""

    def __init__(self, path: str, guard: str | None = None) -> None:
        self.path = path
        self.guard = guard or f"{path}.guard"

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        os.makedirs(posixpath.dirname(self.path), exist_ok=True)
        os.makedirs(posixpath.dirname(self.guard), exist_ok=True)
        with open(self.guard, "a+b") as guard:
            deadline = time.monotonic() + GUARD_TIMEOUT_SECONDS
            while True:
                try:
                    fcntl.flock(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TransientError(
                            f"{self.guard} stays locked by another process (stopped while "
                            "writing?): try again once it has finished or been killed"
                        ) from None
                    time.sleep(0.01)
            try:
                yield
            finally:
                fcntl.flock(guard, fcntl.LOCK_UN)

    def _current(self) -> tuple[bytes, str] | None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def _write(self, data: bytes) -> str:
        temporary = f"{self.path}.tmp-{os.getpid()}"
        with open(temporary, "wb") as f:
            f.write(data)
        os.replace(temporary, self.path)
        return hashlib.sha256(data).hexdigest()

    def read(self) -> tuple[bytes, str] | None:
        with self._guarded():
            return self._current()

    def create(self, data: bytes) -> str | None:
        with self._guarded():
            return None if self._current() is not None else self._write(data)

    def replace(self, data: bytes, etag: str) -> str | None:
        with self._guarded():
            current = self._current()
            return self._write(data) if current and current[1] == etag else None

    def delete(self, etag: str) -> bool:
        with self._guarded():
            current = self._current()
            if not current or current[1] != etag:
                return False
            os.unlink(self.path)
            return True


def object_store(fs: Any, path: str, guard: str | None = None) -> ObjectStore:
    """Compare-and-swap on ``path``; ``guard``: where a local disk keeps its flock file."""
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if "file" in protocol:
        return LocalObject(path, guard)
    if {"s3", "s3a"} & set(protocol):
        return S3Object(fs, path)
    raise ConfigError(
        f"{protocol[0]}:// has no conditional writes we can use: use a local directory or S3"
    )
