"""deploy/terraform/modules/bigquery-reader-gcp, read offline: the reader's service account gets
exactly three grants (read sessions in the billing project, data on the events dataset, and
impersonation by the two federated ServiceAccounts), no key exists anywhere, and the credential
configuration is the external_account document google-auth reads. Each check is run once more
on a broken copy of the configuration, to show it would catch it."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.terraform.configuration import (
    ENVIRONMENTS,
    Config,
    environment,
    load,
    module,
    parse,
    tf_files,
)

READER = "serviceAccount:${google_service_account.reader.email}"
SUBJECT = (
    "principal://iam.googleapis.com/${google_iam_workload_identity_pool.eks.name}"
    "/subject/${each.value}"
)
#: (resource type, name) -> what it must grant, to whom, where. Nothing else may grant a role.
GRANTS: dict[tuple[str, str], dict[str, str]] = {
    ("google_project_iam_member", "read_session_user"): {
        "project": "${var.billing_project_id}",
        "role": "roles/bigquery.readSessionUser",
        "member": READER,
    },
    ("google_bigquery_dataset_iam_member", "data_viewer"): {
        "project": "${var.dataset_project_id}",
        "dataset_id": "${var.dataset_id}",
        "role": "roles/bigquery.dataViewer",
        "member": READER,
    },
    ("google_service_account_iam_member", "workload_identity_user"): {
        "for_each": "${toset(local.subjects)}",
        "service_account_id": "${google_service_account.reader.name}",
        "role": "roles/iam.workloadIdentityUser",
        "member": SUBJECT,
    },
}
_IAM = re.compile(r"^google_.+_iam_(member|binding|policy|audit_config)$")
CREDENTIAL_CONFIGURATION = {
    "type": "external_account",
    "audience": "//iam.googleapis.com/${google_iam_workload_identity_pool_provider.eks.name}",
    "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
    "token_url": "https://sts.googleapis.com/v1/token",
    "service_account_impersonation_url": (
        "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/"
        "${google_service_account.reader.email}:generateAccessToken"
    ),
    "credential_source": {"file": "${var.token_path}", "format": {"type": "text"}},
}


@pytest.fixture
def reader() -> Config:
    return module("bigquery-reader-gcp")


def every_config() -> list[Config]:
    directories = sorted({path.parent for path in tf_files()})
    return [load(directory) for directory in directories]


# --- the checks -----------------------------------------------------------------------------------
def grant_problems(configs: list[Config]) -> list[str]:
    """Every IAM grant on GCP, in every module and root: exactly GRANTS."""
    found = {
        (kind, name): body
        for config in configs
        for (kind, name), body in config.resources.items()
        if _IAM.match(kind)
    }
    problems = [f"unexpected grant {key}" for key in sorted(set(found) - set(GRANTS))]
    for key, wanted in GRANTS.items():
        if key not in found:
            problems.append(f"missing grant {key}")
        elif {k: found[key].get(k) for k in wanted} != wanted or found[key].get("condition"):
            problems.append(f"{key} grants {found[key]}, not {wanted}")
    return problems


def subject_problems(config: Config) -> list[str]:
    """The federated subjects are the namespace's events-lake-task and events-lake-dask."""
    problems = []
    accounts = config.variables["kubernetes_service_accounts"].get("default")
    if accounts != ["events-lake-task", "events-lake-dask"]:
        problems.append(f"federated ServiceAccounts {accounts}")
    subjects = config.locals.get("subjects")
    if subjects != (
        "${[for name in var.kubernetes_service_accounts : "
        '"system:serviceaccount:${var.kubernetes_namespace}:${name}"]}'
    ):
        problems.append(f"subjects {subjects}")
    return problems


def key_problems(configs: list[Config], texts: list[str]) -> list[str]:
    """No service account key, as a resource, a data source or anywhere in the text."""
    problems = [
        f"{kind}.{name} in {config.directory.name}"
        for config in configs
        for (kind, name) in [*config.resources, *config.data]
        if kind == "google_service_account_key"
    ]
    problems += [
        "google_service_account_key in a .tf file"
        for text in texts
        if re.search(r'"google_service_account_key"', text)
    ]
    return problems


def provider_problems(config: Config) -> list[str]:
    """An OIDC provider on the EKS issuer, one audience, only the pipeline's ServiceAccounts."""
    problems = []
    provider = config.resource("google_iam_workload_identity_pool_provider", "eks")
    if "aws" in provider:
        problems.append("an AWS provider type: google-auth would federate the node's role")
    if provider.get("oidc") != [
        {
            "issuer_uri": '${trimsuffix(var.oidc_issuer_url, "/")}',
            "allowed_audiences": ["${var.token_audience}"],
        }
    ]:
        problems.append(f"oidc {provider.get('oidc')}")
    if config.variables["token_audience"].get("default") != "events-lake-gcp":
        problems.append("the token's audience is not events-lake-gcp")
    if provider.get("attribute_mapping", {}).get("google.subject") != "assertion.sub":
        problems.append("google.subject is not the token's sub")
    condition = str(provider.get("attribute_condition", ""))
    for part in (
        "attribute.namespace == '${var.kubernetes_namespace}'",
        "attribute.service_account_name in [",
        "for name in var.kubernetes_service_accounts",
    ):
        if part not in condition:
            problems.append(f"the attribute condition lacks {part!r}")
    return problems


