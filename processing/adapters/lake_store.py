"""The destination's files, on a local disk or on S3: the storage operations the publish protocol
(:mod:`processing.adapters.publish`) stands on, behind one small interface, :class:`LakeStore`.

The two differ exactly where the protocol cares. A local disk has directories (made before a
file is written in them, left behind when it is deleted) and renames, and deleting a missing file
fails; S3 has whole-object PUTs, server-side copies and no directories, and deleting a missing key
succeeds. Listings and existence checks are the same fsspec calls on both (:attr:`LakeStore.fs`).
:func:`lake_store` chooses the implementation once, from the filesystem.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

from fsspec.spec import AbstractFileSystem

from processing.adapters.audit import files_under
from processing.adapters.cas import ObjectStore, object_store
from processing.adapters.storage import copy_files, on_local_disk
from processing.spec.errors import TransientError

log = logging.getLogger(__name__)


class LakeStore(ABC):
    """What the publish protocol does to the destination's files. Every operation can be
    repeated: a publish that died half-way is completed by repeating its steps."""

    def __init__(self, fs: AbstractFileSystem) -> None:
        #: the filesystem, for what is the same on every store (listings, existence)
        self.fs = fs

    @abstractmethod
    def put_atomic(self, path: str, data: bytes) -> None:
        """Write a whole object so that readers see the old or the new one, never a part."""

    @abstractmethod
    def remove_files(self, paths: list[str]) -> None:
        """Delete files; one already gone is fine (another holder may have deleted it first)."""

    @abstractmethod
    def remove_tree(self, path: str) -> None:
        """Delete ``path`` and everything under it, if it is there."""

    @abstractmethod
    def remove_empty_directories(self, directories: Iterable[str]) -> None:
        """Drop the empty directories under (and of) ``directories``, where there are any."""

    def put_json(self, path: str, document: Mapping[str, Any]) -> None:
        """Write a small JSON object so that readers see the old or the new one, never a part."""
        self.put_atomic(path, json.dumps(document, indent=2).encode())

    def put_marker(self, path: str) -> None:
        """Write an empty marker object (``_SUCCESS``); writing it again changes nothing."""
        self.put_atomic(path, b"")

    def remove_marker(self, path: str) -> None:
        """Delete a marker object, if it is there."""
        self.remove_files([path])

    def read_json(self, path: str) -> dict[str, Any] | None:
        """A small JSON object, or None if it is absent or unreadable (a damaged file)."""
        try:
            document = json.loads(self.fs.cat_file(path))
        except FileNotFoundError:
            return None
        except ValueError:
            log.warning("%s is not readable JSON: treated as absent", path)
            return None
        return document if isinstance(document, dict) else None

    def conditional(self, path: str, guard: str | None = None) -> ObjectStore:
        """Compare-and-swap on the object at ``path`` (If-Match / If-None-Match on S3, a flock
        of ``guard`` on a local disk: see :mod:`processing.adapters.cas`)."""
        return object_store(self.fs, path, guard=guard)

    def copy(self, pairs: list[tuple[str, str]]) -> None:
        """Copy files, (source, target) pairs: server-side and concurrently on S3, hard links
        on a local disk (see :func:`~processing.adapters.storage.copy_files`).

        A missing source fails the copy: that is what fences a run that lost its lock (the run
        that took the date over removes the staging before it lists what to delete). Repeating
        a copy is harmless: a target name always belongs to one version, same bytes."""
        copy_files(self.fs, pairs)

    def listing(self, directories: Iterable[str]) -> dict[str, int]:
        """Every file under ``directories`` now, with its size (a prefix listing of each)."""
        return files_under(self.fs, directories)

    def delete(self, paths: list[str], directories: tuple[str, ...]) -> None:
        """Delete exactly ``paths`` (files under ``directories``), and check they are gone (bulk
        deletes do not report failures)."""
        doomed = set(paths)
        for _ in range(3):
            if not doomed:
                break
            self.remove_files(sorted(doomed))
            doomed &= set(self.listing(directories))
        if doomed:
            raise TransientError(f"could not delete {len(doomed)} old files, e.g. {min(doomed)}")
        self.remove_empty_directories(directories)


class LocalLakeStore(LakeStore):
    """A directory on a local (or mounted) disk."""

    def put_atomic(self, path: str, data: bytes) -> None:
        os.makedirs(posixpath.dirname(path), exist_ok=True)
        temporary = f"{path}.tmp-{os.getpid()}"
        with open(temporary, "wb") as f:
            f.write(data)
        os.replace(temporary, path)

    def remove_files(self, paths: list[str]) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

    def remove_tree(self, path: str) -> None:
        shutil.rmtree(path, ignore_errors=True)  # another holder may be removing it too

    def remove_empty_directories(self, directories: Iterable[str]) -> None:
        """Local disks keep directories of deleted files (object stores have none): drop them.
        (``rmdir`` only removes an empty directory: never anything another run just wrote.)"""
        for top in directories:
            for current, _, _ in os.walk(top, topdown=False):  # deepest first
                if current != top:  # (walk's own lists predate the removals below them)
                    with contextlib.suppress(OSError):
                        os.rmdir(current)  # only if empty
        for top in directories:
            with contextlib.suppress(OSError):
                if os.path.isdir(top) and not os.listdir(top):
                    os.rmdir(top)


class S3LakeStore(LakeStore):
    """A bucket prefix on S3 or an S3-compatible store (and any other object store fsspec
    reaches: only its generic calls are used here; conditional writes need S3's)."""

    def put_atomic(self, path: str, data: bytes) -> None:
        self.fs.pipe_file(path, data)  # one PUT: atomic on S3

    def remove_files(self, paths: list[str]) -> None:
        self.fs.rm(paths)  # S3's delete of a missing key succeeds

    def remove_tree(self, path: str) -> None:
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def remove_empty_directories(self, directories: Iterable[str]) -> None:
        """Object stores have no directories: nothing to drop."""


def lake_store(fs: AbstractFileSystem) -> LakeStore:
    """The store for ``fs``: the local disk's, or the object store's."""
    return LocalLakeStore(fs) if on_local_disk(fs) else S3LakeStore(fs)
