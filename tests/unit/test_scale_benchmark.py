"""The scale benchmark's pure helpers (benchmarks/scale.py): sizes, the log lines it reads."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def scale():
    sys.path.insert(0, str(BENCHMARKS))  # scale.py imports its sibling run.py as `run`
    try:
        yield importlib.import_module("scale")
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.mark.parametrize(
    ("text", "count"),
    [("10M", 10_000_000), ("2.5K", 2_500), ("2000", 2000), (" 1g ", 1_000_000_000)],
)
def test_parse_count(scale, text, count):
    assert scale.parse_count(text) == count
    assert scale.parse_count(scale.human_count(count)) == count


@pytest.mark.parametrize("text", ["", "M", "-1M", "0", "1.5", "ten"])
def test_parse_count_refuses(scale, text):
    with pytest.raises(ValueError):
        scale.parse_count(text)


@pytest.mark.parametrize(
    ("text", "size"), [("32MiB", 32 * 2**20), ("1GiB", 2**30), ("512", 512), ("4 kib", 4096)]
)
def test_parse_bytes(scale, text, size):
    assert scale.parse_bytes(text) == size


def test_distribution(scale):
    assert scale.distribution([4, 1, 3, 2]) == {
        "count": 4, "min": 1, "median": 2.5, "mean": 2.5, "max": 4, "total": 10,
    }  # fmt: skip
    assert scale.distribution([])["count"] == 0


def test_linear_fit_and_spread(scale):
    a, b = scale.linear_fit([1, 2, 3], [5, 7, 9])
    assert (a, b) == pytest.approx((3, 2))
    with pytest.raises(ValueError):
        scale.linear_fit([1, 1], [2, 3])
    assert scale.spread([100, 110, 120]) == pytest.approx(0.2)


def test_parse_log(scale):
    text = "\n".join([
        "02:11:12 INFO processing.adapters.sources.bigquery: read session projects/b/locations/"
        "us/sessions/61: 64 streams, about 9975042 rows, 877803696 bytes, snapshot 2026-12-06",
        "02:13:22 INFO processing.app.stages: Dask performance report in 3.76 s",
        "02:13:53 INFO processing.app.stages: merged 448 small files into 8 in 31.3 s",
        "02:14:01 INFO processing.adapters.publish: published b/d10/events/event_date=2023-10-23"
        " (run 2023-10-23_x, 8 files in 3.97 s; both versions listed for 3.43 s)",
    ])  # fmt: skip
    assert scale.parse_log(text) == {
        "streams": 64,
        "bq_estimated_rows": 9975042,
        "bq_estimated_bytes": 877803696,
        "performance_report_seconds": 3.76,
        "merged_from": 448,
        "merged_into": 8,
        "merge_seconds": 31.3,
        "publish_files": 8,
        "publish_seconds": 3.97,
        "window_seconds": 3.43,
    }
    assert scale.parse_log("nothing") == {}
