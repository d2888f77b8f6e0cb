"""A Dask cluster per run on Kubernetes, through the Dask operator (dask-kubernetes).

The cluster is a ``DaskCluster`` object made from a spec file (``PROCESSING_CLUSTER_SPEC``, the
one in ``deploy/kubernetes/base/dask/``), named after the run and sized from its plan. It
outlives the task that created it (``shutdown_on_close=False``): the run's later tasks connect
to its scheduler by address, and a teardown task deletes it by name. Deleting is idempotent.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from processing.spec.errors import ConfigError, TransientError

log = logging.getLogger(__name__)

#: The group and version of the Dask operator's resources.
API_VERSION = "kubernetes.dask.org/v1"


@dataclass(frozen=True)
class ClusterInfo:
    name: str
    namespace: str | None
    scheduler: str  # tcp://<name>-scheduler.<namespace>:8786
    dashboard: str | None


def load_spec(path: str) -> dict[str, Any]:
    try:
        spec = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"PROCESSING_CLUSTER_SPEC {path}: {e}") from e
    if not isinstance(spec, dict) or spec.get("kind") != "DaskCluster":
        raise ConfigError(f"PROCESSING_CLUSTER_SPEC {path} is not a DaskCluster manifest")
    return spec


def cluster_spec(
    template: dict[str, Any],
    name: str,
    workers: int,
    *,
    image: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The template with the run's name, worker count, labels and (optionally) image."""
    spec = copy.deepcopy(template)
    metadata = spec.setdefault("metadata", {})
    metadata["name"] = name
    metadata.setdefault("labels", {}).update(labels or {})
    spec["spec"]["worker"]["replicas"] = workers
    # The operator copies the scheduler Service as written: without the cluster's name in its
    # selector, the Service of one run would also pick the scheduler pods of another run.
    selector = spec["spec"]["scheduler"]["service"].setdefault("selector", {})
    selector.update({"dask.org/cluster-name": name, "dask.org/component": "scheduler"})
    if image:
        for part in (spec["spec"]["scheduler"], spec["spec"]["worker"]):
            for container in part["spec"]["containers"]:
                container["image"] = image
    return spec


def create(spec: dict[str, Any], namespace: str | None, minimum: int, maximum: int) -> ClusterInfo:
    """Create the DaskCluster (or connect to it, if a retried task made it already), wait for
    its scheduler, let it scale between ``minimum`` and ``maximum`` workers."""
    from dask_kubernetes.operator import KubeCluster

    name = spec["metadata"]["name"]
    try:
        cluster = KubeCluster(
            custom_cluster_spec=spec,
            namespace=namespace,
            shutdown_on_close=False,  # it must outlive this task; the teardown deletes it
            quiet=True,
        )
        cluster.adapt(minimum=minimum, maximum=maximum)
    except Exception as e:
        # nothing else deletes a cluster whose creation failed (its teardown does not run)
        try:
            log.warning("%s", delete(name, namespace))
        except Exception:
            log.warning("could not delete the failed Dask cluster %s", name, exc_info=True)
        raise TransientError(f"cannot create the Dask cluster {name}: {e}") from e
    info = ClusterInfo(
        name=cluster.name,
        namespace=cluster.namespace,
        scheduler=cluster.scheduler_address,
        dashboard=cluster.dashboard_link,
    )
    log.info(
        "Dask cluster %s: scheduler %s, dashboard %s", info.name, info.scheduler, info.dashboard
    )
    return info


def delete(name: str, namespace: str | None) -> str:
    """Delete the DaskCluster ``name`` (the operator removes its pods and services); a cluster
    that is already gone is fine."""
    import kr8s
    from kr8s.objects import new_class

    dask_cluster = new_class("DaskCluster", API_VERSION, namespaced=True)
    try:
        dask_cluster(name, namespace=namespace).delete()
    except kr8s.NotFoundError:
        return f"the Dask cluster {name} was already gone"
    except Exception as e:
        raise TransientError(f"cannot delete the Dask cluster {name}: {e}") from e
    return f"deleted the Dask cluster {name}"
