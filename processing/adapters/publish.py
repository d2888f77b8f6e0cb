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
    3. *unmark*: the date's ``_SUCCESS`` marker is removed (tools that wait for it stop seeing
       a finished date until the publish is over);
       *keep*: the published version is copied to ``_previous/`` beside the version kept there,
       the previous manifest is switched to it (conditionally), and the files of the version kept
       before are deleted; a damaged published version is not kept (the older one stays);
    4. *copy*: the run's files are copied in beside the published ones (server-side on S3, hard
       links on a local disk), from its staging;
    5. *switch*: the run's manifest replaces the published one: one conditional write (S3:
       ``If-Match`` on the ETag read before step 3, or ``If-None-Match``; a local disk: the same
       compare-and-swap under a flock, then a rename);
    6. *retire*: the staging is removed, then every file of the date that the new manifest does
       not list is deleted;
    7. *mark*: the empty ``_SUCCESS`` marker is written beside the manifest (also after an
       abandoned publish, for the version that stays);
    8. *clear*: the intent leaves the lock.

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
    - the ``_SUCCESS`` marker has the same name in every version, so it is the one object this
      argument does not cover: it is empty, and a late write of it after the next publish ended
      changes nothing; but a run paused just before it deletes the marker (step 3) and woken
      after the next publish ended hides that finished date from tools that wait for the marker
      until the date's next publish or rollback; and a run paused just before it writes the
      marker (step 7), woken while the next run is between its steps 3 and 7, shows the marker
      during that run's window. The manifest, not the marker, is the switch.
    - copies into ``_previous/`` add files that no previous manifest lists (the next keep deletes
      them); they never change the kept version.

What readers see
    Through the manifest: one complete version, the old until step 5, the new after it. Listing
    the date's prefix: every file of at least one complete version, plus, from step 4 to step 6,
    the files of the other (rows can appear twice in that window, never be missing).
    :func:`publish` returns that window's length. The ``_SUCCESS`` marker is absent from step 3
    to step 7: while it is there, a listing holds exactly the published version.

A damaged date (a data file missing or truncated, the manifest missing or unreadable, an intent
whose staging is gone) never blocks the next run: it replaces the date, says what was damaged,
and never deletes the previous version before its replacement is in place.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from fsspec.spec import AbstractFileSystem

from processing.adapters import date_manifests as manifests
from processing.adapters import versions as v
from processing.adapters.cas import ObjectStore
from processing.adapters.date_lock import Intent
from processing.adapters.date_manifests import published_manifest
from processing.adapters.lake_store import LakeStore, lake_store
from processing.adapters.staging import (
    UnusableStagingError,
    check_writable,
    legacy_intents,
    restaged,
    to_copy,
)
from processing.adapters.versions import Version
from processing.logic.layout import Layout, tag_of
from processing.spec.errors import AuditError, ConfigError, DamagedError

#: what the stages and commands use (the manifest reader lives in date_manifests)
__all__ = ["Fence", "Outcome", "prepare", "publish", "remove_staging", "resolve", "rollback"]
__all__ += ["discard_staging", "drop_previous", "published_manifest", "remove_strays"]
__all__ += ["restore_marker"]

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class _Date:
    """The date a protocol step works on, and where."""

    store: LakeStore
    layout: Layout
    date: dt.date

    @property
    def published(self) -> Version:
        return v.published(self.layout, self.date)

    @property
    def previous(self) -> Version:
        return v.previous(self.layout, self.date)

    def staged(self, staging_id: str) -> Version:
        return v.staged(self.layout, self.date, staging_id)

    def manifest(self, version: Version, which: str) -> ObjectStore:
        return manifests.manifest_object(self.store, self.layout, self.date, version, which)


# --- the steps ---------------------------------------------------------------------------------
def prepare(
    fs: AbstractFileSystem, layout: Layout, date: dt.date, run_id: str, fence: Fence
) -> Outcome:
    """Before a run of ``date``: check the destination takes writes, resolve the publish an
    earlier run left open, refuse ``run_id`` if it is the published run's, and remove the
    staging of runs that did not publish."""
    check_writable(lake_store(fs), layout, date)
    outcome = resolve(fs, layout, date, fence)  # first: it may publish a run of this very id
    current = published_manifest(fs, layout, date)
    if current is not None and current.get("run_id") == run_id:
        raise ConfigError(
            f"run id {run_id!r} is the one published for {date}: give the rerun a new run id "
            "(or none, to have one generated)"
        )
    remove_staging(fs, layout, date, fence)
    return outcome


