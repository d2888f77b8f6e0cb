"""The data-quality report as one self-contained HTML page (pure: a report dict in, text out).

Plots are inline SVG (:mod:`processing.logic.svg_chart`), so the page needs no network, no
script and no other file: it opens from S3, from an e-mail or from a laptop. Everything shown
comes from the report (:mod:`processing.logic.quality`), which holds counts only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from processing.logic import svg_chart as chart
from processing.logic.profile import HOURS

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
th, td { padding: .2rem .6rem; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.warning { color: #a40000; } .info { color: #555; } .ok { color: #176d1a; }
.muted { color: #777; font-size: .85rem; } svg { max-width: 100%; height: auto; }
"""
_TODAY, _BEFORE, _REJECTED = "#1f77b4", "#aaaaaa", "#d62728"


def _hourly_plot(report: Mapping[str, Any]) -> str | None:
    hourly = report["comparison"]["hourly"]
    if hourly is None:
        return None
    total = report["day"]["rows_valid"]
    usual = None
    if hourly[0]["trailing_share"] is not None:
        expected = [r["trailing_share"] * total for r in hourly]
        usual = chart.Series("same total, usual shape", expected, "#000000")
    return chart.bars(
        [f"{h:02d}" for h in range(HOURS)],
        [chart.Series(report["date"], [r["rows"] for r in hourly], _TODAY)],
        line=usual,
        title="Valid rows by hour, against the previous days' hourly shape",
        y_label="valid rows",
        x_label="hour (UTC)",
    )


def _mix_plot(rows: Sequence[Mapping[str, Any]] | None, title: str) -> str | None:
    if not rows:
        return None
    rows = list(rows)[:15]
    series = [chart.Series("this day", [100 * r["share"] for r in rows], _TODAY)]
    if rows[0]["trailing_share"] is not None:
        before = [100 * (r["trailing_share"] or 0) for r in rows]
        series.append(chart.Series("previous days (mean)", before, _BEFORE))
    return chart.paired_hbars(
        [str(r["value"]) for r in rows],
        series,
        title=title,
        x_label="% of the day's valid rows",
        suffix="%",
    )


def _days(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [*reversed(report["history"]), report["day"]]


def _daily_plot(report: Mapping[str, Any]) -> str:
    days = _days(report)
    valid = [d["rows_valid"] if d is report["day"] else 0 for d in days]
    before = [0 if d is report["day"] else d["rows_valid"] for d in days]
    return chart.bars(
        [f"{d['date'][5:]}\n{d['weekday'][:3]}" for d in days],
        [
            chart.Series("valid, earlier days", before, _BEFORE),
            chart.Series("valid, this day", valid, _TODAY),
            chart.Series("rejected", [d["rows_rejected"] for d in days], _REJECTED),
        ],
        title="Rows read per published day",
        y_label="rows read",
    )


def _reasons_plot(report: Mapping[str, Any]) -> str | None:
    days = _days(report)
    reasons = sorted({r for d in days for r in d["rejected_by_reason"]})
    if not reasons:
        return None
    series = [
        chart.Series(
            reason,
            [
                100 * d["rejected_by_reason"].get(reason, 0) / d["rows_read"]
                if d["rows_read"]
                else 0.0
                for d in days
            ],
            chart.colour(i),
        )
        for i, reason in enumerate(reasons)
    ]
    return chart.bars(
        [d["date"][5:] for d in days],
        series,
        title="Rejected rows by reason, per published day",
        y_label="% of rows read",
        suffix="%",
    )


def _rejected_hours_plot(report: Mapping[str, Any]) -> str | None:
    by_hour = report["day"]["rejected_by_hour"]
    if not by_hour:
        return None
    days = _days(report)
    reasons = sorted({r for d in days for r in d["rejected_by_reason"]})  # the colours above
    series = [
        chart.Series(reason, hours, chart.colour(reasons.index(reason)))
        for reason, hours in sorted(by_hour.items())
    ]
    return chart.bars(
        [f"{h:02d}" for h in range(HOURS)] + ["none"],
        series,
        title=f"Rejected rows by hour and reason, {report['date']}",
        y_label="rejected rows",
        x_label="hour of the row's time (UTC); none: no usable time",
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _mix_table(rows: Sequence[Mapping[str, Any]] | None) -> str:
    if not rows:
        return "<p class=muted>No counts.</p>"
    return _table(
        ["value", "rows", "share", "previous days", "change (points)", "days seen"],
        [
            (
                r["value"],
                r["rows"],
                _percent(r["share"]),
                _percent(r["trailing_share"]),
                r["change_points"],
                r["days_seen"],
            )
            for r in rows
        ],
    )


def render(report: Mapping[str, Any]) -> str:
    """The report as an HTML page."""
    day, comparison = report["day"], report["comparison"]
    volume = comparison["volume"]
    findings = report["findings"]
    items = "".join(
        f"<li class={escape(f['severity'])}><b>{escape(f['severity'])}</b> "
        f"({escape(f['check'])}): {escape(f['message'])}</li>"
        for f in findings
    )
    nothing = "<p class=ok>Nothing unusual against the days before.</p>"
    verdict = f"<ul>{items}</ul>" if findings else nothing
    same = volume["same_weekday"]
    trailing = volume["trailing_mean"]
    overview = _table(
        ["", "this day", "same weekday, a week earlier", "mean of the days before"],
        [
            (
                "rows read",
                day["rows_read"],
                same and f"{same['rows_read']:,} ({same['date']})",
                trailing and f"{trailing['rows_read']:,.0f} ({trailing['days']} days)",
            ),
            ("volume ratio", None, same and same["ratio"], trailing and trailing["ratio"]),
            ("rows valid", day["rows_valid"], None, None),
            (
                "rejected share",
                _percent(day["rejected_share"]),
                None,
                _percent(comparison["rejected_share"]["trailing_share"]),
            ),
        ],
    )
    history = _table(
        ["date", "weekday", "rows read", "valid", "rejected", "rejected share", "run"],
        [
            (
                d["date"],
                d["weekday"],
                d["rows_read"],
                d["rows_valid"],
                d["rows_rejected"],
                _percent(d["rejected_share"]),
                d["run_id"],
            )
            for d in [day, *report["history"]]
        ],
    )
    sections = [
        ("Findings", verdict),
        ("Overview", overview),
        ("Volume per day", _daily_plot(report) + history),
        ("Volume by hour", _hourly_plot(report) or "<p class=muted>No hourly counts.</p>"),
        (
            "Event names",
            (_mix_plot(comparison["event_mix"], "Event name mix") or "")
            + _mix_table(comparison["event_mix"]),
        ),
        (
            "Platforms",
            (_mix_plot(comparison["platform_mix"], "Platform mix") or "")
            + _mix_table(comparison["platform_mix"]),
        ),
        (
            "Rejected rows",
            (_reasons_plot(report) or "<p class=ok>No rejected rows on any of these days.</p>")
            + (_rejected_hours_plot(report) or "")
            + _mix_table(comparison["reasons"]),
        ),
    ]
    body = "".join(f"<h2>{escape(title)}</h2>{html}" for title, html in sections)
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>Data quality, {escape(report['date'])}</title><style>{_STYLE}</style></head>"
        f"<body><h1>Data quality of {escape(report['date'])} ({escape(day['weekday'])})</h1>"
        f"<p class=muted>Run {escape(str(report['run_id']))}, report generated "
        f"{escape(report['generated_at'])}. Compared with the {len(report['history'])} "
        "published days before it. Counts only: no user id or record is shown.</p>"
        f"{body}</body></html>"
    )
