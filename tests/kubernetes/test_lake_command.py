"""The lake's commands in the cluster: the suspended CronJob that Jobs for verify, rollback and gc
are made from, and the deploy guide's procedure, rendered with kubectl offline (``create job
--from`` needs a cluster; its Job is the CronJob's jobTemplate, made here the same way) and
validated: the Job runs a command the CLI takes, as the task pods' service account, with their
settings, under an egress policy of its own."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from typing import Any

import kubernetes_validate
import pytest
import yaml

from processing.app.cli import parser
from tests.kubernetes.test_manifests import K8S_VERSION, KUSTOMIZE, OVERLAYS, _named, documents

GUIDE = KUSTOMIZE.parent / "README.md"


def _job_from_cronjob(overlay: str, name: str) -> dict[str, Any]:
    """What ``kubectl create job NAME --from=cronjob/...`` makes of the template."""
    cronjob = _named(overlay, "CronJob", "events-lake-lake-command")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": cronjob["metadata"]["namespace"]},
        "spec": cronjob["spec"]["jobTemplate"]["spec"],
    }


def _documented_patches() -> list[str]:
    """The JSON patches the guide pipes the Job through (``kubectl patch --local ... -p '...'``)."""
    text = GUIDE.read_text().replace("\\\n", " ")
    return [
        shlex.split(m)[-1]
        for m in re.findall(r"kubectl patch --local -f - [^|\n]*?-p '[^']*'", text)
    ]


def _args(job: dict[str, Any]) -> list[str]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container["args"]


def _cli_accepts(args: list[str]) -> None:
    assert args[:3] == ["python", "-m", "processing"], args
    parser.build().parse_args(args[3:])  # exits (fails the test) on a flag the CLI lacks


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_template_never_runs_by_itself_and_runs_as_the_task_pods(overlay: str) -> None:
    cronjob = _named(overlay, "CronJob", "events-lake-lake-command")
    assert cronjob["spec"]["suspend"] is True
    job = _job_from_cronjob(overlay, "lake-verify-1")
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    pod = job["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == "events-lake-task"  # the lake's S3 role
    label = pod["metadata"]["labels"]["app.kubernetes.io/name"]
    (policy,) = [  # its own egress: HTTPS (S3) only, not the Airflow API the task pods call
        d
        for d in documents(overlay)
        if d["kind"] == "NetworkPolicy"
        and d["spec"]["podSelector"].get("matchLabels") == {"app.kubernetes.io/name": label}
    ]
    assert policy["spec"]["egress"] == [{"ports": [{"protocol": "TCP", "port": 443}]}]
    refs = {s["configMapRef"]["name"] for s in pod["spec"]["containers"][0]["envFrom"]}
    assert refs == {"events-lake-settings"}
    assert job["spec"]["backoffLimit"] == 0  # an exit code is a person's to read
    assert _args(job)[3:] == ["verify", "--all"]  # the default: read-only
    _cli_accepts(_args(job))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_guides_rollback_and_gc_jobs_render_validate_and_parse(overlay: str) -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed (kubectl patch --local)"
    patches = _documented_patches()
    assert patches, "the deploy guide shows no kubectl patch of the Job"
    commands = set()
    for patch in patches:
        job = _job_from_cronjob(overlay, "lake-rollback-1")
        done = subprocess.run(
            [kubectl, "patch", "--local", "-f", "-", "--type", "json", "-o", "yaml", "-p", patch],
            input=yaml.safe_dump(job), capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        patched = yaml.safe_load(done.stdout)
        kubernetes_validate.validate(patched, K8S_VERSION, strict=True)
        _cli_accepts(_args(patched))
        commands.add(_args(patched)[3])
        assert patched["spec"]["template"] == {  # only the arguments changed
            **job["spec"]["template"],
            "spec": {**job["spec"]["template"]["spec"], "containers": [
                {**job["spec"]["template"]["spec"]["containers"][0], "args": _args(patched)}
            ]},
        }  # fmt: skip
    assert "rollback" in commands
    gc = re.search(r'`"value": (\[[^`]*\])`', GUIDE.read_text())
    assert gc and yaml.safe_load(gc[1])[3:] == ["gc"]
    _cli_accepts(yaml.safe_load(gc[1]))
