"""The Grafana dashboard and the monitoring kustomization: the dashboard is valid JSON with a
datasource variable, every query is one promtool parses and names only metrics that exist (the
ones runs push, kube-state-metrics', and those a real Dask scheduler and worker serve), and the
kustomization renders documents that validate against the Kubernetes schema."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess

import kubernetes_validate
import yaml

from processing.logic import run_metrics
from tests.conftest import ROOT

MONITORING = ROOT / "deploy" / "kubernetes" / "monitoring"
DASHBOARD = MONITORING / "dashboards" / "events-lake.json"
#: kube-state-metrics series the Dask panels use
EXTERNAL = {
    "kube_pod_info",
    "kube_pod_container_status_restarts_total",
    "kube_pod_container_status_last_terminated_reason",
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "sum", "max", "min", "count", "avg", "increase", "rate", "time",
                "offset", "bool"}  # fmt: skip


def _pushed_metric_names() -> set[str]:
    manifest = {
        "run_id": "R", "date": "2023-10-23", "rows_read": 1, "rows_valid": 1, "rows_rejected": 0,
        "rejected_by_reason": {"r": 0}, "valid_by_event": {"e": 1}, "bytes_written": 1,
        "files": [], "duration_seconds": 1, "rows_per_second": 1, "stage_seconds": {"plan": 1},
    }  # fmt: skip
    ratios = {"same_weekday": 1.0, "trailing_mean": 1.0}
    samples = run_metrics.success(manifest, 0.1, 0.0, volume_ratios=ratios)
    samples += run_metrics.failure(dt.date(2023, 10, 23), "X", 0.0)
    return {s.name for s in samples}


def _dask_metric_names() -> set[str]:
    """What a Dask scheduler and worker of the locked version serve at /metrics (scraped)."""
    import urllib.request

    from distributed import Client, LocalCluster

    names: set[str] = set()
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=False,
            dashboard_address="127.0.0.1:0",
            worker_dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster),
    ):
        servers = [
            cluster.scheduler.http_server,
            *(w.http_server for w in cluster.workers.values()),
        ]
        for server in servers:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as r:
                text = r.read().decode()
            for line in text.splitlines():  # "# TYPE name kind": also series without samples
                if line.startswith("# TYPE "):
                    _, _, name, kind = line.split()
                    names |= (
                        {name, f"{name.removesuffix('_total')}_total"}
                        if kind == "counter"
                        else {name}
                    )
    return {n for n in names if n.startswith("dask_")}


def _exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_the_dashboard_is_provisionable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "events-lake" and dashboard["title"]
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]


def test_every_query_parses_and_names_only_metrics_that_exist() -> None:
    dask = _dask_metric_names()
    assert {"dask_scheduler_tasks", "dask_worker_memory_bytes"} <= dask  # the scrape worked
    known = _pushed_metric_names() | EXTERNAL | dask
    promtool = shutil.which("promtool")
    assert promtool, "promtool is needed (./dev installs Debian's prometheus package)"
    for expr in _exprs():
        # strip strings, selectors, ranges and label lists: what is left names metrics
        bare = re.sub(r'"[^"]*"', " ", expr)
        bare = re.sub(r"\{[^}]*\}|\[[^]]*\]|\b(by|on|without|ignoring)\s*\([^)]*\)", " ", bare)
        names = set(re.findall(r"[a-z_][a-z0-9_]*", bare)) - PROMQL_WORDS
        assert names <= known, (expr, names - known)
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(_exprs())
    ]}]}  # fmt: skip
    checked = subprocess.run(
        [promtool, "check", "rules", "/dev/stdin"], input=yaml.safe_dump(rules),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_monitoring_kustomization_renders_valid_documents() -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl
    done = subprocess.run(
        [kubectl, "kustomize", str(MONITORING)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert {(d["kind"], d["metadata"]["name"]) for d in docs} == {
        ("ConfigMap", "events-lake-alert-rules"),
        ("ConfigMap", "events-lake-dashboard"),
        ("ConfigMap", "alertmanager-events-lake-config"),
    }  # the PodMonitor is in prometheus-operator/: tests/kubernetes/test_monitoring_manifests.py
    for d in docs:  # built-in kinds only: it applies to clusters without the operator's CRDs
        kubernetes_validate.validate(d, "1.32", strict=True)
    dashboard = next(d for d in docs if d["metadata"]["name"] == "events-lake-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["events-lake.json"])["uid"] == "events-lake"
