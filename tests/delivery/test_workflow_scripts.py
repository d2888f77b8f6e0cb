"""The workflows' own scripts, run here as the runner runs them (bash, the step's shell options),
with a stand-in for what is not here (`docker`, `kubectl`): the scanned tarball's id recorded and
checked, the digest taken from the push and refused unless the registry's manifest names the
scanned image, the example Terraform outputs refused before a deployment, and a late release not
applied over a newer one."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.delivery.workflow_files import ROOT, step, workflow

pytestmark = pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("jq")), reason="the scripts need bash and jq"
)

DIGEST = "sha256:" + hashlib.sha256(b"the pushed manifest").hexdigest()
REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
REPOSITORY = f"{REGISTRY}/events-lake"
TAG = "0123456789abcdef0123456789abcdef01234567-1234567890-1"

FAKE_DOCKER = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
case "$1 $2" in
  "load --input" | "tag "*) ;;
  "push "*) printf '%s' "$FAKE_PUSH_OUTPUT"; exit "${FAKE_PUSH_EXIT:-0}" ;;
  "image inspect") echo "$FAKE_REPO_DIGESTS" ;;
  "buildx imagetools") printf '%s' "$FAKE_MANIFEST" ;;
  *) echo "fake docker: unexpected $*" >&2; exit 99 ;;
esac
"""
FAKE_KUBECTL = """#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
printf '%s' "$FAKE_DEPLOYMENTS"
"""


