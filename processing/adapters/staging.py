"""The staging of a date (``_staging/event_date=D/run_id=R/``): where each run, and each rollback,
stages its version before the publish (:mod:`processing.adapters.publish`) copies it in.

Here: the check that the destination takes writes there, the publishes an earlier version of this
package marked in a staging, what is left to copy of a staged version, and what a rollback stages.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from processing.adapters import versions as v
from processing.adapters.date_lock import Intent
from processing.adapters.lake_store import LakeStore
from processing.adapters.versions import Version
from processing.logic.layout import Layout, retag, tag_of
from processing.spec.errors import ConfigError

log = logging.getLogger(__name__)

#: The marker file of a publish begun by an earlier version of this package (which kept the
#: intent in the staging instead of the lock): honoured once, then never written again.
LEGACY_MARKER = "_publishing"


class UnusableStagingError(Exception):
    """An intent whose staged version is not all there: it cannot be completed."""


def check_writable(store: LakeStore, layout: Layout, date: dt.date) -> None:
    """Write and delete a probe in the date's staging: a destination that refuses writes fails
    here, before any work, naming the destination."""
    probe = f"{layout.staging_date(date)}/.write-probe-{secrets.token_hex(4)}"
    try:
        store.fs.makedirs(layout.staging_date(date), exist_ok=True)
        store.fs.pipe_file(probe, b"")
        store.fs.rm_file(probe)
    except (PermissionError, NotADirectoryError, FileNotFoundError) as e:
        raise ConfigError(f"cannot write under the destination {layout.root}: {e}") from e


def legacy_intents(store: LakeStore, layout: Layout, date: dt.date) -> list[Intent]:
    """Publishes that an earlier version of this package marked in their staging."""
    fs = store.fs
    staging = layout.staging_date(date)
    if not fs.exists(staging):
        return []
    found = []
    for entry in fs.ls(staging, detail=False):
        run_dir = entry.rstrip("/")
        if "run_id=" not in run_dir or not fs.exists(f"{run_dir}/{LEGACY_MARKER}"):
            continue
        staging_id = run_dir.rsplit("run_id=", 1)[-1]
        staged = store.read_json(v.staged(layout, date, staging_id).manifest) or {}
        tag = staged.get("tag") or next(
            (t for t in map(tag_of, (e["path"] for e in v.entries(staged))) if t), ""
        )
        found.append(Intent(staging_id, str(staged.get("publish_id") or "(none)"), tag))
    return found


def to_copy(
    store: LakeStore,
    new: dict[str, Any],
    staged: Version,
    published: Version,
    listed: Mapping[str, int],
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """What is left to copy of ``new`` from its staging (a file an earlier attempt already
    published whole is not copied again), and ``new`` without the reports that are gone (a
    report is never worth a date that cannot be published). Raises UnusableStagingError if a
    data file is neither staged nor published."""
    in_staging = staged.listing(store.fs)
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
        raise UnusableStagingError(f"{len(missing)} of its files are gone, e.g. {missing[0]}")
    lost = len(new.get("reports", [])) - len(reports)
    if lost:
        log.warning("%d reports of run %s are missing; the version goes on without them",
                    lost, new.get("run_id"))  # fmt: skip
        new = {**new, "reports": reports}
    return pairs, new


def restaged(
    kept: Mapping[str, Any],
    previous: Version,
    there: Mapping[str, int],
    staged: Version,
    *,
    tag: str,
    rollback_id: str,
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """What a rollback stages: the files of the ``kept`` version that are ``there`` in
    ``previous`` (a lost report stays lost), as (source, staged target) pairs renamed with
    ``tag``, and the manifest that lists them under their new names."""
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
    document = {
        **kept,
        **renamed,
        "tag": tag,
        "restored_from": kept.get("publish_id"),
        "restored_by": rollback_id,
    }
    return pairs, document
