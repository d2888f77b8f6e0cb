"""Push a run's samples to a Prometheus Pushgateway: the standard pattern for batch jobs.

Monitoring never blocks a run: a Pushgateway that is down or refuses the push is a warning.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from processing.logic.run_metrics import JOB, Sample

log = logging.getLogger(__name__)


def push(gateway: str | None, date: dt.date, samples: Sequence[Sample], *, replace: bool) -> bool:
    """Send ``samples`` to the group ``{job, date}``: replacing it (a success) or adding to it
    (a failure). True if the Pushgateway took them."""
    if not gateway or not samples:
        return False
    from prometheus_client import CollectorRegistry, Gauge
    from prometheus_client.exposition import push_to_gateway, pushadd_to_gateway

    registry = CollectorRegistry()
    gauges: dict[str, Gauge] = {}
    for s in samples:
        gauge = gauges.get(s.name)
        if gauge is None:
            gauge = Gauge(s.name, s.help, sorted(s.labels), registry=registry)
            gauges[s.name] = gauge
        (gauge.labels(**s.labels) if s.labels else gauge).set(s.value)
    send = push_to_gateway if replace else pushadd_to_gateway
    try:
        send(
            gateway, job=JOB, registry=registry, grouping_key={"date": date.isoformat()}, timeout=10
        )
    except Exception as e:  # down, refused, misconfigured: the run itself is what matters
        log.warning("could not push the run's metrics to the Pushgateway %s: %s", gateway, e)
        return False
    log.info("pushed %d metrics for %s to %s", len(samples), date, gateway)
    return True
