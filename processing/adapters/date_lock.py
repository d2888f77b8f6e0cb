"""One writer per date: a lock object per date under the destination (``_locks/event_date=D.json``).

The object holds the run id, host, process id and an expiry. Every change is a compare-and-swap:

- on S3 (and S3-compatible stores), a conditional write: created with ``If-None-Match: *``,
  refreshed, taken over and deleted with ``If-Match`` on the ETag read, so two writers can never
  both believe they hold it;
- on a local disk, the same operations under an exclusive ``flock``, with a hash of the content
  as the ETag.

A second run of the date fails fast with :class:`DateLockedError` naming the holder. A lock can be
taken over once it has expired (its holder stopped refreshing it), or at once when its holder is
a process of this host that no longer exists (a killed run). While a run holds the lock, a thread
refreshes it every quarter of its time to live; before publishing, :meth:`DateLock.check`
refreshes it once more and raises :class:`LockLostError` if another run took it meanwhile.
Expiry compares wall clocks of different hosts: keep the time to live far above their skew.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import posixpath
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from processing.spec.errors import ConfigError, DateLockedError, LockLostError, TransientError

log = logging.getLogger(__name__)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Holder:
    """What the lock object says about the run holding it."""

    run_id: str
    host: str
    pid: int
    acquired_at: str
    expires_at: str

    @classmethod
    def parse(cls, data: bytes) -> Holder:
        try:
            fields = json.loads(data)
            return cls(**{k: fields[k] for k in cls.__dataclass_fields__})
        except (ValueError, KeyError, TypeError):  # unreadable: treat as long expired
            never = dt.datetime.min.replace(tzinfo=dt.UTC).isoformat()
            return cls("(unreadable lock)", "", 0, never, never)

    def encode(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode()

    def expired(self, now: dt.datetime) -> bool:
        try:
            return dt.datetime.fromisoformat(self.expires_at) <= now
        except (TypeError, ValueError):  # unreadable: as good as expired
            return True

    def dead_here(self) -> bool:
        """The holder is a process of this host that no longer exists."""
        if self.host != socket.gethostname() or self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def describe(self) -> str:
        return f"run {self.run_id} on {self.host} (pid {self.pid}), until {self.expires_at}"


class _Store(Protocol):
    """Compare-and-swap on one small object. ETags are opaque strings."""

    def read(self) -> tuple[bytes, str] | None: ...
    def create(self, data: bytes) -> str | None: ...  # None: it exists
    def replace(self, data: bytes, etag: str) -> str | None: ...  # None: it changed or is gone
    def delete(self, etag: str) -> bool: ...  # False: it changed or is gone


def _error_code(error: BaseException) -> str | None:
    """The S3 error code behind an s3fs error (s3fs chains botocore's ClientError)."""
    current: BaseException | None = error
    while current is not None:
        response = getattr(current, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code"))
        current = current.__cause__
    return None


_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404", "412", "409"}


class _S3Store:
    def __init__(self, fs: Any, path: str) -> None:
        self.fs = fs
        self.bucket, self.key, _ = fs.split_path(path)

    def _call(self, method: str, **kwargs: Any) -> dict[str, Any] | None:
        try:
            return self.fs.call_s3(method, Bucket=self.bucket, Key=self.key, **kwargs)
        except (OSError, ValueError) as e:
            code = _error_code(e)
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


class _LocalStore:
    """The same operations on a local file, each under an exclusive flock of a guard file."""

    def __init__(self, path: str) -> None:
        self.path = path

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        os.makedirs(posixpath.dirname(self.path), exist_ok=True)
        with open(f"{self.path}.guard", "a+b") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
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


def _store(fs: Any, path: str) -> _Store:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if "file" in protocol:
        return _LocalStore(path)
    if {"s3", "s3a"} & set(protocol):
        return _S3Store(fs, path)
    raise ConfigError(
        f"no date lock for {protocol[0]}:// destinations: use a local directory or S3"
    )


class DateLock:
    """The lock on one date of one destination, for one run."""

    def __init__(
        self,
        fs: Any,
        path: str,
        run_id: str,
        ttl_seconds: float,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self.path = path
        self.run_id = run_id
        self.ttl = dt.timedelta(seconds=ttl_seconds)
        self.clock = clock
        self._store = _store(fs, path)
        self._etag: str | None = None
        self._acquired_at = ""
        self._mutex = threading.Lock()
        self._lost: str | None = None
        self._stop = threading.Event()

    def _holder(self) -> Holder:
        now = self.clock()
        return Holder(
            run_id=self.run_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            acquired_at=self._acquired_at or now.isoformat(),
            expires_at=(now + self.ttl).isoformat(),
        )

    def acquire(self) -> None:
        """Take the lock, or raise DateLockedError naming the run that holds it."""
        try:
            self._acquire()
        except DateLockedError:
            raise
        except (OSError, ValueError) as e:
            if _error_code(e) == "NoSuchBucket":
                raise ConfigError(f"the destination's bucket does not exist ({self.path})") from e
            if isinstance(e, PermissionError | NotADirectoryError | FileExistsError):
                raise ConfigError(f"cannot write under the destination: {e}") from e
            raise TransientError(f"cannot take the lock {self.path}: {e}") from e

    def _acquire(self) -> None:
        self._acquired_at = self.clock().isoformat()
        for _ in range(3):  # a takeover race: someone else changed the lock between read and swap
            etag = self._store.create(self._holder().encode())
            if etag is not None:
                self._etag = etag
                log.info("took the lock %s", self.path)
                return
            found = self._store.read()
            if found is None:
                continue  # released meanwhile: try to create it again
            holder = Holder.parse(found[0])
            if not (holder.expired(self.clock()) or holder.dead_here()):
                raise DateLockedError(
                    f"another run is writing this date: {holder.describe()} holds {self.path}. "
                    "Wait for it to finish; if it died, its lock can be taken once it expires"
                )
            etag = self._store.replace(self._holder().encode(), found[1])
            if etag is not None:
                self._etag = etag
                log.warning("took over the lock %s from %s", self.path, holder.describe())
                return
        raise DateLockedError(f"other runs keep taking the lock {self.path}; try again later")

    def refresh(self) -> None:
        """Push the expiry forward; raise LockLostError if another run took the lock."""
        with self._mutex:
            if self._lost:
                raise LockLostError(self._lost)
            if self._etag is None:
                raise LockLostError(f"the lock {self.path} is not held")
            etag = self._store.replace(self._holder().encode(), self._etag)
            if etag is None:
                found = self._store.read()
                taker = Holder.parse(found[0]).describe() if found else "nobody (it was deleted)"
                self._lost = (
                    f"this run's lock {self.path} expired and was taken by {taker}: nothing more "
                    "is published by this run (was it paused longer than the lock's time to live?)"
                )
                raise LockLostError(self._lost)
            self._etag = etag

    check = refresh  # before publishing: still ours, for another time to live

    def release(self) -> None:
        self._stop.set()
        with self._mutex:
            if self._etag is None or self._lost:
                return
            try:
                if not self._store.delete(self._etag):
                    log.warning("the lock %s was no longer this run's at release", self.path)
            except OSError as e:  # it expires by itself
                log.warning("could not release the lock %s: %s", self.path, e)
            self._etag = None

    def _heartbeat(self) -> None:
        interval = self.ttl.total_seconds() / 4
        while not self._stop.wait(interval):
            try:
                self.refresh()
            except LockLostError as e:
                log.error("%s", e)
                return
            except OSError as e:
                log.warning("could not refresh the lock %s (will retry): %s", self.path, e)

    @contextlib.contextmanager
    def held(self) -> Iterator[DateLock]:
        """Acquire, keep refreshed in a background thread, release at the end."""
        self.acquire()
        beat = threading.Thread(target=self._heartbeat, name="date-lock", daemon=True)
        beat.start()
        try:
            yield self
        finally:
            self.release()
            beat.join(timeout=5)


def holder_of(fs: Any, path: str) -> Holder | None:
    """Who holds a lock now (for gc and messages), or None."""
    found = _store(fs, path).read()
    return Holder.parse(found[0]) if found else None
