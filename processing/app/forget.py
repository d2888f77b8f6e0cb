"""``forget``: remove every row of some users from the lake, one date at a time, each through the
date's lock and the same write-audit-publish as a run (so a reader sees each date wholly before
or wholly after), resumable (run the same request again: what is done is found done).

For each published date of the range: an open publish is completed first, and failed runs'
staging removed (it can hold rejected rows); the published version is searched, and if it holds
rows of the request it is staged again without them and published; the version kept for a
rollback, which then holds them, is dropped (it cannot be both kept and erased); a kept version
that holds rows of the request while the published one no longer does (a forget that stopped
between the two) is dropped too. Then one line of the erasure log: ``_erasures/`` beside the
dates, counts and the request's hash, never an id.

Before anything is rewritten: the request file is read and checked, and every date's form of the
ids is known (raw, or pseudonymised under the key given: a date written under another key is
refused, naming it).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from processing.adapters import erasure
from processing.adapters import publish as wap
from processing.adapters.lake_store import lake_store
from processing.adapters.storage import filesystem, storage_options_for
from processing.adapters.storage_errors import storage_errors
from processing.adapters.user_id_key import load_key
from processing.adapters.verify import published_dates
from processing.adapters.versions import previous, published, staged
from processing.adapters.writer import WriteOptions
from processing.app.context import (
    date_lock,
    destination,
    register_in_catalog,
    s3_options,
    utcnow,
)
from processing.app.stages.scope import new_tag
from processing.logic import erasure as plan
from processing.logic.layout import Layout
from processing.logic.pseudonymise import key_id
from processing.spec.errors import ConfigError, DateLockedError, Interrupted, Terminated, signal_of
from processing.spec.settings import Settings

log = logging.getLogger(__name__)

ERASURES = "_erasures"


class Forgotten(NamedTuple):
    """What ``forget`` did to one date (or why it skipped it)."""

    date: dt.date
    outcome: plan.DateOutcome | None
    skipped: str | None = None

    def line(self) -> str:
        if self.outcome is None:
            return f"{self.date}: skipped, {self.skipped}"
        return self.outcome.line(self.date)


def read_ids(settings: Settings, path: str) -> list[str]:
    """The request: a local file, or an object (``s3://...``, read with the lake's storage
    settings: an in-cluster Job reads it from a restricted prefix)."""
    try:
        if "://" in path:
            options = storage_options_for(
                path, settings.storage_options.reveal(), s3_options(settings)
            )
            fs, where = filesystem(path, options)
            data = fs.cat_file(where)
        else:
            data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"--user-ids {path!r}: cannot read it ({e})") from None
    return plan.read_request(data, f"--user-ids {path}")


def log_path(layout: Layout, request: str, date: dt.date) -> str:
    name = request.split(":", 1)[-1][:16]
    return f"{layout.root}/{ERASURES}/request={name}/event_date={date.isoformat()}.json"


def _form(manifest: Mapping[str, Any] | None) -> str | None:
    """The key id a version's ids were pseudonymised with, or None (raw)."""
    form = (manifest or {}).get("user_id") or {}
    return str(form["key_id"]) if form.get("pseudonymised") else None


