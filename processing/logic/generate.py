"""Deterministic synthetic events shaped like the BigQuery table (pure: the seed is an argument).

Realistic skew: an event mix dominated by views, a platform mix, many users with a heavy-tailed
activity, a product catalogue with popular items, a daily rhythm. A share of rows (``bad_fraction``)
is made bad, spread evenly over the kinds in ``BAD_KINDS`` (typed) or ``TEXT_BAD_KINDS`` (JSON
only), and a few valid rows carry noise that normalisation must fix (case, whitespace, offsets).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from processing.spec import schema as s

EVENT_MIX = {
    "view": 0.55,
    "click": 0.20,
    "search": 0.10,
    "add_to_cart": 0.075,
    "login": 0.05,
    "purchase": 0.025,
}
NO_PRODUCT_EVENTS = {"login", "search"}
PLATFORM_MIX = {"web": 0.47, "ios": 0.24, "android": 0.22, "mobile": 0.05, None: 0.02}
_ADJECTIVES = [
    "Wireless",
    "Mechanical",
    "Bluetooth",
    "Ergonomic",
    "Portable",
    "Smart",
    "Compact",
    "Premium",
    "Classic",
    "Ultra",
    "Eco",
    "Pro",
    "Mini",
    "Max",
    "Silent",
    "Gaming",
]
_NOUNS = [
    "Mouse",
    "Keyboard",
    "Headphones",
    "Speaker",
    "Monitor",
    "Webcam",
    "Charger",
    "Cable",
    "Lamp",
    "Backpack",
    "Watch",
    "Tablet",
    "Router",
    "Microphone",
    "Stand",
    "Hub",
    "Drive",
    "Camera",
    "Controller",
    "Earbuds",
]

#: Bad records expressible in the typed (BigQuery/Parquet) shape.
BAD_KINDS = (
    "missing_timestamp",
    "outside_date",
    "missing_event_name",
    "invalid_event_name",
    "missing_user",
    "blank_user_id",
    "invalid_sku",
    "too_long_user_id",
)
#: Bad records only text can hold.
TEXT_BAD_KINDS = (
    *BAD_KINDS,
    "garbage_timestamp",
    "date_only_timestamp",
    "number_user_id",
    "number_timestamp",
    "invalid_json",
)


@dataclass(frozen=True)
class GenerateParams:
    date: dt.date
    rows: int
    bad_fraction: float = 0.0
    seed: int = 0
    chunk_rows: int = 1_000_000
    text: bool = False  # JSON Lines: adds text-only bad kinds and timestamp variety


def _catalogue() -> tuple[list[str], list[str]]:
    names = [f"{a} {n}" for n in _NOUNS for a in _ADJECTIVES]
    skus = [f"SKU-{1000 + i}" for i in range(len(names))]
    return names, skus


def _choice(rng: np.random.Generator, mix: dict, n: int) -> np.ndarray:
    p = np.array(list(mix.values()), dtype=float)
    return rng.choice(len(mix), size=n, p=p / p.sum())


def _dict_strings(indices: np.ndarray, values: Sequence[str | None]) -> pa.Array:
    dictionary = pa.array(values, pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), dictionary).cast(
        pa.string()
    )


def _typed_chunk(
    p: GenerateParams, chunk: int, n: int, n_users: int
) -> tuple[pa.Table, np.ndarray]:
    rng = np.random.default_rng([p.seed, chunk])
    day_start = int(dt.datetime.combine(p.date, dt.time(), dt.UTC).timestamp() * 1_000_000)
    # daily rhythm: quiet at night, peak in the evening (UTC)
    hours = np.arange(24)
    weight = 1.0 + 0.8 * np.sin((hours - 9) / 24 * 2 * np.pi)
    hour = rng.choice(24, size=n, p=weight / weight.sum())
    micros = day_start + hour * 3_600_000_000 + rng.integers(0, 3_600_000_000, n)
    events = _choice(rng, EVENT_MIX, n)
    event_names = list(EVENT_MIX)
    platforms = _choice(rng, PLATFORM_MIX, n)
    users = np.minimum((n_users * rng.random(n) ** 2.5).astype(np.int64), n_users - 1)
    names, skus = _catalogue()
    products = np.minimum((len(names) * rng.random(n) ** 3).astype(np.int64), len(names) - 1)
    no_product = np.isin(events, [event_names.index(e) for e in NO_PRODUCT_EVENTS])

    user_dict = [f"user_{i:07d}" for i in range(n_users)]
    table = pa.table(
        {
            "timestamp": pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "event_name": _dict_strings(events, event_names),
            "platform": _dict_strings(platforms, list(PLATFORM_MIX)),
            "id": _dict_strings(users, user_dict),
            "name": _dict_strings(products, names),
            "SKU": _dict_strings(products, skus),
            "no_product": pa.array(no_product),
        }
    )
    bad = rng.random(n) < p.bad_fraction
    kinds = TEXT_BAD_KINDS if p.text else BAD_KINDS
    kind = np.where(bad, rng.integers(0, len(kinds), n), -1)
    return table, kind


def _set(column: pa.Array, mask: np.ndarray, value: object) -> pa.Array:
    if not mask.any():
        return column
    return pc.if_else(pa.array(mask), pa.scalar(value, column.type), column)


def _apply_typed_bad(table: pa.Table, kind: np.ndarray, kinds: tuple[str, ...], rng) -> pa.Table:
    k = {name: kind == i for i, name in enumerate(kinds)}
    ts = table.column("timestamp").combine_chunks()
    ts = _set(ts, k["missing_timestamp"], None)
    shifted = pc.add(ts, pa.scalar(dt.timedelta(days=1)))
    ts = pc.if_else(pa.array(k["outside_date"]), shifted, ts)
    ev = _set(table.column("event_name").combine_chunks(), k["missing_event_name"], None)
    ev = _set(ev, k["invalid_event_name"], "view/../../etc")
    uid = _set(table.column("id").combine_chunks(), k["blank_user_id"], "   ")
    uid = _set(uid, k["too_long_user_id"], "u" * 300)
    sku = _set(table.column("SKU").combine_chunks(), k["invalid_sku"], "sku with spaces!")
    # noise on some valid rows that normalisation must undo
    noisy = (kind < 0) & (rng.random(len(kind)) < 0.01)
    ev = pc.if_else(
        pa.array(noisy), pc.utf8_upper(pc.binary_join_element_wise(" ", ev, "", "")), ev
    )
    platform = table.column("platform").combine_chunks()
    platform = pc.if_else(pa.array(noisy), pc.utf8_upper(platform), platform)
    no_product = table.column("no_product").combine_chunks()
    user_null = pa.array(k["missing_user"])
    users = pa.StructArray.from_arrays(
        [platform, uid], fields=list(s.USER_IDENTIFIERS), mask=user_null
    )
    products = pa.StructArray.from_arrays(
        [table.column("name").combine_chunks(), sku],
        fields=list(s.PRODUCT_INFORMATION),
        mask=pc.and_(no_product, pc.invert(pa.array(k["invalid_sku"]))),
    )
    return pa.Table.from_arrays([ts, ev, users, products], schema=s.INPUT_SCHEMA)


def _timestamp_text(value: dt.datetime | None, style: int) -> str | None:
    if value is None:
        return None
    if style == 1:  # an offset: the same instant, written in UTC+02:00
        return (value + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "+02:00"
    if style == 2:  # BigQuery's own text form
        return value.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    return (
        value.strftime("%Y-%m-%dT%H:%M:%SZ")
        if not value.microsecond
        else (value.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    )


def _text_lines(table: pa.Table, kind: np.ndarray, kinds: tuple[str, ...], rng) -> list[str]:
    styles = rng.choice(3, size=table.num_rows, p=[0.9, 0.07, 0.03])
    lines = []
    for i, record in enumerate(table.to_pylist()):
        record["timestamp"] = _timestamp_text(record["timestamp"], int(styles[i]))
        name = kinds[kind[i]] if kind[i] >= 0 else None
        if name == "garbage_timestamp":
            record["timestamp"] = "yesterday at noon"
        elif name == "date_only_timestamp":
            record["timestamp"] = record["timestamp"][:10] if record["timestamp"] else "2023-10-23"
        elif name == "number_timestamp":
            record["timestamp"] = 1698064496
        elif name == "number_user_id":
            record["user_identifiers"] = {"platform": "web", "id": 12345}
        elif name == "invalid_json":
            lines.append('{"timestamp": "2023-10-23T12:00:00Z", "event_name": "view", ')
            continue
        lines.append(json.dumps(record, ensure_ascii=False))
    return lines


def generate(p: GenerateParams) -> Iterator[pa.Table | list[str]]:
    """Chunks of at most ``chunk_rows``: Arrow tables (typed) or lists of JSON lines (text)."""
    n_users = max(100, p.rows // 25)
    kinds = TEXT_BAD_KINDS if p.text else BAD_KINDS
    for chunk, start in enumerate(range(0, p.rows, p.chunk_rows)):
        n = min(p.chunk_rows, p.rows - start)
        raw, kind = _typed_chunk(p, chunk, n, n_users)
        rng = np.random.default_rng([p.seed, chunk, 1])
        table = _apply_typed_bad(raw, kind, kinds, rng)
        yield _text_lines(table, kind, kinds, rng) if p.text else table
