"""deploy/kubernetes rendered by kustomize and checked without a cluster: every document against
the Kubernetes schema, every pod at the restricted Pod Security level with requests, limits and
probes, RBAC without wildcards, references that resolve, one image everywhere, the executor's
pod template through Airflow's own loader, the DaskCluster spec against the operator's CRD, and
checkov."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask_kubernetes
import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
OVERLAYS = ["dev", "prod"]
K8S_VERSION = "1.32"
CHECKOV = "checkov==3.3.30"
CRDS = (
    Path(dask_kubernetes.__file__).parent / "operator/deployment/helm/dask-kubernetes-operator/crds"
)
WORKLOADS = {"Deployment", "StatefulSet", "Job", "CronJob"}


def pod_template(workload: dict[str, Any]) -> dict[str, Any]:
    """The pod template (metadata and spec) of a workload, a CronJob's through its Jobs'."""
    spec = workload["spec"]
    return (
        spec["jobTemplate"]["spec"]["template"]
        if workload["kind"] == "CronJob"
        else spec["template"]
    )


@functools.cache
def rendered(overlay: str) -> str:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render the manifests (kubectl kustomize)"
    done = subprocess.run(
        [kubectl, "kustomize", str(KUSTOMIZE / "overlays" / overlay)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def documents(overlay: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(rendered(overlay)) if d]


def _named(overlay: str, kind: str, name: str) -> dict[str, Any]:
    (found,) = [
        d for d in documents(overlay) if d["kind"] == kind and d["metadata"]["name"] == name
    ]
    return found


def pod_specs(overlay: str) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(where, pod spec, long-running) of every pod the deployment makes, including the task
    pods' template and the run's Dask cluster, which live in ConfigMaps."""
    for d in documents(overlay):
        if d["kind"] in WORKLOADS:
            yield (
                f"{d['kind']}/{d['metadata']['name']}",
                pod_template(d)["spec"],
                d["kind"] not in {"Job", "CronJob"},
            )
    template = yaml.safe_load(
        _named(overlay, "ConfigMap", "airflow-pod-template")["data"]["pod_template.yaml"]
    )
    yield "pod template", template["spec"], False
    cluster = dask_cluster(overlay)
    for part in ("scheduler", "worker"):
        yield f"DaskCluster {part}", cluster["spec"][part]["spec"], True


def dask_cluster(overlay: str) -> dict[str, Any]:
    data = _named(overlay, "ConfigMap", "events-lake-dask-spec")["data"]["daskcluster.yaml"]
    return yaml.safe_load(data)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_document_validates_against_the_kubernetes_schema(overlay: str) -> None:
    docs = documents(overlay)
    # no Secret in prod: they are made out of band (test_access.py); dev ships mock ones
    assert {d["kind"] for d in docs} >= {
        "Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap",
        "Deployment", "Service", "Job", "NetworkPolicy", "PodDisruptionBudget",
    }  # fmt: skip
    for d in docs:
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)
        assert d["metadata"].get("namespace", overlay) or d["kind"] == "Namespace"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_document_with_a_mistake_is_caught(overlay: str) -> None:
    broken = _named(overlay, "Deployment", "airflow-scheduler")
    broken = {**broken, "spec": {**broken["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_restricted_with_requests_limits_and_probes(overlay: str) -> None:
    for where, pod, long_running in pod_specs(overlay):
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, where
        assert context["runAsUser"] >= 10000, where
        assert context["seccompProfile"]["type"] == "RuntimeDefault", where
        for c in pod.get("initContainers", []) + pod["containers"]:
            name = f"{where}/{c['name']}"
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert not sc.get("privileged"), name
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), name
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), name
        for c in pod["containers"] if long_running else []:
            assert c.get("readinessProbe") and c.get("livenessProbe"), f"{where}/{c['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rbac_is_namespaced_and_names_everything(overlay: str) -> None:
    docs = documents(overlay)
    assert not [d for d in docs if d["kind"] in {"ClusterRole", "ClusterRoleBinding"}]
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Role"}
    for role in roles.values():
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], (role["metadata"]["name"], rule)
    dask = roles["events-lake-dask-clusters"]["rules"]
    assert any("daskclusters" in r["resources"] and "delete" in r["verbs"] for r in dask)
    bindings = {d["roleRef"]["name"]: d["subjects"] for d in docs if d["kind"] == "RoleBinding"}
    assert bindings["events-lake-dask-clusters"] == [
        {"kind": "ServiceAccount", "name": "events-lake-task", "namespace": _namespace(overlay)}
    ]