def resolve(fs: AbstractFileSystem, layout: Layout, date: dt.date, fence: Fence) -> Outcome:
    """Complete the publish that the date's lock says is open (a run that died or lost the date
    during it), or abandon it if its staged files are gone; then clear it from the lock."""
    day = _Date(lake_store(fs), layout, date)
    outcome = Outcome()
    intents = (
        [fence.intent] if fence.intent is not None else legacy_intents(day.store, layout, date)
    )
    for intent in intents:
        assert intent is not None
        log.warning("completing the interrupted publish of %s", intent.staging_id)
        try:
            outcome.add(_complete(day, intent, fence))
            outcome.completed.append(intent.staging_id)
            outcome.notices.append(f"completed the interrupted publish of {intent.staging_id}")
        except UnusableStagingError as e:
            _abandon(day, intent, fence)
            outcome.notices.append(
                f"abandoned the interrupted publish of {intent.staging_id}: {e}; the published "
                "version stays"
            )
    if fence.intent is not None:
        fence.clear()
    return outcome


def publish(
    fs: AbstractFileSystem,
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
    return _publish(_Date(lake_store(fs), layout, date), staging_id, manifest, fence)


def _publish(day: _Date, staging_id: str, manifest: Mapping[str, Any], fence: Fence) -> Outcome:
    document = {**manifest, "publish_id": secrets.token_hex(8)}
    day.store.put_json(day.staged(staging_id).manifest, document)
    intent = Intent(staging_id, document["publish_id"], str(manifest["tag"]))
    fence.mark(intent)
    try:
        outcome = _complete(day, intent, fence)
    except UnusableStagingError as e:
        _abandon(day, intent, fence)
        fence.clear()
        raise AuditError(f"the staged version lost files before its publish ({e}): nothing "
                         "published") from None  # fmt: skip
    fence.clear()
    return outcome


def _complete(day: _Date, intent: Intent, fence: Fence) -> Outcome:
    """Steps 3-6 of the publish of ``intent``; every one of them can be repeated."""
    outcome = Outcome()
    store, date = day.store, day.date
    staged, published = day.staged(intent.staging_id), day.published
    switch = day.manifest(published, "published")
    current, etag, unreadable = manifests.read_versioned(switch)
    began = started = time.perf_counter()
    if current is not None and current.get("publish_id") == intent.publish_id:
        new = current  # switched by an earlier attempt: what it switched to is what stays
    else:
        found = store.read_json(staged.manifest)
        if found is None or found.get("publish_id") != intent.publish_id:
            raise UnusableStagingError("its staged manifest is gone")
        store.remove_marker(published.success_marker)
        listed = published.listing(store.fs)
        pairs, new = to_copy(store, found, staged, published, listed)
        if current is not None:
            broken = v.damage(current, listed, published)
            if broken:
                outcome.notices.append(
                    f"the published version of {date} (run {current.get('run_id')}) was "
                    f"damaged: {v.describe(broken)}; it is replaced, and not kept for a rollback "
                    "(the version kept before it stays in _previous/)"
                )
            else:
                _keep_as_previous(day, current, listed, fence)
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
        store.copy(pairs)
        fence.check()
        manifests.swap(switch, new, etag, f"published manifest of {date}")
    # the staging is never needed again; removed before the listing, so a late copy from it
    # (a run that lost the date) fails, or lands before the listing and goes with the rest
    store.remove_tree(day.layout.staging_run(date, intent.staging_id))
    _retire(store, published, published.live(new), fence)
    store.remove_empty_directories([day.layout.staging_date(date)])
    outcome.window = time.perf_counter() - started
    _mark_published(store, published, fence)
    log.info(
        "published %s (run %s, %d files in %.2f s; both versions listed for %.2f s)",
        published.events,
        new.get("run_id"),
        len(new.get("files", [])),
        time.perf_counter() - began,
        outcome.window,
    )
    return outcome


def _keep_as_previous(
    day: _Date, current: Mapping[str, Any], listed: Mapping[str, int], fence: Fence
) -> None:
    """Step 3: copy the published version (``listed``: the published files) to ``_previous``,
    beside the version kept there, switch the previous manifest to it, then delete the version
    kept before. Its reports go with it if they are still there."""
    store, previous, published = day.store, day.previous, day.published
    switch = day.manifest(previous, "previous")
    kept, etag, _ = manifests.read_versioned(switch)
    if kept is not None and manifests.same_version(kept, current):  # an earlier attempt did it
        _retire(store, previous, previous.live(kept), fence)
        return
    reports = [r for r in current.get("reports", []) if published.file(r) in listed]
    lost = len(reports) != len(current.get("reports", []))
    keeping = {**current, "reports": reports} if lost else dict(current)
    there = previous.listing(store.fs)
    pairs = [
        (published.file(e), previous.file(e))
        for e in v.entries(keeping)
        if there.get(previous.file(e)) != listed.get(published.file(e))
    ]
    store.copy(pairs)
    fence.check()
    manifests.swap(switch, keeping, etag, f"kept previous version of {day.date}")
    _retire(store, previous, previous.live(keeping), fence)


def _retire(store: LakeStore, version: Version, keep: set[str], fence: Fence, tag: str = "") -> int:
    """Delete the files under ``version`` that ``keep`` does not hold (only those tagged ``tag``,
    if given): listed first, then the lock checked, then exactly those deleted (see the module's
    docstring: what a holder of the date lists and does not keep is no version's, for good)."""
    directories = (version.events, version.rejected)
    stale = sorted(
        p for p in store.listing(directories) if p not in keep and (not tag or tag_of(p) == tag)
    )
    if not stale:
        store.remove_empty_directories(directories)
        return 0
    fence.check()
    store.delete(stale, directories)
    return len(stale)


def _mark_published(store: LakeStore, published: Version, fence: Fence) -> None:
    """Step 7: the empty ``_SUCCESS`` marker, for tools that wait for one (the lock checked
    first: see the module's docstring for the one schedule this does not fence)."""
    fence.check()
    store.put_marker(published.success_marker)


def _abandon(day: _Date, intent: Intent, fence: Fence) -> None:
    """Give up an intent that cannot be completed: its staging goes first (so a late copy from
    it fails), then the files it copied into the published directories; the version that stays
    gets its ``_SUCCESS`` marker back."""
    log.warning("abandoning the interrupted publish of %s", intent.staging_id)
    day.store.remove_tree(day.layout.staging_run(day.date, intent.staging_id))
    published = day.published
    current = day.store.read_json(published.manifest)
    if intent.tag:  # (an intent of an older version has no tag: its copies stay unknown)
        _retire(day.store, published, published.live(current), fence, tag=intent.tag)
    if current is not None and intent.tag:
        _mark_published(day.store, published, fence)


def restore_marker(fs: AbstractFileSystem, layout: Layout, date: dt.date, fence: Fence) -> bool:
    """Write the ``_SUCCESS`` marker of a published date that has none (published before the
    marker existed, or hidden by a run that lost the date) when nothing is open and the
    date's listing is its published version alone. True if it was written."""
    if fence.intent is not None:
        return False
    day = _Date(lake_store(fs), layout, date)
    published = day.published
    current = day.store.read_json(published.manifest)
    if current is None or fs.exists(published.success_marker):
        return False
    listed = published.listing(fs)
    if v.damage(current, listed, published) or set(listed) - published.live(current):
        return False  # damaged, or strays beside it: the next run of the date replaces it
    _mark_published(day.store, published, fence)
    return True


def drop_previous(fs: AbstractFileSystem, layout: Layout, date: dt.date, fence: Fence) -> bool:
    """Delete the version kept for a rollback (an erasure's: it holds the erased rows): its
    manifest first, so a rollback never restores part of it, then its files. True if there was
    one. Like the marker (see the module's docstring), the manifest's name is every kept
    version's: a run paused after its check and woken after the next publish kept a version
    deletes that version's manifest (its rollback is refused, its data stays published)."""
    day = _Date(lake_store(fs), layout, date)
    previous = day.previous
    listed = previous.listing(fs)
    if not listed:
        return False
    fence.check()
    if previous.manifest in listed:
        day.store.delete([previous.manifest], (previous.events, previous.rejected))
    _retire(day.store, previous, set(), fence)
    day.store.remove_empty_directories([layout.previous(date)])
    return True


def remove_strays(fs: AbstractFileSystem, layout: Layout, date: dt.date, fence: Fence) -> int:
    """Delete the files of the date that no version lists (beside the published version and
    beside the kept one), as the next publish would: what a stopped publish or expire left.
    Nothing while a publish is open (it is resolved first). The number deleted."""
    if fence.intent is not None:
        return 0
    day = _Date(lake_store(fs), layout, date)
    gone = 0
    for version in (day.published, day.previous):
        current = day.store.read_json(version.manifest)
        if current is not None:
            gone += _retire(day.store, version, version.live(current), fence)
    return gone


def remove_staging(fs: AbstractFileSystem, layout: Layout, date: dt.date, fence: Fence) -> bool:
    """Remove the staging of ``date`` (runs that failed or were killed, and what their stages
    kept): listed first, then the lock checked, then exactly what was listed (a run that lost the
    date cannot remove what a later run stages). True if there was some."""
    store = lake_store(fs)
    staging = layout.staging_date(date)
    if not fs.exists(staging):
        return False
    files = sorted(fs.find(staging))
    if files:
        fence.check()
        for run in sorted({_run_dir(p) for p in files} - {""}):
            log.info("removing staging of a run that did not publish: %s", run)
        store.remove_files(files)
    store.remove_empty_directories([staging])
    return bool(files)


def _run_dir(path: str) -> str:
    head, sep, tail = path.partition("/run_id=")
    return f"{head}{sep}{tail.split('/', 1)[0]}" if sep else ""


def discard_staging(fs: AbstractFileSystem, layout: Layout, date: dt.date, staging_id: str) -> None:
    """Remove one run's own staging (best effort: the next run of the date, or gc, removes it
    too). Never called for a staging an open intent names."""
    try:
        store = lake_store(fs)
        store.remove_tree(layout.staging_run(date, staging_id))
        store.remove_empty_directories([layout.staging_date(date)])
    except Exception:
        log.warning("could not remove staging of run %s; the next run will", staging_id)


def rollback(
    fs: AbstractFileSystem,
    layout: Layout,
    date: dt.date,
    rollback_id: str,
    *,
    tag: str,
    fence: Fence,
) -> tuple[dict[str, Any], Outcome]:
    """Publish the version kept in ``_previous`` again, under ``tag`` (its files keep their bytes
    and get new names); the published version takes its place there, so a second rollback undoes
    the first. Returns the restored manifest."""
    outcome = resolve(fs, layout, date, fence)
    if any(s.startswith("rollback_") for s in outcome.completed):  # a retry must not undo itself
        log.warning("completed an interrupted rollback of %s; not rolling back again", date)
        return published_manifest(fs, layout, date) or {}, outcome
    day = _Date(lake_store(fs), layout, date)
    previous = day.previous
    kept, _, unreadable = manifests.read_versioned(day.manifest(previous, "previous"))
    if kept is None:
        why = " (its manifest is unreadable)" if unreadable else ""
        raise ConfigError(f"there is no previous version of {date} to roll back to{why}")
    current = published_manifest(fs, layout, date)
    if current is not None and (
        manifests.same_version(kept, current)
        or kept.get("publish_id") == current.get("restored_from")
    ):
        raise ConfigError(f"the previous version of {date} (run {kept.get('run_id')}) is published")
    there = previous.listing(fs)
    broken = v.damage(kept, there, previous)
    if broken:
        raise DamagedError(
            f"the previous version of {date} (run {kept.get('run_id')}) is damaged: "
            f"{v.describe(broken)}; nothing was rolled back"
        )
    remove_staging(fs, layout, date, fence)
    pairs, document = restaged(
        kept, previous, there, day.staged(rollback_id), tag=tag, rollback_id=rollback_id
    )
    day.store.copy(pairs)
    outcome.add(_publish(day, rollback_id, document, fence))
    return published_manifest(fs, layout, date) or document, outcome
