"""The LocalCluster a run starts, or the scheduler it uses (``processing.adapters.cluster``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from processing.spec.settings.types import Section, bad, option, parse_bool


@dataclass(frozen=True, kw_only=True)
class LocalClusterSettings(Section):
    workers: int | None = field(
        default=None,
        metadata=option(
            int, "LocalCluster workers", shown_default="1, or one per core with --processes"
        ),
    )
    threads_per_worker: int | None = field(
        default=None,
        metadata=option(int, "threads per worker", shown_default="cores, or 1 with --processes"),
    )
    processes: bool = field(
        default=False, metadata=option(parse_bool, "LocalCluster workers as processes")
    )
    scheduler: str | None = field(
        default=None, metadata=option(help="address of an existing Dask scheduler instead")
    )
    memory_limit: str = field(
        default="auto", metadata=option(help="memory limit per LocalCluster worker, e.g. 4GiB")
    )

    def _check(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise bad("workers", "workers must be at least 1")
        if self.threads_per_worker is not None and self.threads_per_worker < 1:
            raise bad("threads_per_worker", "threads_per_worker must be at least 1")
        if self.memory_limit != "auto":
            from dask.utils import parse_bytes

            try:
                if parse_bytes(self.memory_limit) <= 0:
                    raise ValueError("not positive")
            except ValueError:
                raise bad(
                    "memory_limit", f"memory_limit {self.memory_limit!r} is not a size like 4GiB"
                ) from None
