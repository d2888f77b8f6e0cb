"""The per-run Dask cluster: its name (a DNS label the Dask operator accepts, unique per run),
its size from the plan, and the DaskCluster spec made from deploy/, checked against the CRD
schema shipped in the dask-kubernetes wheel."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import dask_kubernetes
import jsonschema
import pytest
import yaml

from processing.adapters.kube_cluster import cluster_spec, load_spec
from processing.logic.cluster_plan import MAX_NAME, cluster_name, workers_for
from processing.spec.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "deploy" / "kubernetes" / "base" / "dask" / "daskcluster.yaml"
CRDS = (
    Path(dask_kubernetes.__file__).parent / "operator/deployment/helm/dask-kubernetes-operator/crds"
)
DATE = dt.date(2023, 10, 23)
#: The operator's own rule for names (dask_kubernetes.constants and its controller).
OPERATOR_NAME = re.compile(rf"^(?=.{{,{MAX_NAME}}}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize(
    "run_id",
    ["scheduled__2023-10-24T00:00:00+00:00-c0", "manual__" + "x" * 200, "2023-10-23_a", "R"],
)
def test_cluster_names_are_labels_the_operator_accepts(run_id: str) -> None:
    name = cluster_name(run_id, DATE)
    assert OPERATOR_NAME.fullmatch(name), name
    assert name.startswith("events-20231023-")


def test_cluster_names_differ_per_run_and_repeat_for_the_same_run() -> None:
    names = {cluster_name(f"manual__2023-10-24-c{i}", DATE) for i in range(500)}
    assert len(names) == 500
    assert cluster_name("r1", DATE) == cluster_name("r1", DATE)


@pytest.mark.parametrize(
    ("estimated", "expected"),
    [(0, 1), (1, 1), (4 * 2**30, 1), (4 * 2**30 + 1, 2), (450 * 2**30, 20), (80 * 2**30, 20)],
)
def test_workers_from_the_plan_within_bounds(estimated: int, expected: int) -> None:
    assert workers_for(estimated, 4 * 2**30, minimum=1, maximum=20) == expected


def _crd_schema(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / f"{kind.lower()}.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_the_generated_daskcluster_validates_against_the_operator_crd() -> None:
    spec = cluster_spec(
        load_spec(str(SPEC)),
        cluster_name("scheduled__2023-10-24T00:00:00+00:00-c0", DATE),
        workers_for(12 * 2**30, 4 * 2**30, 1, 20),
        image="registry.example.com/events-lake:1.2.3",
        labels={"events-lake/date": "2023-10-23"},
    )
    jsonschema.validate(spec, _crd_schema("DaskCluster"))
    assert spec["apiVersion"] == "kubernetes.dask.org/v1"
    # the scheduler Service selects this cluster's scheduler only, not another run's
    assert spec["spec"]["scheduler"]["service"]["selector"] == {
        "dask.org/cluster-name": spec["metadata"]["name"],
        "dask.org/component": "scheduler",
    }
    assert spec["spec"]["worker"]["replicas"] == 3
    containers = [
        c for part in ("scheduler", "worker") for c in spec["spec"][part]["spec"]["containers"]
    ]
    assert {c["image"] for c in containers} == {"registry.example.com/events-lake:1.2.3"}
    for c in containers:  # the restricted Pod Security level, requests and limits
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert c["resources"]["requests"] and c["resources"]["limits"]
        assert c["readinessProbe"] and c["livenessProbe"]
    for part in ("scheduler", "worker"):
        pod = spec["spec"][part]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"


def test_a_spec_that_breaks_the_crd_is_caught() -> None:
    spec = cluster_spec(load_spec(str(SPEC)), "events-20231023-abcdef12", 2)
    del spec["spec"]["scheduler"]["service"]
    with pytest.raises(jsonschema.ValidationError, match="service"):
        jsonschema.validate(spec, _crd_schema("DaskCluster"))


def test_a_file_that_is_not_a_daskcluster_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "pod.yaml"
    other.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n")
    with pytest.raises(ConfigError, match="not a DaskCluster"):
        load_spec(str(other))
