"""Who gets at what, checked on the rendered manifests: prod and monitoring apply no Secret (the
Secrets are made out of band, from secret-templates/ or by the External Secrets Operator, so
applying never overwrites them) and every Secret a workload reads has a template and, in prod,
an ExternalSecret with the keys its readers read; only the ingress controller and our own pods
that call it reach the api-server; prod's UI signs in with the FAB auth manager (single sign-on,
users and roles out of git), never SimpleAuthManager."""

from __future__ import annotations

import ast
import copy
import importlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.kubernetes.test_manifests import KUSTOMIZE, OVERLAYS, _named, documents, pod_specs
from tests.kubernetes.test_monitoring_manifests import (
    allowed,
    container_port,
    namespace,
    other_pods,
    policies,
)

TEMPLATES = KUSTOMIZE / "secret-templates"
EXTERNAL_SECRETS = KUSTOMIZE / "components" / "external-secrets"
#: Every kustomization someone applies to a cluster (the components are applied through these).
APPLIED = ["overlays/dev", "overlays/prod", "monitoring", "monitoring/prometheus-operator"]
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
#: What the task pods and the scheduler call the api-server for (the execution API).
API_CALLERS = {"task pod", "Deployment/airflow-scheduler"}
#: Template values that are settings rather than secrets, so not MOCK.
NOT_SECRET = {("airflow-oidc", "scope")}

