"""Prometheus and the deployment, checked without a cluster: the monitoring kustomization renders
its PodMonitor; the PodMonitor and the scrape jobs of prometheus-scrape.yml pick exactly the pods
the Dask operator makes for a run, on the port and path their annotations name; promtool accepts
the scrape jobs; and the rendered NetworkPolicies let Prometheus (namespace monitoring) in on
those ports and the task pods out to the Pushgateway.

A run's Dask pods are not in the manifests: they are built here as the pipeline and the operator
build them, from the DaskCluster spec of each overlay (kube_cluster.cluster_spec, then the
operator's own functions), so the labels and annotations checked are the ones pods get."""

from __future__ import annotations

import copy
import datetime as dt
import functools
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kopf
import pytest
import yaml
from dask_kubernetes.operator.controller import controller as dask_operator

from processing.adapters import kube_cluster
from processing.logic.cluster_plan import cluster_name
from tests.kubernetes.test_manifests import (
    KUSTOMIZE,
    OVERLAYS,
    WORKLOADS,
    _named,
    dask_cluster,
    documents,
    pod_template,
)

MONITORING = KUSTOMIZE / "monitoring"
OPERATOR = MONITORING / "prometheus-operator"  # applied apart: it needs the operator's CRDs
SCRAPE = MONITORING / "prometheus-scrape.yml"
DATE = dt.date(2023, 10, 23)
#: Where the monitoring kustomization puts its objects, and so where Prometheus is assumed to run.
PROMETHEUS_NAMESPACE = "monitoring"
POD_IP = "10.1.2.3"

Labels = Mapping[str, str]

#: The fields of a PodMonitor used here, as the Prometheus operator's CRD (monitoring.coreos.com/v1)
#: names them; anything else (a misspelt field) is refused.
_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "operator"],
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
PODMONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "podMetricsEndpoints"],
            "properties": {
                "selector": _SELECTOR,
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                "jobLabel": {"type": "string"},
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port"],
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h))+$"},
                        },
                    },
                },
            },
        },
    },
}


# --- what is rendered, and the pods of a run --------------------------------------------------


