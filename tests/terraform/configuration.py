"""deploy/terraform read offline: every directory of .tf files parsed with python-hcl2 into one
:class:`Config` (its resources, data sources, locals, variables, outputs, module calls), and the
IAM policy documents it builds, resolved to their statements. No Terraform binary, no provider,
no cloud: values stay as written (``${var.lake_prefix}``), which is what the tests compare.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "deploy" / "terraform"
MODULES = TERRAFORM / "modules"
ENVS = TERRAFORM / "envs"
ENVIRONMENTS = ("dev", "prod")

#: Strings without their quotes (``"a"`` -> ``a``); references and expressions keep their
#: ``${...}``; blocks are lists of dicts, attributes plain values.
OPTIONS = hcl2.SerializationOptions(
    with_comments=False, explicit_blocks=False, strip_string_quotes=True
)

Block = dict[str, Any]


def parse(text: str) -> dict[str, Any]:
    return hcl2.loads(text, serialization_options=OPTIONS)


def tf_files(directory: Path = TERRAFORM) -> list[Path]:
    return sorted(p for p in directory.rglob("*.tf") if ".terraform" not in p.parts)


@dataclass
class Config:
    """One Terraform module (a directory): its blocks by kind, type and name."""

    directory: Path
    resources: dict[tuple[str, str], Block] = field(default_factory=dict)
    data: dict[tuple[str, str], Block] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Block] = field(default_factory=dict)
    outputs: dict[str, Block] = field(default_factory=dict)
    modules: dict[str, Block] = field(default_factory=dict)
    terraform: list[Block] = field(default_factory=list)

    def resource(self, kind: str, name: str) -> Block:
        return self.resources[(kind, name)]

    def of_type(self, kind: str) -> dict[str, Block]:
        return {name: body for (k, name), body in self.resources.items() if k == kind}

    def policy_document(self, name: str) -> Block:
        return self.data[("aws_iam_policy_document", name)]


def _named(blocks: list[dict[str, Any]]) -> dict[tuple[str, str], Block]:
    found = {}
    for entry in blocks:
        for kind, by_name in entry.items():
            for name, body in by_name.items():
                found[(kind, name)] = body
    return found


def _merge(config: Config, parsed: dict[str, Any]) -> None:
    config.resources.update(_named(parsed.get("resource", [])))
    config.data.update(_named(parsed.get("data", [])))
    for block in parsed.get("locals", []):
        config.locals.update(block)
    for kind, target in (
        ("variable", config.variables),
        ("output", config.outputs),
        ("module", config.modules),
    ):
        for entry in parsed.get(kind, []):
            target.update(entry)
    config.terraform.extend(parsed.get("terraform", []))


@functools.cache
def _load(directory: Path) -> Config:
    config = Config(directory)
    for path in sorted(directory.glob("*.tf")):
        _merge(config, parse(path.read_text()))
    return config


def load(directory: Path) -> Config:
    """The module in ``directory`` (parsed once; callers get a fresh copy to change at will)."""
    import copy

    return copy.deepcopy(_load(directory))


def module(name: str) -> Config:
    return load(MODULES / name)


def environment(name: str) -> Config:
    return load(ENVS / name)


# --- values ---------------------------------------------------------------------------------------
_LOCAL = re.compile(r"^\$\{local\.([A-Za-z0-9_]+)\}$")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def resolve(config: Config, value: Any) -> list[Any]:
    """A list attribute's values, a whole-value ``${local.x}`` replaced by the local's."""
    if isinstance(value, str):
        found = _LOCAL.match(value)
        if found and found[1] in config.locals:
            return as_list(config.locals[found[1]])
    return as_list(value)


def conditions(statement: Block) -> dict[tuple[str, str], list[str]]:
    """A statement's conditions, ``{(test, variable): values}``."""
    return {
        (c["test"], c["variable"]): as_list(c["values"]) for c in statement.get("condition", [])
    }


# --- IAM policy documents -------------------------------------------------------------------------
_DOCUMENT = re.compile(r"^\$\{data\.aws_iam_policy_document\.([A-Za-z0-9_]+)(\[\d+\])?\.json\}$")


def document_name(reference: str) -> str:
    found = _DOCUMENT.match(reference)
    assert found, f"{reference!r} is not a reference to an aws_iam_policy_document's json"
    return found[1]


def statements(config: Config, name: str) -> list[Block]:
    """The statements of a policy document, its source_policy_documents' included."""
    document = config.policy_document(name)
    found: list[Block] = []
    for source in as_list(document.get("source_policy_documents", [])):
        found.extend(statements(config, document_name(source)))
    found.extend(document.get("statement", []))
    return found


def role_policy_statements(config: Config, resource_name: str) -> list[Block]:
    """The statements an ``aws_iam_role_policy`` gives its role."""
    policy = config.resource("aws_iam_role_policy", resource_name)["policy"]
    return statements(config, document_name(policy))


def effect(statement: Block) -> str:
    return str(statement.get("effect", "Allow"))