#: The fields of an ExternalSecret used here, as the External Secrets Operator's CRD
#: (external-secrets.io/v1, the same fields as v1beta1) names them: a misspelt field is refused.
_NAME = {
    "type": "string",
    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
}
EXTERNALSECRET_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "external-secrets.io/v1"},
        "kind": {"const": "ExternalSecret"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["secretStoreRef", "target", "data"],
            "properties": {
                "refreshInterval": {"type": "string", "pattern": r"^([0-9]+(ns|us|µs|ms|s|m|h))+$"},
                "secretStoreRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "kind": {"enum": ["SecretStore", "ClusterSecretStore"]},
                        "name": _NAME,
                    },
                },
                "target": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "name": _NAME,
                        "creationPolicy": {"enum": ["Owner", "Orphan", "Merge", "None"]},
                        "deletionPolicy": {"enum": ["Delete", "Merge", "Retain"]},
                        "immutable": {"type": "boolean"},
                    },
                },
                "data": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["secretKey", "remoteRef"],
                        "properties": {
                            "secretKey": {"type": "string", "pattern": r"^[-._a-zA-Z0-9]+$"},
                            "remoteRef": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["key"],
                                "properties": {
                                    "key": {"type": "string"},
                                    # gjson: a dot would be a path, not part of the name
                                    "property": {"type": "string", "pattern": r"^[^.]+$"},
                                    "version": {"type": "string"},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


# --- rendering, and what the workloads read ---------------------------------------------------


def render(kustomization: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render the manifests (kubectl kustomize)"
    done = subprocess.run(
        [kubectl, "kustomize", str(kustomization)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def prod_with_external_secrets(tmp_path: Path) -> list[dict[str, Any]]:
    """prod as an overlay opting in to components/external-secrets renders it."""
    root = KUSTOMIZE / "overlays" / "prod"
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": namespace("prod"),
        "resources": [os.path.relpath(root, tmp_path)],
        "components": [os.path.relpath(EXTERNAL_SECRETS, tmp_path)],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return render(tmp_path)


def secrets_read(overlay: str) -> Iterator[tuple[str, str, bool]]:
    """(where, Secret name, optional) for every Secret a pod of the overlay reads."""
    for where, pod, _ in pod_specs(overlay):
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                yield where, volume["secret"]["secretName"], volume["secret"].get("optional", False)
            for source in volume.get("projected", {}).get("sources", []):
                if "secret" in source:
                    yield where, source["secret"]["name"], source["secret"].get("optional", False)
        for c in pod.get("initContainers", []) + pod["containers"]:
            for source in c.get("envFrom", []):
                if "secretRef" in source:
                    ref = source["secretRef"]
                    yield where, ref["name"], ref.get("optional", False)
            for env in c.get("env", []):
                if ref := env.get("valueFrom", {}).get("secretKeyRef"):
                    yield where, ref["name"], ref.get("optional", False)


def templates() -> dict[str, dict[str, str]]:
    """The Secret templates: {name: stringData}."""
    found = {}
    for path in sorted(TEMPLATES.glob("*.yaml")):
        (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert doc["kind"] == "Secret", path
        assert doc["metadata"]["name"] == path.stem, path  # one Secret per file, named after it
        found[doc["metadata"]["name"]] = doc["stringData"]
    return found


def secret_files_read(overlay: str) -> set[str]:
    """The keys of Secret/airflow-secrets that Airflow reads (the *_CMD settings' files)."""
    commands = _named(overlay, "ConfigMap", "airflow-secret-files")["data"].values()
    return {m for c in commands for m in re.findall(r"^cat /opt/airflow/secrets/(\S+)$", c)}


def webserver_config(overlay: str) -> str:
    (config,) = [
        d["data"]["webserver_config.py"]
        for d in documents(overlay)
        if d["kind"] == "ConfigMap" and "webserver_config.py" in d.get("data", {})
    ]
    return config


def oidc_keys_read(source: str) -> set[str]:
    """The files of Secret/airflow-oidc that webserver_config.py reads (its _secret() calls)."""
    return {
        node.args[0].value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "_secret"
        and isinstance(node.args[0], ast.Constant)
    }


# --- 1. Secrets: none applied in prod, each one made out of band ------------------------------


@pytest.mark.parametrize("kustomization", APPLIED)
def test_every_kustomization_renders_and_prod_and_monitoring_apply_no_secret_values(
    kustomization: str,
) -> None:
    """`kubectl apply -k` on prod or monitoring must not overwrite the Secrets made out of band:
    they render no Secret with values (dev ships its mock ones)."""
    docs = render(KUSTOMIZE / kustomization)
    with_values = [
        d["metadata"]["name"]
        for d in docs
        if d["kind"] == "Secret" and (d.get("data") or d.get("stringData"))
    ]
    if kustomization == "overlays/dev":
        assert with_values, "dev runs as applied: it ships mock Secrets"
    else:
        assert with_values == [], f"{kustomization} would overwrite the Secrets {with_values}"


def test_every_secret_a_workload_reads_has_a_template_with_mock_values() -> None:
    assert not (TEMPLATES / "kustomization.yaml").exists()  # nothing there to apply -k
    made = templates()
    for overlay in OVERLAYS:
        rendered = {d["metadata"]["name"] for d in documents(overlay) if d["kind"] == "Secret"}
        for where, name, _ in secrets_read(overlay):
            if name not in rendered:  # made out of band: prod's, all of them
                assert name in made, (overlay, where, name)
    for name, values in made.items():
        for key, value in values.items():
            assert "MOCK" in value or (name, key) in NOT_SECRET, (name, key)
    (monitoring,) = yaml.safe_load_all(
        (KUSTOMIZE / "monitoring" / "alertmanager-secrets.yaml").read_text()
    )
    assert all("MOCK" in v for v in monitoring["stringData"].values())


def test_the_external_secrets_make_every_secret_prod_needs(tmp_path: Path) -> None:
    docs = prod_with_external_secrets(tmp_path)
    externals = [d for d in docs if d["kind"] == "ExternalSecret"]
    for external in externals:
        jsonschema.validate(external, EXTERNALSECRET_SCHEMA)
        assert external["metadata"]["namespace"] == namespace("prod")
    made = {
        e["spec"]["target"].get("name", e["metadata"]["name"]): {
            item["secretKey"] for item in e["spec"]["data"]
        }
        for e in externals
    }
    needed = {name for _, name, optional in secrets_read("prod") if not optional}
    assert needed <= set(made), needed - set(made)
    for name, keys in made.items():
        assert keys == set(templates()[name]), name  # the same keys as the template's
    assert not [d for d in docs if d["kind"] == "Secret"]  # the operator makes them, not apply
    broken = copy.deepcopy(externals[0])
    broken["spec"]["secretStoreRef"]["kind"] = "SecretStores"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, EXTERNALSECRET_SCHEMA)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_secrets_hold_every_key_their_readers_read(overlay: str) -> None:
    """Airflow's *_CMD files in airflow-secrets, webserver_config.py's files in airflow-oidc:
    each is in the template (prod) or the rendered mock Secret (dev)."""
    rendered = {
        d["metadata"]["name"]: set(d.get("stringData", {})) | set(d.get("data", {}))
        for d in documents(overlay)
        if d["kind"] == "Secret"
    }
    keys = {name: set(values) for name, values in templates().items()} | rendered
    wanted = {"airflow-secrets": secret_files_read(overlay)}
    if overlay == "prod":
        wanted["airflow-oidc"] = oidc_keys_read(webserver_config(overlay))
    for name, read in wanted.items():
        assert read, name
        assert read == keys[name], (overlay, name, read ^ keys[name])


# --- 2. the network: who reaches the api-server ----------------------------------------------


def _ingress_namespace(overlay: str) -> str:
    """The namespace the api-server admits from outside ours: one, named, not a wildcard."""
    rules = _named(overlay, "NetworkPolicy", "api-server")["spec"]["ingress"]
    assert all(r.get("from") for r in rules), "a rule without from admits every pod"
    (peer,) = [p for r in rules for p in r["from"] if "namespaceSelector" in p]
    assert list(peer["namespaceSelector"]) == ["matchLabels"], peer
    ((label, name),) = peer["namespaceSelector"]["matchLabels"].items()
    assert label == "kubernetes.io/metadata.name", label
    return name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_ingress_controller_and_our_callers_reach_the_api_server(overlay: str) -> None:
    rules = policies(overlay)
    pods = other_pods(overlay)
    api_server = pods["Deployment/airflow-api-server"]
    port = container_port(api_server, "http")
    spec = {"containers": [{"name": "client", "ports": [{"containerPort": 443}]}]}
    labels = {"app.kubernetes.io/name": "ingress-nginx"}  # as an ingress controller's
    for elsewhere in ("elsewhere", "another-team", "monitoring"):  # any other namespace
        stranger = {"metadata": {"namespace": elsewhere, "labels": labels}, "spec": spec}
        assert not allowed(rules, stranger, api_server, port), elsewhere
    debug = {
        "metadata": {"namespace": namespace(overlay), "labels": {"app": "debug"}},
        "spec": spec,
    }
    assert not allowed(rules, debug, api_server, port)  # a pod of ours that is not a caller
    controller = {
        "metadata": {"namespace": _ingress_namespace(overlay), "labels": labels},
        "spec": spec,
    }
    assert allowed(rules, controller, api_server, port)
    assert not allowed(rules, controller, api_server, 8974)  # the UI's port only
    callers = {where for where, pod in pods.items() if allowed(rules, pod, api_server, port)}
    assert callers == API_CALLERS


def test_prod_names_its_ingress_controller_namespace() -> None:
    """prod sets the namespace in its own kustomization (the knob deploy/README.md names)."""
    text = (KUSTOMIZE / "overlays" / "prod" / "kustomization.yaml").read_text()
    assert (
        "/spec/ingress/0/from/0/namespaceSelector/matchLabels/kubernetes.io~1metadata.name" in text
    )
    assert f"value: {_ingress_namespace('prod')}" in text


# --- 3. the UI: prod's auth manager ----------------------------------------------------------


def _api_server_volume(overlay: str, mount_path: str) -> dict[str, Any]:
    pod = _named(overlay, "Deployment", "airflow-api-server")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "api-server"]
    (name,) = [m["name"] for m in container["volumeMounts"] if m["mountPath"] == mount_path]
    (volume,) = [v for v in pod["volumes"] if v["name"] == name]
    return volume


def test_prod_signs_in_with_the_fab_auth_manager_and_no_simple_auth_users() -> None:
    config = _named("prod", "ConfigMap", "airflow-config")["data"]
    assert config["AIRFLOW__CORE__AUTH_MANAGER"] == FAB_AUTH_MANAGER
    rendered = yaml.safe_dump_all(documents("prod"))
    for word in (
        "SimpleAuthManager",
        "SIMPLE_AUTH_MANAGER",
        "simple_auth_manager",
        "passwords.json",
    ):
        assert word not in rendered, word
    assert not [d for d in documents("prod") if d["metadata"]["name"] == "airflow-admin"]
    # webserver_config.py is where [fab] config_file says, beside the Secret airflow-oidc
    path = Path(config["AIRFLOW__FAB__CONFIG_FILE"])
    sources = _api_server_volume("prod", str(path.parent))["projected"]["sources"]
    (config_map,) = [s["configMap"]["name"] for s in sources if "configMap" in s]
    assert path.name in _named("prod", "ConfigMap", config_map)["data"]
    assert [s["secret"]["name"] for s in sources if "secret" in s] == ["airflow-oidc"]
    # behind the ingress controller: its forwarded headers, HTTPS cookies, the public URL
    assert config["AIRFLOW__FAB__ENABLE_PROXY_FIX"] == "True"
    assert config["AIRFLOW__FAB__COOKIE_SECURE"] == "True"
    assert config["AIRFLOW__API__BASE_URL"].startswith("https://")
    # dev keeps the simple one, with its mock admin
    dev = _named("dev", "ConfigMap", "airflow-config")["data"]
    assert dev["AIRFLOW__CORE__AUTH_MANAGER"].endswith(".SimpleAuthManager")


def test_prods_auth_manager_is_in_the_locked_environment() -> None:
    """The image is built from the same lock as this environment (Dockerfile: uv sync --frozen
    --extra airflow), so the auth manager prod names must import here, with FAB's OAuth client."""
    name = _named("prod", "ConfigMap", "airflow-config")["data"]["AIRFLOW__CORE__AUTH_MANAGER"]
    module, _, attribute = name.rpartition(".")
    try:
        manager = getattr(importlib.import_module(module), attribute)
        importlib.import_module("authlib.integrations.flask_client")  # the "oauth" extra
    except ImportError as e:
        pytest.fail(f"{e}: add apache-airflow-providers-fab[oauth] to the airflow extra")
    assert manager.__name__ == "FabAuthManager"


def test_the_webserver_config_signs_in_with_oidc_and_maps_groups_to_roles(tmp_path: Path) -> None:
    """Loaded as the FAB auth manager loads it (Flask's from_pyfile, silent=True), beside the
    files of the Secret airflow-oidc (here the template's values)."""
    source = webserver_config("prod")
    secret = templates()["airflow-oidc"]
    pytest.importorskip("flask_appbuilder", reason="apache-airflow-providers-fab is not installed")
    from airflow.providers.fab.auth_manager.security_manager.override import (
        FabAirflowSecurityManagerOverride,
    )
    from flask import Config
    from flask_appbuilder.const import AUTH_OAUTH

    (tmp_path / "webserver_config.py").write_text(source)
    for key, value in secret.items():
        (tmp_path / key).write_text(value)
    config = Config(str(tmp_path))
    assert config.from_pyfile("webserver_config.py", silent=True)
    assert config["AUTH_TYPE"] == AUTH_OAUTH
    (provider,) = config["OAUTH_PROVIDERS"]
    remote = provider["remote_app"]
    assert (remote["client_id"], remote["client_secret"], remote["server_metadata_url"]) == (
        secret["client_id"], secret["client_secret"], secret["metadata_url"],
    )  # fmt: skip
    assert remote["client_kwargs"]["scope"] == secret["scope"]
    assert "openid" in remote["client_kwargs"]["scope"].split()
    roles = {r["role"] for r in FabAirflowSecurityManagerOverride.ROLE_CONFIGS}
    mapping = config["AUTH_ROLES_MAPPING"]
    assert mapping == json.loads(secret["roles_mapping.json"])
    assert all(set(r) <= roles for r in mapping.values()), mapping  # Airflow's FAB roles
    assert config["AUTH_ROLES_SYNC_AT_LOGIN"] is True
    assert config["AUTH_USER_REGISTRATION_ROLE"] == "Public"  # no group, no permission
    # a missing file must not be swallowed by silent=True (FAB would fall back to its defaults)
    (tmp_path / "client_secret").unlink()
    with pytest.raises(RuntimeError, match="client_secret"):
        Config(str(tmp_path)).from_pyfile("webserver_config.py", silent=True)