@functools.cache
def _monitoring_rendered() -> str:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render the manifests (kubectl kustomize)"
    rendered = []
    for directory in (MONITORING, OPERATOR):
        done = subprocess.run(
            [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        rendered.append(done.stdout)
    return "\n---\n".join(rendered)


def monitoring_documents() -> list[dict[str, Any]]:
    """The documents of the monitoring kustomization and of its prometheus-operator one."""
    return [d for d in yaml.safe_load_all(_monitoring_rendered()) if d]


def pod_monitor() -> dict[str, Any]:
    (found,) = [d for d in monitoring_documents() if d["kind"] == "PodMonitor"]
    return found


def scrape_jobs() -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in yaml.safe_load(SCRAPE.read_text())}


def namespace(overlay: str) -> str:
    (found,) = [d["metadata"]["name"] for d in documents(overlay) if d["kind"] == "Namespace"]
    return found


def dask_pods(overlay: str) -> dict[str, dict[str, Any]]:
    """The scheduler's and a worker's pod ({metadata, spec}) of a run's Dask cluster: the spec the
    create_cluster task makes (processing/app/airflow_tasks.py), then what the Dask operator
    makes of it (controller.daskcluster_create_components, daskworkergroup_replica_update)."""
    ns = namespace(overlay)
    name = cluster_name("scheduled__2023-10-24T02:00:00+00:00", DATE)
    cluster = kube_cluster.cluster_spec(
        dask_cluster(overlay), name, 2, labels={"events-lake/date": DATE.isoformat()}
    )

    def merged(meta: Mapping[str, Any], part: Mapping[str, Any]) -> tuple[dict, dict]:
        body = kopf.Body(copy.deepcopy({"metadata": meta}))
        labels = dask_operator._get_labels(body.meta)
        annotations = dask_operator._get_annotations(body.meta)
        labels.update(part.get("metadata", {}).get("labels", {}))
        annotations.update(part.get("metadata", {}).get("annotations", {}))
        return labels, annotations

    labels, annotations = merged(cluster["metadata"], cluster["spec"]["scheduler"])
    scheduler = dask_operator.build_scheduler_deployment_spec(
        name, cluster["spec"]["scheduler"]["spec"], annotations, labels
    )
    labels, annotations = merged(cluster["metadata"], cluster["spec"]["worker"])
    group = dask_operator.build_default_worker_group_spec(
        name, cluster["spec"]["worker"], annotations, labels
    )
    labels, annotations = merged(group["metadata"], group["spec"]["worker"])
    worker = dask_operator.build_worker_deployment_spec(
        worker_group_name=group["metadata"]["name"],
        namespace=ns,
        cluster_name=name,
        uuid="0a1b2c3d4e",
        pod_spec=group["spec"]["worker"]["spec"],
        annotations=annotations,
        labels=labels,
    )
    kopf.label(worker, labels=cluster["metadata"]["labels"])
    pods = {"scheduler": scheduler, "worker": worker}
    return {
        part: {
            "metadata": {**copy.deepcopy(d["spec"]["template"]["metadata"]), "namespace": ns},
            "spec": d["spec"]["template"]["spec"],
        }
        for part, d in pods.items()
    }


def in_namespace(pod: Mapping[str, Any], ns: str) -> dict[str, Any]:
    """A pod ({metadata, spec}, e.g. a workload's template) as it runs in the namespace ``ns``."""
    return {"metadata": {**pod["metadata"], "namespace": ns}, "spec": pod["spec"]}


def other_pods(overlay: str) -> dict[str, dict[str, Any]]:
    """Every other pod of the overlay: its workloads', and a task pod (the executor's template)."""
    ns = namespace(overlay)
    pods = {
        f"{d['kind']}/{d['metadata']['name']}": in_namespace(pod_template(d), ns)
        for d in documents(overlay)
        if d["kind"] in WORKLOADS
    }
    template = yaml.safe_load(
        _named(overlay, "ConfigMap", "airflow-pod-template")["data"]["pod_template.yaml"]
    )
    pods["task pod"] = in_namespace(template, ns)
    return pods


def container_port(pod: Mapping[str, Any], name: str) -> int:
    (port,) = [
        p["containerPort"]
        for c in pod["spec"]["containers"]
        for p in c.get("ports", [])
        if p.get("name") == name
    ]
    return int(port)


# --- Kubernetes label selectors and Prometheus relabelling, as their documentation says ---------


def selects(selector: Mapping[str, Any], labels: Labels) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        key, op, values = e["key"], e["operator"], e.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def sanitized(name: str) -> str:
    """A Kubernetes label or annotation name as Prometheus' service discovery spells it."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def relabelled(configs: list[Mapping[str, Any]], labels: Labels) -> dict[str, str] | None:
    """Prometheus' relabel_configs (keep, drop, replace) applied to a target; None if dropped."""
    labels = dict(labels)
    for c in configs:
        value = c.get("separator", ";").join(labels.get(s, "") for s in c.get("source_labels", []))
        match = re.fullmatch(c.get("regex", "(.*)"), value)
        action = c.get("action", "replace")
        if action == "keep" and not match:
            return None
        if action == "drop" and match:
            return None
        if action == "replace" and match:
            template = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", str(c.get("replacement", "$1")))
            result = match.expand(template)
            if result:
                labels[c["target_label"]] = result
            else:
                labels.pop(c["target_label"], None)
        assert action in {"keep", "drop", "replace"}, f"relabel action {action} is not modelled"
    kept = {"__address__", "__metrics_path__", "__scheme__"}
    return {k: v for k, v in labels.items() if not k.startswith("__") or k in kept}


def pod_role_targets(pod: Mapping[str, Any]) -> Iterator[dict[str, str]]:
    """The targets Prometheus' kubernetes_sd_configs role: pod finds for a pod, before relabelling
    (one per container port)."""
    meta = pod["metadata"]
    common = {
        "__meta_kubernetes_namespace": meta["namespace"],
        "__meta_kubernetes_pod_name": meta.get("name", "pod-0"),
        "__metrics_path__": "/metrics",
    }
    for k, v in meta.get("labels", {}).items():
        common[f"__meta_kubernetes_pod_label_{sanitized(k)}"] = v
    for k, v in (meta.get("annotations") or {}).items():
        common[f"__meta_kubernetes_pod_annotation_{sanitized(k)}"] = v
    for c in pod["spec"]["containers"]:
        for p in c.get("ports", []):
            yield {
                **common,
                "__address__": f"{POD_IP}:{p['containerPort']}",
                "__meta_kubernetes_pod_container_name": c["name"],
                "__meta_kubernetes_pod_container_port_name": p.get("name", ""),
                "__meta_kubernetes_pod_container_port_number": str(p["containerPort"]),
                "__meta_kubernetes_pod_container_port_protocol": p.get("protocol", "TCP"),
            }


# --- NetworkPolicy, as https://kubernetes.io/docs/concepts/services-networking/network-policies/ --


def _ns_labels(ns: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": ns}


def _peer_matches(peer: Mapping[str, Any], policy_ns: str, ns: str, labels: Labels) -> bool:
    if "ipBlock" in peer:
        return False  # pod-to-pod traffic is what is checked here
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], _ns_labels(ns)):
            return False
    elif ns != policy_ns:
        return False
    return "podSelector" not in peer or selects(peer["podSelector"], labels)


