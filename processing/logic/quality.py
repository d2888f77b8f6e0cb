"""The data-quality report of a run: the day against the seven published days before it (pure).

The report is a JSON-ready dict, published beside the date's manifest (``_reports/``) with its
HTML rendering (:mod:`processing.logic.quality_html`):

- ``day``: the day's summary (counts by outcome, event name, platform, hour and reason), made
  from the manifest and the run's profile (:mod:`processing.logic.profile`);
- ``history``: the same summary for up to seven earlier published days, newest first (days
  published before profiles existed have counts but no hours or platforms);
- ``comparison``: volume against the same weekday a week earlier and against the trailing mean,
  the rejected share, and the event, platform and hourly mix against the trailing mean;
- ``findings``: what looks wrong, each with a severity ("warning" or "info") and a sentence.

Only counts go in: no user id, no product, no record. The volume thresholds are the ones of the
EventsLakeVolumeAnomaly alert (deploy/kubernetes/monitoring/events-lake.rules.yml), which reads
the same ratios from the Pushgateway.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from processing.logic import profile as prof
from processing.logic.pseudonymise import key_id_of

REPORT_VERSION = 1
HISTORY_DAYS = 7
#: The same-weekday volume ratio outside which the day is flagged (and the alert fires).
SAME_WEEKDAY_BOUNDS = (0.5, 2.0)
#: The trailing-mean bounds, used when the same weekday a week earlier is not published.
TRAILING_BOUNDS = (0.4, 2.5)
#: Days of history needed before the trailing mean is compared at all.
MIN_TRAILING_DAYS = 3
#: A rejected share above this is flagged (the EventsLakeRejectedShareHigh alert's threshold).
REJECTED_SHARE_WARNING = 0.05
#: A change of an event name's or platform's share of the day, in percentage points, flagged.
MIX_SHIFT_POINTS = 10.0
#: An hour whose trailing mean share of the day is at least this, but that is empty today.
EMPTY_HOUR_SHARE = 0.01

Summary = dict[str, Any]


def summary(manifest: Mapping[str, Any], profile: Mapping[str, Any] | None) -> Summary:
    """What the report keeps of one day, from its manifest and (if it has one) its profile."""
    date = dt.date.fromisoformat(manifest["date"])
    return {
        "date": date.isoformat(),
        "weekday": date.strftime("%A"),
        "run_id": manifest.get("run_id"),
        "rows_read": int(manifest["rows_read"]),
        "rows_valid": int(manifest["rows_valid"]),
        "rows_rejected": int(manifest["rows_rejected"]),
        "rejected_share": _share(manifest["rows_rejected"], manifest["rows_read"]),
        "valid_by_event": dict(manifest.get("valid_by_event", {})),
        "rejected_by_reason": dict(manifest.get("rejected_by_reason", {})),
        "valid_by_hour": list(profile["valid_by_hour"]) if profile else None,
        "valid_by_platform": _top(profile["valid_by_platform"]) if profile else None,
        "rejected_by_hour": dict(profile["rejected_by_hour"]) if profile else None,
        "user_ids": _user_ids(manifest),
    }


def _user_ids(manifest: Mapping[str, Any]) -> str | None:
    """How the day's user ids were published: ``"raw"``, ``"key <key id>"``, or None (a
    manifest from before the pipeline recorded it)."""
    if not isinstance(manifest.get("user_id"), Mapping):
        return None
    key = key_id_of(manifest)
    return "raw" if key is None else f"key {key}"


#: Platforms kept by name in a summary; the rest are added up as OTHER (a platform column that
#: suddenly holds ids must not make the report as large as the day).
TOP_PLATFORMS = 20
OTHER = "(other)"


def _top(counts: Mapping[str, int]) -> dict[str, int]:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(ranked[:TOP_PLATFORMS])
    rest = sum(n for _, n in ranked[TOP_PLATFORMS:])
    return {**kept, OTHER: rest} if rest else kept


def _share(part: float, whole: float) -> float:
    return round(part / whole, 6) if whole else 0.0


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _shares(counts: Mapping[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {}


def _counted(counts: Sequence[Mapping[str, int] | None]) -> list[Mapping[str, int]]:
    """The days that have counts of a kind: an empty day (published with --allow-empty) or one
    made before profiles existed says nothing about the usual mix."""
    return [c for c in counts if c and sum(c.values())]


def _mix(today: Mapping[str, int], history: Sequence[Mapping[str, int]]) -> list[dict[str, Any]]:
    """Each value's share today against its mean share over the (non-empty) history days,
    largest first."""
    now = _shares(today)
    before = [_shares(h) for h in history]
    names = sorted(set(now).union(*before), key=lambda k: (-today.get(k, 0), k))
    rows = []
    for name in names:
        mean = _mean([b.get(name, 0.0) for b in before]) if before else None
        rows.append(
            {
                "value": name,
                "rows": int(today.get(name, 0)),
                "share": round(now.get(name, 0.0), 6),
                "trailing_share": None if mean is None else round(mean, 6),
                "change_points": None
                if mean is None
                else round(100 * (now.get(name, 0.0) - mean), 2),
                "days_seen": sum(1 for h in history if h.get(name)),
            }
        )
    return rows


def _volume(day: Summary, history: Sequence[Summary]) -> dict[str, Any]:
    date = dt.date.fromisoformat(day["date"])
    week_ago = next((h for h in history if h["date"] == (date - dt.timedelta(7)).isoformat()), None)
    same_weekday = None
    if week_ago is not None and week_ago["rows_read"]:
        same_weekday = {
            "date": week_ago["date"],
            "rows_read": week_ago["rows_read"],
            "ratio": round(day["rows_read"] / week_ago["rows_read"], 4),
        }
    trailing = None
    counted = [h["rows_read"] for h in history if h["rows_read"]]  # empty days are no baseline
    if len(counted) >= MIN_TRAILING_DAYS:
        mean = _mean(counted)
        if mean:
            trailing = {
                "days": len(counted),
                "rows_read": round(mean, 1),
                "ratio": round(day["rows_read"] / mean, 4),
            }
    return {"rows_read": day["rows_read"], "same_weekday": same_weekday, "trailing_mean": trailing}


def _hourly(day: Summary, history: Sequence[Summary]) -> list[dict[str, Any]] | None:
    if day["valid_by_hour"] is None:
        return None
    total = sum(day["valid_by_hour"]) or 1
    with_hours = [
        h["valid_by_hour"] for h in history if h["valid_by_hour"] and sum(h["valid_by_hour"])
    ]
    rows = []
    for hour, n in enumerate(day["valid_by_hour"]):
        mean_share = (
            _mean([hours[hour] / (sum(hours) or 1) for hours in with_hours]) if with_hours else None
        )
        rows.append(
            {
                "hour": hour,
                "rows": n,
                "share": round(n / total, 6),
                "trailing_share": None if mean_share is None else round(mean_share, 6),
            }
        )
    return rows


def compare(day: Summary, history: Sequence[Summary]) -> dict[str, Any]:
    """The day against its history (newest first, at most HISTORY_DAYS days)."""
    read = [h for h in history if h["rows_read"]]
    trailing_share = _mean([h["rejected_share"] for h in read]) if read else None
    return {
        "volume": _volume(day, history),
        "rejected_share": {
            "share": day["rejected_share"],
            "trailing_share": None if trailing_share is None else round(trailing_share, 6),
        },
        "event_mix": _mix(day["valid_by_event"], _counted([h["valid_by_event"] for h in history])),
        "platform_mix": None
        if day["valid_by_platform"] is None
        else _mix(day["valid_by_platform"], _counted([h["valid_by_platform"] for h in history])),
        "reasons": _mix(
            day["rejected_by_reason"], _counted([h["rejected_by_reason"] for h in history])
        ),
        "hourly": _hourly(day, history),
    }


def findings(day: Summary, history: Sequence[Summary], comparison: Mapping[str, Any]) -> list:
    """What deserves a look, most serious first."""
    found: list[dict[str, str]] = []

    def add(severity: str, check: str, message: str) -> None:
        found.append({"severity": severity, "check": check, "message": message})

    same, trailing = comparison["volume"]["same_weekday"], comparison["volume"]["trailing_mean"]
    baseline = None
    if same is not None:
        baseline, bounds = same, SAME_WEEKDAY_BOUNDS
        against = f"the same weekday a week earlier ({same['date']}, {same['rows_read']:,})"
    elif trailing is not None:
        baseline, bounds = trailing, TRAILING_BOUNDS
        against = (
            f"the mean of the {trailing['days']} days before "
            "(the same weekday a week earlier is not published, or empty)"
        )
    if baseline is not None and not bounds[0] <= baseline["ratio"] <= bounds[1]:
        message = f"{day['rows_read']:,} rows read: {baseline['ratio']:.2f}x {against}"
        add("warning", "volume", message)
    if not history:
        add("info", "history", "no earlier published day to compare with")
    elif not any(h["rows_read"] for h in history):
        add("info", "history", "the earlier published days are empty: nothing to compare with")
    if day["rows_read"] and day["rows_valid"] == 0:
        add("warning", "volume", "no valid row: the day was published empty")

    share = day["rejected_share"]
    trailing = comparison["rejected_share"]["trailing_share"]
    if share > REJECTED_SHARE_WARNING:
        add("warning", "rejected", f"{share:.1%} of the rows read were rejected")
    elif trailing is not None and share > max(3 * trailing, trailing + 0.01):
        add("warning", "rejected", f"{share:.2%} rejected, against {trailing:.2%} before")

    compared = {  # days of the history that have counts of each kind
        "event_name": len(_counted([h["valid_by_event"] for h in history])),
        "platform": len(_counted([h["valid_by_platform"] for h in history])),
    }
    # platforms beyond the top ones are added up as OTHER: one missing today may be under it
    # today, and one that looks new may have been under it before
    bucketed_today = {"event_name": False, "platform": OTHER in (day["valid_by_platform"] or {})}
    bucketed_before = {
        "event_name": False,
        "platform": any(OTHER in (h["valid_by_platform"] or {}) for h in history),
    }
    mixes = (("event_name", comparison["event_mix"]), ("platform", comparison["platform_mix"]))
    for kind, rows in mixes:
        days = compared[kind]
        for row in rows or []:
            if row["value"] == OTHER:
                continue  # a sum of small values, not one that can be new or missing
            if row["rows"] == 0 and days and row["days_seen"] == days and not bucketed_today[kind]:
                add("warning", kind, f"{kind} {row['value']!r} is missing (seen every day before)")
            elif row["rows"] and days and row["days_seen"] == 0:
                if not bucketed_before[kind]:
                    add("info", kind, f"new {kind} {row['value']!r}: {row['rows']:,} rows")
            elif row["change_points"] is not None and abs(row["change_points"]) >= MIX_SHIFT_POINTS:
                add(
                    "warning",
                    kind,
                    f"{kind} {row['value']!r} is {row['share']:.1%} of the day, against "
                    f"{row['trailing_share']:.1%} before",
                )
    for row in comparison["reasons"]:
        if row["rows"] and any(h["rows_read"] for h in history) and row["days_seen"] == 0:
            add("info", "rejected", f"new rejection reason {row['value']}: {row['rows']:,} rows")

    known = [h for h in history if h.get("user_ids") is not None]
    if day.get("user_ids") is not None and known:
        before = max(known, key=lambda h: h["date"])
        if before["user_ids"] != day["user_ids"]:
            add(
                "warning",
                "user_ids",
                f"user ids are published {_form(day['user_ids'])}, on {before['date']} "
                f"{_form(before['user_ids'])}: user_id does not join across them",
            )

    empty = [
        row["hour"]
        for row in comparison["hourly"] or []
        if row["rows"] == 0
        and row["trailing_share"] is not None
        and row["trailing_share"] >= EMPTY_HOUR_SHARE
    ]
    if empty:
        hours = ", ".join(f"{h:02d}:00" for h in empty)
        add("warning", "hourly", f"no valid event in hours that usually have some: {hours} UTC")
    found.sort(key=lambda f: f["severity"] != "warning")
    return found


def _form(user_ids: str) -> str:
    return "as they came" if user_ids == "raw" else f"pseudonymised under {user_ids}"


def report(
    manifest: Mapping[str, Any],
    profile: Mapping[str, Any] | None,
    history: Sequence[Summary],
    generated_at: dt.datetime,
) -> dict[str, Any]:
    """The report of the run that made ``manifest``; ``history`` newest first."""
    history = sorted(history, key=lambda h: h["date"], reverse=True)[:HISTORY_DAYS]
    day = summary(manifest, profile)
    if profile is not None and prof.rows(profile) != (day["rows_valid"], day["rows_rejected"]):
        raise ValueError(f"the profile counts {prof.rows(profile)} rows, the manifest does not")
    comparison = compare(day, history)
    return {
        "report_version": REPORT_VERSION,
        "date": day["date"],
        "run_id": manifest.get("run_id"),
        "generated_at": generated_at.isoformat(),
        "day": day,
        "history": history,
        "comparison": comparison,
        "findings": findings(day, history, comparison),
    }


def parse(data: bytes, date: dt.date) -> dict[str, Any]:
    """A published report of ``date``, read back: ValueError if it is not one this version of
    the pipeline can use (damaged, another version of the report, another date)."""
    try:
        report = json.loads(data)
        if report.get("report_version") != REPORT_VERSION:
            raise ValueError(f"its version is {report.get('report_version')!r}")
        if report["date"] != date.isoformat() or report["day"]["date"] != report["date"]:
            raise ValueError(f"it is the report of {report['date']}")
        volume_ratios(report)
        if not all(isinstance(f.get(k), str) for f in report["findings"] for k in _FINDING):
            raise ValueError("its findings are malformed")
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"it lacks {e}") from e
    return dict(report)


_FINDING = ("severity", "check", "message")


def volume_ratios(report: Mapping[str, Any]) -> dict[str, float]:
    """The volume ratios by baseline ("same_weekday", "trailing_mean"), where there is one."""
    volume = report["comparison"]["volume"]
    return {
        baseline: float(volume[baseline]["ratio"])
        for baseline in ("same_weekday", "trailing_mean")
        if volume.get(baseline)
    }
