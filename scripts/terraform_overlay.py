"""Wire a Terraform root's outputs into a kustomize overlay, so nothing is copied by hand.

    terraform -chdir=deploy/terraform/envs/prod output -json > prod-outputs.json
    python scripts/terraform_overlay.py prod-outputs.json deploy/kubernetes/overlays/prod

writes the overlay's component ``terraform/`` (the overlay lists it under ``components:``):

- ``outputs.json``: the outputs it was made from (ARNs, names and the credential configuration:
  nothing secret), so the component can be checked against them and made again;
- ``credential-configuration.json``: Google's workload identity federation configuration,
  made into ``ConfigMap/events-lake-gcp-credentials`` (the task pods and Dask workers mount it
  with the projected token it trades, ``base/airflow/pod_template.yaml``);
- ``kustomization.yaml``: the IAM role of each ServiceAccount (IRSA), the lake, its region and
  KMS key, BigQuery's credentials (``events-lake-settings``), and Airflow's remote-log folder.

Everything is checked before a file is written: a missing output, another namespace than the
overlay's, a token audience the pods do not ask for, or a credential configuration that does
not read the pods' token each exit 2 with what to fix. Running it again with the same outputs
rewrites the same bytes (``--check`` says whether the component is up to date).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
POD_TEMPLATE = ROOT / "deploy/kubernetes/base/airflow/pod_template.yaml"
DASK_SPEC = ROOT / "deploy/kubernetes/base/dask/daskcluster.yaml"
COMPONENT = "terraform"
CREDENTIALS_FILE = "credential-configuration.json"
#: where the pods mount the volume ``gcp`` (the token and the configuration)
GCP_MOUNT = "/var/run/secrets/gcp"
OUTPUTS = (
    "kubernetes_namespace",
    "lake_url",
    "aws_region",
    "kms_key_arn",
    "airflow_logs_url",
    "task_role_arn",
    "dask_role_arn",
    "airflow_role_arn",
    "gcp_service_account",
    "gcp_token_audience",
    "gcp_credential_configuration",
)
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
KMS_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[\w-]+$")
S3_URL = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?$")
#: ServiceAccount -> the output holding its role (base/airflow/serviceaccounts.yaml)
ROLES = {
    "airflow": "airflow_role_arn",
    "events-lake-task": "task_role_arn",
    "events-lake-dask": "dask_role_arn",
}
#: the committed example outputs' placeholders (AWS's and Google's documentation values): an
#: overlay still holding them has never been given a real root's outputs
EXAMPLES = ("111122223333", "123456789012", "s3://example-")
HEADER = (
    "# Made by scripts/terraform_overlay.py from outputs.json (terraform output -json of\n"
    "# deploy/terraform/envs/{env}): do not edit, run it again after terraform apply.\n"
)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the patches) as literal blocks, as a person would write them."""


_Dumper.add_representer(
    str,
    lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None),
)


class RefusedError(Exception):
    """The outputs cannot be wired into the overlay: the message says what to fix."""


