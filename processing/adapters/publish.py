"""Write-audit-publish for one date, on any fsspec filesystem: local disk, S3, S3-compatible.

S3 cannot rename a directory or replace several keys at once, so the publish is a short series of
steps, each of which can be repeated, with the date's manifest as the switch. The caller holds
the date's lock (:mod:`processing.adapters.date_lock`) through all of it.

1. ``prepare``: complete a publish that was interrupted (its marker is still there), then remove
   all other staging of the date (failed or killed runs).
2. The run writes under ``_staging/event_date=D/run_id=R/{events,rejected}``. File names carry the
   run's tag, so no two versions of a date share a name. Nothing published is touched. Its
   reports (``events/_reports/``, listed in the manifest's ``reports``) move with its files
   through every step below.
3. ``audit``: every file the tasks reported exists with the reported row count in its footer, no
   other Parquet file is there (reports are not audited: they are not data), every reported
   partition is there, and the first 65,536 rows of one file per event name, read back, conform
   to the Pandera output model.
4. ``publish``: the manifest (with a ``publish_id`` unique to this attempt) goes into the staged
   events directory; the lock is checked; a ``_publishing`` marker goes into the run's staging.
   From here on, the next holder of the lock completes the publish if this process dies. Then:

   a. the published version is copied (as its manifest lists it) to ``_previous/event_date=D``,
      replacing the version kept there, its manifest last; a rollback copies it back;
   b. the run's files are copied into the published directories, beside the old ones;
   c. the lock is checked, and the run's manifest is written over the published one: the switch
      (one rename on a local disk; on S3 one PUT conditional on the ETag of the manifest read at
      the start, so a run that lost the date while paused cannot switch it back);
   d. the lock is checked, and every file of the published date that the new manifest does not
      list is deleted (and listed again, until none is left);
   e. the staging is removed, marker first.

A marked staging whose files are gone (a run that lost its lock, whose staging the next holder
removed) is abandoned, not published: the files it copied in are removed.

On S3 the copies are server-side and concurrent; on a local disk they are hard links, so no byte
is copied. What readers see, at every moment:

- through the manifest: one complete version (the old until c, the new after c). The old
  version's files stay in ``_previous/`` until the next publish of the date;
- listing the date's prefix: every file of at least one complete version, plus, from b to d, the
  files of the other version (rows can appear twice in that window, never be missing). ``publish``
  returns that window's length.
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
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from processing.adapters.cas import object_store
from processing.adapters.storage import on_local_disk
from processing.logic.layout import EVENTS, MANIFEST, REJECTED, Layout
from processing.logic.manifest import RunTotals
from processing.logic.validate import output_problems
from processing.spec import schema as s
from processing.spec.errors import AuditError, ConfigError, LockLostError, TransientError

log = logging.getLogger(__name__)

MARKER = "_publishing"
#: Concurrent footer reads and sample validations of the audit.
_AUDIT_THREADS = 32
#: Bytes read from the end of each staged file for its footer (larger footers take a second read).
_TAIL_BYTES = 256 * 1024
#: Rows of each sampled file (its first ones) validated again, as read back, by the audit.
_SAMPLE_ROWS = 65_536


@dataclass(frozen=True)
class _Version:
    """Where one version of a date lives: its events and rejected directories."""

    events: str
    rejected: str

    def file(self, entry: Mapping[str, Any]) -> str:
        return f"{self.events if entry['dataset'] == EVENTS else self.rejected}/{entry['path']}"

    @property
    def manifest(self) -> str:
        return f"{self.events}/{MANIFEST}"


def _published(layout: Layout, date: dt.date) -> _Version:
    return _Version(layout.events_date(date), layout.rejected_date(date))


def _previous(layout: Layout, date: dt.date) -> _Version:
    return _Version(f"{layout.previous(date)}/{EVENTS}", f"{layout.previous(date)}/{REJECTED}")


def _staged(layout: Layout, date: dt.date, run_id: str) -> _Version:
    return _Version(*layout.staged(date, run_id))


def _entries(manifest: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every file of a version: its data files, then its reports (``_reports/`` beside the
    manifest: the quality report, the Dask performance report), which move with it."""
    return [*manifest.get("files", []), *manifest.get("reports", [])]


