"""The versions of a date on the destination: where each lives (published, kept for a
rollback, staged), what files it holds (as its manifest lists them), and how a listing of it
compares with its manifest (what is missing or truncated)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from processing.adapters.audit import files_under
from processing.logic.layout import EVENTS, MANIFEST, REJECTED, SUCCESS, Layout


@dataclass(frozen=True)
class Version:
    """Where one version of a date lives: its events and rejected directories."""

    events: str
    rejected: str

    def file(self, entry: Mapping[str, Any]) -> str:
        return f"{self.events if entry['dataset'] == EVENTS else self.rejected}/{entry['path']}"

    @property
    def manifest(self) -> str:
        return f"{self.events}/{MANIFEST}"

    @property
    def success_marker(self) -> str:
        return f"{self.events}/{SUCCESS}"

    def live(self, manifest: Mapping[str, Any] | None) -> set[str]:
        """The paths that belong to ``manifest``'s version here, its manifest (and the
        ``_SUCCESS`` marker, when the version is the published one) included."""
        return {self.file(e) for e in entries(manifest or {})} | {
            self.manifest,
            self.success_marker,
        }

    def listing(self, fs: Any) -> dict[str, int]:
        """Every file here now, with its size (a prefix listing of each directory)."""
        return files_under(fs, (self.events, self.rejected))


def published(layout: Layout, date: dt.date) -> Version:
    return Version(layout.events_date(date), layout.rejected_date(date))


def previous(layout: Layout, date: dt.date) -> Version:
    return Version(f"{layout.previous(date)}/{EVENTS}", f"{layout.previous(date)}/{REJECTED}")


def staged(layout: Layout, date: dt.date, staging_id: str) -> Version:
    return Version(*layout.staged(date, staging_id))


def entries(manifest: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every file of a version: its data files, then its reports (``_reports/`` beside the
    manifest: the quality report, the Dask performance report), which move with it."""
    return [*manifest.get("files", []), *manifest.get("reports", [])]


def damage(manifest: Mapping[str, Any], listed: Mapping[str, int], version: Version) -> list[str]:
    """What is wrong with a version's data files, from a listing (sizes): missing, or of another
    size than the manifest says (truncated, overwritten). Reports are not data: a lost report
    is not damage."""
    problems = []
    for entry in manifest.get("files", []):
        size = listed.get(version.file(entry))
        shown = f"{entry['dataset']}/{entry['path']}"
        if size is None:
            problems.append(f"{shown} is missing")
        elif entry.get("bytes") is not None and size != entry["bytes"]:
            problems.append(f"{shown} has {size} bytes, its manifest says {entry['bytes']}")
    return problems


def describe(problems: list[str], shown: int = 3) -> str:
    """The first few problems, and how many more."""
    more = f" and {len(problems) - shown} more" if len(problems) > shown else ""
    return "; ".join(problems[:shown]) + more
