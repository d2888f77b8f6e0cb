"""What every stage works under: the destination, and the date's lock held for the stage."""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from processing.adapters import publish as wap
from processing.adapters.date_lock import DateLock, holder_of
from processing.adapters.storage_errors import storage_errors
from processing.app.context import date_lock, destination
from processing.app.stages.records import RunRecords
from processing.logic.layout import Layout
from processing.spec.errors import LockLostError
from processing.spec.settings import Settings


def new_tag() -> str:
    """A new tag for the files of an attempt at staging: no two versions of a date, not even
    two runs given the same run id, ever share a file name (see processing.logic.layout)."""
    return secrets.token_hex(4)


@dataclass(frozen=True)
class Scope:
    """A stage's world: the destination's filesystem and layout, its storage options, the
    date's lock (held), and the run's records."""

    fs: Any
    layout: Layout
    options: dict[str, Any]
    lock: DateLock
    records: RunRecords


@contextmanager
def stage(settings: Settings, run_id: str, lock: DateLock | None) -> Iterator[Scope]:
    """The destination, and the date's lock held for this stage (given, or the run's resumed).

    Storage failures anywhere in the stage become the pipeline's errors (configuration,
    transient, or the destination changed); and a failure of a stage whose lock another run took
    over says so, whatever it tripped on (the files that run removed, usually)."""
    with storage_errors():
        fs, layout, options = destination(settings)
        records = RunRecords(fs, layout, settings.date, run_id)
        if lock is not None:
            with _explained_by_lost_lock(lock):
                yield Scope(fs, layout, options, lock, records)
            return
        resumed = date_lock(settings, fs, layout, run_id, resume=True)
        with resumed.held(release=False), _explained_by_lost_lock(resumed):
            yield Scope(fs, layout, options, resumed, records)


@contextmanager
def _explained_by_lost_lock(lock: DateLock) -> Iterator[None]:
    try:
        yield
    except LockLostError:
        raise
    except Exception as e:
        if lock.lost is None:
            with contextlib.suppress(Exception):  # the store is down: the error says enough
                lock.check()
        if lock.lost is not None:
            raise LockLostError(f"{lock.lost} (the run then failed: {e})") from e
        raise


def attempts(
    fs: Any, layout: Layout, date: dt.date, run_id: str, lock: DateLock | None
) -> list[str]:
    """The stagings of the attempts of ``run_id`` (``R``, ``R-a2``, ``R-replan``...), but not
    one that an open publish (the lock's intent) is publishing from."""
    staging = layout.staging_date(date)
    if not fs.exists(staging):
        return []
    publishing = lock.intent.staging_id if lock is not None and lock.intent else None
    names = [e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(staging, detail=False)]
    return sorted(
        name.removeprefix("run_id=")
        for name in names
        if name.startswith("run_id=")
        and name.removeprefix("run_id=") != publishing
        and (name == f"run_id={run_id}" or name.startswith(f"run_id={run_id}-"))
    )


def discard_attempts(
    fs: Any,
    layout: Layout,
    date: dt.date,
    run_id: str,
    lock: DateLock | None,
    *,
    keep: str | None = None,
) -> None:
    """Remove the staging of every attempt of ``run_id`` but ``keep`` (see :func:`attempts`)."""
    for name in attempts(fs, layout, date, run_id, lock):
        if name != keep:
            wap.discard_staging(fs, layout, date, name)


def holder(fs: Any, layout: Layout, date: dt.date) -> str | None:
    """The run id holding the date's lock, if any."""
    found = holder_of(fs, layout.lock(date))
    return found.run_id if found else None
