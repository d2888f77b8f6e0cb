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
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from processing.adapters.cas import error_code, object_store
from processing.adapters.storage import transient_storage_errors
from processing.spec.errors import (
    ConfigError,
    DateLockedError,
    LockLostError,
    PipelineError,
    TransientError,
)

log = logging.getLogger(__name__)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _process_identity(pid: int) -> str:
    """What tells a process apart from a later one with the same pid on this host: the boot,
    the pid namespace, and the process's start time. Empty where /proc does not say."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
        with open(f"/proc/{pid}/stat") as f:
            started = f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""
    return f"{boot}/{namespace}/{started}"


def _namespace_identity() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}/"
    except OSError:
        return ""


@dataclass(frozen=True)
class Holder:
    """What the lock object says about the run holding it. ``token`` is unique to one holding
    (so a write whose answer was lost can be recognised as ours); ``process`` identifies the
    holder's process on its host (see :func:`_process_identity`)."""

    run_id: str
    host: str
    pid: int
    acquired_at: str
    expires_at: str
    token: str = ""
    process: str = ""

    @classmethod
    def parse(cls, data: bytes) -> Holder:
        try:
            fields = json.loads(data)
            return cls(**{k: fields[k] for k in cls.__dataclass_fields__ if k in fields})
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
        """The holder was a process of this host, of this boot and pid namespace, that no
        longer exists (its pid is gone, or now belongs to a process started later). Anything
        less certain (another host, another namespace, no /proc) counts as alive."""
        if self.host != socket.gethostname() or self.pid <= 0 or not self.process:
            return False
        namespace = _namespace_identity()
        if not namespace or not self.process.startswith(namespace):
            return False
        return _process_identity(self.pid) != self.process

    def describe(self) -> str:
        return f"run {self.run_id} on {self.host} (pid {self.pid}), until {self.expires_at}"


class DateLock:
    """The lock on one date of one destination, for one run."""

    def __init__(
        self,
        fs: Any,
        path: str,
        run_id: str,
        ttl_seconds: float,
        clock: Callable[[], dt.datetime] = _utcnow,
        *,
        resume: bool = False,
    ) -> None:
        self.path = path
        self.run_id = run_id
        self.ttl = dt.timedelta(seconds=ttl_seconds)
        self.clock = clock
        self._store = object_store(fs, path)
        self._etag: str | None = None
        self._acquired_at = ""
        self._token = secrets.token_hex(8)
        self._resume = resume
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
            token=self._token,
            process=_process_identity(os.getpid()),
        )

    def _ours(self) -> tuple[Holder, str] | None:
        """The lock as it is now, if this holding wrote it last (a write whose answer was lost,
        after the store's retries, may still have been applied)."""
        found = self._store.read()
        if found is None:
            return None
        holder = Holder.parse(found[0])
        return (holder, found[1]) if holder.token == self._token else None

    def acquire(self) -> None:
        """Take the lock, or raise DateLockedError naming the run that holds it."""
        try:
            self._acquire()
        except PipelineError:
            raise
        except Exception as e:
            if error_code(e) == "NoSuchBucket":
                raise ConfigError(f"the destination's bucket does not exist ({self.path})") from e
            if isinstance(e, PermissionError | NotADirectoryError | FileExistsError):
                raise ConfigError(f"cannot write under the destination: {e}") from e
            if isinstance(e, transient_storage_errors()):
                raise TransientError(f"cannot take the lock {self.path}: {e}") from e
            raise

    def _acquire(self) -> None:
        self._acquired_at = self.clock().isoformat()
        for attempt in range(5):  # races: the lock changed between our read and our swap
            if attempt:
                time.sleep(0.05 * attempt)
            etag = self._store.create(self._holder().encode())
            if etag is not None:
                self._etag = etag
                log.info("took the lock %s", self.path)
                return
            found = self._store.read()
            if found is None:
                continue  # released meanwhile: try to create it again
            holder = Holder.parse(found[0])
            if holder.token == self._token:  # our create was applied, its answer lost
                self._etag = found[1]
                log.info("took the lock %s", self.path)
                return
            if self._resume and holder.run_id == self.run_id:  # the run's next stage
                etag = self._store.replace(self._holder().encode(), found[1])
                ours = (etag, None) if etag is not None else self._ours()
                if ours is not None:
                    self._etag = etag if etag is not None else ours[1]
                    log.info("resumed the lock %s of run %s", self.path, self.run_id)
                    return
                continue
            if not (holder.expired(self.clock()) or holder.dead_here()):
                raise DateLockedError(
                    f"another run is writing this date: {holder.describe()} holds {self.path}. "
                    "Wait for it to finish; if it died, its lock can be taken once it expires"
                )
            etag = self._store.replace(self._holder().encode(), found[1])
            ours = (etag, None) if etag is not None else self._ours()
            if ours is not None:
                self._etag = etag if etag is not None else ours[1]
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
            if etag is None:  # applied with its answer lost, a conflict in flight, or taken
                ours = self._ours()
                if ours is not None:
                    self._etag = ours[1]
                    etag = self._store.replace(self._holder().encode(), self._etag)
                    self._etag = etag or self._etag
                    return
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
                    ours = self._ours()  # a refresh applied with its answer lost
                    if ours is None or not self._store.delete(ours[1]):
                        log.warning("the lock %s was no longer this run's at release", self.path)
            except Exception as e:  # it expires by itself
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
            except Exception as e:  # network trouble: the next beat tries again
                log.warning("could not refresh the lock %s (will retry): %s", self.path, e)

    @contextlib.contextmanager
    def held(self, *, release: bool = True) -> Iterator[DateLock]:
        """Acquire, keep refreshed in a background thread, release at the end (or, with
        ``release=False``, only stop refreshing: a later stage of the run resumes the lock)."""
        self.acquire()
        beat = threading.Thread(target=self._heartbeat, name="date-lock", daemon=True)
        beat.start()
        try:
            yield self
        finally:
            if release:
                self.release()
            self._stop.set()
            beat.join(timeout=5)


def holder_of(fs: Any, path: str) -> Holder | None:
    """Who holds a lock now (for gc and messages), or None."""
    found = object_store(fs, path).read()
    return Holder.parse(found[0]) if found else None