def _port_matches(rule: Mapping[str, Any], port: int, protocol: str, target: Mapping) -> bool:
    if not rule.get("ports"):
        return True
    for p in rule["ports"]:
        if p.get("protocol", "TCP") != protocol:
            continue
        wanted = p.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):  # a named port of the pod the traffic goes to
            names = {q.get("name"): q["containerPort"] for c in target["spec"]["containers"]
                     for q in c.get("ports", [])}  # fmt: skip
            if names.get(wanted) == port:
                return True
        elif wanted <= port <= p.get("endPort", wanted):
            return True
    return False


def _types(policy: Mapping[str, Any]) -> set[str]:
    spec = policy["spec"]
    return set(spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else [])))


def allowed(
    policies: list[Mapping[str, Any]],
    source: Mapping[str, Any],
    target: Mapping[str, Any],
    port: int,
    protocol: str = "TCP",
) -> bool:
    """Whether the policies let ``source`` open a connection to ``target`` on ``port``: both its
    egress (in the source's namespace) and the target's ingress (in the target's) must allow it."""

    def direction(pod: Mapping, peer: Mapping, kind: str, rules: str, peers: str) -> bool:
        ns = pod["metadata"]["namespace"]
        peer_ns, peer_labels = peer["metadata"]["namespace"], peer["metadata"].get("labels", {})
        selecting = [
            p for p in policies
            if p["metadata"]["namespace"] == ns and kind in _types(p)
            and selects(p["spec"]["podSelector"], pod["metadata"].get("labels", {}))
        ]  # fmt: skip
        if not selecting:
            return True  # a pod no policy isolates
        return any(
            _port_matches(rule, port, protocol, target)
            and (
                not rule.get(peers)  # from / to anywhere
                or any(_peer_matches(x, ns, peer_ns, peer_labels) for x in rule[peers])
            )
            for p in selecting
            for rule in p["spec"].get(rules, [])
        )

    return direction(source, target, "Egress", "egress", "to") and direction(
        target, source, "Ingress", "ingress", "from"
    )


def prometheus_pod() -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": PROMETHEUS_NAMESPACE,
            "labels": {"app.kubernetes.io/name": "prometheus"},
        },
        "spec": {"containers": [{"name": "prometheus", "ports": [{"containerPort": 9090}]}]},
    }


def policies(overlay: str) -> list[dict[str, Any]]:
    return [d for d in documents(overlay) if d["kind"] == "NetworkPolicy"]


# --- the tests -----------------------------------------------------------------------------


