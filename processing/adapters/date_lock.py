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
refreshes it every quarter of its time to live; :meth:`DateLock.check` refreshes it once more and
raises :class:`LockLostError` if another run took it meanwhile. Expiry compares wall clocks of
different hosts: keep the time to live far above their skew.

The lock is also the fence of the publish (see :mod:`processing.adapters.publish`): a publish
begins by recording its :class:`Intent` in the lock object (:meth:`DateLock.mark`, a conditional
write, so a run that lost the lock cannot begin one), and every later holder of the date inherits
the intent until it is resolved (completed, or abandoned if it cannot be). A run that releases
the lock with an intent still open leaves it behind as an expired holding, so the next run of the
date takes it over at once and completes the publish.
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

from processing.adapters.cas import object_store
from processing.adapters.storage_errors import translate
from processing.spec.errors import ConfigError, DateLockedError, LockLostError, PipelineError

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
class Intent:
    """A publish in progress: the staging it publishes from, the ``publish_id`` its manifest
    carries (unique to the attempt) and the tag that names its files."""

    staging_id: str
    publish_id: str
    tag: str

    @classmethod
    def parse(cls, value: Any) -> Intent | None:
        if not isinstance(value, dict):
            return None
        try:
            return cls(str(value["staging_id"]), str(value["publish_id"]), str(value["tag"]))
        except KeyError:
            return None


#: When a released lock with an open intent "expires": at once, for every clock.
_LONG_AGO = dt.datetime(1970, 1, 1, tzinfo=dt.UTC).isoformat()


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
    #: the publish this holding (or one before it) began and nobody has resolved yet
    publishing: Intent | None = None

    @classmethod
    def parse(cls, data: bytes) -> Holder:
        try:
            fields = json.loads(data)
            known = {k: fields[k] for k in cls.__dataclass_fields__ if k in fields}
            known["publishing"] = Intent.parse(fields.get("publishing"))
            return cls(**known)
        except (ValueError, KeyError, TypeError, AttributeError):  # unreadable: long expired
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
        self._intent: Intent | None = None

    @property
    def intent(self) -> Intent | None:
        """The open publish of the date: begun by this holding, or inherited on taking the
        lock from one that did not finish it."""
        return self._intent

    @property
    def lost(self) -> str | None:
        """Why the lock is no longer this run's, once a write of it was refused."""
        return self._lost

    def _holder(self, *, expired: bool = False) -> Holder:
        now = self.clock()
        return Holder(
            run_id=self.run_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            acquired_at=self._acquired_at or now.isoformat(),
            expires_at=_LONG_AGO if expired else (now + self.ttl).isoformat(),
            token=self._token,
            process=_process_identity(os.getpid()),
            publishing=self._intent,
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
        except (NotADirectoryError, FileExistsError) as e:  # a file where a folder belongs
            raise ConfigError(f"cannot write under the destination: {e}: check --dest") from e
        except Exception as e:
            translated = translate(e, f"the destination (taking the lock {self.path})")
            if translated is None:
                raise
            raise translated from e

    def _acquire(self) -> None:
        self._acquired_at = self.clock().isoformat()
        for attempt in range(5):  # races: the lock changed between our read and our swap
            if attempt:
                time.sleep(0.05 * attempt)
            self._intent = None
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
            self._intent = holder.publishing  # an open publish passes to the next holder
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
        """Push the expiry forward; raise LockLostError if another run took the lock.

        A refresh that succeeds proves the lock was this holding's without a break from its
        acquisition until now: a lock lost once can never be written again by this holding
        (its ETag changed, and every holding writes a token of its own)."""
        with self._mutex:
            self._write()

    check = refresh  # before a step of the publish: still ours, for another time to live

    def mark(self, intent: Intent) -> None:
        """Record a publish as begun, in the same conditional write that proves the lock is
        still ours: from here on, whoever holds the date next completes it."""
        with self._mutex:
            before, self._intent = self._intent, intent
            try:
                self._write()
            except BaseException:
                self._intent = before if self._lost is None else intent
                raise

    def clear(self) -> None:
        """The open publish is resolved (completed or abandoned): forget it, if still ours."""
        with self._mutex:
            before, self._intent = self._intent, None
            try:
                self._write()
            except BaseException:
                self._intent = before
                raise

    def _write(self) -> None:
        """Write this holding (its expiry, its intent) over the lock, if still ours."""
        if self._lost:
            raise LockLostError(self._lost)
        if self._etag is None:
            raise LockLostError(f"the lock {self.path} is not held")
        for _ in range(3):
            etag = self._store.replace(self._holder().encode(), self._etag)
            if etag is not None:
                self._etag = etag
                return
            # not applied as asked: an earlier write of ours applied with its answer lost (then
            # write again over it: it may lack this change), a conflict in flight, or taken
            ours = self._ours()
            if ours is None:
                break
            self._etag = ours[1]
        found = self._store.read()
        now = f"held by {Holder.parse(found[0]).describe()}" if found else "released since"
        self._lost = (
            f"this run lost its lock {self.path}: it expired and another run took the date "
            f"over (now {now}); nothing more is published by this run (was it paused longer "
            "than the lock's time to live?)"
        )
        raise LockLostError(self._lost)

    def release(self) -> None:
        """Let go of the date. With a publish still open, the lock stays as an expired holding
        that carries it, so the next run of the date takes it over at once and completes it."""
        self._stop.set()
        with self._mutex:
            if self._etag is None or self._lost:
                return
            try:
                if self._intent is not None:
                    if self._store.replace(self._holder(expired=True).encode(), self._etag):
                        log.warning(
                            "left the open publish of %s in the lock %s for the next run",
                            self._intent.staging_id,
                            self.path,
                        )
                    else:
                        log.warning("the lock %s was no longer this run's at release", self.path)
                elif not self._store.delete(self._etag):
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
