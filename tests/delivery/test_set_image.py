"""scripts/set_image.py on copies of deploy/kubernetes: afterwards kubectl kustomize renders every
workload of ours, the executor's task pods and the Dask cluster with exactly the image it was
given, by digest (as Airflow's own executor builds it from repository and tag); everything else
in the overlay, comments included, stays; a malformed reference is refused and nothing changes."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "set_image.py"
OVERLAYS = ["dev", "prod"]
DIGEST = "sha256:" + hashlib.sha256(b"events-lake").hexdigest()
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/events-lake"
IMAGES = {  # as deliver.yml makes it (commit-run-attempt tag), and without a tag
    "tag": f"{ECR}:0123456789abcdef0123456789abcdef01234567-1234567890-1@{DIGEST}",
    "digest-only": f"localhost:5000/team/events-lake@{DIGEST}",
}
KEYS = (
    "AIRFLOW__KUBERNETES_EXECUTOR__WORKER_CONTAINER_REPOSITORY",
    "AIRFLOW__KUBERNETES_EXECUTOR__WORKER_CONTAINER_TAG",
    "PROCESSING_CLUSTER_IMAGE",
)
OURS = {"airflow", "events-lake-lake-command"}  # app.kubernetes.io/name of our workloads


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("set_image", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["set_image"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


set_image = _module()


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def render(overlay: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render the manifests (kubectl kustomize)"
    done = subprocess.run(
        [kubectl, "kustomize", str(overlay)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def pod_template(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]


def containers(docs: list[dict[str, Any]]) -> dict[str, str]:
    """{kind/name/container: image} of every workload's containers."""
    found = {}
    for d in docs:
        if d["kind"] in {"Deployment", "StatefulSet", "Job", "CronJob"}:
            pod = pod_template(d)["spec"]
            for c in pod.get("initContainers", []) + pod["containers"]:
                found[f"{d['kind']}/{d['metadata']['name']}/{c['name']}"] = c["image"]
    return found


def ours(docs: list[dict[str, Any]]) -> set[str]:
    names = set()
    for d in docs:
        workload = d["kind"] in {"Deployment", "StatefulSet", "Job", "CronJob"}
        if workload and pod_template(d)["metadata"]["labels"].get("app.kubernetes.io/name") in OURS:
            names.add(f"{d['kind']}/{d['metadata']['name']}/")
    return names


