"""The day's shape, counted as the rows go by (pure): what the data-quality report plots.

A profile is a small JSON-ready dict of counts, made per batch, added up per piece and per run
(counts add, so the order does not matter):

- ``valid_by_hour``: valid rows per UTC hour of ``event_datetime`` (24 counts);
- ``valid_by_platform``: valid rows per normalised platform;
- ``rejected_by_hour``: rejected rows per first reason, per UTC hour of their time, with a 25th
  count for rows without a usable time.

No user id, product or record text goes in: a profile only ever holds counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from processing.spec import schema as s

HOURS = 24
#: Index, in ``rejected_by_hour``'s lists, of rejected rows without a usable time.
NO_TIME = HOURS
_MICROSECONDS_PER_HOUR = 3_600_000_000

Profile = dict[str, Any]


def empty() -> Profile:
    return {"valid_by_hour": [0] * HOURS, "valid_by_platform": {}, "rejected_by_hour": {}}


def _hours(times: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """UTC hour of each timestamp (microseconds, UTC), NO_TIME where null."""
    micros = pc.cast(times, pa.int64())
    filled = pc.fill_null(micros, 0).to_numpy(zero_copy_only=False)
    hours = (filled // _MICROSECONDS_PER_HOUR) % HOURS
    if micros.null_count:
        hours[pc.is_null(micros).to_numpy(zero_copy_only=False)] = NO_TIME
    return hours


def _counts(values: pa.ChunkedArray) -> dict[str, int]:
    """How many times each value occurs (dictionary-encoded columns count by index)."""
    found: dict[str, int] = {}
    for chunk in values.chunks:
        if isinstance(chunk, pa.DictionaryArray):
            indices = chunk.indices.drop_null().to_numpy(zero_copy_only=False)
            per_index = np.bincount(indices, minlength=len(chunk.dictionary))
            for value, n in zip(chunk.dictionary.to_pylist(), per_index.tolist(), strict=True):
                if n:
                    found[str(value)] = found.get(str(value), 0) + n
        else:
            counted = pc.value_counts(chunk.drop_null())
            for value, n in zip(
                counted.field("values").to_pylist(),
                counted.field("counts").to_pylist(),
                strict=True,
            ):
                found[str(value)] = found.get(str(value), 0) + n
    return found


def of_batch(
    valid: pa.Table, rejected_times: pa.Array | pa.ChunkedArray, rejected_reasons: Sequence[str]
) -> Profile:
    """The profile of one split batch: ``valid`` rows (with ``event_datetime`` and
    ``platform``), and each rejected row's parsed time (null if none) and first reason."""
    by_hour = np.bincount(_hours(valid.column(s.EVENT_DATETIME)), minlength=HOURS)
    rejected: dict[str, list[int]] = {}
    if len(rejected_reasons):
        for reason, hour in zip(rejected_reasons, _hours(rejected_times).tolist(), strict=True):
            rejected.setdefault(reason, [0] * (HOURS + 1))[hour] += 1
    return {
        "valid_by_hour": by_hour[:HOURS].tolist(),
        "valid_by_platform": _counts(valid.column(s.PLATFORM)),
        "rejected_by_hour": rejected,
    }


def add(profiles: Iterable[Mapping[str, Any] | None]) -> Profile:
    """The sum of profiles (None, or an empty dict, adds nothing)."""
    total = empty()
    for p in profiles:
        if not p:
            continue
        total["valid_by_hour"] = [
            a + b for a, b in zip(total["valid_by_hour"], p["valid_by_hour"], strict=True)
        ]
        for platform, n in p["valid_by_platform"].items():
            total["valid_by_platform"][platform] = total["valid_by_platform"].get(platform, 0) + n
        for reason, hours in p["rejected_by_hour"].items():
            mine = total["rejected_by_hour"].setdefault(reason, [0] * (HOURS + 1))
            total["rejected_by_hour"][reason] = [a + b for a, b in zip(mine, hours, strict=True)]
    total["valid_by_platform"] = dict(sorted(total["valid_by_platform"].items()))
    total["rejected_by_hour"] = dict(sorted(total["rejected_by_hour"].items()))
    return total


def rows(profile: Mapping[str, Any]) -> tuple[int, int]:
    """(valid, rejected) rows the profile counted: checked against the manifest's counts."""
    valid = sum(profile["valid_by_hour"])
    rejected = sum(sum(hours) for hours in profile["rejected_by_hour"].values())
    return valid, rejected
