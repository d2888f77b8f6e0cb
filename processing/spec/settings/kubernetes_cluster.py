"""The Dask cluster of a run made of separate Airflow tasks: local, or a DaskCluster per run
(``processing.adapters.kube_cluster``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from processing.spec.settings.types import Section, bad, option, parse_size

#: Where a run made of separate tasks gets its Dask cluster.
CLUSTERS = ("local", "kubernetes")


@dataclass(frozen=True, kw_only=True)
class KubeClusterSettings(Section):
    cluster: str = field(
        default="local",
        metadata=option(
            help="local (a LocalCluster per run) or kubernetes (a DaskCluster per run)"
        ),
    )
    cluster_spec: str | None = field(
        default=None, metadata=option(help="DaskCluster YAML a per-run cluster is made from")
    )
    cluster_namespace: str | None = field(
        default=None,
        metadata=option(help="namespace of the per-run DaskCluster", shown_default="own"),
    )
    cluster_image: str | None = field(
        default=None,
        metadata=option(help="image of the per-run cluster", shown_default="the spec's"),
    )
    cluster_min_workers: int = field(
        default=1, metadata=option(int, "fewest workers of the per-run cluster (adaptive)")
    )
    cluster_max_workers: int = field(
        default=20, metadata=option(int, "most workers of the per-run cluster (adaptive)")
    )
    cluster_bytes_per_worker: str = field(
        default="4GiB", metadata=option(help="estimated input per worker, to size the cluster")
    )

    def _check(self) -> None:
        if self.cluster not in CLUSTERS:
            raise bad("cluster", f"cluster must be one of {', '.join(CLUSTERS)}")
        if self.cluster == "kubernetes" and not self.cluster_spec:
            raise bad(
                "cluster_spec",
                "cluster kubernetes needs cluster_spec (a DaskCluster YAML file)",
                flag=False,
            )
        if self.cluster_min_workers < 0:
            raise bad("cluster_min_workers", "cluster_min_workers must be >= 0")
        if self.cluster_max_workers < max(self.cluster_min_workers, 1):
            raise bad(
                "cluster_max_workers",
                "cluster_max_workers must be at least 1 and >= cluster_min_workers",
            )
        if self.cluster == "kubernetes":  # only a per-run cluster is sized (and dask is heavy)
            parse_size("cluster_bytes_per_worker", self.cluster_bytes_per_worker)