def forget(
    settings: Settings,
    ids_path: str,
    first: dt.date | None = None,
    last: dt.date | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
) -> tuple[str, list[Forgotten]]:
    """Erase the users of ``ids_path`` from every published date in [first, last]. Returns the
    request's hash and a line per date."""
    ids = read_ids(settings, ids_path)
    key = load_key(settings.user_id_key_file) if settings.user_id_key_file else None
    ours = key_id(key) if key is not None else None
    request = plan.request_hash(ids, key)
    targets: dict[str | None, set[str]] = {None: plan.published_ids(ids, None)}
    if key is not None:
        targets[ours] = plan.published_ids(ids, key)
    forget_id = f"forget_{clock():%Y%m%dT%H%M%SZ}_{secrets.token_hex(3)}"
    done: list[Forgotten] = []
    with storage_errors():
        fs, layout, _ = destination(settings)
        dates = [
            d
            for d in published_dates(fs, layout)
            if (first is None or d >= first) and (last is None or d <= last)
        ]
        _refuse_other_keys(fs, layout, dates, ours)
        for date in dates:
            try:
                lock = date_lock(settings.replace(date=date), fs, layout, forget_id)
                with lock.held():
                    try:
                        outcome = _forget_date(
                            fs,
                            layout,
                            date,
                            targets=targets,
                            lock=lock,
                            forget_id=forget_id,
                            request=request,
                            clock=clock,
                        )
                    except (KeyboardInterrupt, Terminated) as e:
                        raise Interrupted(signal_of(e), lock.intent is not None) from e
                    if outcome.changed:
                        manifest = wap.published_manifest(fs, layout, date) or {}
                        entry = plan.log_entry(date, request, forget_id, clock(), outcome)
                        lake_store(fs).put_json(log_path(layout, request, date), entry)
                        if manifest:
                            register_in_catalog(
                                settings,
                                date,
                                manifest,
                                done=f"{date}'s rows of the request are erased",
                            )
                done.append(Forgotten(date, outcome))
            except DateLockedError as e:
                done.append(Forgotten(date, None, skipped=str(e)))
    return request, done


def _refuse_other_keys(fs: Any, layout: Layout, dates: list[dt.date], ours: str | None) -> None:
    """Refuse the request before anything is rewritten if a date (or its kept version) holds
    ids pseudonymised under a key other than the one given: they cannot be found."""
    problems = []
    for date in dates:
        kept = previous(layout, date).manifest
        for which, path in (("", layout.manifest(date)), (" (kept version)", kept)):
            manifest = lake_store(fs).read_json(path)
            form = _form(manifest)
            if form is not None and form != ours:
                given = f"the key given has key id {ours}" if ours else "no key was given"
                problems.append(f"{date}{which} was pseudonymised under key id {form}, {given}")
    if problems:
        raise ConfigError(
            "cannot search every date, nothing was erased: "
            + "; ".join(problems[:5])
            + ": give that date's key with --user-id-key-file (or narrow --from/--to)"
        )


def _forget_date(
    fs: Any,
    layout: Layout,
    date: dt.date,
    *,
    targets: Mapping[str | None, set[str]],
    lock: Any,
    forget_id: str,
    request: str,
    clock: Callable[[], dt.datetime],
) -> plan.DateOutcome:
    wap.resolve(fs, layout, date, lock)  # an interrupted publish (maybe a forget's), completed
    wap.remove_staging(fs, layout, date, lock)  # failed runs' staging: it can hold their rows
    current = wap.published_manifest(fs, layout, date)
    if current is None:
        return plan.DateOutcome()
    version = published(layout, date)
    found = erasure.find(fs, version, current, targets[_form(current)])
    files_read = sum(f.read for f in found)
    hits = [f for f in found if f.remove is not None]
    if not hits:
        kept_version = previous(layout, date)
        kept = lake_store(fs).read_json(kept_version.manifest)
        form = _form(kept)
        dropped = erasure.holds_rows(fs, kept_version, kept, targets.get(form, set()))
        if dropped:
            wap.drop_previous(fs, layout, date, lock)
        return plan.DateOutcome(previous_dropped=dropped, files_read=files_read)
    tag = new_tag()
    files, reports, removed = erasure.stage_without(
        fs,
        found,
        manifest=current,
        published=version,
        staged=staged(layout, date, forget_id),
        tag=tag,
        options=WriteOptions(dictionary_user_ids=_form(current) is not None),
    )
    document = plan.erased_manifest(
        current, files, reports, removed, tag=tag, forget_id=forget_id, request=request, at=clock()
    )
    wap.publish(fs, layout, date, forget_id, document, fence=lock)
    dropped = wap.drop_previous(fs, layout, date, lock)  # the version replaced holds the rows
    return plan.DateOutcome(
        rows_valid=sum(x.rows for x in removed if x.dataset == "events"),
        rows_rejected=sum(x.rows for x in removed if x.dataset == "rejected"),
        previous_dropped=dropped,
        files_read=files_read,
        files_rewritten=len(removed),
    )
