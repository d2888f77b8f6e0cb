"""The two manifests of a date that switch between versions: the published one and the one kept
for a rollback (``_previous/``). Each is read with its ETag and replaced only if it still has it
(a compare-and-swap, :mod:`processing.adapters.cas`): that is what stops a run that lost the
date's lock from switching either (see :mod:`processing.adapters.publish`)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from fsspec.spec import AbstractFileSystem

from processing.adapters.cas import ObjectStore
from processing.adapters.lake_store import LakeStore, lake_store
from processing.adapters.versions import Version
from processing.logic.layout import Layout
from processing.spec.errors import LockLostError


def manifest_object(
    store: LakeStore, layout: Layout, date: dt.date, version: Version, which: str
) -> ObjectStore:
    """The manifest of ``version`` as a compare-and-swap object (``which``: its guard's name)."""
    return store.conditional(version.manifest, guard=layout.guard(date, which))


def read_versioned(obj: ObjectStore) -> tuple[dict[str, Any] | None, str | None, bool]:
    """A manifest, its ETag (None if absent) and whether it is unreadable (then None)."""
    found = obj.read()
    if found is None:
        return None, None, False
    try:
        document = json.loads(found[0])
    except ValueError:
        return None, found[1], True
    if not isinstance(document, dict) or not isinstance(document.get("files"), list):
        return None, found[1], True
    return document, found[1], False


def swap(obj: ObjectStore, document: Mapping[str, Any], etag: str | None, what: str) -> None:
    """Write ``document`` if the object still has ``etag`` (None: if it is still absent)."""
    data = json.dumps(document, indent=2).encode()
    done = obj.create(data) if etag is None else obj.replace(data, etag)
    if done is not None:
        return
    found = obj.read()
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


def published_manifest(
    fs: AbstractFileSystem, layout: Layout, date: dt.date
) -> dict[str, Any] | None:
    """The published manifest of ``date``, or None (not published, or unreadable)."""
    return lake_store(fs).read_json(layout.manifest(date))


def same_version(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return bool(a.get("publish_id")) and a.get("publish_id") == b.get("publish_id")
