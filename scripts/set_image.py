# /// script
# requires-python = ">=3.11"
# dependencies = ["pyyaml>=6"]
# ///
"""Pin an overlay's image by digest, in the three places that name it.

    python scripts/set_image.py deploy/kubernetes/overlays/dev \\
        123456789012.dkr.ecr.eu-west-1.amazonaws.com/events-lake:3f2c1d0@sha256:<64 hex digits>
    python scripts/set_image.py --check deploy/kubernetes/overlays/dev IMAGE

One image runs everything (Dockerfile). The Airflow workloads get it from the overlay's `images:`
entry for `events-lake`; the task pods from the KubernetesExecutor, which names it
f"{worker_container_repository}:{worker_container_tag}" (the cncf.kubernetes provider's
kube_config.py; ConfigMap airflow-config); a run's Dask cluster from PROCESSING_CLUSTER_IMAGE
(ConfigMap events-lake-settings). This makes the three the same string:

    IMAGE                   images: entry                       executor repository : tag
    REG/NAME:TAG@sha256:H   newName REG/NAME, newTag TAG,       REG/NAME : TAG@sha256:H
                            digest sha256:H
    REG/NAME@sha256:H       newName REG/NAME, digest sha256:H   REG/NAME@sha256 : H

kustomize renders newTag with a digest as REG/NAME:TAG@sha256:H, a reference a runtime pulls by
its digest (the tag is for people).

kustomization.yaml is edited as text, so its comments and layout stay: only the lines of those
values change, and what the overlay lacks is added (an op in its JSON6902 patch of the
ConfigMap, or a patch: prod's overlay patches neither ConfigMap's image). --check edits nothing:
it renders the overlay (kubectl kustomize) and checks that every container of ours, the executor
and the Dask cluster use IMAGE.

Exit codes: 0 done; 2 a malformed IMAGE, or no overlay there (the message says what to fix);
1 an overlay this cannot edit safely (the file is left as it was), or --check found another image.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

PLACEHOLDER = "events-lake"  # the image name of the base's workloads (base/airflow/*.yaml)
EXECUTOR_CONFIG = "airflow-config"
REPOSITORY_KEY = "AIRFLOW__KUBERNETES_EXECUTOR__WORKER_CONTAINER_REPOSITORY"
TAG_KEY = "AIRFLOW__KUBERNETES_EXECUTOR__WORKER_CONTAINER_TAG"
SETTINGS = "events-lake-settings"
CLUSTER_IMAGE_KEY = "PROCESSING_CLUSTER_IMAGE"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
FORM = "REGISTRY/NAME[:TAG]@sha256:<64 hex digits>"


class SetImageError(Exception):
    """What to fix, and the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# --- the reference ---------------------------------------------------------------------------
# The grammar of github.com/distribution/reference, for names with a registry and a digest.
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REGISTRY = re.compile(rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?", re.ASCII)
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", re.ASCII)
_TAG = re.compile(r"\w[\w.-]{0,127}", re.ASCII)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}", re.ASCII)


@dataclasses.dataclass(frozen=True)
class ImageRef:
    repository: str  # REGISTRY/NAME
    tag: str | None
    digest: str  # sha256:...

    def __str__(self) -> str:
        return f"{self.repository}{':' + self.tag if self.tag else ''}@{self.digest}"

    @property
    def executor(self) -> tuple[str, str]:
        """(worker_container_repository, worker_container_tag): Airflow joins them with ':'."""
        if self.tag:
            return self.repository, f"{self.tag}@{self.digest}"
        algorithm, _, hex_digits = self.digest.partition(":")
        return f"{self.repository}@{algorithm}", hex_digits


