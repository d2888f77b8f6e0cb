"""The data-quality report as one self-contained HTML page (pure: a report dict in, text out).

Plots are drawn with matplotlib and inlined as SVG, so the page needs no network, no script and
no other file: it opens from S3, from an e-mail or from a laptop. Everything shown comes from the
report (:mod:`processing.logic.quality`), which holds counts only.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from processing.logic.profile import HOURS, NO_TIME

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
th, td { padding: .2rem .6rem; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.warning { color: #a40000; } .info { color: #555; } .ok { color: #176d1a; }
.muted { color: #777; font-size: .85rem; } svg { max-width: 100%; height: auto; }
"""
_TODAY, _BEFORE = "#1f77b4", "#aaaaaa"


def _svg(fig: Any) -> str:
    import matplotlib

    buffer = io.StringIO()
    no_metadata = {"Date": None, "Creator": None, "Format": None, "Type": None}
    with matplotlib.rc_context(
        {
            "svg.hashsalt": "events-lake",  # the same report renders the same page
            "svg.fonttype": "none",  # text as text: a fifth of the size, and searchable
        }
    ):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata=no_metadata)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: it is inline


def _figure(width: float, height: float) -> tuple[Any, Any]:
    """A figure of its own: no pyplot, so no global state and no backend switched (the page
    can render in a notebook, or in threads, without touching their plots)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def _colours(n: int) -> list[Any]:
    """``n`` distinct colours (a reason keeps its colour in both plots: same sorted order)."""
    import matplotlib

    palette = matplotlib.colormaps["tab20"]
    return [palette(i % 20) for i in range(n)]


def _hourly_plot(report: Mapping[str, Any]) -> str | None:
    hourly = report["comparison"]["hourly"]
    if hourly is None:
        return None
    fig, ax = _figure(10, 3.2)
    total = report["day"]["rows_valid"]
    ax.bar(range(HOURS), [r["rows"] for r in hourly], color=_TODAY, label=report["date"])
    if hourly[0]["trailing_share"] is not None:
        expected = [r["trailing_share"] * total for r in hourly]
        ax.plot(range(HOURS), expected, color="black", marker=".", label="same total, usual shape")
    ax.set_xticks(range(HOURS))
    ax.set_xlabel("hour (UTC)")
    ax.set_ylabel("valid rows")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Valid rows by hour, against the previous days' hourly shape")
    return _svg(fig)


def _mix_plot(rows: Sequence[Mapping[str, Any]] | None, title: str) -> str | None:
    if not rows:
        return None
    rows = list(rows)[:15]
    fig, ax = _figure(10, 0.35 * len(rows) + 1.2)
    positions = range(len(rows))
    ax.barh(
        [p + 0.2 for p in positions],
        [100 * r["share"] for r in rows],
        height=0.4,
        color=_TODAY,
        label="this day",
    )
    if rows[0]["trailing_share"] is not None:
        ax.barh(
            [p - 0.2 for p in positions],
            [100 * (r["trailing_share"] or 0) for r in rows],
            height=0.4,
            color=_BEFORE,
            label="previous days (mean)",
        )
    ax.set_yticks(list(positions), [str(r["value"]) for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("% of the day's valid rows")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    return _svg(fig)


def _daily_plot(report: Mapping[str, Any]) -> str:
    days = [*reversed(report["history"]), report["day"]]
    fig, ax = _figure(10, 3.2)
    labels = [f"{d['date'][5:]}\n{d['weekday'][:3]}" for d in days]
    valid = [d["rows_valid"] for d in days]
    ax.bar(labels, valid, color=[_BEFORE] * (len(days) - 1) + [_TODAY], label="valid")
    rejected = [d["rows_rejected"] for d in days]
    ax.bar(labels, rejected, bottom=valid, color="#d62728", label="rejected")
    ax.set_ylabel("rows read")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Rows read per published day")
    return _svg(fig)


def _reasons_plot(report: Mapping[str, Any]) -> str | None:
    days = [*reversed(report["history"]), report["day"]]
    reasons = sorted({r for d in days for r in d["rejected_by_reason"]})
    if not reasons:
        return None
    fig, ax = _figure(10, 3.6)
    labels = [d["date"][5:] for d in days]
    bottom = [0.0] * len(days)
    colours = _colours(len(reasons))
    for reason, colour in zip(reasons, colours, strict=True):
        share = [
            100 * d["rejected_by_reason"].get(reason, 0) / d["rows_read"] if d["rows_read"] else 0
            for d in days
        ]
        ax.bar(labels, share, bottom=bottom, label=reason, color=colour)
        bottom = [a + b for a, b in zip(bottom, share, strict=True)]
    ax.set_ylabel("% of rows read")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)
    ax.set_title("Rejected rows by reason, per published day")
    return _svg(fig)


def _rejected_hours_plot(report: Mapping[str, Any]) -> str | None:
    by_hour = report["day"]["rejected_by_hour"]
    if not by_hour:
        return None
    fig, ax = _figure(10, 3.2)
    labels = [f"{h:02d}" for h in range(HOURS)] + ["no time"]
    bottom = [0] * (NO_TIME + 1)
    reasons = sorted(by_hour.items())
    for (reason, hours), colour in zip(reasons, _colours(len(reasons)), strict=True):
        ax.bar(labels, hours, bottom=bottom, label=reason, color=colour)
        bottom = [a + b for a, b in zip(bottom, hours, strict=True)]
    ax.set_xlabel("hour of the row's time (UTC)")
    ax.set_ylabel("rejected rows")
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)
    ax.set_title(f"Rejected rows by hour and reason, {report['date']}")
    return _svg(fig)


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
