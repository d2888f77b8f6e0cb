"""The per-run Dask cluster's name and size: pure functions of the run and its plan."""

from __future__ import annotations

import datetime as dt
import hashlib
import math

#: The Dask operator derives ``<name>-scheduler`` (a Service) from a DaskCluster's name, and a
#: Service name is a DNS label of at most 63 characters.
MAX_NAME = 63 - len("-scheduler")


def cluster_name(run_id: str, date: dt.date, prefix: str = "events") -> str:
    """``events-20231023-<8 hex>``: a DNS label, unique per run (a hash of its id), with the date
    readable in ``kubectl get daskclusters``."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    name = f"{prefix}-{date:%Y%m%d}-{digest}".lower()
    if len(name) > MAX_NAME:
        raise ValueError(f"cluster name {name!r} is longer than {MAX_NAME} characters")
    return name


def workers_for(estimated_bytes: int, bytes_per_worker: int, minimum: int, maximum: int) -> int:
    """Workers for a read of ``estimated_bytes``: one per ``bytes_per_worker``, within bounds."""
    wanted = math.ceil(max(estimated_bytes, 0) / max(bytes_per_worker, 1))
    return max(minimum, min(maximum, wanted))