def configmap(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    (found,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name]
    return found["data"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of deploy/kubernetes (the overlays refer to ../../base and ../../components)."""
    shutil.copytree(ROOT / "deploy" / "kubernetes", tmp_path / "kubernetes")
    return tmp_path / "kubernetes"


@pytest.mark.parametrize("form", IMAGES)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_the_executor_and_dask_get_exactly_that_image(
    overlay: str, form: str, tree: Path
) -> None:
    image = IMAGES[form]
    done = run(tree / "overlays" / overlay, image)
    assert done.returncode == 0, done.stderr
    docs = render(tree / "overlays" / overlay)
    images = containers(docs)
    mine = {k: v for k, v in images.items() if any(k.startswith(n) for n in ours(docs))}
    assert {k.split("/")[1] for k in mine} >= {
        "airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
        "airflow-migrate", "events-lake-lake-command",
    }  # fmt: skip
    assert set(mine.values()) == {image}
    assert not {v for k, v in images.items() if k not in mine} & {image}  # third-party kept
    config = configmap(docs, "airflow-config")
    executor = f"{config[KEYS[0]]}:{config[KEYS[1]]}"
    assert executor == image == configmap(docs, "events-lake-settings")[KEYS[2]]
    checked = run("--check", tree / "overlays" / overlay, image)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize("form", IMAGES)
def test_airflows_executor_builds_that_image_from_the_rendered_settings(
    form: str, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cncf.kubernetes provider itself, not a copy of its rule, joins repository and tag."""
    from airflow.providers.cncf.kubernetes.kube_config import KubeConfig

    image = IMAGES[form]
    assert run(tree / "overlays" / "prod", image).returncode == 0
    config = configmap(render(tree / "overlays" / "prod"), "airflow-config")
    for key in KEYS[:2]:
        monkeypatch.setenv(key, config[key])
    assert KubeConfig().kube_image == image


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nothing_else_changes_and_the_comments_stay(overlay: str, tree: Path) -> None:
    path = tree / "overlays" / overlay / "kustomization.yaml"
    before_text, before = path.read_text(), render(path.parent)
    assert run(path.parent, IMAGES["tag"]).returncode == 0
    after_text, after = path.read_text(), render(path.parent)

    def without_the_image(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        names = ours(docs)
        for d in docs:
            if any(f"{d['kind']}/{d['metadata']['name']}/".startswith(n) for n in names):
                pod = pod_template(d)["spec"]
                for c in pod.get("initContainers", []) + pod["containers"]:
                    c["image"] = "IMAGE"
            if d["kind"] == "ConfigMap":
                for key in KEYS:
                    d.get("data", {}).pop(key, None)
        return docs

    assert without_the_image(after) == without_the_image(before)
    old, new = before_text.splitlines(), after_text.splitlines()
    assert [x for x in old if x.lstrip().startswith("#")] == [
        x for x in new if x.lstrip().startswith("#")
    ]
    # the only lines gone are the old image's: its images: entry and the values of its keys
    gone = [x for x in old if x not in new]
    after_our_path = [i for i in range(1, len(old)) if any(k in old[i - 1] for k in KEYS)]
    old_values = {old[i] for i in after_our_path if "value:" in old[i]}
    assert all(re.match(r"\s*(newName|newTag|digest):", x) or x in old_values for x in gone), gone


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_second_image_replaces_the_first_and_a_rerun_changes_nothing(overlay: str) -> None:
    text = (ROOT / "deploy/kubernetes/overlays" / overlay / "kustomization.yaml").read_text()
    first, second = (set_image.parse_image(IMAGES[f]) for f in ("tag", "digest-only"))
    once, _ = set_image.set_image(text, first)
    assert set_image.set_image(once, first)[0] == once
    assert set_image.set_image(once, second)[0] == set_image.set_image(text, second)[0]
    assert "newTag" not in set_image.set_image(once, second)[0]  # no tag: only the digest


def test_an_overlay_without_images_or_patches_gets_them(tree: Path) -> None:
    bare = tree / "overlays" / "bare"
    bare.mkdir()
    (bare / "kustomization.yaml").write_text(
        "# a new environment\nnamespace: events-lake-bare\nresources:\n  - ../../base\n"
    )
    assert run(bare, IMAGES["tag"]).returncode == 0
    assert run("--check", bare, IMAGES["tag"]).returncode == 0
    assert (bare / "kustomization.yaml").read_text().startswith("# a new environment\n")


BAD = {
    f"{ECR}:0.1.0": "no digest",
    f"{ECR}": "no digest",
    "": "no digest",
    f"{ECR}@sha256:abc123": "64 lowercase hex",
    f"{ECR}@{DIGEST.upper()}": "64 lowercase hex",
    f"{ECR}@md5:{'0' * 32}": "sha256",
    f"{ECR}@{DIGEST} ": "64 lowercase hex",
    f"events-lake@{DIGEST}": "no registry",
    f"team/events-lake@{DIGEST}": "no registry",
    f"https://{ECR}@{DIGEST}": "not a registry",
    f"registry.example.com/Events-Lake@{DIGEST}": "not a repository name",
    f"registry.example.com//events-lake@{DIGEST}": "not a repository name",
    f"{ECR}:-rc1@{DIGEST}": "the tag",
    f"{ECR}:a b@{DIGEST}": "the tag",
}


@pytest.mark.parametrize("image", BAD)
def test_a_malformed_reference_is_refused_and_nothing_changes(image: str, tree: Path) -> None:
    path = tree / "overlays" / "dev" / "kustomization.yaml"
    before = path.read_text()
    done = run(path.parent, image)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and BAD[image] in done.stderr, done.stderr
    assert "REGISTRY/NAME[:TAG]@sha256:" in done.stderr  # the form to use
    assert path.read_text() == before and not done.stdout


def test_a_missing_overlay_is_named(tmp_path: Path) -> None:
    done = run(tmp_path / "overlays" / "staging", IMAGES["tag"])
    assert done.returncode == 2 and "kustomization.yaml" in done.stderr, done.stderr


def test_check_names_what_runs_another_image(tree: Path) -> None:
    done = run("--check", tree / "overlays" / "prod", IMAGES["tag"])
    assert done.returncode == 1
    assert "Deployment/airflow-scheduler scheduler: ghcr.io/example/events-lake" in done.stderr
    assert "the executor's task pods" in done.stderr and "the Dask cluster" in done.stderr


def test_a_patch_it_cannot_edit_safely_is_left_as_it_was(tree: Path) -> None:
    path = tree / "overlays" / "prod" / "kustomization.yaml"
    text = path.read_text() + (
        "  - target: {kind: ConfigMap, name: events-lake-settings}\n"
        "    patch: |-\n"
        "      apiVersion: v1\n"
        "      kind: ConfigMap\n"
        "      metadata: {name: events-lake-settings}\n"
        "      data: {PROCESSING_CLUSTER_IMAGE: x}\n"
    )
    path.write_text(text)
    done = run(path.parent, IMAGES["tag"])
    assert done.returncode == 1 and "JSON6902" in done.stderr, done.stderr
    assert path.read_text() == text


@pytest.mark.parametrize(
    ("image", "repository", "tag"),
    [
        (f"{ECR}:1.2.0@{DIGEST}", ECR, f"1.2.0@{DIGEST}"),
        (f"{ECR}@{DIGEST}", f"{ECR}@sha256", DIGEST.removeprefix("sha256:")),
        (f"localhost:5000/a/b:x@{DIGEST}", "localhost:5000/a/b", f"x@{DIGEST}"),
        (f"localhost:5000/a/b@{DIGEST}", "localhost:5000/a/b@sha256", DIGEST[7:]),
    ],
)
def test_the_executors_repository_and_tag_join_into_the_image(
    image: str, repository: str, tag: str
) -> None:
    ref = set_image.parse_image(image)
    assert ref.executor == (repository, tag)
    assert f"{repository}:{tag}" == str(ref) == image
