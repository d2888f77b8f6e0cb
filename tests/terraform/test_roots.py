"""deploy/terraform's roots (envs/dev, envs/prod), read offline: every .tf file parses, every
provider is pinned to one exact version, the state backend is a commented partial S3 block,
module calls pass every required input and nothing unknown, the namespace is the overlay's, and
each root declares exactly the outputs scripts/terraform_overlay.py reads (terraform output -json).
`terraform validate` is not run: there is no Terraform binary offline (deploy/terraform/README.md).
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest
import yaml

from tests.terraform.configuration import (
    ENVIRONMENTS,
    ENVS,
    MODULES,
    ROOT,
    Config,
    environment,
    load,
    parse,
    tf_files,
)

#: What the kustomize overlay generator reads from `terraform output -json` of a root: its own
#: list, so the roots and the generator cannot drift apart.
OUTPUTS = set(
    runpy.run_path(str(ROOT / "scripts" / "terraform_overlay.py"), run_name="outputs")["OUTPUTS"]
)
NAMESPACES = {"dev": "events-lake-dev", "prod": "events-lake"}
#: provider -> (source, major version the roots pin)
PROVIDERS = {"aws": ("hashicorp/aws", 6), "google": ("hashicorp/google", 7)}
_EXACT = re.compile(r"^= ?(\d+)\.(\d+)\.(\d+)$")


def required_providers(config: Config) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for block in config.terraform:
        for entry in block.get("required_providers", []):
            found.update(entry)
    return found


# --- the checks -----------------------------------------------------------------------------------
def pin_problems(config: Config) -> list[str]:
    """Every provider any module needs is pinned by the root to one exact version."""
    problems = []
    pinned = required_providers(config)
    needed = {name for path in MODULES.iterdir() for name in required_providers(load(path))}
    if set(pinned) != needed or set(pinned) != set(PROVIDERS):
        problems.append(f"pinned {sorted(pinned)}, modules need {sorted(needed)}")
    for name, requirement in pinned.items():
        found = _EXACT.match(requirement.get("version", ""))
        source, major = PROVIDERS.get(name, ("?", -1))
        if requirement.get("source") != source:
            problems.append(f"{name}: source {requirement.get('source')}")
        if not found or int(found[1]) != major:
            problems.append(
                f"{name}: version {requirement.get('version')!r} is not '= {major}.x.y'"
            )
    if not any(block.get("required_version") for block in config.terraform):
        problems.append("no required_version")
    return problems


def output_problems(config: Config) -> list[str]:
    problems = []
    if set(config.outputs) != OUTPUTS:
        problems.append(
            f"outputs: missing {sorted(OUTPUTS - set(config.outputs))}, "
            f"unexpected {sorted(set(config.outputs) - OUTPUTS)}"
        )
    problems += [
        f"output {name} has no value"
        for name, body in config.outputs.items()
        if not body.get("value")
    ]
    return problems


def module_call_problems(config: Config) -> list[str]:
    """Each module call names an existing module, sets every input it requires, and no other."""
    problems = []
    for name, call in config.modules.items():
        directory = (config.directory / call["source"]).resolve()
        if not directory.is_dir() or directory.parent != MODULES:
            problems.append(f"module {name}: source {call['source']}")
            continue
        variables = load(directory).variables
        inputs = set(call) - {"source", "providers", "depends_on", "count", "for_each"}
        required = {v for v, body in variables.items() if "default" not in body}
        if inputs - set(variables):
            problems.append(f"module {name}: unknown inputs {sorted(inputs - set(variables))}")
        if required - inputs:
            problems.append(f"module {name}: required inputs missing {sorted(required - inputs)}")
    return problems


# --- the tests ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", tf_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_tf_file_parses(path: Path) -> None:
    parsed = parse(path.read_text())
    assert parsed, "an empty file"


def test_the_layout_is_two_modules_and_two_roots() -> None:
    assert sorted(p.name for p in MODULES.iterdir() if p.is_dir()) == [
        "bigquery-reader-gcp",
        "lake-aws",
    ]
    assert sorted(p.name for p in ENVS.iterdir() if p.is_dir()) == sorted(ENVIRONMENTS)
    for directory in MODULES.iterdir():
        for name in ("variables.tf", "outputs.tf", "versions.tf"):
            assert (directory / name).is_file(), directory / name
        (versions,) = load(directory).terraform
        assert set(versions) == {"required_providers"}, "a module's versions.tf: providers only"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_root_pins_every_provider_to_an_exact_version(env: str) -> None:
    assert pin_problems(environment(env)) == []


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_root_declares_the_outputs_the_overlay_generator_reads(env: str) -> None:
    assert output_problems(environment(env)) == []


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_module_calls_set_every_required_input(env: str) -> None:
    assert module_call_problems(environment(env)) == []


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_namespace_is_the_overlays_and_both_clouds_trust_it(env: str) -> None:
    root = environment(env)
    kustomization = ROOT / "deploy" / "kubernetes" / "overlays" / env / "kustomization.yaml"
    overlay = yaml.safe_load(kustomization.read_text())["namespace"]
    assert root.locals["kubernetes_namespace"] == NAMESPACES[env] == overlay
    assert root.outputs["kubernetes_namespace"]["value"] == "${local.kubernetes_namespace}"
    lake, reader = root.modules["lake"], root.modules["bigquery_reader"]
    assert lake["kubernetes_namespace"] == reader["kubernetes_namespace"]
    assert lake["kubernetes_namespace"] == "${local.kubernetes_namespace}"
    # the cluster's one issuer: IRSA's roles and Google's pool trust the same
    assert lake["oidc_issuer_url"] == reader["oidc_issuer_url"] == "${var.eks_oidc_issuer_url}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_state_is_in_s3_locked_and_encrypted_with_no_account_in_git(env: str) -> None:
    """A partial S3 backend: the key, encryption and S3's own lock file here; the bucket and its
    region from backend.hcl at init (kept out of git, .gitignore)."""
    (backends,) = [block["backend"] for block in environment(env).terraform if "backend" in block]
    assert backends == [
        {
            "s3": {
                "key": f"events-lake/{env}/terraform.tfstate",
                "encrypt": True,
                "use_lockfile": True,
            }
        }
    ]
    assert "backend.hcl" in (ROOT / "deploy" / "terraform" / ".gitignore").read_text().split()


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_example_tfvars_sets_every_required_variable_and_nothing_unknown(env: str) -> None:
    root = environment(env)
    example = parse((ENVS / env / "terraform.tfvars.example").read_text())
    required = {name for name, body in root.variables.items() if "default" not in body}
    assert required <= set(example), sorted(required - set(example))
    assert set(example) <= set(root.variables), sorted(set(example) - set(root.variables))


def test_prod_keeps_the_rollback_version_until_the_pipeline_replaces_it() -> None:
    prod, dev = environment("prod").variables, environment("dev").variables
    assert prod["previous_expiration_days"]["default"] is None
    assert prod["staging_expiration_days"]["default"] == 7
    assert (
        prod["airflow_logs_expiration_days"]["default"]
        >= dev["airflow_logs_expiration_days"]["default"]
    )


# --- and each check catches what it is for --------------------------------------------------------
def _provider(config: Config, name: str) -> dict[str, str]:
    return required_providers(config)[name]


ROOT_BREAKAGES = {
    "a range instead of a pin": (
        pin_problems,
        lambda c: _provider(c, "aws").update(version="~> 6.0"),
    ),
    "the wrong major": (pin_problems, lambda c: _provider(c, "google").update(version="= 6.49.0")),
    "a provider left unpinned": (
        pin_problems,
        lambda c: c.terraform[0]["required_providers"][0].pop("google"),
    ),
    "a renamed output": (
        output_problems,
        lambda c: c.outputs.update(kms_key=c.outputs.pop("kms_key_arn")),
    ),
    "an output lost": (output_problems, lambda c: c.outputs.pop("gcp_credential_configuration")),
    "a required input missing": (
        module_call_problems,
        lambda c: c.modules["lake"].pop("oidc_provider_arn"),
    ),
    "an input the module lacks": (
        module_call_problems,
        lambda c: c.modules["bigquery_reader"].update(dataset="x"),
    ),
}


@pytest.mark.parametrize("breakage", sorted(ROOT_BREAKAGES))
def test_the_root_checks_catch(breakage: str) -> None:
    check, breaking = ROOT_BREAKAGES[breakage]
    root = environment("prod")
    breaking(root)
    assert check(root)
