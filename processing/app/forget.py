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

import dataclasses
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
from processing.adapters.versions import previous, published, staged
from processing.adapters.writer import WriteOptions
from processing.app.context import (
    date_lock,
    destination,
    register_in_catalog,
    s3_options,
    utcnow,
    write_options,
)
from processing.app.retention import dates_present
from processing.app.stages.scope import new_tag
from processing.logic import erasure as plan
from processing.logic.layout import Layout
from processing.logic.pseudonymise import key_id, key_id_of
from processing.spec.errors import (
    ConfigError,
    DamagedError,
    DateLockedError,
    Interrupted,
    Terminated,
    signal_of,
)
from processing.spec.settings import Settings

log = logging.getLogger(__name__)

ERASURES = "_erasures"


class _SkippedError(Exception):
    """A date this forget cannot serve now, why, and the exit code that says so."""

    def __init__(self, why: str, code: int) -> None:
        super().__init__(why)
        self.code = code


class Forgotten(NamedTuple):
    """What ``forget`` did to one date (or why it skipped it)."""

    date: dt.date
    outcome: plan.DateOutcome | None
    skipped: str | None = None
    #: the exit code a skipped date calls for (5: a live run holds it; 4: damaged; 2: its key)
    code: int = 0

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
    options = write_options(settings, dictionary_user_ids=False)
    done: list[Forgotten] = []
    with storage_errors():
        fs, layout, _ = destination(settings)
        present, _ = dates_present(fs, layout)  # published, kept, staged: wherever rows can be
        dates = sorted(
            d for d in present if (first is None or d >= first) and (last is None or d <= last)
        )
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
                            options=options,
                        )
                    except (KeyboardInterrupt, Terminated) as e:
                        raise Interrupted(signal_of(e), lock.intent is not None) from e
                    manifest = wap.published_manifest(fs, layout, date)
                    _log(
                        fs,
                        layout,
                        date,
                        manifest=manifest,
                        outcome=outcome,
                        request=request,
                        forget_id=forget_id,
                        clock=clock,
                    )
                    if outcome.changed and manifest:
                        register_in_catalog(
                            settings,
                            date,
                            manifest,
                            done=f"{date}'s rows of the request are erased",
                        )
                done.append(Forgotten(date, outcome))
            except DateLockedError as e:
                done.append(Forgotten(date, None, skipped=str(e), code=e.exit_code))
            except _SkippedError as e:
                done.append(Forgotten(date, None, skipped=str(e), code=e.code))
    return request, done


def _log(
    fs: Any,
    layout: Layout,
    date: dt.date,
    *,
    manifest: Mapping[str, Any] | None,
    outcome: plan.DateOutcome,
    request: str,
    forget_id: str,
    clock: Callable[[], dt.datetime],
) -> None:
    """The date's line of the erasure log, from what the published manifest records of this
    request (every forget of it that published: one that stopped before it logged, too) and
    whether a kept version was dropped; written when something changed or it is missing."""
    store = lake_store(fs)
    path = log_path(layout, request, date)
    records = [
        r
        for r in ((manifest or {}).get("erased") or {}).get("requests", [])
        if r.get("request") == request
    ]
    before = store.read_json(path)
    if not (outcome.changed or (records and before is None)):
        return
    logged = plan.DateOutcome(
        rows_valid=sum(int(r.get("rows_valid", 0)) for r in records) or outcome.rows_valid,
        rows_rejected=sum(int(r.get("rows_rejected", 0)) for r in records) or outcome.rows_rejected,
        previous_dropped=outcome.previous_dropped or bool((before or {}).get("previous_dropped")),
        files_read=outcome.files_read,
        files_rewritten=outcome.files_rewritten,
    )
    store.put_json(path, plan.log_entry(date, request, forget_id, clock(), logged))


def _refuse_other_keys(fs: Any, layout: Layout, dates: list[dt.date], ours: str | None) -> None:
    """Refuse the request before anything is rewritten if a date (or its kept version) holds
    ids pseudonymised under a key other than the one given: they cannot be found."""
    problems = []
    for date in dates:
        kept = previous(layout, date).manifest
        for which, path in (("", layout.manifest(date)), (" (kept version)", kept)):
            manifest = lake_store(fs).read_json(path)
            form = key_id_of(manifest)
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
    options: WriteOptions,
) -> plan.DateOutcome:
    wap.resolve(fs, layout, date, lock)  # an interrupted publish (maybe a forget's), completed
    wap.remove_staging(fs, layout, date, lock)  # failed runs' staging: it can hold their rows
    current = wap.published_manifest(fs, layout, date)
    version = published(layout, date)
    if current is None:  # no version, or a damaged one: search whatever files are there
        _refuse_a_damaged_date(fs, version, date, targets)
        return plan.DateOutcome(previous_dropped=_drop_kept(fs, layout, date, targets, lock))
    form = key_id_of(current)
    if form not in targets:  # published under another key since the request was checked
        raise _SkippedError(
            f"pseudonymised under key id {form} (published since this forget began): forget "
            "it again with that key",
            ConfigError.exit_code,
        )
    found = erasure.find(fs, version, current, targets[form])
    files_read = sum(f.read for f in found)
    hits = [f for f in found if f.remove is not None]
    if not hits:
        # files no version lists (a publish or an expire that stopped) could hold rows: they
        # go, as the next publish of the date would delete them
        strays = wap.remove_strays(fs, layout, date, lock)
        dropped = _drop_kept(fs, layout, date, targets, lock)
        return plan.DateOutcome(previous_dropped=dropped, files_read=files_read, strays=strays)
    tag = new_tag()
    files, reports, removed = erasure.stage_without(
        fs,
        found,
        manifest=current,
        published=version,
        staged=staged(layout, date, forget_id),
        tag=tag,
        options=dataclasses.replace(options, dictionary_user_ids=form is not None),
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


def _drop_kept(
    fs: Any, layout: Layout, date: dt.date, targets: Mapping[str | None, set[str]], lock: Any
) -> bool:
    """Drop the version kept for a rollback if it holds rows of the request (or cannot be
    read, or was pseudonymised under a key not given: it cannot be searched); True if it did."""
    kept_version = previous(layout, date)
    kept = lake_store(fs).read_json(kept_version.manifest)
    form = key_id_of(kept)
    unsearchable = kept is not None and form not in targets
    if unsearchable or erasure.holds_rows(fs, kept_version, kept, targets.get(form, set())):
        return wap.drop_previous(fs, layout, date, lock)
    return False


def _refuse_a_damaged_date(
    fs: Any, version: Any, date: dt.date, targets: Mapping[str | None, set[str]]
) -> None:
    """A date with files but no readable manifest: if they hold rows of the request (in any
    form), it is skipped (exit 4): it cannot be published again without them until a run
    replaces it."""
    listed = [p for p in version.listing(fs) if p.endswith(".parquet")]
    if not listed:
        return
    entries = []
    for path in listed:
        events = path.startswith(version.events + "/")
        directory = version.events if events else version.rejected
        entries.append(
            {"dataset": "events" if events else "rejected", "path": path[len(directory) + 1 :]}
        )
    wanted = set().union(*targets.values())
    if any(f.remove is not None for f in erasure.find(fs, version, {"files": entries}, wanted)):
        raise _SkippedError(
            "damaged (no readable manifest) and its files hold rows of the request: run the "
            "date again (it replaces it), then forget again",
            DamagedError.exit_code,
        )