class Runner:
    """A step's `run:` in a fresh RUNNER_TEMP, with the files GitHub gives it."""

    def __init__(self, home: Path, shell_options: str = "-e") -> None:
        """home: a new directory for this runner; shell_options: the job's shell's (GitHub runs
        `bash -e` by default, `bash -eo pipefail` for `shell: bash`)."""
        self.temp = home / "runner-temp"
        self.bin = home / "bin"
        self.log = home / "calls.log"
        self.outputs = home / "github-output"
        self.summary = home / "step-summary"
        self.shell_options = shell_options
        for path in (self.temp, self.bin):
            path.mkdir(parents=True)
        python = f'#!/usr/bin/env bash\nexec "{sys.executable}" "$@"\n'  # this .venv's
        for name, text in (("docker", FAKE_DOCKER), ("kubectl", FAKE_KUBECTL), ("python", python)):
            (self.bin / name).write_text(text)
            (self.bin / name).chmod(0o755)

    def run(
        self, script: str, env: dict[str, str], cwd: Path = ROOT
    ) -> subprocess.CompletedProcess[str]:
        for path in (self.outputs, self.summary, self.log):
            path.write_text("")
        (self.temp / "step.sh").write_text(script)
        full = {
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(self.temp),
            "RUNNER_TEMP": str(self.temp),
            "GITHUB_OUTPUT": str(self.outputs),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "FAKE_LOG": str(self.log),
            **env,
        }
        shell = ["bash", "--noprofile", "--norc", *self.shell_options.split()]
        return subprocess.run(
            [*shell, str(self.temp / "step.sh")],
            cwd=cwd, env=full, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    def output(self) -> dict[str, str]:
        lines = self.outputs.read_text().splitlines()
        return dict(line.split("=", 1) for line in lines)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()


def _jobs() -> dict[str, Any]:
    return dict(workflow("deliver.yml")["jobs"])


def _image_tarball(path: Path, config: bytes) -> str:
    """A docker tarball as buildx's docker exporter writes it (manifest.json and an OCI layout);
    returns the image id, the sha256 of its config."""
    image_id = hashlib.sha256(config).hexdigest()
    files = {
        f"blobs/sha256/{image_id}": config,
        "manifest.json": json.dumps(
            [{"Config": f"blobs/sha256/{image_id}", "RepoTags": ["events-lake:scanned"]}]
        ).encode(),
    }
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return f"sha256:{image_id}"


def test_the_push_job_loads_only_the_tarball_the_build_job_scanned(tmp_path: Path) -> None:
    jobs = _jobs()
    build = Runner(tmp_path / "build")
    image_id = _image_tarball(build.temp / "image.tar", b'{"architecture": "amd64"}')
    env = {"GITHUB_SHA": "0" * 40, "GITHUB_RUN_ID": "7", "GITHUB_RUN_ATTEMPT": "1"}
    done = build.run(step(jobs["build"], name="Record the scanned image")["run"], env)
    assert done.returncode == 0, done.stderr
    recorded = build.output()
    assert recorded["image-id"] == image_id
    assert recorded["artifact"] == f"image-{'0' * 40}-7-1"
    load = step(jobs["push"], name="Load the scanned tarball")["run"]
    push = Runner(tmp_path / "push", "-eo pipefail")  # the push job's shell: bash
    shutil.copy2(build.temp / "image.tar", push.temp)  # the artifact, downloaded
    done = push.run(load, {"SCANNED_SHA256": recorded["tarball-sha256"]})
    assert done.returncode == 0, done.stderr
    assert push.calls() == [f"load --input {push.temp}/image.tar"]
    with (push.temp / "image.tar").open("ab") as tarball:  # not the bytes that were scanned
        tarball.write(b"\0" * 512)
    done = push.run(load, {"SCANNED_SHA256": recorded["tarball-sha256"]})
    assert done.returncode == 1 and "not the tarball the build job scanned" in done.stdout
    assert push.calls() == []


def _manifest(config_digest: str) -> str:
    return json.dumps({"schemaVersion": 2, "config": {"digest": config_digest}, "layers": []})


IMAGE_ID = "sha256:" + hashlib.sha256(b"the scanned config").hexdigest()
PUSHED = f"{TAG}: digest: {DIGEST} size: 1234\n"
SHORT = f"{TAG}: digest: {DIGEST[:-1]} size: 1234\n"


@pytest.mark.parametrize(
    ("fakes", "image"),
    [
        pytest.param({"FAKE_PUSH_OUTPUT": f"abc: Pushed\n{PUSHED}"}, True, id="from-push"),
        pytest.param(
            {"FAKE_REPO_DIGESTS": json.dumps([f"other.io/x@{'1' * 64}", f"{REPOSITORY}@{DIGEST}"])},
            True,
            id="from-repodigests",
        ),
        pytest.param({"FAKE_REPO_DIGESTS": "null"}, False, id="no-digest"),
        pytest.param({"FAKE_PUSH_OUTPUT": SHORT}, False, id="short-digest"),
        pytest.param(
            {"FAKE_PUSH_OUTPUT": PUSHED, "FAKE_MANIFEST": _manifest("sha256:" + "2" * 64)},
            False,
            id="another-image",
        ),
        pytest.param({"FAKE_PUSH_OUTPUT": PUSHED, "FAKE_PUSH_EXIT": "1"}, False, id="push-fails"),
    ],
)  # fmt: skip
def test_the_pushed_digest_is_the_output_only_if_it_is_the_scanned_image(
    tmp_path: Path, fakes: dict[str, str], image: bool
) -> None:
    push = Runner(tmp_path / "push", "-eo pipefail")
    env = {
        "REGISTRY": REGISTRY,
        "ECR_REPOSITORY": "events-lake",
        "TAG": TAG,
        "IMAGE_ID": IMAGE_ID,
        "FAKE_PUSH_OUTPUT": "",
        "FAKE_REPO_DIGESTS": "[]",
        "FAKE_MANIFEST": _manifest(IMAGE_ID),
        **fakes,
    }
    script = next(s for s in _jobs()["push"]["steps"] if "docker push" in s.get("run", ""))["run"]
    done = push.run(script, env)
    if not image:
        assert done.returncode != 0 and "image" not in push.output(), done.stdout
        return
    assert done.returncode == 0, done.stdout + done.stderr
    assert push.output() == {"image": f"{REPOSITORY}:{TAG}@{DIGEST}"}
    calls = push.calls()
    assert calls[:2] == [f"tag events-lake:scanned {REPOSITORY}:{TAG}", f"push {REPOSITORY}:{TAG}"]
    assert f"buildx imagetools inspect --raw {REPOSITORY}@{DIGEST}" in calls


# --- deploy.yml ----------------------------------------------------------------------------------


def _deploy_job() -> dict[str, Any]:
    (job,) = workflow("deploy.yml")["jobs"].values()
    return dict(job)


def _with_values(outputs: dict[str, Any], real: bool) -> dict[str, Any]:
    """The outputs with real-looking values, or with the examples' AWS account."""
    text = json.dumps(outputs)
    if real:
        for example, other in (
            ("111122223333", "444455556666"),
            ("123456789012", "210987654321"),
            ("s3://example-", "s3://acme-"),
        ):
            text = text.replace(example, other)
    else:
        text = re.sub(r"(arn:aws:iam::)\d{12}:", r"\g<1>111122223333:", text)
    return dict(json.loads(text))


def test_the_deployment_refuses_the_example_terraform_outputs(tmp_path: Path) -> None:
    """The step's own command, on a copy of the overlays: 0 for a component made from real
    outputs, 2 for the examples' values, not 0 for a component its outputs.json no longer makes."""
    shutil.copytree(ROOT / "deploy" / "kubernetes", tmp_path / "deploy" / "kubernetes")
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "terraform_overlay.py", tmp_path / "scripts")
    overlay = "deploy/kubernetes/overlays/dev"
    committed = json.loads((tmp_path / overlay / "terraform" / "outputs.json").read_text())
    runner = Runner(tmp_path / "runner")
    refuse = step(_deploy_job(), name="Refuse the example Terraform outputs")["run"]

    def deploy_check(real: bool) -> subprocess.CompletedProcess[str]:
        given = tmp_path / "outputs.json"
        given.write_text(json.dumps(_with_values(committed, real)))
        made = subprocess.run(
            [sys.executable, "scripts/terraform_overlay.py", str(given), overlay],
            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        return runner.run(refuse, {"OVERLAY": overlay}, cwd=tmp_path)

    done = deploy_check(real=True)
    assert done.returncode == 0, done.stderr
    done = deploy_check(real=False)
    assert done.returncode == 2 and "error:" in done.stderr, done.stderr
    deploy_check(real=True)
    stale = tmp_path / overlay / "terraform" / "outputs.json"
    stale.write_text(stale.read_text().replace("444455556666", "777788889999"))
    assert runner.run(refuse, {"OVERLAY": overlay}, cwd=tmp_path).returncode != 0


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def _deployments(image: str | None) -> str:
    containers = [{"name": "dag-processor", "image": image}] if image else []
    items = [{"spec": {"template": {"spec": {"containers": containers}}}}] if image else []
    return json.dumps({"items": items})


def test_a_late_release_applies_nothing_over_a_newer_one(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "older")
    older = _git(repo, "rev-parse", "HEAD")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "newer")
    newer = _git(repo, "rev-parse", "HEAD")
    script = step(_deploy_job(), name="Keep releases in order")["run"]
    runner = Runner(tmp_path / "runner")

    def held_back(ours: str, deployed: str | None) -> bool:
        env = {
            "GITHUB_SHA": ours,
            "NAMESPACE": "events-lake-dev",
            "ENVIRONMENT": "dev",
            "IMAGE": f"{REPOSITORY}:{ours}-1-1@{DIGEST}",
            "FAKE_DEPLOYMENTS": _deployments(deployed),
        }
        done = runner.run(script, env, cwd=repo)
        assert done.returncode == 0, done.stderr
        return runner.output() == {"newer": "true"}

    def release(commit: str) -> str:
        return f"{REPOSITORY}:{commit}-99-1@sha256:{'3' * 64}"

    assert held_back(older, release(newer))  # the late one: nothing applied
    assert not held_back(newer, release(older))  # the next release
    assert not held_back(older, release(older))  # the same one again (a re-run)
    assert not held_back(older, None)  # nothing deployed yet
    assert not held_back(older, f"{REPOSITORY}@sha256:{'3' * 64}")  # no commit in the tag
    assert not held_back(older, release("f" * 40))  # a commit not in this history
