"""The radix sort of timestamps: the same order as Arrow's stable sort, whatever the values."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given
from hypothesis import strategies as st

from processing.logic.order import time_order

DAY_US = 86_400 * 10**6
START = int(dt.datetime(2023, 10, 23, tzinfo=dt.UTC).timestamp() * 10**6)
TIMESTAMP = pa.timestamp("us", tz="UTC")


def _expected(values: pa.Array) -> list[int]:
    return pc.sort_indices(values).to_pylist()


@given(st.lists(st.integers(min_value=START, max_value=START + DAY_US - 1), max_size=300))
def test_a_day_of_timestamps_sorts_like_arrow_stable_sort(micros: list[int]) -> None:
    values = pa.array(micros, pa.int64()).cast(TIMESTAMP)
    assert time_order(values).to_pylist() == _expected(values)


@given(st.lists(st.integers(min_value=-(2**62), max_value=2**62), max_size=100))
def test_any_span_sorts_like_arrow_stable_sort(numbers: list[int]) -> None:
    values = pa.array(numbers, pa.int64())
    assert time_order(values).to_pylist() == _expected(values)


@given(st.lists(st.integers(min_value=0, max_value=5) | st.none(), max_size=50))
def test_ties_keep_their_order_and_nulls_go_last(numbers: list[int | None]) -> None:
    values = pa.array(numbers, pa.int64())
    assert time_order(values).to_pylist() == _expected(values)


def test_chunked_and_tiny_inputs() -> None:
    chunked = pa.chunked_array([[3, 1], [2]], pa.int64())
    assert time_order(chunked).to_pylist() == [1, 2, 0]
    assert time_order(pa.array([], pa.int64())).to_pylist() == []
    assert time_order(pa.array([7], pa.int64())).to_pylist() == [0]
    assert time_order(pa.array([5, 5, 5], pa.int64())).to_pylist() == [0, 1, 2]