def _namespace(overlay: str) -> str:
    return _named(overlay, "Deployment", "airflow-scheduler")["metadata"]["namespace"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_reference_resolves(overlay: str) -> None:
    docs = documents(overlay)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    # Secrets made out of band (prod's): their templates, checked in test_access.py
    names |= {("Secret", p.stem) for p in (KUSTOMIZE / "secret-templates").glob("*.yaml")}
    for where, pod, _ in pod_specs(overlay):
        if "serviceAccountName" in pod:
            assert ("ServiceAccount", pod["serviceAccountName"]) in names, where
        for volume in pod.get("volumes", []):
            sources = [volume, *volume.get("projected", {}).get("sources", [])]
            for source in sources:
                if "configMap" in source:
                    assert ("ConfigMap", source["configMap"]["name"]) in names, where
                if "secret" in source:
                    secret = source["secret"]
                    assert ("Secret", secret.get("secretName", secret.get("name"))) in names, where
        for c in pod.get("initContainers", []) + pod["containers"]:
            for source in c.get("envFrom", []):
                for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if key in source:
                        assert (kind, source[key]["name"]) in names, (where, source)
    pods = [labels for _, labels in _pod_labels(docs)]
    for service in (d for d in docs if d["kind"] == "Service"):
        selector = service["spec"]["selector"]
        assert any(selector.items() <= p.items() for p in pods), service["metadata"]["name"]


def _pod_labels(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, str]]]:
    for d in docs:
        if d["kind"] in WORKLOADS:
            yield d["metadata"]["name"], pod_template(d)["metadata"]["labels"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_image_for_airflow_task_pods_and_dask(overlay: str) -> None:
    docs = documents(overlay)
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"} >= {
        "airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
    }  # fmt: skip
    images = {  # Airflow's own workloads (third-party ones, e.g. statsd-exporter, have theirs)
        c["image"]
        for d in docs
        if d["kind"] in WORKLOADS
        and pod_template(d)["metadata"]["labels"].get("app.kubernetes.io/name") == "airflow"
        for c in pod_template(d)["spec"].get("initContainers", [])
        + pod_template(d)["spec"]["containers"]
    }
    assert len(images) == 1, images
    (image,) = images
    config = _named(overlay, "ConfigMap", "airflow-config")["data"]
    executor = (
        f"{config['AIRFLOW__KUBERNETES_EXECUTOR__WORKER_CONTAINER_REPOSITORY']}:"
        f"{config['AIRFLOW__KUBERNETES_EXECUTOR__WORKER_CONTAINER_TAG']}"
    )
    settings = _named(overlay, "ConfigMap", "events-lake-settings")["data"]
    assert executor == image == settings["PROCESSING_CLUSTER_IMAGE"]
    assert not [d for d in docs if d["kind"] == "DaskCluster"]  # made per run, not applied


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_mock_templates_read_as_files(overlay: str) -> None:
    for d in documents(overlay):
        if d["kind"] == "Secret":
            for key, value in d.get("stringData", {}).items():
                assert "MOCK" in value, (d["metadata"]["name"], key)
    for where, pod, _ in pod_specs(overlay):
        for c in pod.get("initContainers", []) + pod["containers"]:
            assert not any("secretRef" in s for s in c.get("envFrom", [])), where
            assert not any("secretKeyRef" in e.get("valueFrom", {}) for e in c.get("env", []))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_is_denied_by_default(overlay: str) -> None:
    deny = _named(overlay, "NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_executor_pod_template_loads_with_airflows_loader(overlay: str, tmp_path: Path) -> None:
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    path = tmp_path / "pod_template.yaml"
    path.write_text(
        _named(overlay, "ConfigMap", "airflow-pod-template")["data"]["pod_template.yaml"]
    )
    pod = PodGenerator.deserialize_model_file(str(path))
    assert pod is not None
    assert [c.name for c in pod.spec.containers] == ["base"]
    assert pod.spec.service_account_name == "events-lake-task"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_daskcluster_spec_validates_against_the_operator_crd(overlay: str) -> None:
    crd = yaml.safe_load((CRDS / "daskcluster.yaml").read_text())
    jsonschema.validate(
        dask_cluster(overlay), crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    )


@pytest.mark.slow
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_passes_with_every_skip_justified(overlay: str, tmp_path: Path) -> None:
    uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    assert Path(uv).exists(), "uv runs checkov in its own environment (its pins clash with ours)"
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(rendered(overlay))
    done = subprocess.run(
        [uv, "tool", "run", "--from", CHECKOV, "checkov", "-f", str(path),
         "--framework", "kubernetes", "--compact", "--quiet", "--skip-download"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    for doc in documents(overlay):
        for key, value in (doc["metadata"].get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert check.startswith("CKV") and len(reason) > 30, (key, value)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_airflow_setting_is_one_airflow_knows(overlay: str) -> None:
    """A misspelt AIRFLOW__SECTION__KEY is silently ignored by Airflow: check each against the
    configuration Airflow and its providers describe."""
    from airflow.configuration import conf, retrieve_configuration_description

    known = retrieve_configuration_description(include_providers=True)
    for name in ("airflow-config", "airflow-secret-files"):
        for variable in _named(overlay, "ConfigMap", name)["data"]:
            if not variable.startswith("AIRFLOW__"):
                continue
            section, _, key = variable.removeprefix("AIRFLOW__").lower().partition("__")
            if key.endswith("_cmd"):  # Airflow runs a command only for its sensitive options
                key = key.removesuffix("_cmd")
                assert (section, key) in conf.sensitive_config_values, variable
            assert key in known.get(section, {}).get("options", {}), variable


def test_the_dockerfile_builds_the_locked_environment_as_a_non_root_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    bases = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert bases and all(":" in b and not b.endswith(":latest") for b in bases), bases
    assert "uv sync --frozen --no-dev --extra airflow" in text
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1].split(":")[0].isdigit() and int(users[-1].split(":")[0]) >= 10000
    dev = (ROOT / "dev").read_text()
    version = dev.split('UV_VERSION="', 1)[1].split('"', 1)[0]
    assert f"uv=={version}" in text  # the same uv as ./dev


def test_the_statsd_mappings_name_valid_metrics_from_their_globs() -> None:
    mappings = yaml.safe_load((KUSTOMIZE / "base" / "airflow" / "statsd-mappings.yml").read_text())
    for m in mappings["mappings"]:
        assert m["match"].startswith("airflow."), m
        assert re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", m["name"]), m
        used = {int(n) for v in m.get("labels", {}).values() for n in re.findall(r"\$(\d+)", v)}
        assert used <= set(range(1, m["match"].count("*") + 1)), m
