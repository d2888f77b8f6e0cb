"""The day's profile, the data-quality report made from it, and its HTML page (pure logic)."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import xml.etree.ElementTree as ET
from typing import Any

import pyarrow as pa
import pytest

from processing.logic import profile as prof
from processing.logic import quality, quality_html, run_metrics
from processing.logic import svg_chart as chart
from processing.logic.batch import split_batch
from processing.logic.generate import GenerateParams, generate
from processing.logic.manifest import PieceResult, reconcile
from processing.spec.errors import AuditError

DATE = dt.date(2023, 10, 23)  # a Monday
NOW = dt.datetime(2023, 10, 24, 3, tzinfo=dt.UTC)


# --- the profile -------------------------------------------------------------------------------
def _day(rows: int, bad: float, seed: int = 1) -> pa.Table:
    return next(generate(GenerateParams(DATE, rows, bad_fraction=bad, seed=seed)))


def test_a_batch_profile_counts_every_row_once_by_hour_platform_and_reason() -> None:
    batch = _day(20_000, 0.1)
    result = split_batch(batch, DATE, "p")
    p = result.profile
    assert prof.rows(p) == (result.valid.num_rows, result.rejected.num_rows)
    assert len(p["valid_by_hour"]) == prof.HOURS
    hours = pa.compute.hour(result.valid.column("event_datetime")).to_pylist()
    assert p["valid_by_hour"] == [hours.count(h) for h in range(prof.HOURS)]
    platforms = result.valid.column("platform").to_pylist()
    assert p["valid_by_platform"] == {k: platforms.count(k) for k in set(platforms)}
    reasons = result.rejected.column("reason").to_pylist()
    assert {r: sum(h) for r, h in p["rejected_by_hour"].items()} == {
        r: reasons.count(r) for r in set(reasons)
    }
    # rows without a time are counted apart, never in hour 0
    missing = p["rejected_by_hour"]["event_datetime:missing"]
    assert missing[prof.NO_TIME] == sum(missing) > 0


def test_profiles_add_up_in_any_order() -> None:
    parts = [split_batch(_day(5_000, 0.05, seed), DATE, "p").profile for seed in (1, 2, 3)]
    assert prof.add(parts) == prof.add(reversed(parts)) == prof.add([*parts, None, {}])
    total = prof.add(parts)
    assert prof.rows(total) == tuple(map(sum, zip(*(prof.rows(p) for p in parts), strict=True)))
    assert prof.add([]) == prof.empty()


def test_a_piece_whose_profile_disagrees_with_its_counts_fails_the_reconciliation() -> None:
    result = split_batch(_day(1_000, 0.1), DATE, "p")
    piece = PieceResult(
        piece="p",
        rows_read=result.rows_read,
        rows_valid=result.valid.num_rows,
        rows_rejected=result.rejected.num_rows,
        rejected_by_reason=dict(result.reasons),
        files=(),
        profile={**result.profile, "valid_by_hour": [0] * prof.HOURS},
    )
    with pytest.raises(AuditError, match="profile counts"):
        reconcile([piece])


# --- the report ---------------------------------------------------------------------------------
def _manifest(date: dt.date, rows: int, rejected: int = 0, **events: int) -> dict[str, Any]:
    by_event = events or {"view": rows - rejected}
    return {
        "run_id": f"run-{date}",
        "date": date.isoformat(),
        "rows_read": rows,
        "rows_valid": rows - rejected,
        "rows_rejected": rejected,
        "valid_by_event": by_event,
        "rejected_by_reason": {"user_id:missing": rejected} if rejected else {},
    }


def _profile(valid: int, rejected: int = 0, hours: range = range(24)) -> dict[str, Any]:
    by_hour = [0] * prof.HOURS
    for i in range(valid):
        by_hour[hours[i % len(hours)]] += 1
    return {
        "valid_by_hour": by_hour,
        "valid_by_platform": {"web": valid // 2, "ios": valid - valid // 2},
        "rejected_by_hour": {"user_id:missing": [rejected] + [0] * prof.HOURS} if rejected else {},
    }


def _history(rows_by_days_ago: dict[int, int]) -> list[quality.Summary]:
    return [
        quality.summary(_manifest(DATE - dt.timedelta(d), n), _profile(n))
        for d, n in rows_by_days_ago.items()
    ]


WEEK = {d: 10_000 for d in range(1, 8)}


def _report(manifest: dict[str, Any], profile: Any, history: list[Any]) -> dict[str, Any]:
    return quality.report(manifest, profile, history, NOW)


def _checks(report: dict[str, Any], severity: str = "warning") -> list[str]:
    return [f["check"] for f in report["findings"] if f["severity"] == severity]


def test_a_day_like_the_week_before_has_no_finding_and_ratios_of_one() -> None:
    report = _report(_manifest(DATE, 10_000), _profile(10_000), _history(WEEK))
    assert report["findings"] == []
    assert quality.volume_ratios(report) == {"same_weekday": 1.0, "trailing_mean": 1.0}
    assert report["comparison"]["volume"]["same_weekday"]["date"] == "2023-10-16"
    assert [h["date"] for h in report["history"]] == [
        (DATE - dt.timedelta(d)).isoformat() for d in range(1, 8)
    ]
    json.dumps(report)  # JSON-ready


def test_volume_is_compared_with_the_same_weekday_first() -> None:
    # weekends are quiet: a Monday that matches last Monday is fine, even against a quiet week
    quiet_weekend = {**WEEK, 1: 4_000, 2: 4_000}
    report = _report(_manifest(DATE, 10_000), _profile(10_000), _history(quiet_weekend))
    assert "volume" not in _checks(report)
    # half of last Monday is flagged, whatever the days between say
    report = _report(_manifest(DATE, 4_000), _profile(4_000), _history(quiet_weekend))
    assert "volume" in _checks(report)
    assert quality.volume_ratios(report)["same_weekday"] == 0.4
    spike = _report(_manifest(DATE, 25_000), _profile(25_000), _history(WEEK))
    assert "2.50x the same weekday" in " ".join(f["message"] for f in spike["findings"])


def test_without_the_same_weekday_the_trailing_mean_is_used_with_wider_bounds() -> None:
    no_monday = {d: 10_000 for d in (1, 2, 3, 4)}
    fine = _report(_manifest(DATE, 4_500), _profile(4_500), _history(no_monday))
    assert quality.volume_ratios(fine) == {"trailing_mean": 0.45}
    assert "volume" not in _checks(fine)  # 0.45 is inside the trailing bounds (0.4-2.5)
    low = _report(_manifest(DATE, 3_000), _profile(3_000), _history(no_monday))
    assert "volume" in _checks(low)
    # fewer than three days of history: no trailing comparison at all
    short = _report(_manifest(DATE, 100), _profile(100), _history({1: 10_000, 2: 10_000}))
    assert quality.volume_ratios(short) == {}
    assert "volume" not in _checks(short)


def test_no_history_is_said_plainly() -> None:
    report = _report(_manifest(DATE, 100), _profile(100), [])
    assert _checks(report, "info") == ["history"]
    assert report["comparison"]["volume"] == {
        "rows_read": 100,
        "same_weekday": None,
        "trailing_mean": None,
    }


def test_rejected_share_missing_event_new_reason_and_empty_hours_are_flagged() -> None:
    history = [
        quality.summary(_manifest(DATE - dt.timedelta(d), 10_000, view=6_000, cart=4_000), None)
        | {"valid_by_hour": _profile(10_000)["valid_by_hour"]}
        for d in range(1, 8)
    ]
    day = _manifest(DATE, 10_000, rejected=800, view=9_200)  # no "cart"; 8% rejected
    report = _report(day, _profile(9_200, 800, hours=range(6, 24)), history)
    messages = " | ".join(f["message"] for f in report["findings"])
    assert set(_checks(report)) >= {"rejected", "event_name", "hourly"}
    assert "8.0% of the rows read were rejected" in messages
    assert "'cart' is missing" in messages
    assert "00:00, 01:00, 02:00, 03:00, 04:00, 05:00 UTC" in messages
    assert "new rejection reason user_id:missing" in messages
    assert report["findings"][0]["severity"] == "warning"  # most serious first


def test_a_rejected_share_far_above_the_usual_is_flagged_below_the_threshold_too() -> None:
    history = [
        quality.summary(_manifest(DATE - dt.timedelta(d), 10_000, rejected=20), None)
        for d in range(1, 8)
    ]
    report = _report(_manifest(DATE, 10_000, rejected=300), None, history)
    assert "rejected" in _checks(report)  # 3% against 0.2%: under 5%, still flagged


def test_days_published_before_profiles_are_compared_on_what_they_have() -> None:
    history = [quality.summary(_manifest(DATE - dt.timedelta(d), 10_000), None) for d in WEEK]
    report = _report(_manifest(DATE, 10_000), _profile(10_000), history)
    assert report["findings"] == []
    assert report["comparison"]["platform_mix"][0]["trailing_share"] is None
    assert report["comparison"]["hourly"][0]["trailing_share"] is None
    assert "<svg" in quality_html.render(report)


def test_a_profile_that_does_not_match_the_manifest_is_refused() -> None:
    with pytest.raises(ValueError, match="profile"):
        _report(_manifest(DATE, 10_000), _profile(9_000), [])


def test_the_history_is_kept_to_the_seven_latest_days_newest_first() -> None:
    history = _history({d: 10_000 for d in range(1, 12)})
    report = _report(_manifest(DATE, 10_000), _profile(10_000), list(reversed(history)))
    assert [h["date"] for h in report["history"]] == [
        (DATE - dt.timedelta(d)).isoformat() for d in range(1, 8)
    ]


def test_volume_ratios_become_metrics() -> None:
    report = _report(_manifest(DATE, 5_000), _profile(5_000), _history(WEEK))
    manifest = {
        **_manifest(DATE, 5_000),
        "bytes_written": 1,
        "files": [],
        "duration_seconds": 1.0,
        "rows_per_second": 1.0,
    }
    samples = run_metrics.success(manifest, 0.1, 1.0, quality.volume_ratios(report))
    ratios = {
        s.labels["baseline"]: s.value for s in samples if s.name == "events_lake_volume_ratio"
    }
    assert ratios == {"same_weekday": 0.5, "trailing_mean": 0.5}
    assert not [s for s in run_metrics.success(manifest, 0.1, 1.0) if "volume" in s.name]


# --- the page ----------------------------------------------------------------------------------
def test_the_page_is_self_contained_and_shows_the_findings() -> None:
    history = _history(WEEK)
    report = _report(_manifest(DATE, 4_000, rejected=900), _profile(3_100, 900), history)
    page = quality_html.render(report)
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 6  # daily, hourly, event mix, platform mix, reasons, hours
    assert not re.search(r"<script|(src|href)=\S*https?:|@import", page)  # nothing fetched
    for svg in re.findall(r"<svg.*?</svg>", page, re.S):
        ET.fromstring(svg)  # each chart is well-formed SVG
    for finding in report["findings"]:
        assert finding["message"].replace("'", "&#x27;") in page
    assert quality_html.render(report) == page  # the same report renders the same page


def test_the_page_escapes_what_it_shows() -> None:
    day = _manifest(DATE, 10, **{"<script>alert(1)</script>": 10})
    page = quality_html.render(_report(day, None, []))
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


# --- the charts --------------------------------------------------------------------------------
def _rects(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)  # well-formed XML, or this raises
    ns = "{http://www.w3.org/2000/svg}"
    return [r for r in root.iter(f"{ns}rect") if r.find(f"{ns}title") is not None]


def _title(element: ET.Element) -> str:
    return "".join(element.itertext())


def test_stacked_bars_are_drawn_to_scale_and_skip_zeros() -> None:
    svg = chart.bars(
        ["a", "b", "c"],
        [chart.Series("x", [10, 0, 30], "#000"), chart.Series("y", [5, 5, 0], "#111")],
        title="t & <u>",
        y_label="rows",
    )
    rects = _rects(svg)
    assert len(rects) == 4  # zeros draw nothing
    heights = {_title(r): float(r.get("height", "nan")) for r in rects}
    assert heights["a x: 10"] == pytest.approx(2 * heights["a y: 5"], abs=0.1)
    assert heights["c x: 30"] == pytest.approx(3 * heights["a x: 10"], abs=0.1)
    assert "t &amp; &lt;u&gt;" in svg


def test_ticks_are_round_and_cover_the_peak() -> None:
    for peak in (0.3, 7, 99, 4_943, 1_250_000):
        ticks = chart._ticks(peak)
        assert ticks[0] == 0 and ticks[-1] >= peak and 2 <= len(ticks) <= 7
        step = ticks[1]
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert round(mantissa, 6) in {1, 2, 2.5, 5, 10}


def test_paired_horizontal_bars_have_one_bar_per_label_and_series() -> None:
    svg = chart.paired_hbars(
        ["view", "click"],
        [chart.Series("today", [60.0, 40.0], "#000"), chart.Series("before", [50, 50], "#111")],
        title="mix",
        x_label="%",
        suffix="%",
    )
    assert len(_rects(svg)) == 4


def test_an_empty_day_in_the_history_is_no_baseline() -> None:
    empty = quality.summary(_manifest(DATE - dt.timedelta(3), 0, view=0), prof.empty())
    empty["valid_by_event"] = {}
    history = [h for h in _history(WEEK) if h["date"] != empty["date"]] + [empty]
    report = _report(_manifest(DATE, 10_000), _profile(10_000), history)
    assert report["findings"] == []  # no shift against a day of nothing
    assert report["comparison"]["volume"]["trailing_mean"] == {
        "days": 6,
        "rows_read": 10_000.0,
        "ratio": 1.0,
    }
    missing = _report(_manifest(DATE, 10_000, cart=10_000), None, history)
    assert "'view' is missing" in " ".join(f["message"] for f in missing["findings"])


def test_a_summary_keeps_the_top_platforms_and_adds_up_the_rest() -> None:
    platforms = {f"p{i:02d}": 100 + i for i in range(quality.TOP_PLATFORMS + 5)}
    profile = {**_profile(sum(platforms.values())), "valid_by_platform": platforms}
    day = quality.summary(_manifest(DATE, sum(platforms.values())), profile)
    kept = day["valid_by_platform"]
    assert len(kept) == quality.TOP_PLATFORMS + 1
    assert sum(kept.values()) == sum(platforms.values())
    assert kept[quality.OTHER] == sum(100 + i for i in range(5))


def test_platforms_added_up_as_other_are_neither_new_nor_missing() -> None:
    def platforms(names: list[str]) -> dict[str, Any]:
        counts = {name: 1_000 - i for i, name in enumerate(names)}
        return {**_profile(sum(counts.values())), "valid_by_platform": counts}

    usual = [f"p{i:02d}" for i in range(quality.TOP_PLATFORMS)]
    history = [
        quality.summary(
            _manifest(DATE - dt.timedelta(d), sum(platforms(usual)["valid_by_platform"].values())),
            platforms(usual),
        )
        for d in range(1, 8)
    ]
    today = platforms(["zz_new", *usual])  # the smallest usual one moves under OTHER
    rows = sum(today["valid_by_platform"].values())
    report = _report(_manifest(DATE, rows), today, history)
    messages = [f["message"] for f in report["findings"] if f["check"] == "platform"]
    assert messages == ["new platform 'zz_new': 1,000 rows"], messages


def test_a_published_report_is_read_back_only_if_this_version_can_use_it() -> None:
    report = _report(_manifest(DATE, 10_000), _profile(10_000), _history(WEEK))
    data = json.dumps(report).encode()
    assert quality.parse(data, DATE) == report
    for wrong, why in (
        (b"{not json", "Expecting"),
        (json.dumps({**report, "report_version": 99}).encode(), "version"),
        (json.dumps(report).encode(), "report of 2023-10-23"),  # read as another date's
        (json.dumps({**report, "findings": [{"severity": 1}]}).encode(), "malformed"),
        (json.dumps({k: v for k, v in report.items() if k != "day"}).encode(), "lacks"),
    ):
        date = DATE - dt.timedelta(1) if "report of" in why else DATE
        with pytest.raises(ValueError, match=why):
            quality.parse(wrong, date)


def test_a_change_of_user_id_form_or_key_is_flagged() -> None:
    def keyed(manifest: dict[str, Any], form: dict[str, Any] | None) -> dict[str, Any]:
        return manifest if form is None else {**manifest, "user_id": form}

    raw, key_a = {"pseudonymised": False}, {"pseudonymised": True, "key_id": "aaaa"}
    key_b = {"pseudonymised": True, "key_id": "bbbb"}

    def history(form: dict[str, Any] | None) -> list[quality.Summary]:
        return [
            quality.summary(keyed(_manifest(DATE - dt.timedelta(d), n), form), _profile(n))
            for d, n in WEEK.items()
        ]

    same = _report(keyed(_manifest(DATE, 10_000), key_a), _profile(10_000), history(key_a))
    assert "user_ids" not in _checks(same)
    rotated = _report(keyed(_manifest(DATE, 10_000), key_b), _profile(10_000), history(key_a))
    assert "user_ids" in _checks(rotated)
    assert "pseudonymised under key bbbb, on 2023-10-22 pseudonymised under key aaaa" in " ".join(
        f["message"] for f in rotated["findings"]
    )
    first = _report(keyed(_manifest(DATE, 10_000), key_a), _profile(10_000), history(raw))
    assert "as they came" in " ".join(f["message"] for f in first["findings"])
    older = _report(keyed(_manifest(DATE, 10_000), key_a), _profile(10_000), history(None))
    assert "user_ids" not in _checks(older)  # days from before the form was recorded
