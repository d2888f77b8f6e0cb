"""What the example downstream DAG (``dags/events_published_example.py``) does with the lake's
Asset events: read each published date through the public readers only, as a downstream team
would. The events come from the DAG run that they triggered; a run that no event triggered (a
manual one, ``dag.test()``) takes the newest event of the alias."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

#: The lake's Asset is ``<dest>/events``: the lake's root is the part before it.
_EVENTS_SUFFIX = "/events"


def published_events(context: Mapping[str, Any], alias: Any) -> list[tuple[str, dict[str, Any]]]:
    """(asset URI, extra) of each event that triggered this run, in order; or of the newest
    event of ``alias`` when none did."""
    triggering: Sequence[Any] = []
    with contextlib.suppress(KeyError, IndexError):  # what the accessors raise varies
        triggering = list(context["triggering_asset_events"][alias])
    if not triggering:
        with contextlib.suppress(KeyError, IndexError):
            triggering = list(context["inlet_events"][alias][-1:])
    if not triggering:
        raise LookupError(
            f"no asset event of {alias.name!r} yet: this DAG runs after events_daily publishes"
        )
    return [(str(e.asset.uri), dict(e.extra or {})) for e in triggering]


def rows_per_event_name(event: tuple[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The published date's rows per event name, read from the lake the event names and checked
    against the event's count; a date republished since the event is reported, not read."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    import processing

    uri, extra = event
    if not uri.endswith(_EVENTS_SUFFIX):
        raise ValueError(f"{uri} is not a lake's events Asset (<dest>/events)")
    root = uri.removesuffix(_EVENTS_SUFFIX).removeprefix("file://")
    date = dt.date.fromisoformat(str(extra["date"]))
    manifest = processing.read_manifest(root, date)
    if manifest is None or manifest.get("publish_id") != extra.get("publish_id"):
        now = manifest.get("run_id") if manifest else None
        log.warning("%s was republished since this event (now run %s): skipped", date, now)
        return {"date": str(date), "run_id": extra.get("run_id"), "superseded_by": now}
    table = processing.events_dataset(root).to_table(
        columns=["event_name"], filter=ds.field("event_date") == date
    )
    counts = dict(zip(*pc.value_counts(table["event_name"]).flatten(), strict=True))
    rows = {str(k): int(v) for k, v in sorted(counts.items(), key=lambda kv: str(kv[0]))}
    if sum(rows.values()) != extra.get("rows_valid"):
        raise ValueError(
            f"{date}: read {sum(rows.values())} rows, the publish said {extra.get('rows_valid')}"
        )
    log.info("%s (run %s): %s", date, extra.get("run_id"), rows)
    return {"date": str(date), "run_id": extra.get("run_id"), "rows": rows}
