"""Where every file goes: a pure function of destination, date, run and piece.

    <dest>/events/event_date=D/event_name=E/part-PPPPP-SSS-TTTTTTTT.parquet  published events
    <dest>/events/event_date=D/_manifest.json                 the switch
    <dest>/events/event_date=D/_SUCCESS                       empty: the date is published and no
                                                              publish of it is under way
    <dest>/events/event_date=D/_reports/quality-T.{json,html}  the run's data-quality report
    <dest>/events/event_date=D/_reports/dask-performance-T.html  its Dask performance report
    <dest>/rejected/event_date=D/part-PPPPP-SSS-TTTTTTTT.parquet  published rejected rows
    <dest>/_staging/event_date=D/run_id=R/{events,rejected}/...   one run's staging
    <dest>/_previous/event_date=D/{events,rejected}/...           the version published before
    <dest>/_locks/event_date=D.json                               the date's writer lock
    <dest>/_alerts/event_date=D.failed                            its last run failed (notices)

File names are deterministic within an attempt at staging (piece number, sequence within the
piece, and the attempt's tag ``T``: eight random hex digits drawn when it starts), so a retried
task overwrites its own files instead of adding duplicates; and no two versions of a date ever
share a file name, not even two runs given the same run id, nor a version and its rollback (which
publishes the kept files again under a tag of its own). A publish can therefore copy the new
version in beside the old one, and a name that stopped being published is never published again:
what the publish's fencing argument stands on (:mod:`processing.adapters.publish`). Names starting
with ``_`` are skipped by pyarrow.dataset, Spark, Hive and Athena, so readers never see staging,
locks or manifests as data.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from processing.spec import rules as r
from processing.spec import schema as s
from processing.spec.errors import ConfigError

EVENTS = "events"
REJECTED = "rejected"
MANIFEST = "_manifest.json"
#: Hadoop's marker of a complete output directory, for tools that wait for one (empty).
SUCCESS = "_SUCCESS"
#: Beside the manifest: the run's reports (listed in its manifest, published with its files).
REPORTS = "_reports"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}$")
_EVENT_NAME = re.compile(r.PATTERNS[s.EVENT_NAME])


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.fullmatch(run_id):
        raise ConfigError(
            f"run id {run_id!r} is not usable in a path: use 1-80 letters, digits, '_', '.', '-'"
        )
    return run_id


#: A tag: eight lower-case hex digits.
_TAG = re.compile(r"^[0-9a-f]{8}$")
#: A tagged file name: ``<stem>-<tag><suffix>`` (``part-00000-000-3f9a1c2e.parquet``,
#: ``quality-3f9a1c2e.html``).
_TAGGED_NAME = re.compile(r"^(?P<stem>.+-)(?P<tag>[0-9a-f]{8})(?P<suffix>(\.[A-Za-z0-9]+)+)$")


def check_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        raise ValueError(f"{tag!r} is not a tag (eight lower-case hex digits)")
    return tag


def tag_of(path: str) -> str | None:
    """The tag in a file's name, or None for a name without one."""
    found = _TAGGED_NAME.fullmatch(path.rsplit("/", 1)[-1])
    return found["tag"] if found else None


def retag(path: str, tag: str) -> str:
    """``path`` renamed for another version: its tag replaced by ``tag`` (a name without a tag
    gets one before its suffix)."""
    directory, _, name = path.rpartition("/")
    found = _TAGGED_NAME.fullmatch(name)
    if found:
        name = f"{found['stem']}{check_tag(tag)}{found['suffix']}"
    else:
        stem, dot, suffix = name.partition(".")
        name = f"{stem}-{check_tag(tag)}{dot}{suffix}"
    return f"{directory}/{name}" if directory else name


def file_name(piece: int, sequence: int, tag: str) -> str:
    return f"part-{piece:05d}-{sequence:03d}-{tag}.parquet"


@dataclass(frozen=True)
class Layout:
    """Paths under one destination root (an fsspec path without protocol, or a local path)."""

    root: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", self.root.rstrip("/") or "/")

    def _join(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    # published
    def events_date(self, date: dt.date) -> str:
        return self._join(EVENTS, f"{s.EVENT_DATE}={date.isoformat()}")

    def rejected_date(self, date: dt.date) -> str:
        return self._join(REJECTED, f"{s.EVENT_DATE}={date.isoformat()}")

    def manifest(self, date: dt.date) -> str:
        return f"{self.events_date(date)}/{MANIFEST}"

    def success_marker(self, date: dt.date) -> str:
        return f"{self.events_date(date)}/{SUCCESS}"

    # staging and previous version
    def staging_date(self, date: dt.date) -> str:
        return self._join("_staging", f"{s.EVENT_DATE}={date.isoformat()}")

    def staging_run(self, date: dt.date, run_id: str) -> str:
        return f"{self.staging_date(date)}/run_id={check_run_id(run_id)}"

    def staged(self, date: dt.date, run_id: str) -> tuple[str, str]:
        """The run's staged events and rejected directories."""
        run = self.staging_run(date, run_id)
        return f"{run}/{EVENTS}", f"{run}/{REJECTED}"

    def piece_records(self, date: dt.date, run_id: str) -> str:
        """Where the run's tasks record each piece they completed (a retried process keeps
        those pieces: see processing.app.resume)."""
        return f"{self.staging_run(date, run_id)}/_pieces"

    def previous(self, date: dt.date) -> str:
        return self._join("_previous", f"{s.EVENT_DATE}={date.isoformat()}")

    def staging(self) -> str:
        return self._join("_staging")

    def locks(self) -> str:
        return self._join("_locks")

    def lock(self, date: dt.date) -> str:
        return f"{self.locks()}/{s.EVENT_DATE}={date.isoformat()}.json"

    def failure_marker(self, date: dt.date) -> str:
        """Present while the date's last run failed (the DAG's notices send a recovery once)."""
        return self._join("_alerts", f"{s.EVENT_DATE}={date.isoformat()}.failed")

    def guard(self, date: dt.date, name: str) -> str:
        """A local disk's guard file for a compare-and-swap of one of the date's manifests
        (kept with the locks, so the published directories hold nothing but the version)."""
        return f"{self.locks()}/{s.EVENT_DATE}={date.isoformat()}.{name}.guard"


def entry_date(entry: str) -> dt.date | None:
    """The date of a listed ``.../event_date=D`` entry (published, staged, or a lock without
    its ``.json``), or None for anything else."""
    name = entry.rstrip("/").rsplit("/", 1)[-1]
    key, _, value = name.partition("=")
    if key != s.EVENT_DATE:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def partition_dir(event_name: str) -> str:
    """An event name's directory, relative to the date directory (staged or published)."""
    if not _EVENT_NAME.fullmatch(event_name):
        raise ValueError(f"event name {event_name!r} is not a safe partition value")
    return f"{s.EVENT_NAME}={event_name}"


def report_file(kind: str, tag: str, suffix: str) -> str:
    """A report's path relative to the events date directory (staged or published)."""
    return f"{REPORTS}/{kind}-{tag}.{suffix}"
