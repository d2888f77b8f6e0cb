"""The Dask cluster a run executes on: a LocalCluster by default, or an existing scheduler."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import dask
from distributed import Client, LocalCluster

from processing.spec.errors import ConfigError, TransientError

log = logging.getLogger(__name__)


@contextmanager
def dask_client(
    *,
    scheduler: str | None,
    workers: int | None,
    threads_per_worker: int | None,
    processes: bool = False,
    memory_limit: str = "auto",
    worker_failures: int = 2,
) -> Iterator[Client]:
    """A connected client; a LocalCluster it started is closed on exit.

    By default the LocalCluster runs its workers as threads of this process: the work is mostly
    Arrow kernels and Parquet I/O, which release the GIL, so threads start faster, share one copy
    of the imports and measured faster than processes on 2 cores (see benchmarks/README.md).
    ``processes=True`` gives one process per worker, as on a real cluster. A task whose worker
    dies is rerun ``worker_failures`` times (other errors are not retried: they would recur); on
    an existing scheduler that is the scheduler's own ``allowed-failures`` setting.
    """
    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except ValueError as e:
            raise ConfigError(f"--scheduler {scheduler!r} is not an address: {e}") from e
        except (OSError, TimeoutError) as e:
            raise TransientError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from e
        try:
            yield client
        finally:
            client.close()
        return
    cores = os.cpu_count() or 1
    if processes:
        n_workers, threads = workers or cores, threads_per_worker or 1
    else:
        n_workers, threads = workers or 1, threads_per_worker or cores
    with dask.config.set({"distributed.scheduler.allowed-failures": worker_failures}):
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads,
            processes=processes,
            memory_limit=memory_limit,
            dashboard_address="127.0.0.1:8787",  # local only: the dashboard has no auth
            silence_logs=logging.WARNING,
        )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def dashboard_link(client: Client) -> str | None:
    """Where to watch the run. A LocalCluster's dashboard listens on localhost only."""
    cluster = client.cluster
    if isinstance(cluster, LocalCluster):
        server = getattr(cluster.scheduler, "http_server", None)
        return f"http://127.0.0.1:{server.port}/status" if server else None
    # a LocalCluster of threads reached by address from its own process (a notebook): its
    # dashboard listens locally, not on the host's address that dashboard_link would give
    if str(getattr(client.scheduler, "address", "")).startswith("inproc://"):
        port = client.scheduler_info().get("services", {}).get("dashboard")
        return f"http://127.0.0.1:{port}/status" if port else None
    try:
        return client.dashboard_link
    except Exception:  # no dashboard (bokeh missing or disabled) is not an error
        return None
