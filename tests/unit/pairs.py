"""A helper the transform tests share: two columns of a result table as a dict."""

from __future__ import annotations

from typing import Any

import pyarrow as pa


def column_pairs(table: pa.Table, key: str, value: str) -> dict[Any, Any]:
    """``{row[key]: row[value]}`` for every row of ``table``."""
    return dict(zip(table.column(key).to_pylist(), table.column(value).to_pylist(), strict=True))
