"""The shapes of the data: the BigQuery input record and the published output record.

Everything that names a column lives here, so a change of schema is a change of this file
(and of ``SCHEMA_VERSION``, which every manifest records).
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "1.0.0"

# --- Input: the table as BigQuery holds it ---
#: Columns selected from the source (the BigQuery Storage source projects exactly these).
SELECTED_FIELDS: tuple[str, ...] = (
    "timestamp",
    "event_name",
    "user_identifiers",
    "product_information",
)

USER_IDENTIFIERS = pa.struct([("platform", pa.string()), ("id", pa.string())])
PRODUCT_INFORMATION = pa.struct([("name", pa.string()), ("SKU", pa.string())])

#: The BigQuery table's shape (TIMESTAMP is microseconds, UTC).
INPUT_SCHEMA = pa.schema(
    [
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("event_name", pa.string()),
        ("user_identifiers", USER_IDENTIFIERS),
        ("product_information", PRODUCT_INFORMATION),
    ]
)

#: The input's text fields with few distinct values (``struct.child`` for nested ones). A source
#: may deliver them dictionary-encoded (as Parquet stores them) instead of as plain strings: the
#: transform normalises once per distinct value either way, and skips the hashing when they are.
CATEGORICAL_INPUT: tuple[str, ...] = (
    "event_name",
    "user_identifiers.platform",
    "product_information.name",
    "product_information.SKU",
)

#: The same record as text sources (JSON Lines) carry it: the timestamp is still a string.
TEXT_INPUT_SCHEMA = INPUT_SCHEMA.set(0, pa.field("timestamp", pa.string()))

#: Optional columns a source may add to its batches.
#: ``_raw``: the record exactly as read (one JSON line), kept for rejected rows.
#: ``_defects``: problems the source already saw ("field:rule"), e.g. a number where text belongs.
RAW_COLUMN = "_raw"
DEFECTS_COLUMN = "_defects"

# --- Output: the published record ---
EVENT_DATETIME = "event_datetime"
EVENT_DATE = "event_date"
EVENT_NAME = "event_name"
USER_ID = "user_id"
PLATFORM = "platform"
PRODUCT_NAME = "product_name"
SKU = "SKU"

OUTPUT_COLUMNS: tuple[str, ...] = (
    EVENT_DATETIME,
    EVENT_DATE,
    EVENT_NAME,
    USER_ID,
    PLATFORM,
    PRODUCT_NAME,
    SKU,
)

#: The full output record, as an analyst reads it back (partition columns included).
OUTPUT_SCHEMA = pa.schema(
    [
        pa.field(EVENT_DATETIME, pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field(EVENT_DATE, pa.date32(), nullable=False),
        pa.field(EVENT_NAME, pa.string(), nullable=False),
        pa.field(USER_ID, pa.string(), nullable=False),
        pa.field(PLATFORM, pa.string(), nullable=False),
        pa.field(PRODUCT_NAME, pa.string(), nullable=True),
        pa.field(SKU, pa.string(), nullable=True),
    ]
)

#: Hive partition columns, in path order. They live in the path, not in the files.
PARTITION_SCHEMA = pa.schema([(EVENT_DATE, pa.date32()), (EVENT_NAME, pa.string())])

#: What each Parquet file under ``events/`` holds.
FILE_SCHEMA = pa.schema([f for f in OUTPUT_SCHEMA if f.name not in PARTITION_SCHEMA.names])

#: Fields with few distinct values: normalised, validated and written per distinct value.
CATEGORICAL: tuple[str, ...] = (EVENT_NAME, PLATFORM, PRODUCT_NAME, SKU)
_DICTIONARY = pa.dictionary(pa.int32(), pa.string())

#: Valid rows in memory, between validation and the writer: ``event_name`` (the partition) and
#: the file columns, categorical ones dictionary-encoded. The files store them as plain
#: (dictionary-encoded) Parquet strings, so readers see FILE_SCHEMA.
VALID_SCHEMA = pa.schema(
    [
        pa.field(f.name, _DICTIONARY, nullable=f.nullable) if f.name in CATEGORICAL else f
        for f in [OUTPUT_SCHEMA.field(EVENT_NAME), *FILE_SCHEMA]
    ]
)

# --- Rejected rows ---
#: A rejected row keeps its original record (as JSON text) and says why it was rejected.
REJECTED_SCHEMA = pa.schema(
    [
        pa.field("source_record", pa.string(), nullable=False),
        pa.field("reasons", pa.list_(pa.string()), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("piece", pa.string(), nullable=False),
        pa.field("row_in_piece", pa.int64(), nullable=False),
    ]
)

#: The value a missing or empty platform gets (see the README's null policy table).
UNKNOWN_PLATFORM = "unknown"