def _copy_version(
    fs: Any,
    manifest: Mapping[str, Any],
    source: _Version,
    target: _Version,
) -> dict[str, Any]:
    """Copy a version's files (all of them, or fail) and its reports (those still there: a
    report is never worth a date that cannot be published or rolled back). Returns the manifest
    of what was copied."""
    present = [e for e in manifest.get("reports", []) if fs.exists(source.file(e))]
    entries = [*manifest.get("files", []), *present]
    _copy(fs, [(source.file(e), target.file(e)) for e in entries])  # one step, as before
    if len(present) == len(manifest.get("reports", [])):
        return dict(manifest)
    log.warning("%d reports of run %s are missing; the version goes on without them",
                len(manifest["reports"]) - len(present), manifest.get("run_id"))  # fmt: skip
    return {**manifest, "reports": present}


# --- filesystem primitives --------------------------------------------------------------------


def _read_json(fs: Any, path: str) -> dict[str, Any] | None:
    try:
        return json.loads(fs.cat_file(path))
    except FileNotFoundError:
        return None


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
    """Copy files (server-side and concurrently on object stores; hard links on a local disk).

    Repeating a copy is harmless: a target name always belongs to one version, same bytes.
    """
    if not pairs:
        return
    if not on_local_disk(fs):
        fs.copy([a for a, _ in pairs], [b for _, b in pairs])
        return
    for source, target in pairs:
        os.makedirs(posixpath.dirname(target), exist_ok=True)
        if os.path.exists(target):
            continue
        try:
            os.link(source, target)
        except OSError:  # a filesystem without hard links, or across devices
            partial = f"{target}.partial-{os.getpid()}"  # a crash never leaves a short target
            shutil.copyfile(source, partial)
            os.replace(partial, target)


def _files_under(fs: Any, directories: Iterable[str]) -> dict[str, int]:
    """Every file under the directories, with its size (a prefix listing each; never the whole
    bucket)."""
    found: dict[str, int] = {}
    for directory in directories:
        if fs.exists(directory):
            found.update({p: int(i["size"]) for p, i in fs.find(directory, detail=True).items()})
    return found


def _rows_in(fs: Any, path: str, size: int) -> int:
    """Rows in a Parquet file, from its footer: one ranged read of the file's tail."""
    start = max(0, size - _TAIL_BYTES)
    tail = fs.cat_file(path, start=start, end=size)
    footer = int.from_bytes(tail[-8:-4], "little") + 8 if len(tail) >= 8 else size
    if start == 0 or footer + 4 <= len(tail):
        return int(pq.read_metadata(pa.BufferReader(tail)).num_rows)
    with fs.open(path, "rb") as handle:  # a footer larger than the tail read
        return int(pq.ParquetFile(handle).metadata.num_rows)


def _remove(fs: Any, paths: list[str]) -> None:
    if paths:
        fs.rm(paths)


def _remove_tree(fs: Any, path: str) -> None:
    if fs.exists(path):
        fs.rm(path, recursive=True)


def _remove_empty_directories(fs: Any, directories: Iterable[str]) -> None:
    """Local disks keep directories of deleted files (object stores have none): drop them."""
    if not on_local_disk(fs):
        return
    for top in directories:
        for current, subdirs, files in os.walk(top, topdown=False):
            if current != top and not subdirs and not files:
                os.rmdir(current)
    for top in directories:
        if os.path.isdir(top) and not os.listdir(top):
            os.rmdir(top)


def _write_probe(fs: Any, layout: Layout, date: dt.date) -> None:
    probe = f"{layout.staging_date(date)}/.write-probe"
    try:
        fs.makedirs(layout.staging_date(date), exist_ok=True)
        fs.pipe_file(probe, b"")
        fs.rm_file(probe)
    except (PermissionError, NotADirectoryError, FileNotFoundError) as e:
        raise ConfigError(f"cannot write under the destination {layout.root}: {e}") from e


# --- steps -------------------------------------------------------------------------------------
def published_manifest(fs: Any, layout: Layout, date: dt.date) -> dict[str, Any] | None:
    return _read_json(fs, layout.manifest(date))


def prepare(fs: Any, layout: Layout, date: dt.date, run_id: str) -> None:
    """Check the destination takes writes and that ``run_id`` is not the published run's;
    complete an interrupted publish of the date; remove all of its other staging."""
    _write_probe(fs, layout, date)
    complete_interrupted(fs, layout, date)  # first: it may publish a run of this very id
    current = published_manifest(fs, layout, date)
    if current is not None and current.get("run_id") == run_id:
        raise ConfigError(
            f"run id {run_id!r} is the one published for {date}: give the rerun a new run id "
            "(or none, to have one generated)"
        )
    remove_staging(fs, layout, date)


