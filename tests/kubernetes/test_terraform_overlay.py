"""The overlays' component ``terraform/``: made from a Terraform root's outputs by
scripts/terraform_overlay.py, never by hand, and what the rendered pods then use."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import Any, ClassVar

import google.auth.transport.requests
import pytest
import yaml
from google.auth import identity_pool

from tests.kubernetes.test_manifests import KUSTOMIZE, OVERLAYS, ROOT, documents

SCRIPT = ROOT / "scripts" / "terraform_overlay.py"


def run_script(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True, text=True, input=stdin, timeout=60, check=False,
    )  # fmt: skip


def outputs(overlay: str) -> dict[str, Any]:
    return json.loads((KUSTOMIZE / "overlays" / overlay / "terraform" / "outputs.json").read_text())


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_lists_a_component_made_from_its_outputs(overlay: str) -> None:
    path = KUSTOMIZE / "overlays" / overlay
    assert "terraform" in yaml.safe_load((path / "kustomization.yaml").read_text())["components"]
    done = run_script(path / "terraform" / "outputs.json", path, "--check")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_pods_use_the_roles_lake_and_federated_credentials(overlay: str) -> None:
    docs, values = documents(overlay), outputs(overlay)
    roles = {
        d["metadata"]["name"]: d["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        for d in docs
        if d["kind"] == "ServiceAccount"
    }
    assert roles == {
        "airflow": values["airflow_role_arn"],
        "events-lake-task": values["task_role_arn"],
        "events-lake-dask": values["dask_role_arn"],
    }
    settings = named(docs, "ConfigMap", "events-lake-settings")["data"]
    assert settings["PROCESSING_DEST"] == values["lake_url"]
    assert settings["PROCESSING_S3_REGION"] == values["aws_region"]
    assert settings["PROCESSING_S3_KMS_KEY_ID"] == values["kms_key_arn"]
    airflow = named(docs, "ConfigMap", "airflow-config")["data"]
    assert airflow["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"] == values["airflow_logs_url"]
    config = named(docs, "ConfigMap", "events-lake-gcp-credentials")["data"]
    assert json.loads(config["credential-configuration.json"]) == json.loads(
        values["gcp_credential_configuration"]
    )
    # the task pods and the Dask workers read BigQuery: the token and the configuration are where
    # GOOGLE_APPLICATION_CREDENTIALS and the configuration's credential_source say
    credentials = Path(settings["GOOGLE_APPLICATION_CREDENTIALS"])
    token = Path(json.loads(values["gcp_credential_configuration"])["credential_source"]["file"])
    task = yaml.safe_load(
        named(docs, "ConfigMap", "airflow-pod-template")["data"]["pod_template.yaml"]
    )["spec"]
    dask = yaml.safe_load(
        named(docs, "ConfigMap", "events-lake-dask-spec")["data"]["daskcluster.yaml"]
    )
    for pod in (task, dask["spec"]["worker"]["spec"]):
        (volume,) = [v for v in pod["volumes"] if v["name"] == "gcp"]
        (mount,) = [m for c in pod["containers"] for m in c["volumeMounts"] if m["name"] == "gcp"]
        assert credentials.parent == token.parent == Path(mount["mountPath"])
        sources = volume["projected"]["sources"]
        (sa_token,) = [s["serviceAccountToken"] for s in sources if "serviceAccountToken" in s]
        assert sa_token == {
            "audience": values["gcp_token_audience"], "expirationSeconds": 3600, "path": token.name,
        }  # fmt: skip
        (configmap,) = [s["configMap"] for s in sources if "configMap" in s]
        assert configmap["name"] == "events-lake-gcp-credentials"
        assert credentials.name in config


def test_new_outputs_flow_into_the_render(tmp_path: Path) -> None:
    tree = tmp_path / "kubernetes"
    shutil.copytree(KUSTOMIZE, tree)
    overlay = tree / "overlays" / "prod"
    values = outputs("prod")
    values["dask_role_arn"] = "arn:aws:iam::999988887777:role/another-dask"
    values["lake_url"] = "s3://another-lake/events"
    done = run_script("-", overlay, stdin=json.dumps({k: {"value": v} for k, v in values.items()}))
    assert done.returncode == 0, done.stderr
    assert run_script(overlay / "terraform" / "outputs.json", overlay, "--check").returncode == 0
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    dask = named(docs, "ServiceAccount", "events-lake-dask")["metadata"]["annotations"]
    assert dask["eks.amazonaws.com/role-arn"] == values["dask_role_arn"]
    assert named(docs, "ConfigMap", "events-lake-settings")["data"]["PROCESSING_DEST"] == (
        "s3://another-lake/events"
    )
    # the committed component is no longer what those outputs make
    assert run_script("-", KUSTOMIZE / "overlays" / "prod", "--check",
                      stdin=json.dumps(values)).returncode == 1  # fmt: skip


def _broken(change: dict[str, Any]) -> dict[str, Any]:
    values = outputs("prod")
    for key, value in change.items():
        if value is None:
            del values[key]
        else:
            values[key] = value
    return values


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"kubernetes_namespace": "events-lake-dev"}, "deploys into 'events-lake'"),
        ({"gcp_token_audience": None, "task_role_arn": None}, "lacks the outputs task_role_arn"),
        ({"gcp_token_audience": "sts.googleapis.com"}, "not the audience of the pods' token"),
        ({"dask_role_arn": "events-lake-dask"}, "is no IAM role ARN"),
        ({"lake_url": "my-lake/events"}, "is no s3://bucket/prefix URL"),
        ({"gcp_credential_configuration": "{not json"}, "not a JSON document"),
        (
            {
                "gcp_credential_configuration": json.dumps(
                    {
                        "type": "external_account",
                        "credential_source": {"file": "/var/run/secrets/other/token"},
                    }
                )
            },
            "the pods' token is /var/run/secrets/gcp/token",
        ),
    ],
)
def test_outputs_that_do_not_fit_the_overlay_are_refused(
    change: dict[str, Any], says: str, tmp_path: Path
) -> None:
    overlay = tmp_path / "prod"
    shutil.copytree(KUSTOMIZE / "overlays" / "prod", overlay)
    before = {p.name: p.read_bytes() for p in (overlay / "terraform").iterdir()}
    done = run_script("-", overlay, stdin=json.dumps(_broken(change)))
    assert done.returncode == 2
    assert says in done.stderr, done.stderr
    assert {p.name: p.read_bytes() for p in (overlay / "terraform").iterdir()} == before


def test_what_is_not_terraform_output_is_refused(tmp_path: Path) -> None:
    done = run_script("-", KUSTOMIZE / "overlays" / "prod", stdin="plan: 3 to add")
    assert done.returncode == 2
    assert "give it `terraform output -json`" in done.stderr
    done = run_script(tmp_path / "missing.json", KUSTOMIZE / "overlays" / "prod")
    assert done.returncode == 2 and "missing.json" in done.stderr


class _GoogleTokenServer(http.server.BaseHTTPRequestHandler):
    """Google's two token endpoints as the credential configuration calls them: STS's token
    exchange (RFC 8693) and IAM Credentials' generateAccessToken, recording each request."""

    seen: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, dict(self.headers), body))
        if self.path == "/v1/token":
            reply = {"access_token": "federated-token", "issued_token_type":
                     "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer",
                     "expires_in": 3600}  # fmt: skip
        else:
            reply = {"accessToken": "service-account-token", "expireTime": "2099-01-01T00:00:00Z"}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_google_auth_trades_the_pods_token_for_the_readers_credentials(
    overlay: str, tmp_path: Path
) -> None:
    """The committed credential configuration, read by google-auth as the pods read it (through
    GOOGLE_APPLICATION_CREDENTIALS), with Google's endpoints served locally: the projected token
    is exchanged at STS for the pool's audience, then for the reader service account's token."""
    config = json.loads(
        (
            KUSTOMIZE / "overlays" / overlay / "terraform" / "credential-configuration.json"
        ).read_text()
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GoogleTokenServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    local = f"http://127.0.0.1:{server.server_address[1]}"
    token = tmp_path / "token"
    token.write_text("eyJ-the-projected-service-account-token")
    sa_url = urllib.parse.urlsplit(config["service_account_impersonation_url"])
    assert (sa_url.scheme, sa_url.netloc) == ("https", "iamcredentials.googleapis.com")
    assert config["token_url"] == "https://sts.googleapis.com/v1/token"
    local_config = config | {
        "token_url": f"{local}/v1/token",
        "service_account_impersonation_url": f"{local}{sa_url.path}",
        "credential_source": config["credential_source"] | {"file": str(token)},
    }
    _GoogleTokenServer.seen.clear()
    try:
        # what google.auth.default() makes of the file GOOGLE_APPLICATION_CREDENTIALS names (it
        # then asks Resource Manager for the project, which the read does not need)
        credentials = identity_pool.Credentials.from_info(
            local_config, scopes=["https://www.googleapis.com/auth/bigquery"]
        )
        credentials.refresh(google.auth.transport.requests.Request())
    finally:
        server.shutdown()
    assert credentials.token == "service-account-token"
    (sts_path, _, sts_body), (iam_path, iam_headers, _) = _GoogleTokenServer.seen[-2:]
    assert sts_path == "/v1/token"
    exchange = urllib.parse.parse_qs(sts_body.decode())
    assert exchange["subject_token"] == [token.read_text()]
    assert exchange["subject_token_type"] == ["urn:ietf:params:oauth:token-type:jwt"]
    assert exchange["audience"] == [config["audience"]]
    assert config["audience"].startswith("//iam.googleapis.com/projects/")
    values = outputs(overlay)
    assert (
        iam_path
        == f"/v1/projects/-/serviceAccounts/{values['gcp_service_account']}:generateAccessToken"
    )
    assert iam_headers["authorization"] == "Bearer federated-token"


def test_the_committed_examples_are_not_deployable(tmp_path: Path) -> None:
    """The overlays ship a component made from example outputs (so they render and are
    checked); a deployment refuses them until a real root's outputs are wired in."""
    for overlay in OVERLAYS:
        path = KUSTOMIZE / "overlays" / overlay
        done = run_script(path / "terraform" / "outputs.json", path, "--check", "--deployable")
        assert done.returncode == 2
        assert "hold the examples' values" in done.stderr and "task_role_arn" in done.stderr
    values = outputs("prod")
    real = {
        key: str(value)
        .replace("111122223333", "210987654321")
        .replace("123456789012", "998877665544")
        .replace("s3://example-events-lake-prod", "s3://acme-events-lake")
        for key, value in values.items()
    }
    overlay = tmp_path / "prod"
    shutil.copytree(KUSTOMIZE / "overlays" / "prod", overlay)
    assert run_script("-", overlay, stdin=json.dumps(real)).returncode == 0
    done = run_script(overlay / "terraform" / "outputs.json", overlay, "--check", "--deployable")
    assert done.returncode == 0, done.stderr