def parse_image(text: str) -> ImageRef:
    def refuse(why: str) -> SetImageError:
        return SetImageError(f"malformed IMAGE {text!r}: {why} (expected {FORM})", code=2)

    name_tag, at, digest = text.rpartition("@")
    if not at:
        raise refuse("no digest: pin it by the digest its build printed")
    if not _DIGEST.fullmatch(digest):
        raise refuse(f"the digest {digest!r} is not sha256: and 64 lowercase hex digits")
    colon, slash = name_tag.rfind(":"), name_tag.rfind("/")
    repository, tag = name_tag, None
    if colon > slash:
        repository, tag = name_tag[:colon], name_tag[colon + 1 :]
    if tag is not None and not _TAG.fullmatch(tag):
        raise refuse(f"the tag {tag!r} is not 1-128 of A-Z a-z 0-9 _ . - (first not . or -)")
    registry, slash_found, path = repository.partition("/")
    if not slash_found or not ("." in registry or ":" in registry or registry == "localhost"):
        raise refuse(
            f"no registry in {repository!r}: name it first, e.g. "
            f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/{repository} (without one, a runtime "
            "pulls from Docker Hub)"
        )
    if not _REGISTRY.fullmatch(registry):
        raise refuse(f"{registry!r} is not a registry host[:port]")
    for part in path.split("/"):
        if not _PATH_COMPONENT.fullmatch(part):
            raise refuse(
                f"{part!r} is not a repository name: lowercase letters and digits, joined by "
                "one of . _ __ -"
            )
    return ImageRef(repository, tag, digest)


# --- kustomization.yaml as lines -------------------------------------------------------------
# Block lists of mappings, edited a line at a time; each edit is followed by a fresh look at the
# file (it is small), so no index outlives a change.


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _blank_or_comment(line: str) -> bool:
    return not line.strip() or line.lstrip().startswith("#")


def _top_block(lines: list[str], key: str) -> tuple[int, int] | None:
    """(line of `key:`, end) of a top-level block list; the end leaves out the blank lines and
    comments just before the next key (they are about it)."""
    start = next((i for i, line in enumerate(lines) if re.match(rf"{key}\s*:", line)), None)
    if start is None:
        return None
    if not re.fullmatch(rf"{key}\s*:\s*(#.*)?", lines[start]):
        raise SetImageError(f"`{lines[start]}`: write {key} as a block list of `- ` items")
    end = next(
        (j for j in range(start + 1, len(lines)) if lines[j][:1] not in ("", " ", "#", "-")),
        len(lines),
    )
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
        end -= 1
    return start, end


def _items(lines: list[str], start: int, end: int) -> list[tuple[int, int]]:
    """(first line, end) of each `- ` item of the block list in lines[start:end]."""
    first = next((j for j in range(start, end) if not _blank_or_comment(lines[j])), None)
    if first is None:
        return []
    dash = re.match(r"( *)-(?: |$)", lines[first])
    if not dash:
        raise SetImageError(f"`{lines[first]}`: expected a `- ` item")
    item = re.compile(rf"{dash.group(1)}-(?: |$)")
    starts = [j for j in range(first, end) if item.match(lines[j])]
    return list(zip(starts, [*starts[1:], end], strict=True))


def _key_column(line: str) -> int:
    """Where the keys of the item that starts on this line begin (after its `- `)."""
    dash = re.match(r" *- +", line)
    if not dash:
        raise SetImageError(f"`{line}`: expected an item of keys (`- key: value`)")
    return dash.end()


def _content_end(lines: list[str], first: int, end: int, column: int) -> int:
    """The end of an item without the blank lines and comments after it (about what follows)."""
    while end > first + 1 and (
        not lines[end - 1].strip()
        or (lines[end - 1].lstrip().startswith("#") and _indent(lines[end - 1]) <= column)
    ):
        end -= 1
    return end


def _find_key(lines: list[str], first: int, end: int, key: str) -> tuple[int, int] | None:
    """(line, end) of `key: ...` in the item, with the value's more indented lines."""
    column = _key_column(lines[first])
    for j in range(first, end):
        if (j == first or _indent(lines[j]) == column) and re.match(
            rf"{re.escape(key)}\s*:(?: |$)", lines[j][column:]
        ):
            k = j + 1
            while k < end and (not lines[k].strip() or _indent(lines[k]) > column):
                k += 1
            while k > j + 1 and not lines[k - 1].strip():
                k -= 1
            return j, k
    return None


def _scalar(value: str) -> str:
    """value as YAML: plain when PyYAML reads it back as that string and it holds a / @ or : (so
    that no YAML 1.2 reader, kustomize's, takes it for a number either); else double-quoted."""
    try:
        plain = yaml.safe_load(f"k: {value}") == {"k": value} and any(c in value for c in "/@:")
    except yaml.YAMLError:
        plain = False
    return value if plain else json.dumps(value)


def _set_key(lines: list[str], first: int, end: int, key: str, value: str | None) -> None:
    """Set (or with None, remove) `key` in the item of lines[first:end]."""
    column = _key_column(lines[first])
    found = _find_key(lines, first, end, key)
    if found is None:
        if value is not None:
            at = _content_end(lines, first, end, column)
            lines.insert(at, f"{' ' * column}{key}: {_scalar(value)}")
        return
    j, k = found
    if value is not None:
        lines[j:k] = [f"{lines[j][:column]}{key}: {_scalar(value)}"]
    elif j == first:
        raise SetImageError(f"`{lines[j]}`: move {key} after the item's first key")
    else:
        del lines[j:k]


def _load(lines: list[str]) -> dict[str, Any]:
    doc = yaml.safe_load("\n".join(lines))
    if not isinstance(doc, dict):
        raise SetImageError("kustomization.yaml is not a mapping")
    return doc


def _block_items(lines: list[str], key: str, parsed: list[Any]) -> list[tuple[int, int]]:
    block = _top_block(lines, key)
    items = _items(lines, block[0] + 1, block[1]) if block else []
    if len(items) != len(parsed):
        raise SetImageError(f"{key}: found {len(items)} `- ` items for {len(parsed)} entries")
    return items


def _append_item(lines: list[str], key: str, item: list[str]) -> None:
    """Add an item (lines relative to its `- `) at the end of the block list `key`."""
    block = _top_block(lines, key)
    if block is None:
        lines.extend([f"{key}:", *(f"  {line}" for line in item)])
        return
    items = _items(lines, block[0] + 1, block[1])
    indent = " " * _indent(lines[items[0][0]]) if items else "  "
    at = _content_end(lines, items[-1][0], block[1], len(indent) + 2) if items else block[1]
    lines[at:at] = [f"{indent}{line}" for line in item]


def _set_image_entry(lines: list[str], ref: ImageRef) -> None:
    for key, value in (("newName", ref.repository), ("newTag", ref.tag), ("digest", ref.digest)):
        images = _load(lines).get("images") or []
        items = _block_items(lines, "images", images)
        entries = [i for i, e in enumerate(images) if e.get("name") == PLACEHOLDER]
        if len(entries) > 1:
            raise SetImageError(f"images: names {PLACEHOLDER} {len(entries)} times; keep one entry")
        if not entries:
            tag = [f"  newTag: {_scalar(ref.tag)}"] if ref.tag else []
            new = [f"- name: {PLACEHOLDER}", f"  newName: {_scalar(ref.repository)}", *tag]
            _append_item(lines, "images", [*new, f"  digest: {_scalar(ref.digest)}"])
            return
        _set_key(lines, *items[entries[0]], key, value)


def _targets(patch: dict[str, Any], configmap: str) -> bool:
    target = patch.get("target") or {}
    return target.get("kind") == "ConfigMap" and target.get("name") == configmap


def _ops(patch: dict[str, Any], configmap: str) -> list[dict[str, Any]] | None:
    """The JSON6902 ops of an inline patch (None for a patch in a file)."""
    if not isinstance(patch.get("patch"), str):
        return None
    ops = yaml.safe_load(patch["patch"])
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise SetImageError(
            f"the patch of ConfigMap/{configmap} is not a list of JSON6902 ops: write it as "
            "`- op: replace` / `path: /data/KEY` / `value: ...` items, as dev's are"
        )
    return ops


def _literal(lines: list[str], first: int, end: int, configmap: str) -> tuple[int, int]:
    """(first line, end) of the item's `patch: |` block."""
    found = _find_key(lines, first, end, "patch")
    assert found is not None  # an inline patch
    j, k = found
    if not re.fullmatch(r"patch\s*:\s*\|[-+]?\s*(#.*)?", lines[j][_key_column(lines[first]) :]):
        raise SetImageError(f"write the patch of ConfigMap/{configmap} as a block (`patch: |-`)")
    return j + 1, k


def _set_configmap_value(lines: list[str], configmap: str, key: str, value: str) -> str:
    """Set /data/key of the ConfigMap in the overlay's patches; says how."""
    patches = _load(lines).get("patches") or []
    items = _block_items(lines, "patches", patches)
    inline = [
        (i, ops)
        for i, p in enumerate(patches)
        if _targets(p, configmap) and (ops := _ops(p, configmap)) is not None
    ]
    changed = 0
    for i, ops in reversed(inline):  # bottom up: an edit moves only the lines below it
        item_first, item_end = items[i]
        body_start, body_end = _literal(lines, item_first, item_end, configmap)
        op_items = _items(lines, body_start, body_end)
        if len(op_items) != len(ops):
            raise SetImageError(
                f"the patch of ConfigMap/{configmap}: {len(op_items)} `- ` for {len(ops)} ops"
            )
        for n in reversed(range(len(ops))):
            if ops[n].get("path") == f"/data/{key}":
                if ops[n].get("op") not in {"add", "replace"}:
                    raise SetImageError(
                        f"the patch of ConfigMap/{configmap} has `op: {ops[n].get('op')}` on "
                        f"{key}: remove that op"
                    )
                _set_key(lines, *op_items[n], "value", value)
                changed += 1
    if changed:
        return "set"
    op = ["- op: replace", f"  path: /data/{key}", f"  value: {_scalar(value)}"]
    if inline:
        i = inline[-1][0]
        item_first, item_end = items[i]
        start, end = _literal(lines, item_first, item_end, configmap)
        written = [line for line in lines[start:end] if line.strip()]
        indent = " " * (_indent(written[0]) if written else _key_column(lines[item_first]) + 2)
        lines[end:end] = [f"{indent}{line}" for line in op]
        return "added to its patch"
    target = f"- target: {{kind: ConfigMap, name: {configmap}}}"
    _append_item(lines, "patches", [target, "  patch: |-", *(f"    {line}" for line in op)])
    return "added a patch"


def _final_value(doc: dict[str, Any], configmap: str, key: str) -> Any:
    value = None
    for patch in doc.get("patches") or []:
        if _targets(patch, configmap):
            for op in _ops(patch, configmap) or []:
                if op.get("path") == f"/data/{key}":
                    value = op.get("value") if op.get("op") in {"add", "replace"} else None
    return value


def wanted(ref: ImageRef) -> list[tuple[str, str, str]]:
    """(ConfigMap, key, value) of each setting that names the image."""
    repository, tag = ref.executor
    return [
        (EXECUTOR_CONFIG, REPOSITORY_KEY, repository),
        (EXECUTOR_CONFIG, TAG_KEY, tag),
        (SETTINGS, CLUSTER_IMAGE_KEY, str(ref)),
    ]


def set_image(text: str, ref: ImageRef) -> tuple[str, list[str]]:
    """The kustomization's new text, and a line per change."""
    lines = text.splitlines()
    _set_image_entry(lines, ref)
    done = [f"images: {PLACEHOLDER} -> {ref}"]
    for configmap, key, value in wanted(ref):
        how = _set_configmap_value(lines, configmap, key, value)
        done.append(f"ConfigMap/{configmap} {key}={value} ({how})")
    new = "\n".join(lines) + "\n"
    doc = yaml.safe_load(new)
    (entry,) = [e for e in doc.get("images") or [] if e.get("name") == PLACEHOLDER]
    expected = {"newName": ref.repository, "newTag": ref.tag, "digest": ref.digest}
    wrong = [k for k, v in expected.items() if entry.get(k) != v]
    wrong += [k for cm, k, v in wanted(ref) if _final_value(doc, cm, k) != v]
    if wrong:  # a shape this does not foresee: leave the file as it was
        raise SetImageError(f"could not set {', '.join(wrong)}: set them by hand")
    return new, done


# --- the rendered overlay --------------------------------------------------------------------


def _short_name(image: str) -> str:
    """The last part of an image's repository (no registry, tag or digest)."""
    name = image.split("@", 1)[0]
    if name.rfind(":") > name.rfind("/"):
        name = name[: name.rfind(":")]
    return name.rsplit("/", 1)[-1]


def problems(documents: list[dict[str, Any]], ref: ImageRef) -> tuple[list[str], int]:
    """What in the rendered overlay does not use the image, and how many containers do."""
    image, found, wrong = str(ref), 0, []
    for doc in documents:
        if doc.get("kind") not in WORKLOADS:
            continue
        spec = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
        template = spec["template"]
        labels = (template.get("metadata") or {}).get("labels") or {}
        airflow = labels.get("app.kubernetes.io/name") == "airflow"
        pod = template["spec"]
        for c in pod.get("initContainers", []) + pod["containers"]:
            if airflow or _short_name(c["image"]) in {_short_name(image), PLACEHOLDER}:
                found += 1
                if c["image"] != image:
                    where = f"{doc['kind']}/{doc['metadata']['name']} {c['name']}"
                    wrong.append(f"{where}: {c['image']}")
    if not found:
        wrong.append(f"no workload runs {_short_name(image)}")
    configmaps = [d for d in documents if d.get("kind") == "ConfigMap"]
    data = {d["metadata"]["name"]: d.get("data") or {} for d in configmaps}
    config, settings = data.get(EXECUTOR_CONFIG, {}), data.get(SETTINGS, {})
    executor = f"{config.get(REPOSITORY_KEY)}:{config.get(TAG_KEY)}"  # as the executor joins them
    if executor != image:
        wrong.append(f"the executor's task pods (ConfigMap/{EXECUTOR_CONFIG}): {executor}")
    if settings.get(CLUSTER_IMAGE_KEY) != image:
        wrong.append(f"the Dask cluster (ConfigMap/{SETTINGS}): {settings.get(CLUSTER_IMAGE_KEY)}")
    return wrong, found


def check(overlay: Path, ref: ImageRef) -> list[str]:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        raise SetImageError("--check renders with kubectl kustomize: put kubectl on PATH", 2)
    done = subprocess.run(
        [kubectl, "kustomize", str(overlay)], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SetImageError(f"kubectl kustomize {overlay} failed: {done.stderr.strip()}")
    wrong, found = problems([d for d in yaml.safe_load_all(done.stdout) if d], ref)
    if wrong:
        return [f"{overlay}: not {ref}:", *(f"  {w}" for w in wrong)]
    print(f"{overlay}: {found} containers, the executor's task pods and the Dask cluster run {ref}")
    return []


def _write(path: Path, text: str) -> None:
    """Replace the file at once (a reader never sees half of it), keeping its mode."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Pin an overlay's image by digest: its images: entry, the executor's task "
        "pods and the Dask cluster (see the module's docstring).",
    )
    parser.add_argument("overlay", type=Path, help="e.g. deploy/kubernetes/overlays/dev")
    parser.add_argument("image", help=FORM)
    parser.add_argument(
        "--check", action="store_true", help="edit nothing; check the rendered overlay uses IMAGE"
    )
    args = parser.parse_args(argv)
    path = args.overlay / "kustomization.yaml"
    try:
        ref = parse_image(args.image)
        if not path.is_file():
            raise SetImageError(
                f"no {path}: give an overlay's directory, e.g. deploy/kubernetes/overlays/dev", 2
            )
        if args.check:
            report = check(args.overlay, ref)
            for line in report:
                print(line, file=sys.stderr)
            return 1 if report else 0
        old = path.read_text()
        try:
            new, done = set_image(old, ref)
        except SetImageError as e:
            raise SetImageError(f"{path}: {e} (the file is left as it was)", e.code) from e
        if new != old:
            _write(path, new)
        print(f"{path}:", *done, sep="\n  ")
        return 0
    except SetImageError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code


if __name__ == "__main__":
    sys.exit(main())
