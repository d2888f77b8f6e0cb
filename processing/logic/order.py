"""The order of rows within a file: by time, computed with a radix sort (pure).

A comparison sort of 1M timestamps takes about 100 ms on this kind of machine. Timestamps of one
file span a day (2^37 microseconds), so a least-significant-digit radix sort does it in four
passes of Arrow's counting sort over 10-bit digits: about 35 ms, and stable like Arrow's sort.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

DIGIT_BITS = 10
#: Beyond this many digits (2^40 us, about 12.7 days between the first and last row) the plain
#: comparison sort is used: a counting pass only pays when there are few of them.
MAX_DIGITS = 4


def time_order(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Indices that sort ``values`` (timestamps, or integers) ascending, stably, nulls last."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_timestamp(values.type):
        values = values.cast(pa.int64())
    if values.null_count or len(values) < 2:
        return pc.sort_indices(values)
    low, high = pc.min_max(values).values()
    span = high.as_py() - low.as_py()
    digits = max(1, -(-span.bit_length() // DIGIT_BITS))
    if digits > MAX_DIGITS:
        return pc.sort_indices(values)
    offsets = pc.subtract(values, low)
    mask = (1 << DIGIT_BITS) - 1
    order: pa.Array | None = None
    for d in range(digits):  # least significant digit first; each pass is stable
        digit = pc.bit_wise_and(pc.shift_right(offsets, d * DIGIT_BITS), mask).cast(pa.int16())
        if order is None:
            order = pc.sort_indices(digit)
        else:
            order = pc.take(order, pc.sort_indices(pc.take(digit, order)))
    assert order is not None
    return order