def remove_staging(fs: Any, layout: Layout, date: dt.date) -> bool:
    """Remove all staging of ``date`` (the caller holds its lock); True if there was some."""
    staging = layout.staging_date(date)
    if not fs.exists(staging):
        return False
    for stale in fs.ls(staging, detail=False):
        log.info("removing staging of a run that did not publish: %s", stale)
    _remove_tree(fs, staging)
    return True


def complete_interrupted(fs: Any, layout: Layout, date: dt.date) -> list[str]:
    """Complete the publishes of ``date`` that a dead process left half done; return their
    staging ids. A marked staging that lost files (removed by a run that took the date's lock
    over) is abandoned instead: what it copied in is removed, the published version stays."""
    staging = layout.staging_date(date)
    if not fs.exists(staging):
        return []
    completed = []
    for entry in fs.ls(staging, detail=False):
        run_dir = entry.rstrip("/")
        if not fs.exists(f"{run_dir}/{MARKER}"):
            continue
        staging_id = run_dir.rsplit("run_id=", 1)[-1]
        log.warning("completing the interrupted publish of %s", run_dir)
        try:
            _switch(fs, layout, date, staging_id, check=None)
        except _IncompleteStagingError as e:
            log.warning("abandoning the staging %s: %s", run_dir, e)
            _clean_published(fs, layout, date)
            _remove_tree(fs, run_dir)
            continue
        completed.append(staging_id)
    return completed


def publishing_started(fs: Any, layout: Layout, date: dt.date, run_id: str) -> bool:
    return bool(fs.exists(f"{layout.staging_run(date, run_id)}/{MARKER}"))


def audit(fs: Any, layout: Layout, date: dt.date, run_id: str, totals: RunTotals) -> None:
    """Check the staged files against what the tasks reported, and sample them against the
    output model. Reads footers, and the first rows of one file per event name."""
    began = time.perf_counter()
    staged = _staged(layout, date, run_id)
    expected = {staged.file({"dataset": f.dataset, "path": f.path}): f for f in totals.files}
    problems: list[str] = []
    listed = _files_under(fs, (staged.events, staged.rejected))
    found = {p: size for p, size in listed.items() if p.endswith(".parquet")}
    missing = sorted(expected.keys() - found.keys())
    problems += [f"missing {p}" for p in missing]
    strays = found.keys() - expected.keys()
    if strays:
        problems.append(f"files no task reported: {sorted(strays)[:5]}")
    partitions = {f.event_name for f in totals.files if f.dataset == EVENTS}
    if partitions != set(totals.valid_by_event):
        problems.append(
            f"event partitions written {sorted(map(str, partitions))} are not those counted "
            f"{sorted(totals.valid_by_event)}"
        )

    def footer(path: str) -> str | None:
        rows = _rows_in(fs, path, found[path])
        reported = expected[path].rows
        return None if rows == reported else f"{path} holds {rows} rows, reported {reported}"

    samples: dict[str, str] = {}
    for path, f in sorted(expected.items()):
        if f.dataset == EVENTS and f.event_name is not None and path in found:
            samples.setdefault(f.event_name, path)

    def conforms(item: tuple[str, str]) -> str | None:
        event_name, path = item
        with fs.open(path, "rb") as handle:
            names = pq.read_schema(handle).names
            handle.seek(0)
            categorical = [c for c in s.CATEGORICAL if c in names]
            parquet = pq.ParquetFile(handle, read_dictionary=categorical)
            first = next(parquet.iter_batches(batch_size=_SAMPLE_ROWS), None)
        rows = None if first is None else pa.Table.from_batches([first])
        wrong = output_problems(rows, event_name, date) if rows is not None else []
        return f"{path} does not match the output model: {wrong[:5]}" if wrong else None

    with ThreadPoolExecutor(_AUDIT_THREADS) as pool:
        checked = [*pool.map(footer, sorted(found.keys() & expected.keys()))]
        checked += [*pool.map(conforms, sorted(samples.items()))]
    problems += [p for p in checked if p]
    log.info(
        "audited %d staged files (%d validated against the output model) in %.2f s",
        len(found),
        len(samples),
        time.perf_counter() - began,
    )
    if problems:
        raise AuditError(
            "staged files do not match the run's counts, nothing published: "
            + "; ".join(problems[:10])
        )