def test_the_monitoring_kustomization_renders_the_pod_monitor() -> None:
    monitor = pod_monitor()
    jsonschema.validate(monitor, PODMONITOR_SCHEMA)
    assert monitor["metadata"]["namespace"] == PROMETHEUS_NAMESPACE
    broken = copy.deepcopy(monitor)
    broken["spec"]["podMetricEndpoints"] = broken["spec"].pop("podMetricsEndpoints")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, PODMONITOR_SCHEMA)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_dask_pods_say_where_their_metrics_are(overlay: str) -> None:
    for part, pod in dask_pods(overlay).items():
        annotations = pod["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", part
        assert annotations["prometheus.io/path"] == "/metrics", part
        port = container_port(pod, "http-dashboard")  # where the dashboard, and /metrics, listen
        assert annotations["prometheus.io/port"] == str(port), part
        (container,) = pod["spec"]["containers"]
        args = container["args"]
        address = args[args.index("--dashboard-address") + 1]
        assert address.rsplit(":", 1)[-1] == str(port), (part, address)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pod_monitor_selects_the_dask_pods_of_a_run_and_no_other(overlay: str) -> None:
    spec = pod_monitor()["spec"]
    assert namespace(overlay) in spec["namespaceSelector"]["matchNames"]
    (endpoint,) = spec["podMetricsEndpoints"]
    for part, pod in dask_pods(overlay).items():
        labels = pod["metadata"]["labels"]
        assert selects(spec["selector"], labels), (part, labels)
        port = container_port(pod, endpoint["port"])
        assert str(port) == pod["metadata"]["annotations"]["prometheus.io/port"], part
        assert (
            endpoint.get("path", "/metrics") == pod["metadata"]["annotations"]["prometheus.io/path"]
        )
        assert set(spec["podTargetLabels"]) <= set(labels), part
    for where, pod in other_pods(overlay).items():
        assert not selects(spec["selector"], pod["metadata"].get("labels", {})), where


def test_the_pod_monitor_and_the_scrape_jobs_cover_the_overlays_namespaces() -> None:
    wanted = {namespace(o) for o in OVERLAYS}
    assert set(pod_monitor()["spec"]["namespaceSelector"]["matchNames"]) == wanted
    for name, job in scrape_jobs().items():
        for sd in job.get("kubernetes_sd_configs", []):
            assert set(sd["namespaces"]["names"]) == wanted, name


def test_the_scrape_jobs_pass_promtool(tmp_path: Path) -> None:
    """promtool check config needs a whole prometheus.yml: the jobs under a minimal one. Debian's
    promtool is built without Kubernetes discovery (kubernetes_sd_configs is "not found"): then
    each such block is checked here for its fields, and promtool checks the jobs with a static
    target in its place (relabel regexes, job names, honor_labels, ...)."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is needed (./dev installs Debian's prometheus package)"
    jobs = yaml.safe_load(SCRAPE.read_text())

    def check(jobs: list[dict[str, Any]], name: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / name
        path.write_text(
            yaml.safe_dump({"global": {"scrape_interval": "1m"}, "scrape_configs": jobs})
        )
        return subprocess.run(
            [promtool, "check", "config", str(path)], capture_output=True, text=True, check=False
        )

    whole = check(jobs, "prometheus.yml")
    if whole.returncode != 0:
        assert "field kubernetes_sd_configs not found" in whole.stdout + whole.stderr, (
            whole.stdout + whole.stderr
        )
        static = copy.deepcopy(jobs)
        for job in static:
            for sd in job.pop("kubernetes_sd_configs", []):
                assert set(sd) <= {"role", "namespaces", "selectors", "attach_metadata"}, sd
                assert sd["role"] in {"pod", "endpointslice", "endpoints", "service"}, sd
                assert set(sd["namespaces"]) <= {"names", "own_namespace"}, sd
                job["static_configs"] = [{"targets": [f"{POD_IP}:8787"]}]
        done = check(static, "prometheus-static.yml")
        assert done.returncode == 0, done.stdout + done.stderr
    broken = copy.deepcopy(jobs)
    broken[0]["relabel_configs"][0]["regex"] = "(true"
    for job in broken:
        job.pop("kubernetes_sd_configs", None)
    assert check(broken, "broken.yml").returncode != 0


def _targets(job: Mapping[str, Any], pod: Mapping[str, Any]) -> list[dict[str, str]]:
    """What is left of a pod's role: pod targets after the job's relabelling."""
    return [t for t in (relabelled(job["relabel_configs"], t) for t in pod_role_targets(pod)) if t]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_dask_scrape_job_finds_one_target_per_dask_pod_and_no_other(overlay: str) -> None:
    job = scrape_jobs()["events-lake-dask"]
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod"
    monitor_labels = {sanitized(name) for name in pod_monitor()["spec"]["podTargetLabels"]}
    for part, pod in dask_pods(overlay).items():
        annotations, labels = pod["metadata"]["annotations"], pod["metadata"]["labels"]
        assert _targets(job, pod) == [
            {
                "__address__": f"{POD_IP}:{annotations['prometheus.io/port']}",
                "__metrics_path__": annotations["prometheus.io/path"],
                "namespace": namespace(overlay),
                "pod": pod["metadata"]["name"],
                # the same target labels as the PodMonitor's podTargetLabels give
                **{sanitized(k): v for k, v in labels.items() if sanitized(k) in monitor_labels},
            }
        ], part
        assert {sanitized(k) for k in labels} >= monitor_labels, part
        other = copy.deepcopy(pod)  # the Dask cluster of another project
        other["metadata"]["labels"]["app.kubernetes.io/part-of"] = "another-project"
        assert _targets(job, other) == [], part
    for where, pod in other_pods(overlay).items():  # the statsd-exporter is annotated too
        assert _targets(job, pod) == [], where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_statsd_exporter_job_keeps_its_metrics_port_only(overlay: str) -> None:
    job = scrape_jobs()["events-lake-airflow-statsd"]
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "endpointslice"
    pod = other_pods(overlay)["Deployment/airflow-statsd-exporter"]
    services = [
        d
        for d in documents(overlay)
        if d["kind"] == "Service"
        and selects({"matchLabels": d["spec"]["selector"]}, pod["metadata"]["labels"])
    ]
    assert services, "no Service for the statsd-exporter in the overlay"
    kept = []
    for service in services:
        for port in service["spec"]["ports"]:  # the targets of role: endpointslice
            target = {
                "__address__": f"{POD_IP}:{container_port(pod, port['targetPort'])}",
                "__meta_kubernetes_namespace": namespace(overlay),
                "__meta_kubernetes_service_name": service["metadata"]["name"],
                "__meta_kubernetes_endpointslice_port_name": port["name"],
                "__meta_kubernetes_pod_name": "airflow-statsd-exporter-0",
            }
            if relabelled(job["relabel_configs"], target):
                kept.append(container_port(pod, port["targetPort"]))
    # the port it serves metrics on: its probes' and its annotation's
    (container,) = pod["spec"]["containers"]
    assert kept == [container_port(pod, container["readinessProbe"]["httpGet"]["port"])]
    assert [str(p) for p in kept] == [pod["metadata"]["annotations"]["prometheus.io/port"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_may_reach_the_metrics_ports_and_others_may_not(overlay: str) -> None:
    rules = policies(overlay)
    prometheus = prometheus_pod()
    stranger = in_namespace(prometheus, "elsewhere")
    neighbour = {  # another pod of the monitoring namespace: the dashboards have no auth
        **prometheus,
        "metadata": {"namespace": PROMETHEUS_NAMESPACE, "labels": {"app": "grafana"}},
    }
    for part, pod in dask_pods(overlay).items():
        port = int(pod["metadata"]["annotations"]["prometheus.io/port"])
        assert allowed(rules, prometheus, pod, port), (part, port)
        assert not allowed(rules, stranger, pod, port), (part, port)
        assert not allowed(rules, neighbour, pod, port), (part, port)
        assert not allowed(rules, prometheus, pod, 8786), part  # metrics, not the scheduler
    exporter = other_pods(overlay)["Deployment/airflow-statsd-exporter"]
    assert allowed(
        rules, prometheus, exporter, int(exporter["metadata"]["annotations"]["prometheus.io/port"])
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_task_pods_may_push_to_the_pushgateway(overlay: str) -> None:
    job = scrape_jobs()["events-lake-pushgateway"]
    assert job["honor_labels"] is True  # the pushed job and date labels are the ones alerted on
    ((target,),) = [c["targets"] for c in job["static_configs"]]
    host, _, port = target.rpartition(":")
    assert host.split(".")[1] == PROMETHEUS_NAMESPACE, target  # <service>.<namespace>.svc
    gateway = {
        "metadata": {"namespace": PROMETHEUS_NAMESPACE, "labels": {}},
        "spec": {"containers": [{"name": "pushgateway", "ports": [{"containerPort": int(port)}]}]},
    }
    task = other_pods(overlay)["task pod"]
    assert allowed(policies(overlay), task, gateway, int(port))
    assert not allowed(policies(overlay), task, in_namespace(gateway, "elsewhere"), int(port))
