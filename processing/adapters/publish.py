"""Write-audit-publish for one date, on a local disk or S3, safe against every schedule.

S3 cannot rename a directory or replace several keys at once, so the publish is a short series of
steps, each of which can be repeated, with the date's manifest as the switch. The caller holds the
date's lock (:mod:`processing.adapters.date_lock`), which is also the publish's *fence*.

The versions of a date
    ``events/event_date=D/`` and ``rejected/event_date=D/`` hold the published version: exactly
    the files its ``_manifest.json`` lists (data files and reports). ``_previous/event_date=D/``
    holds the version published before it, the same way. A run stages its own version under
    ``_staging/event_date=D/run_id=R/``. Every version names its files with a tag of its own
    (:mod:`processing.logic.layout`), and a rollback republishes the kept files under a new tag:
    **a file name, once it is no longer published, is never published again.**

The steps of a publish (and of a rollback, which stages the kept version and publishes it)
    1. the staged manifest, with a ``publish_id`` unique to this attempt and the version's tag;
    2. *mark*: the publish's :class:`Intent` goes into the lock object, in a conditional write
       that also proves the lock is still ours. From here on, whoever holds the date next
       completes the publish (or abandons it, if its staging lost files);
    3. *keep*: the published version is copied to ``_previous/`` beside the version kept there,
       the previous manifest is switched to it (conditionally), and the files of the version kept
       before are deleted; a damaged published version is not kept (the older one stays);
    4. *copy*: the run's files are copied in beside the published ones (server-side on S3, hard
       links on a local disk), from its staging;
    5. *switch*: the run's manifest replaces the published one: one conditional write (S3:
       ``If-Match`` on the ETag read before step 3, or ``If-None-Match``; a local disk: the same
       compare-and-swap under a flock, then a rename);
    6. *retire*: the staging is removed, then every file of the date that the new manifest does
       not list is deleted;
    7. *clear*: the intent leaves the lock.

Why a run that lost the lock (paused past its time to live, then resumed) changes nothing
    Every step that changes what readers see, or what a rollback restores, is safe on its own
    whenever it happens:

    - *mark* and *clear* are conditional writes of the lock: refused once another run holds it.
    - the two *switches* (published and previous manifests) are conditional on the manifest read
      before the lock was last checked. A run that takes the date over inherits the open intent
      and resolves it before anything else: it completes it (its switch changes the manifest, so
      a late switch by the paused run is refused, or writes exactly what was completed) or
      abandons it because its staged files are gone (then they are gone for the paused run's
      copies too, which fail before its switch).
    - *deletes* are of files listed, then the lock checked, then exactly those files deleted,
      never "whatever is not listed now". A file that was listed and not published while the run
      held the date belongs to no version and never will (names are never reused, only the lock's
      holder makes a version, and it had resolved every open intent first), so deleting it later
      is harmless.
    - *copies* into the published directories come from the run's staging, which the run that
      completes or abandons the intent removes before it lists what to delete: a late copy fails
      (its source is gone) or lands before that listing and is deleted with the rest.
    - copies into ``_previous/`` add files that no previous manifest lists (the next keep deletes
      them); they never change the kept version.

What readers see
    Through the manifest: one complete version, the old until step 5, the new after it. Listing
    the date's prefix: every file of at least one complete version, plus, from step 4 to step 6,
    the files of the other (rows can appear twice in that window, never be missing).
    :func:`publish` returns that window's length.

A damaged date (a data file missing or truncated, the manifest missing or unreadable, an intent
whose staging is gone) never blocks the next run: it replaces the date, says what was damaged,
and never deletes the previous version before its replacement is in place.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import posixpath
import secrets
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from processing.adapters import versions as v
from processing.adapters.cas import ObjectStore, object_store
from processing.adapters.date_lock import Intent
from processing.adapters.storage import copy_files, on_local_disk
from processing.adapters.versions import Version
from processing.logic.layout import Layout, retag, tag_of
from processing.spec.errors import (
    AuditError,
    ConfigError,
    DamagedError,
    LockLostError,
    TransientError,
)

log = logging.getLogger(__name__)

#: The marker file of a publish begun by an earlier version of this package (which kept the
#: intent in the staging instead of the lock): honoured once, then never written again.
LEGACY_MARKER = "_publishing"


class Fence(Protocol):
    """What a publish needs from the date's lock (:class:`~processing.adapters.date_lock.DateLock`):
    the open intent, a check that it is still ours, and conditional writes of the intent."""

    @property
    def intent(self) -> Intent | None: ...
    def check(self) -> None: ...
    def mark(self, intent: Intent) -> None: ...
    def clear(self) -> None: ...


@dataclass
class Outcome:
    """What a step of the protocol did, for the run's summary and logs."""

    #: seconds during which a reader listing the date could see both versions' files
    window: float = 0.0
    #: damage found and repaired, publishes completed or abandoned: one sentence each
    notices: list[str] = field(default_factory=list)
    #: staging ids of the interrupted publishes that were completed
    completed: list[str] = field(default_factory=list)

    def add(self, other: Outcome) -> Outcome:
        self.notices += other.notices
        self.completed += other.completed
        self.window = max(self.window, other.window)
        return self