def publish(
    fs: Any,
    layout: Layout,
    date: dt.date,
    run_id: str,
    manifest: Mapping[str, Any],
    *,
    check: Callable[[], None] | None = None,
) -> float:
    """Replace the date's published version with the run's; return the seconds during which a
    reader listing the date's prefix could see files of both versions.

    ``check`` runs before the first change to published files and again just before the switch
    (it raises if the date's lock was lost). If this fails half way, the marker stays and the next
    holder of the date's lock completes the publish.
    """
    staged, published = _staged(layout, date, run_id), _published(layout, date)
    publish_id = secrets.token_hex(8)
    _put_json(fs, staged.manifest, {**manifest, "publish_id": publish_id})
    if check:
        check()  # a run that lost the date must not leave a marker for others to complete
    marker = f"{layout.staging_run(date, run_id)}/{MARKER}"
    fs.pipe_file(marker, run_id.encode())
    try:
        return _switch(fs, layout, date, run_id, check)
    except LockLostError:
        current = _read_json(fs, published.manifest) or {}
        if current.get("publish_id") != publish_id:  # not switched: withdraw what we added
            with contextlib.suppress(Exception):  # our names: no other version uses them
                fs.rm_file(marker)
                _remove(fs, [p for p in map(published.file, _entries(manifest)) if fs.exists(p)])
        raise  # switched: the new holder of the date completes the cleanup from our marker


class _IncompleteStagingError(Exception):
    """A marked staging whose files are not all there: it cannot be published."""


def _switch(
    fs: Any, layout: Layout, date: dt.date, staging_id: str, check: Callable[[], None] | None
) -> float:
    """Steps a-e of the publish; every one of them can be repeated after a crash."""
    staging_run = layout.staging_run(date, staging_id)
    staged, published = _staged(layout, date, staging_id), _published(layout, date)
    new = _read_json(fs, staged.manifest)
    if new is None:  # step e removes the marker first: a run that took the date over removed
        # this staging (or part of it), whether or not it had switched: it is not ours to finish
        if check is not None:
            raise LockLostError(
                f"the staging of run {staging_id} was removed during its publish: another run "
                f"holds {date} now"
            )
        raise _IncompleteStagingError("its staged manifest is gone")
    current, etag = _read_manifest(fs, published.manifest)
    began = started = time.perf_counter()
    if current is None or current.get("publish_id") != new.get("publish_id"):
        missing = (
            [e["path"] for e in new["files"] if not fs.exists(staged.file(e))]
            if check is None
            else []
        )  # a live run has just audited its staging
        if missing:
            raise _IncompleteStagingError(
                f"{len(missing)} staged files are gone, e.g. {missing[0]}"
            )
        if current is not None:
            _keep_as_previous(fs, layout, date, current)
        if check:
            check()
        clashes = {e["path"] for e in _entries(new)} & {e["path"] for e in _entries(current or {})}
        if clashes:
            raise AuditError(
                f"the new and the published version of {date} share file names "
                f"({sorted(clashes)[:3]}): rerun with another run id"
            )
        started = time.perf_counter()
        new = _copy_version(fs, new, staged, published)
        if check:
            check()
        _switch_manifest(fs, published.manifest, new, etag)
    else:  # switched by an earlier attempt: what it switched to is what stays
        new = current
    if check:
        check()  # the old files go only while the date is still ours
    _clean_published(fs, layout, date, new)
    window = time.perf_counter() - started
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(f"{staging_run}/{MARKER}")
    _remove_tree(fs, staging_run)
    if fs.exists(layout.staging_date(date)) and not fs.ls(layout.staging_date(date)):
        _remove_tree(fs, layout.staging_date(date))
    log.info(
        "published %s (run %s, %d files in %.2f s; both versions listed for %.2f s)",
        published.events,
        new["run_id"],
        len(new["files"]),
        time.perf_counter() - began,
        window,
    )
    return window


def _read_manifest(fs: Any, path: str) -> tuple[dict[str, Any] | None, str | None]:
    """The published manifest and, on S3, its ETag (for the conditional switch)."""
    if on_local_disk(fs):
        return _read_json(fs, path), None
    found = object_store(fs, path).read()
    return (None, None) if found is None else (json.loads(found[0]), found[1])


