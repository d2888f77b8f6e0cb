"""What a BigQuery read may be asked for: the limits and names the settings are checked against.

The read plan itself (restriction, stream counts, cost) is pure logic in
``processing.logic.bigquery_plan``; this is the part the settings need, so ``spec`` depends on
nothing above it.
"""

from __future__ import annotations

import re

#: BigQuery caps a read session at 1,000 streams.
MAX_STREAMS = 1000
#: Arrow buffer compressions a read session can ask for.
COMPRESSIONS = ("LZ4_FRAME", "ZSTD", "NONE")
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")


def check_column(column: str) -> str:
    if not _COLUMN.match(column):
        raise ValueError(f"{column!r} is not a column name (letters, digits and _)")
    return column


def check_options(
    compression: str, time_column: str, deadline_seconds: float, max_streams: int | None
) -> str | None:
    """What is wrong with these read options (naming the setting), or None."""
    if compression not in COMPRESSIONS:
        return f"bq_compression {compression!r}: use one of {', '.join(COMPRESSIONS)}"
    if not _COLUMN.match(time_column):
        return f"bq_time_column {time_column!r} is not a column name (letters, digits and _)"
    if deadline_seconds <= 0:
        return "bq_deadline_seconds must be positive"
    if max_streams is not None and not 1 <= max_streams <= MAX_STREAMS:
        return f"bq_max_streams must be in 1..{MAX_STREAMS}"
    return None
