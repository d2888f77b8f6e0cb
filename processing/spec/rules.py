"""The null/missing policy and the validation rules, as data.

Each rejected row carries one or more reasons ``"<field>:<rule>"`` from this module. The README's
policy table is this module in prose, and ``tests/unit/test_policy.py`` has one case per row of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from processing.spec import schema as s

# Rule names (the part after the colon in a reason).
MISSING = "missing"  # null, absent, or empty after trimming, for a required field
UNPARSEABLE = "unparseable"  # text that is not an ISO 8601 timestamp with a time of day
WRONG_TYPE = "wrong_type"  # e.g. a JSON number or object where text belongs
OUTSIDE_RUN_DATE = "outside_run_date"  # the UTC date of the event is not the date being processed
INVALID_FORMAT = "invalid_format"  # fails the field's pattern (see PATTERNS)
TOO_LONG = "too_long"  # longer than MAX_LENGTH
INVALID_JSON = "invalid_json"  # the whole record: not a JSON object
INVALID_UTF8 = "invalid_utf8"  # text that is not valid UTF-8 (or a lone surrogate escape in JSON)
OUT_OF_RANGE = "out_of_range"  # an instant BigQuery's TIMESTAMP cannot hold (see MIN/MAX_INSTANT)

RECORD = "record"  # the pseudo-field for whole-record problems

#: The instants a BigQuery TIMESTAMP can hold, in microseconds since the epoch (UTC):
#: 0001-01-01 00:00:00 to 9999-12-31 23:59:59.999999. Anything else is ``out_of_range``.
MIN_INSTANT_US = -62_135_596_800_000_000
MAX_INSTANT_US = 253_402_300_799_999_999


def reason(field: str, rule: str) -> str:
    return f"{field}:{rule}"


#: Patterns the normalised values must match. event_name becomes a partition directory, so it
#: must be safe in a path and in Athena/Hive (lower-case, no slash, no "="). They are ASCII, and
#: normalisation changes the case of ASCII letters only: a non-ASCII letter (the Kelvin sign, a
#: long "ſ", a dotted "İ", "ß") is never folded into an ASCII one, it stays and fails the pattern.
PATTERNS: dict[str, str] = {
    s.EVENT_NAME: r"^[a-z][a-z0-9_]{0,63}$",
    s.PLATFORM: r"^[a-z0-9_]{1,32}$",
    s.SKU: r"^[A-Z0-9][A-Z0-9_.\-]{0,63}$",
}

MAX_LENGTH: dict[str, int] = {
    s.USER_ID: 256,
    s.PRODUCT_NAME: 512,
}


@dataclass(frozen=True)
class FieldPolicy:
    field: str
    source: str
    required: bool
    when_missing: str
    normalisation: str
    rules: tuple[str, ...]


POLICY: tuple[FieldPolicy, ...] = (
    FieldPolicy(
        s.EVENT_DATETIME,
        "timestamp",
        True,
        f"reject `{reason(s.EVENT_DATETIME, MISSING)}`",
        "to UTC, microseconds; text in ISO 8601 with `Z`, an offset or no zone (read as UTC, "
        "as BigQuery does), `T` or space, ` UTC` suffix",
        (UNPARSEABLE, OUT_OF_RANGE, INVALID_UTF8, WRONG_TYPE, OUTSIDE_RUN_DATE),
    ),
    FieldPolicy(
        s.EVENT_DATE,
        "derived",
        True,
        "never missing: the UTC date of `event_datetime`",
        "-",
        (),
    ),
    FieldPolicy(
        s.EVENT_NAME,
        "event_name",
        True,
        f"reject `{reason(s.EVENT_NAME, MISSING)}`",
        "trim, lower-case (ASCII letters only), runs of spaces/hyphens to `_`",
        (INVALID_FORMAT, INVALID_UTF8, WRONG_TYPE),
    ),
    FieldPolicy(
        s.USER_ID,
        "user_identifiers.id",
        True,
        f"reject `{reason(s.USER_ID, MISSING)}` (also when `user_identifiers` is absent)",
        "trim (case kept: ids are case-sensitive)",
        (TOO_LONG, INVALID_UTF8, WRONG_TYPE),
    ),
    FieldPolicy(
        s.PLATFORM,
        "user_identifiers.platform",
        False,
        f"default `{s.UNKNOWN_PLATFORM}`",
        "trim, lower-case (ASCII letters only)",
        (INVALID_FORMAT, INVALID_UTF8, WRONG_TYPE),
    ),
    FieldPolicy(
        s.PRODUCT_NAME,
        "product_information.name",
        False,
        "kept as null (events such as `login` have no product)",
        "trim; empty becomes null",
        (TOO_LONG, INVALID_UTF8, WRONG_TYPE),
    ),
    FieldPolicy(
        s.SKU,
        "product_information.SKU",
        False,
        "kept as null",
        "trim, upper-case (ASCII letters only); empty becomes null",
        (INVALID_FORMAT, INVALID_UTF8, WRONG_TYPE),
    ),
)