def _switch_manifest(fs: Any, path: str, manifest: Mapping[str, Any], etag: str | None) -> None:
    """Write the new manifest. On S3 the write is conditional on the manifest being the one read
    at the start of this publish: a run that lost the date while paused cannot switch it back."""
    if on_local_disk(fs):
        _put_json(fs, path, manifest)
        return
    data = json.dumps(manifest, indent=2).encode()
    store = object_store(fs, path)
    done = store.create(data) if etag is None else store.replace(data, etag)
    if done is None:
        found = store.read()
        if found is not None and json.loads(found[0]).get("publish_id") == manifest.get(
            "publish_id"
        ):
            return  # our write was applied, its answer lost
        raise LockLostError(
            f"the published manifest {path} changed during this publish: another run "
            "published the date meanwhile; nothing more is published by this one"
        )


def _clean_published(
    fs: Any, layout: Layout, date: dt.date, manifest: Mapping[str, Any] | None = None
) -> None:
    """Delete every file of the published date that ``manifest`` (default: the published one)
    does not list, and check that they are gone (bulk deletes do not report failures)."""
    published = _published(layout, date)
    manifest = manifest if manifest is not None else _read_json(fs, published.manifest) or {}
    keep = {published.file(e) for e in _entries(manifest)} | {published.manifest}
    for attempt in range(3):
        stale = [
            p for p in _files_under(fs, (published.events, published.rejected)) if p not in keep
        ]
        if not stale:
            break
        if attempt == 2:
            raise TransientError(f"could not delete {len(stale)} old files, e.g. {stale[0]}")
        _remove(fs, stale)
    _remove_empty_directories(fs, (published.events, published.rejected))


def _keep_as_previous(fs: Any, layout: Layout, date: dt.date, current: Mapping[str, Any]) -> None:
    """Copy the published version to ``_previous`` (its manifest last), replacing what was there."""
    previous, published = _previous(layout, date), _published(layout, date)
    kept = _read_json(fs, previous.manifest)
    if kept is not None and kept.get("run_id") == current.get("run_id"):
        return  # an earlier attempt of this publish got that far
    _remove_tree(fs, layout.previous(date))
    _put_json(fs, previous.manifest, _copy_version(fs, current, published, previous))


def previous_manifest(fs: Any, layout: Layout, date: dt.date) -> dict[str, Any] | None:
    return _read_json(fs, _previous(layout, date).manifest)


def rollback(fs: Any, layout: Layout, date: dt.date, staging_id: str) -> dict[str, Any]:
    """Publish the version kept in ``_previous`` again (the current one takes its place there);
    return its manifest. Staged first, so a crash half way is completed like any publish."""
    for completed in complete_interrupted(fs, layout, date):
        if completed.startswith("rollback_"):  # a retried rollback must not undo itself
            log.warning("completed the interrupted rollback %s; not rolling back again", completed)
            return published_manifest(fs, layout, date) or {}
    previous = _previous(layout, date)
    kept = _read_json(fs, previous.manifest)
    if kept is None:
        raise ConfigError(f"there is no previous version of {date} to roll back to")
    current = published_manifest(fs, layout, date)
    if current is not None and current.get("run_id") == kept.get("run_id"):
        raise ConfigError(f"the previous version of {date} (run {kept['run_id']}) is published")
    staged = _staged(layout, date, staging_id)
    kept = _copy_version(fs, kept, previous, staged)
    _put_json(fs, staged.manifest, kept)  # its publish id is its own: no other version has it
    fs.pipe_file(f"{layout.staging_run(date, staging_id)}/{MARKER}", staging_id.encode())
    _switch(fs, layout, date, staging_id, check=None)
    return kept


def discard_staging(fs: Any, layout: Layout, date: dt.date, run_id: str) -> None:
    """Remove one run's staging (best effort: the next run of the date, or gc, removes it too)."""
    try:
        _remove_tree(fs, layout.staging_run(date, run_id))
        staging_date = layout.staging_date(date)
        if fs.exists(staging_date) and not fs.ls(staging_date, detail=False):
            _remove_tree(fs, staging_date)
    except Exception:
        log.warning("could not remove staging of run %s; the next run will", run_id)
