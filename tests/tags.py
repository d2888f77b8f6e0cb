"""Reproducible file tags for tests (a run draws a random one per attempt, see
processing.logic.layout): eight hex digits from a run id."""

from __future__ import annotations

import hashlib

from processing.logic.layout import check_run_id


def run_tag(run_id: str) -> str:
    return hashlib.sha256(check_run_id(run_id).encode()).hexdigest()[:8]