def read_outputs(text: str, source: str) -> dict[str, Any]:
    """The values of ``terraform output -json`` (``{name: {"value": ...}}``), or plain values."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise RefusedError(f"{source} is not JSON ({e}): give it `terraform output -json`") from e
    if not isinstance(raw, dict):
        raise RefusedError(f"{source} is not a JSON object: give it `terraform output -json`")
    values = {k: v["value"] if isinstance(v, dict) and "value" in v else v for k, v in raw.items()}
    missing = [name for name in OUTPUTS if name not in values]
    if missing:
        raise RefusedError(
            f"{source} lacks the outputs {', '.join(missing)}: apply a root of "
            "deploy/terraform/envs at this version and take `terraform output -json` again"
        )
    return {name: values[name] for name in OUTPUTS}


def pod_audience() -> str:
    """The audience of the token the task pods and the Dask workers mount in their volume
    ``gcp`` (one audience: both read BigQuery)."""
    task = yaml.safe_load(POD_TEMPLATE.read_text())["spec"]
    worker = yaml.safe_load(DASK_SPEC.read_text())["spec"]["worker"]["spec"]
    found = {
        where: _token_audience(pod) for where, pod in ((POD_TEMPLATE, task), (DASK_SPEC, worker))
    }
    audiences = set(found.values())
    if None in audiences or len(audiences) != 1:
        raise RefusedError(
            "the task pods and the Dask workers must mount one token in their volume gcp, with "
            f"one audience: {', '.join(f'{p.relative_to(ROOT)}: {a}' for p, a in found.items())}"
        )
    return str(audiences.pop())


def _token_audience(pod: dict[str, Any]) -> str | None:
    for volume in pod.get("volumes", []):
        for source in volume.get("projected", {}).get("sources", []):
            if "serviceAccountToken" in source and volume["name"] == "gcp":
                return str(source["serviceAccountToken"]["audience"])
    return None


def check(values: dict[str, Any], namespace: str, audience: str) -> dict[str, Any]:
    """The parsed credential configuration, once every value is what the overlay can use."""
    problems = []
    if values["kubernetes_namespace"] != namespace:
        problems.append(
            f"the outputs are for namespace {values['kubernetes_namespace']!r}, the overlay "
            f"deploys into {namespace!r}: use the root of this environment"
        )
    for sa, output in ROLES.items():
        if not ROLE_ARN.match(str(values[output])):
            problems.append(f"{output} {values[output]!r} (ServiceAccount {sa}) is no IAM role ARN")
    if not KMS_ARN.match(str(values["kms_key_arn"])):
        problems.append(f"kms_key_arn {values['kms_key_arn']!r} is no KMS key ARN")
    for output in ("lake_url", "airflow_logs_url"):
        if not S3_URL.match(str(values[output])):
            problems.append(f"{output} {values[output]!r} is no s3://bucket/prefix URL")
    if values["gcp_token_audience"] != audience:
        problems.append(
            f"gcp_token_audience {values['gcp_token_audience']!r} is not the audience of the "
            f"pods' token ({audience!r} in {POD_TEMPLATE.relative_to(ROOT)}): set the module's "
            "token_audience to it"
        )
    try:
        config = json.loads(values["gcp_credential_configuration"])
    except (TypeError, json.JSONDecodeError):
        problems.append("gcp_credential_configuration is not a JSON document")
        config = {}
    if config:
        source = config.get("credential_source", {})
        if config.get("type") != "external_account":
            problems.append("gcp_credential_configuration is not of type external_account")
        if source.get("file") != f"{GCP_MOUNT}/token":
            problems.append(
                f"gcp_credential_configuration reads {source.get('file')!r}, the pods' token "
                f"is {GCP_MOUNT}/token"
            )
        if values["gcp_service_account"] not in config.get("service_account_impersonation_url", ""):
            problems.append("gcp_credential_configuration impersonates another service account")
    if problems:
        raise RefusedError("; ".join(problems))
    return config


def examples_in(values: dict[str, Any]) -> list[str]:
    """The outputs that still hold an example value."""
    return [name for name, value in values.items() if any(e in str(value) for e in EXAMPLES)]


def component(values: dict[str, Any], env: str, config: dict[str, Any]) -> dict[str, str]:
    """The component's files: {name: text}."""
    patches: list[dict[str, Any]] = [
        {
            "target": {"kind": "ServiceAccount", "name": sa},
            "patch": _ops(
                [("eks.amazonaws.com~1role-arn", values[output])], "/metadata/annotations"
            ),
        }
        for sa, output in ROLES.items()
    ]
    settings = [
        ("PROCESSING_DEST", values["lake_url"]),
        ("PROCESSING_S3_REGION", values["aws_region"]),
        ("PROCESSING_S3_SSE", "aws:kms"),
        ("PROCESSING_S3_KMS_KEY_ID", values["kms_key_arn"]),
        ("GOOGLE_APPLICATION_CREDENTIALS", f"{GCP_MOUNT}/{CREDENTIALS_FILE}"),
    ]
    patches.append(
        {
            "target": {"kind": "ConfigMap", "name": "events-lake-settings"},
            "patch": _ops(settings, "/data"),
        }
    )
    patches.append(
        {
            "target": {"kind": "ConfigMap", "name": "airflow-config"},
            "patch": _ops(
                [("AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER", values["airflow_logs_url"])], "/data"
            ),
        }
    )
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1alpha1",
        "kind": "Component",
        "configMapGenerator": [
            {
                "name": "events-lake-gcp-credentials",
                "files": [CREDENTIALS_FILE],
                "options": {"disableNameSuffixHash": True},  # the pods name it in ConfigMaps
            }
        ],
        "patches": patches,
    }
    return {
        "kustomization.yaml": HEADER.format(env=env)
        + yaml.dump(kustomization, Dumper=_Dumper, sort_keys=False, width=100),
        CREDENTIALS_FILE: json.dumps(config, indent=2, sort_keys=True) + "\n",
        "outputs.json": json.dumps(values, indent=2, sort_keys=True) + "\n",
    }


def _ops(pairs: list[tuple[str, Any]], at: str) -> str:
    """A JSON patch that sets each key under ``at`` (added or replaced alike)."""
    return yaml.safe_dump(
        [{"op": "add", "path": f"{at}/{key}", "value": str(value)} for key, value in pairs],
        sort_keys=False,
        width=200,
    )


def overlay_namespace(overlay: Path) -> str:
    kustomization = overlay / "kustomization.yaml"
    if not kustomization.is_file():
        raise RefusedError(f"{overlay} is no kustomize overlay (no kustomization.yaml)")
    namespace = yaml.safe_load(kustomization.read_text()).get("namespace")
    if not namespace:
        raise RefusedError(f"{kustomization} sets no namespace")
    return str(namespace)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outputs", help="`terraform output -json` of the root, a file or - (stdin)")
    parser.add_argument(
        "overlay", type=Path, help="the overlay, e.g. deploy/kubernetes/overlays/prod"
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the component differs"
    )
    parser.add_argument(
        "--deployable",
        action="store_true",
        help="also refuse (exit 2) the committed example values: before a deployment",
    )
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.outputs == "-" else Path(args.outputs).read_text()
        values = read_outputs(text, args.outputs)
        config = check(values, overlay_namespace(args.overlay), pod_audience())
        files = component(values, args.overlay.name, config)
        if args.deployable and (examples := examples_in(values)):
            raise RefusedError(
                f"{', '.join(examples)} hold the examples' values (account 111122223333, "
                "project 123456789012, example- buckets): run this script with the outputs "
                "of your applied root (deploy/README.md, step 2) and commit the component"
            )
    except (RefusedError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    target = args.overlay / COMPONENT
    stale = [
        n for n, t in files.items() if not (target / n).is_file() or (target / n).read_text() != t
    ]
    if args.check:
        for name in stale:
            print(f"{target / name} is not what {args.outputs} makes", file=sys.stderr)
        return 1 if stale else 0
    target.mkdir(exist_ok=True)
    for name, text in files.items():
        (target / name).write_text(text)
    print(f"wrote {target}/ ({', '.join(files)}); the overlay lists it under components:")
    return 0


if __name__ == "__main__":
    sys.exit(main())