def credential_configuration(config: Config) -> dict[str, Any]:
    """The credential_configuration output's jsonencode argument, parsed as HCL."""
    value = config.outputs["credential_configuration"]["value"]
    found = re.fullmatch(r"\$\{jsonencode\((.*)\)\}", value, re.DOTALL)
    assert found, value
    return parse(f"document = {found[1]}\n")["document"]


# --- the tests ------------------------------------------------------------------------------------
def test_the_reader_gets_exactly_its_three_grants() -> None:
    assert grant_problems(every_config()) == []


def test_impersonation_is_for_the_two_service_accounts_only(reader: Config) -> None:
    assert subject_problems(reader) == []


def test_no_service_account_key_anywhere() -> None:
    assert key_problems(every_config(), [p.read_text() for p in tf_files()]) == []


def test_the_pool_trusts_the_eks_issuer_for_the_pipelines_token_only(reader: Config) -> None:
    assert provider_problems(reader) == []


def test_the_credential_configuration_is_google_auths_external_account(reader: Config) -> None:
    assert credential_configuration(reader) == CREDENTIAL_CONFIGURATION
    assert reader.variables["token_path"]["default"] == "/var/run/secrets/gcp/token"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_root_passes_the_configuration_and_audience_through(env: str) -> None:
    root = environment(env)
    outputs = {name: body["value"] for name, body in root.outputs.items()}
    assert outputs["gcp_credential_configuration"] == (
        "${module.bigquery_reader.credential_configuration}"
    )
    assert outputs["gcp_token_audience"] == "${module.bigquery_reader.token_audience}"
    assert outputs["gcp_service_account"] == "${module.bigquery_reader.service_account_email}"


# --- and each check catches what it is for --------------------------------------------------------
def _added(kind: str, name: str, body: dict[str, Any]) -> Callable[[list[Config]], object]:
    return lambda configs: configs[0].resources.update({(kind, name): body})


def _changed(key: tuple[str, str], **values: str) -> Callable[[list[Config]], object]:
    def change(configs: list[Config]) -> None:
        for config in configs:
            if key in config.resources:
                config.resources[key].update(values)

    return change


GRANT_BREAKAGES: dict[str, Callable[[list[Config]], object]] = {
    "dataViewer on the whole project": _added(
        "google_project_iam_member",
        "viewer",
        {"project": "${var.dataset_project_id}", "role": "roles/bigquery.dataViewer"},
    ),
    "jobUser besides": _added(
        "google_project_iam_member", "jobs", {"role": "roles/bigquery.jobUser"}
    ),
    "an authoritative policy": _added(
        "google_service_account_iam_policy", "all", {"policy_data": "..."}
    ),
    "the whole pool may impersonate": _changed(
        ("google_service_account_iam_member", "workload_identity_user"),
        member="principalSet://iam.googleapis.com/${google_iam_workload_identity_pool.eks.name}/*",
    ),
    "read sessions billed elsewhere": _changed(
        ("google_project_iam_member", "read_session_user"), project="${var.project_id}"
    ),
    "a token creator instead": _changed(
        ("google_service_account_iam_member", "workload_identity_user"),
        role="roles/iam.serviceAccountTokenCreator",
    ),
}


@pytest.mark.parametrize("breakage", sorted(GRANT_BREAKAGES))
def test_the_grant_check_catches(breakage: str) -> None:
    configs = every_config()
    GRANT_BREAKAGES[breakage](configs)
    assert grant_problems(configs)


def test_the_key_check_catches_a_key() -> None:
    configs = every_config()
    configs[0].resources[("google_service_account_key", "reader")] = {}
    assert key_problems(configs, [])
    assert key_problems([], ['resource "google_service_account_key" "k" {}'])


PROVIDER_BREAKAGES: dict[str, Callable[[Config], object]] = {
    "any audience of the issuer": lambda c: c.resource(
        "google_iam_workload_identity_pool_provider", "eks"
    )["oidc"][0].pop("allowed_audiences"),
    "no attribute condition": lambda c: c.resource(
        "google_iam_workload_identity_pool_provider", "eks"
    ).pop("attribute_condition"),
    "the AWS provider type": lambda c: c.resource(
        "google_iam_workload_identity_pool_provider", "eks"
    ).update(aws=[{"account_id": "111122223333"}]),
    "the STS audience": lambda c: c.variables["token_audience"].update(default="sts.amazonaws.com"),
}


@pytest.mark.parametrize("breakage", sorted(PROVIDER_BREAKAGES))
def test_the_provider_check_catches(reader: Config, breakage: str) -> None:
    PROVIDER_BREAKAGES[breakage](reader)
    assert provider_problems(reader)


def test_the_subject_check_catches_a_third_service_account(reader: Config) -> None:
    reader.variables["kubernetes_service_accounts"]["default"].append("airflow")
    assert subject_problems(reader)
