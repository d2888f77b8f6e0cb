"""The run's progress line: at a steady rate whatever the number of pieces."""

from __future__ import annotations

from processing.logic.progress import ProgressMeter, duration


def test_thousands_of_pieces_log_a_line_per_interval_and_one_at_the_end() -> None:
    meter = ProgressMeter(total=2_000, started=0.0, every=10.0)
    lines = [meter.add(1_000, now=i * 0.05) for i in range(1, 2_001)]  # 100 s in all
    shown = [line for line in lines if line]
    assert 10 <= len(shown) <= 11
    assert shown[-1] == "pieces 2,000/2,000 (100%), 2,000,000 rows, 20,000 rows/s, in 1m 40s"
    assert lines[0] == "pieces 1/2,000 (0%), 1,000 rows, 20,000 rows/s, about 1m 40s left"


def test_the_time_left_is_at_the_rate_so_far() -> None:
    meter = ProgressMeter(total=4, started=100.0, every=0.0)
    assert meter.add(10, now=110.0) == "pieces 1/4 (25%), 10 rows, 1 rows/s, about 30s left"
    assert duration(3 * 3600 + 61) == "3h 01m"