# --- filesystem primitives --------------------------------------------------------------------
def _read_json(fs: Any, path: str) -> dict[str, Any] | None:
    """A small JSON object, or None if it is absent or unreadable (a damaged file)."""
    try:
        document = json.loads(fs.cat_file(path))
    except FileNotFoundError:
        return None
    except ValueError:
        log.warning("%s is not readable JSON: treated as absent", path)
        return None
    return document if isinstance(document, dict) else None


def _put_json(fs: Any, path: str, document: Mapping[str, Any]) -> None:
    """Write a small JSON object so that readers see the old or the new one, never a part."""
    data = json.dumps(document, indent=2).encode()
    if on_local_disk(fs):
        os.makedirs(posixpath.dirname(path), exist_ok=True)
        temporary = f"{path}.tmp-{os.getpid()}"
        with open(temporary, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    else:  # one PUT: atomic on S3
        fs.pipe_file(path, data)


def _copy(fs: Any, pairs: list[tuple[str, str]]) -> None:
    """Copy files (see :func:`~processing.adapters.storage.copy_files`).

    A missing source fails the copy: that is what fences a run that lost its lock (the run that
    took the date over removes the staging before it lists what to delete). Repeating a copy is
    harmless: a target name always belongs to one version, same bytes."""
    copy_files(fs, pairs)


def _delete(fs: Any, paths: list[str], version: Version) -> None:
    """Delete exactly ``paths``, and check they are gone (bulk deletes do not report failures)."""
    doomed = set(paths)
    for _ in range(3):
        if not doomed:
            break
        _remove_files(fs, sorted(doomed))
        doomed &= set(version.listing(fs))
    if doomed:
        raise TransientError(f"could not delete {len(doomed)} old files, e.g. {min(doomed)}")
    _remove_empty_directories(fs, (version.events, version.rejected))


def _remove_files(fs: Any, paths: list[str]) -> None:
    """Delete files; one already gone is fine (another holder may have deleted it first)."""
    if not on_local_disk(fs):
        fs.rm(paths)  # S3's delete of a missing key succeeds
        return
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _remove_tree(fs: Any, path: str) -> None:
    if not on_local_disk(fs):
        if fs.exists(path):
            fs.rm(path, recursive=True)
        return
    shutil.rmtree(path, ignore_errors=True)  # another holder may be removing it too


def _remove_empty_directories(fs: Any, directories: Iterable[str]) -> None:
    """Local disks keep directories of deleted files (object stores have none): drop them.
    (``rmdir`` only removes an empty directory: never anything another run just wrote.)"""
    if not on_local_disk(fs):
        return
    for top in directories:
        for current, subdirs, files in os.walk(top, topdown=False):
            if current != top and not subdirs and not files:
                with contextlib.suppress(OSError):
                    os.rmdir(current)
    for top in directories:
        with contextlib.suppress(OSError):
            if os.path.isdir(top) and not os.listdir(top):
                os.rmdir(top)


def _write_probe(fs: Any, layout: Layout, date: dt.date) -> None:
    probe = f"{layout.staging_date(date)}/.write-probe-{secrets.token_hex(4)}"
    try:
        fs.makedirs(layout.staging_date(date), exist_ok=True)
        fs.pipe_file(probe, b"")
        fs.rm_file(probe)
    except (PermissionError, NotADirectoryError, FileNotFoundError) as e:
        raise ConfigError(f"cannot write under the destination {layout.root}: {e}") from e


# --- the two manifests, as compare-and-swap objects -------------------------------------------
def _store(fs: Any, layout: Layout, date: dt.date, version: Version, which: str) -> ObjectStore:
    return object_store(fs, version.manifest, guard=layout.guard(date, which))


def _read_versioned(store: ObjectStore) -> tuple[dict[str, Any] | None, str | None, bool]:
    """A manifest, its ETag (None if absent) and whether it is unreadable (then None)."""
    found = store.read()
    if found is None:
        return None, None, False
    try:
        document = json.loads(found[0])
    except ValueError:
        return None, found[1], True
    if not isinstance(document, dict) or not isinstance(document.get("files"), list):
        return None, found[1], True
    return document, found[1], False


def _swap(store: ObjectStore, document: Mapping[str, Any], etag: str | None, what: str) -> None:
    """Write ``document`` if the object still has ``etag`` (None: if it is still absent)."""
    data = json.dumps(document, indent=2).encode()
    done = store.create(data) if etag is None else store.replace(data, etag)
    if done is not None:
        return
    found = store.read()
    if found is not None:
        try:
            there = json.loads(found[0])
        except ValueError:
            there = None
        if isinstance(there, dict) and there.get("publish_id") == document.get("publish_id"):
            return  # our write, applied with its answer lost (or the same publish completed)
    raise LockLostError(
        f"this run lost its lock on the date: the {what} changed during its publish (another "
        "run took the date over and published); nothing more is published by this run"
    )


def published_manifest(fs: Any, layout: Layout, date: dt.date) -> dict[str, Any] | None:
    """The published manifest of ``date``, or None (not published, or unreadable)."""
    return _read_json(fs, layout.manifest(date))


def previous_manifest(fs: Any, layout: Layout, date: dt.date) -> dict[str, Any] | None:
    """The manifest of the version kept for a rollback, or None."""
    return _read_json(fs, v.previous(layout, date).manifest)


def _same_version(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return bool(a.get("publish_id")) and a.get("publish_id") == b.get("publish_id")


# --- the steps ---------------------------------------------------------------------------------
class _UnusableStagingError(Exception):
    """An intent whose staged version is not all there: it cannot be completed."""


def prepare(fs: Any, layout: Layout, date: dt.date, run_id: str, fence: Fence) -> Outcome:
    """Before a run of ``date``: check the destination takes writes, resolve the publish an
    earlier run left open, refuse ``run_id`` if it is the published run's, and remove the
    staging of runs that did not publish."""
    _write_probe(fs, layout, date)
    outcome = resolve(fs, layout, date, fence)  # first: it may publish a run of this very id
    current = published_manifest(fs, layout, date)
    if current is not None and current.get("run_id") == run_id:
        raise ConfigError(
            f"run id {run_id!r} is the one published for {date}: give the rerun a new run id "
            "(or none, to have one generated)"
        )
    remove_staging(fs, layout, date, fence)
    return outcome


def resolve(fs: Any, layout: Layout, date: dt.date, fence: Fence) -> Outcome:
    """Complete the publish that the date's lock says is open (a run that died or lost the date
    during it), or abandon it if its staged files are gone; then clear it from the lock."""
    outcome = Outcome()
    intents = [fence.intent] if fence.intent is not None else _legacy_intents(fs, layout, date)
    for intent in intents:
        assert intent is not None
        log.warning("completing the interrupted publish of %s", intent.staging_id)
        try:
            outcome.add(_complete(fs, layout, date, intent, fence))
            outcome.completed.append(intent.staging_id)
            outcome.notices.append(f"completed the interrupted publish of {intent.staging_id}")
        except _UnusableStagingError as e:
            _abandon(fs, layout, date, intent, fence)
            outcome.notices.append(
                f"abandoned the interrupted publish of {intent.staging_id}: {e}; the published "
                "version stays"
            )
    if fence.intent is not None:
        fence.clear()
    return outcome


def _legacy_intents(fs: Any, layout: Layout, date: dt.date) -> list[Intent]:
    """Publishes that an earlier version of this package marked in their staging."""
    staging = layout.staging_date(date)
    if not fs.exists(staging):
        return []
    found = []
    for entry in fs.ls(staging, detail=False):
        run_dir = entry.rstrip("/")
        if "run_id=" not in run_dir or not fs.exists(f"{run_dir}/{LEGACY_MARKER}"):
            continue
        staging_id = run_dir.rsplit("run_id=", 1)[-1]
        staged = _read_json(fs, v.staged(layout, date, staging_id).manifest) or {}
        tag = staged.get("tag") or next(
            (t for t in map(tag_of, (e["path"] for e in v.entries(staged))) if t), ""
        )
        found.append(Intent(staging_id, str(staged.get("publish_id") or "(none)"), tag))
    return found


def publish(
    fs: Any,
    layout: Layout,
    date: dt.date,
    staging_id: str,
    manifest: Mapping[str, Any],
    *,
    fence: Fence,
) -> Outcome:
    """Replace the date's published version with the staged one (``manifest`` lists it and
    carries its ``tag``). Returns what happened, with the window during which a reader listing
    the date's prefix could see files of both versions.

    If this process dies or loses the lock after the mark, the next holder of the date completes
    the publish; if it loses the lock before, nothing of it is published."""
    tag = str(manifest["tag"])
    document = {**manifest, "publish_id": secrets.token_hex(8)}
    staged = v.staged(layout, date, staging_id)
    _put_json(fs, staged.manifest, document)
    intent = Intent(staging_id, document["publish_id"], tag)
    fence.mark(intent)
    try:
        outcome = _complete(fs, layout, date, intent, fence)
    except _UnusableStagingError as e:
        _abandon(fs, layout, date, intent, fence)
        fence.clear()
        raise AuditError(f"the staged version lost files before its publish ({e}): nothing "
                         "published") from None  # fmt: skip
    fence.clear()
    return outcome


def _complete(fs: Any, layout: Layout, date: dt.date, intent: Intent, fence: Fence) -> Outcome:
    """Steps 3-6 of the publish of ``intent``; every one of them can be repeated."""
    outcome = Outcome()
    staged, published = v.staged(layout, date, intent.staging_id), v.published(layout, date)
    store = _store(fs, layout, date, published, "published")
    current, etag, unreadable = _read_versioned(store)
    began = started = time.perf_counter()
    if current is not None and current.get("publish_id") == intent.publish_id:
        new = current  # switched by an earlier attempt: what it switched to is what stays
    else:
        found = _read_json(fs, staged.manifest)
        if found is None or found.get("publish_id") != intent.publish_id:
            raise _UnusableStagingError("its staged manifest is gone")
        listed = published.listing(fs)
        pairs, new = _to_copy(fs, found, staged, published, listed)
        if current is not None:
            broken = v.damage(current, listed, published)
            if broken:
                outcome.notices.append(
                    f"the published version of {date} (run {current.get('run_id')}) was "
                    f"damaged: {v.describe(broken)}; it is replaced, and not kept for a rollback "
                    "(the version kept before it stays in _previous/)"
                )
            else:
                _keep_as_previous(fs, layout, date, current, listed, fence=fence)
        elif unreadable:
            outcome.notices.append(
                f"the published manifest of {date} was unreadable: the date is replaced"
            )
        elif listed:
            outcome.notices.append(
                f"{date} held {len(listed)} published files but no manifest: the date is replaced"
            )
        clashes = {published.file(e) for e in v.entries(new)} & published.live(current)
        if clashes:
            raise AuditError(
                f"the new and the published version of {date} share file names "
                f"({sorted(clashes)[:3]}): rerun with another run id"
            )
        started = time.perf_counter()
        _copy(fs, pairs)
        fence.check()
        _swap(store, new, etag, f"published manifest of {date}")
    # the staging is never needed again; removed before the listing, so a late copy from it
    # (a run that lost the date) fails, or lands before the listing and goes with the rest
    _remove_tree(fs, layout.staging_run(date, intent.staging_id))
    _retire(fs, published, published.live(new), fence)
    _remove_empty_directories(fs, [layout.staging_date(date)])
    outcome.window = time.perf_counter() - started
    log.info(
        "published %s (run %s, %d files in %.2f s; both versions listed for %.2f s)",
        published.events,
        new.get("run_id"),
        len(new.get("files", [])),
        time.perf_counter() - began,
        outcome.window,
    )
    return outcome


def _to_copy(
    fs: Any,
    new: dict[str, Any],
    staged: Version,
    published: Version,
    listed: Mapping[str, int],
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """What is left to copy of ``new`` from its staging (a file an earlier attempt already
    published whole is not copied again), and ``new`` without the reports that are gone (a
    report is never worth a date that cannot be published). Raises _UnusableStagingError if a data
    file is neither staged nor published."""
    in_staging = staged.listing(fs)
    pairs: list[tuple[str, str]] = []
    missing, reports = [], []
    for entry in v.entries(new):
        source, target = staged.file(entry), published.file(entry)
        size = entry.get("bytes")
        there = target in listed and (size is None or listed[target] == size)
        is_report = entry in new.get("reports", [])
        if not there and source not in in_staging:
            if not is_report:
                missing.append(f"{entry['dataset']}/{entry['path']}")
            continue
        if not there:
            pairs.append((source, target))
        if is_report:
            reports.append(entry)
    if missing:
        raise _UnusableStagingError(f"{len(missing)} of its files are gone, e.g. {missing[0]}")
    lost = len(new.get("reports", [])) - len(reports)
    if lost:
        log.warning("%d reports of run %s are missing; the version goes on without them",
                    lost, new.get("run_id"))  # fmt: skip
        new = {**new, "reports": reports}
    return pairs, new


def _keep_as_previous(
    fs: Any,
    layout: Layout,
    date: dt.date,
    current: Mapping[str, Any],
    listed: Mapping[str, int],
    *,
    fence: Fence,
) -> None:
    """Step 3: copy the published version (``listed``: the published files) to ``_previous``,
    beside the version kept there, switch the previous manifest to it, then delete the version
    kept before. Its reports go with it if they are still there."""
    previous, published = v.previous(layout, date), v.published(layout, date)
    store = _store(fs, layout, date, previous, "previous")
    kept, etag, _ = _read_versioned(store)
    if kept is not None and _same_version(kept, current):  # an earlier attempt got that far
        _retire(fs, previous, previous.live(kept), fence)
        return
    reports = [r for r in current.get("reports", []) if published.file(r) in listed]
    lost = len(reports) != len(current.get("reports", []))
    keeping = {**current, "reports": reports} if lost else dict(current)
    there = previous.listing(fs)
    pairs = [
        (published.file(e), previous.file(e))
        for e in v.entries(keeping)
        if there.get(previous.file(e)) != listed.get(published.file(e))
    ]
    _copy(fs, pairs)
    fence.check()
    _swap(store, keeping, etag, f"kept previous version of {date}")
    _retire(fs, previous, previous.live(keeping), fence)


def _retire(fs: Any, version: Version, keep: set[str], fence: Fence, tag: str = "") -> int:
    """Delete the files under ``version`` that ``keep`` does not hold (only those tagged ``tag``,
    if given): listed first, then the lock checked, then exactly those deleted (see the module's
    docstring: what a holder of the date lists and does not keep is no version's, for good)."""
    listed = version.listing(fs)
    stale = sorted(p for p in listed if p not in keep and (not tag or tag_of(p) == tag))
    if not stale:
        _remove_empty_directories(fs, (version.events, version.rejected))
        return 0
    fence.check()
    _delete(fs, stale, version)
    return len(stale)


def _abandon(fs: Any, layout: Layout, date: dt.date, intent: Intent, fence: Fence) -> None:
    """Give up an intent that cannot be completed: its staging goes first (so a late copy from
    it fails), then the files it copied into the published directories."""
    log.warning("abandoning the interrupted publish of %s", intent.staging_id)
    _remove_tree(fs, layout.staging_run(date, intent.staging_id))
    if intent.tag:
        published = v.published(layout, date)
        _retire(fs, published, published.live(published_manifest(fs, layout, date)), fence,
                tag=intent.tag)  # fmt: skip


def remove_staging(fs: Any, layout: Layout, date: dt.date, fence: Fence) -> bool:
    """Remove the staging of ``date`` (runs that failed or were killed, and what their stages
    kept): listed first, then the lock checked, then exactly what was listed (a run that lost the
    date cannot remove what a later run stages). True if there was some."""
    staging = layout.staging_date(date)
    if not fs.exists(staging):
        return False
    files = sorted(fs.find(staging))
    if files:
        fence.check()
        for run in sorted({_run_dir(p) for p in files} - {""}):
            log.info("removing staging of a run that did not publish: %s", run)
        _remove_files(fs, files)
    _remove_empty_directories(fs, [staging])
    return bool(files)


def _run_dir(path: str) -> str:
    head, sep, tail = path.partition("/run_id=")
    return f"{head}{sep}{tail.split('/', 1)[0]}" if sep else ""


def discard_staging(fs: Any, layout: Layout, date: dt.date, staging_id: str) -> None:
    """Remove one run's own staging (best effort: the next run of the date, or gc, removes it
    too). Never called for a staging an open intent names."""
    try:
        _remove_tree(fs, layout.staging_run(date, staging_id))
        _remove_empty_directories(fs, [layout.staging_date(date)])
    except Exception:
        log.warning("could not remove staging of run %s; the next run will", staging_id)


def rollback(
    fs: Any, layout: Layout, date: dt.date, rollback_id: str, *, tag: str, fence: Fence
) -> tuple[dict[str, Any], Outcome]:
    """Publish the version kept in ``_previous`` again, under ``tag`` (its files keep their bytes
    and get new names); the published version takes its place there, so a second rollback undoes
    the first. Returns the restored manifest."""
    outcome = resolve(fs, layout, date, fence)
    if any(s.startswith("rollback_") for s in outcome.completed):  # a retry must not undo itself
        log.warning("completed an interrupted rollback of %s; not rolling back again", date)
        return published_manifest(fs, layout, date) or {}, outcome
    previous = v.previous(layout, date)
    kept, _, unreadable = _read_versioned(_store(fs, layout, date, previous, "previous"))
    if kept is None:
        why = " (its manifest is unreadable)" if unreadable else ""
        raise ConfigError(f"there is no previous version of {date} to roll back to{why}")
    current = published_manifest(fs, layout, date)
    if current is not None and (
        _same_version(kept, current) or kept.get("publish_id") == current.get("restored_from")
    ):
        raise ConfigError(f"the previous version of {date} (run {kept.get('run_id')}) is published")
    broken = v.damage(kept, previous.listing(fs), previous)
    if broken:
        raise DamagedError(
            f"the previous version of {date} (run {kept.get('run_id')}) is damaged: "
            f"{v.describe(broken)}; nothing was rolled back"
        )
    remove_staging(fs, layout, date, fence)
    staged = v.staged(layout, date, rollback_id)
    there = previous.listing(fs)
    renamed = {
        kind: [
            {**e, "path": retag(e["path"], tag)}
            for e in kept.get(kind, [])
            if kind == "files" or previous.file(e) in there
        ]
        for kind in ("files", "reports")
    }
    pairs = [
        (previous.file(e), staged.file({**e, "path": retag(e["path"], tag)}))
        for e in v.entries(kept)
        if previous.file(e) in there
    ]
    _copy(fs, pairs)
    document = {
        **kept,
        **renamed,
        "tag": tag,
        "restored_from": kept.get("publish_id"),
        "restored_by": rollback_id,
    }
    outcome.add(publish(fs, layout, date, rollback_id, document, fence=fence))
    return published_manifest(fs, layout, date) or document, outcome
