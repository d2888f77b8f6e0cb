"""deploy/terraform/modules/lake-aws, read offline: the bucket is private, owner-enforced,
encrypted with the lake's key (bucket keys on), TLS only, and refuses unconditional writes of the
compare-and-swap objects; each workload role holds only the S3 actions the pipeline calls, on its
own prefixes, and is trusted by its own ServiceAccount only. Each check returns what is wrong, and
is run once more on a broken copy of the configuration, to show it would catch it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from processing.adapters import glue_catalog
from tests.terraform.configuration import (
    Config,
    as_list,
    conditions,
    effect,
    module,
    resolve,
    role_policy_statements,
    statements,
)

BUCKET = "${aws_s3_bucket.lake.arn}"
LAKE_OBJECTS = "${aws_s3_bucket.lake.arn}/${var.lake_prefix}/*"
LOG_OBJECTS = "${aws_s3_bucket.lake.arn}/${var.airflow_logs_prefix}/*"
LAKE_LISTING = "${var.lake_prefix}/*"
LOG_LISTING = "${var.airflow_logs_prefix}/*"
KEY = "${aws_kms_key.lake.arn}"
VIA_S3 = "s3.${local.region}.amazonaws.com"
#: The compare-and-swap objects (processing/logic/layout.py): locks, published and kept manifests.
CAS_OBJECTS = {
    "${aws_s3_bucket.lake.arn}/${var.lake_prefix}/_locks/*",
    "${aws_s3_bucket.lake.arn}/${var.lake_prefix}/events/*/_manifest.json",
    "${aws_s3_bucket.lake.arn}/${var.lake_prefix}/_previous/*/_manifest.json",
}
#: Every S3 action a workload may be allowed: what processing/adapters (through s3fs) and
#: Airflow's S3 log handler send, nothing else.
OBJECT_ACTIONS = {
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
}
BUCKET_ACTIONS = {"s3:ListBucket", "s3:GetBucketLocation"}
KMS_ACTIONS = {"kms:GenerateDataKey", "kms:Decrypt"}
#: What the Glue adapter says its role needs (processing/adapters/glue_catalog.py, its refusals).
GLUE_ACTIONS = set(glue_catalog.PERMISSIONS)
#: role policy resource -> (object prefixes it may touch, prefixes it may list)
ROLE_ACCESS = {
    "task": ({LAKE_OBJECTS, LOG_OBJECTS}, {LAKE_LISTING, LOG_LISTING}),
    "dask": ({LAKE_OBJECTS}, {LAKE_LISTING}),
    "airflow": ({LOG_OBJECTS}, {LOG_LISTING}),
}
SERVICE_ACCOUNTS = {"task": "events-lake-task", "dask": "events-lake-dask", "airflow": "airflow"}
#: What each role cannot work without, on each resource: the lake is read, written (multipart
#: uploads aborted on failure) and pruned; Airflow's log handler reads and writes the logs; every
#: object is under the lake's key (SSE-KMS), and a missing key must answer 404 (ListBucket).
NEEDED = {
    LAKE_OBJECTS: {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"},
    LOG_OBJECTS: {"s3:GetObject", "s3:PutObject"},
    BUCKET: {"s3:ListBucket"},
    KEY: {"kms:GenerateDataKey", "kms:Decrypt"},
}


@pytest.fixture
def lake() -> Config:
    return module("lake-aws")


# --- the checks -----------------------------------------------------------------------------------
def _allow_problems(config: Config, role: str, statement: dict) -> list[str]:
    objects, listings = ROLE_ACCESS[role]
    sid = statement.get("sid", "?")
    actions = set(as_list(statement.get("actions", [])))
    resources = resolve(config, statement.get("resources", []))
    problems = []
    if "*" in resources:
        problems.append(f"{role}/{sid}: Resource '*'")
    s3 = {a for a in actions if a.startswith("s3:")}
    if s3 - OBJECT_ACTIONS - BUCKET_ACTIONS:
        problems.append(f"{role}/{sid}: S3 actions outside the allow-list: {sorted(s3)}")
    if s3 & OBJECT_ACTIONS and not set(resources) <= objects:
        problems.append(f"{role}/{sid}: object actions on {resources}, not only {objects}")
    if s3 & BUCKET_ACTIONS and resources != [BUCKET]:
        problems.append(f"{role}/{sid}: bucket actions on {resources}")
    if s3 & BUCKET_ACTIONS and s3 & OBJECT_ACTIONS:
        problems.append(f"{role}/{sid}: bucket and object actions in one statement")
    if "s3:ListBucket" in s3:
        prefixes = conditions(statement).get(("StringLikeIfExists", "s3:prefix"), [])
        if not prefixes or not set(prefixes) <= listings:
            problems.append(f"{role}/{sid}: ListBucket without an s3:prefix in {listings}")
    kms = {a for a in actions if a.startswith("kms:")}
    if kms and (
        kms - KMS_ACTIONS
        or resources != [KEY]
        or conditions(statement).get(("StringEquals", "kms:ViaService")) != [VIA_S3]
    ):
        problems.append(f"{role}/{sid}: KMS beyond data keys of the lake's key through S3")
    glue = {a for a in actions if a.startswith("glue:")}
    if glue and (
        glue - GLUE_ACTIONS
        or not all(r.endswith(":catalog") or "${var.glue_database}" in r for r in resources)
    ):
        problems.append(f"{role}/{sid}: Glue beyond the lake's database")
    if actions - s3 - kms - glue:
        problems.append(f"{role}/{sid}: actions of another service: {actions - s3 - kms - glue}")
    return problems


def role_policy_problems(config: Config, role: str) -> list[str]:
    """What is wrong with a workload role's S3, KMS and Glue permissions."""
    problems = []
    granted: set[str] = set()
    listed: set[str] = set()
    found = role_policy_statements(config, role)
    if role == "task" and ("aws_iam_role_policy", "task_glue") in config.resources:
        found = found + role_policy_statements(config, "task_glue")
    for statement in found:
        actions = as_list(statement.get("actions", []))
        if any("*" in a for a in actions):
            problems.append(f"{role}/{statement.get('sid')}: wildcard action {actions}")
        if effect(statement) == "Allow":
            problems += _allow_problems(config, role, statement)
            if set(actions) & OBJECT_ACTIONS:
                granted |= set(resolve(config, statement["resources"]))
            if "s3:ListBucket" in actions:
                listed |= set(conditions(statement).get(("StringLikeIfExists", "s3:prefix"), []))
    objects, listings = ROLE_ACCESS[role]
    if granted != objects or listed != listings:
        problems.append(f"{role}: objects {granted} listed {listed}, expected {objects} {listings}")
    allowed: dict[str, set[str]] = {}
    for statement in found:
        if effect(statement) == "Allow":
            for resource in resolve(config, as_list(statement.get("resources", []))):
                allowed.setdefault(resource, set()).update(as_list(statement.get("actions", [])))
    for resource in {*objects, BUCKET, KEY}:
        if missing := NEEDED[resource] - allowed.get(resource, set()):
            problems.append(f"{role}: lacks {sorted(missing)} on {resource}")
    if LAKE_OBJECTS in objects and not _denies_unconditional_cas_writes(config, found):
        problems.append(f"{role}: no deny of unconditional PutObject on locks and manifests")
    return problems


def _denies_unconditional_cas_writes(config: Config, found: list[dict]) -> bool:
    return any(
        effect(s) == "Deny"
        and as_list(s["actions"]) == ["s3:PutObject"]
        and set(resolve(config, s["resources"])) == CAS_OBJECTS
        and conditions(s)
        == {("Null", "s3:if-none-match"): ["true"], ("Null", "s3:if-match"): ["true"]}
        for s in found
    )


def bucket_problems(config: Config) -> list[str]:
    """What is wrong with the bucket's encryption, public access, ownership and policy."""
    problems = []
    (sse,) = config.resource("aws_s3_bucket_server_side_encryption_configuration", "lake")["rule"]
    (default,) = sse["apply_server_side_encryption_by_default"]
    if default.get("sse_algorithm") != "aws:kms" or default.get("kms_master_key_id") != KEY:
        problems.append(f"default encryption is not the lake's KMS key: {default}")
    if sse.get("bucket_key_enabled") is not True:
        problems.append("S3 Bucket Keys are off")
    block = config.resource("aws_s3_bucket_public_access_block", "lake")
    for setting in (
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ):
        if block.get(setting) is not True:
            problems.append(f"public access block: {setting} is not true")
    (ownership,) = config.resource("aws_s3_bucket_ownership_controls", "lake")["rule"]
    if ownership.get("object_ownership") != "BucketOwnerEnforced":
        problems.append(f"object ownership {ownership.get('object_ownership')}")
    policy = config.resource("aws_s3_bucket_policy", "lake")["policy"]
    if policy != "${data.aws_iam_policy_document.bucket.json}":
        problems.append(f"the bucket policy is {policy}")
    found = statements(config, "bucket")
    if not any(
        effect(s) == "Deny"
        and as_list(s["actions"]) == ["s3:*"]
        and set(resolve(config, s["resources"])) == {BUCKET, f"{BUCKET}/*"}
        and conditions(s).get(("Bool", "aws:SecureTransport")) == ["false"]
        and s["principals"] == [{"type": "*", "identifiers": ["*"]}]
        for s in found
    ):
        problems.append("no deny of requests without TLS")
    if not any(
        effect(s) == "Deny"
        and as_list(s["actions"]) == ["s3:*"]
        and set(resolve(config, s["resources"])) == {BUCKET, f"{BUCKET}/*"}
        and conditions(s).get(("NumericLessThan", "s3:TlsVersion")) == ["1.2"]
        for s in found
    ):
        problems.append("no deny of TLS below 1.2")
    if not _denies_unconditional_cas_writes(config, found):
        problems.append("no deny of unconditional PutObject on locks and manifests")
    if any(effect(s) == "Allow" for s in found):
        problems.append("the bucket policy allows something: access is the roles' (IAM)")
    return problems


def kms_problems(config: Config) -> list[str]:
    problems = []
    key = config.resource("aws_kms_key", "lake")
    if key.get("enable_key_rotation") is not True:
        problems.append("key rotation is off")
    if key.get("policy") != "${data.aws_iam_policy_document.kms.json}":
        problems.append("the key has no policy of its own")
    found = statements(config, "kms")
    roots = [
        s
        for s in found
        if s["principals"][0]["identifiers"]
        == ["arn:${local.partition}:iam::${local.account_id}:root"]
    ]
    if len(roots) != 1 or as_list(roots[0]["actions"]) != ["kms:*"]:
        problems.append("the account root does not administer the key")
    for s in found:
        if s in roots:
            continue
        if set(as_list(s["actions"])) - KMS_ACTIONS or conditions(s).get(
            ("StringEquals", "kms:ViaService")
        ) != [VIA_S3]:
            problems.append(f"key policy {s.get('sid')}: use beyond S3's data keys")
    return problems


def trust_problems(config: Config) -> list[str]:
    """Each role is assumable by its own ServiceAccount's token (audience STS) only."""
    problems = []
    if config.locals["service_accounts"] != SERVICE_ACCOUNTS:
        problems.append(f"service accounts {config.locals['service_accounts']}")
    role = config.resource("aws_iam_role", "workload")
    if (role["for_each"], role["assume_role_policy"]) != (
        "${local.service_accounts}",
        "${data.aws_iam_policy_document.trust[each.key].json}",
    ):
        problems.append("a role is not trusted through its own trust policy")
    trust = config.policy_document("trust")
    if trust.get("for_each") != "${local.service_accounts}":
        problems.append("not one trust policy per ServiceAccount")
    for s in trust["statement"]:
        if as_list(s["actions"]) != ["sts:AssumeRoleWithWebIdentity"] or s["principals"] != [
            {"type": "Federated", "identifiers": ["${var.oidc_provider_arn}"]}
        ]:
            problems.append(f"trust {s.get('sid')}: not the cluster's OIDC provider alone")
        if conditions(s) != {
            ("StringEquals", "${local.oidc_issuer}:sub"): [
                "system:serviceaccount:${var.kubernetes_namespace}:${each.value}"
            ],
            ("StringEquals", "${local.oidc_issuer}:aud"): ["sts.amazonaws.com"],
        }:
            problems.append(f"trust {s.get('sid')}: conditions {conditions(s)}")
    return problems


def lifecycle_problems(config: Config) -> list[str]:
    problems = []
    lifecycle = config.resource("aws_s3_bucket_lifecycle_configuration", "lake")
    rules = {r["id"]: r for r in lifecycle["rule"]}
    rules |= {d["rule"]["content"][0]["id"]: d["rule"] for d in lifecycle.get("dynamic", [])}
    abort = rules.get("abort-incomplete-multipart-uploads", {})
    if abort.get("filter") != [{}] or abort.get("abort_incomplete_multipart_upload") != [
        {"days_after_initiation": 1}
    ]:
        problems.append("incomplete multipart uploads are not aborted after a day, bucket-wide")
    expected = {
        "lake-staging": ("${var.lake_prefix}/_staging/", "${var.staging_expiration_days}"),
        "airflow-logs": ("${var.airflow_logs_prefix}/", "${var.airflow_logs_expiration_days}"),
    }
    for rule_id, (prefix, days) in expected.items():
        rule = rules.get(rule_id, {})
        if rule.get("filter") != [{"prefix": prefix}] or rule.get("expiration") != [{"days": days}]:
            problems.append(f"rule {rule_id}: not {prefix} after {days}")
    optional = {
        "lake-previous-versions": ("${var.lake_prefix}/_previous/", "previous_expiration_days"),
        "lake-rejected-rows": ("${var.lake_prefix}/rejected/", "rejected_keep_days"),
    }
    for rule_id, (prefix, variable) in optional.items():
        rule = rules.get(rule_id, {})
        if rule.get("for_each") != f"${{var.{variable} == null ? [] : [var.{variable}]}}" or (
            rule["content"][0]["filter"] != [{"prefix": prefix}]
        ):
            problems.append(f"rule {rule_id}: not {prefix}, and none when {variable} is null")
        if config.variables[variable].get("default", "missing") is not None:
            problems.append(f"{variable} is not null by default")
    noncurrent = rules.get("noncurrent-versions", {})
    if noncurrent.get("noncurrent_version_expiration") != [
        {"noncurrent_days": "${var.noncurrent_version_expiration_days}"}
    ]:
        problems.append("noncurrent versions do not expire")
    if config.variables["staging_expiration_days"].get("default") != 7:
        problems.append("staging expires after other than 7 days by default")
    return problems


def versioning_problems(config: Config) -> list[str]:
    problems = []
    if config.variables["versioning_enabled"].get("default") is not False:
        problems.append("versioning is on by default")
    versioning = config.resource("aws_s3_bucket_versioning", "lake")
    if versioning.get("count") != "${var.versioning_enabled ? 1 : 0}":
        problems.append("versioning does not follow versioning_enabled")
    if config.variables["noncurrent_version_expiration_days"].get("default") != 1:
        problems.append("noncurrent versions are kept longer than a day by default")
    return problems


# --- the tests ------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", sorted(ROLE_ACCESS))
def test_each_role_holds_only_the_s3_actions_the_pipeline_uses_on_its_own_prefixes(
    lake: Config, role: str
) -> None:
    assert role_policy_problems(lake, role) == []


def test_glue_permissions_only_with_a_glue_database(lake: Config) -> None:
    assert lake.variables["glue_database"]["default"] is None
    policy = lake.resource("aws_iam_role_policy", "task_glue")
    assert policy["count"] == "${var.glue_database == null ? 0 : 1}"
    assert policy["role"] == '${aws_iam_role.workload["task"].id}'
    (statement,) = statements(lake, "glue")
    assert set(statement["actions"]) == GLUE_ACTIONS
    assert role_policy_problems(lake, "task") == []  # task_glue included


def test_every_policy_attaches_to_its_own_role(lake: Config) -> None:
    for name in ROLE_ACCESS:
        policy = lake.resource("aws_iam_role_policy", name)
        assert policy["role"] == f'${{aws_iam_role.workload["{name}"].id}}'
    assert set(lake.of_type("aws_iam_role_policy")) == {*ROLE_ACCESS, "task_glue"}
    assert not lake.of_type("aws_iam_role_policy_attachment")  # no managed policies
    assert not lake.of_type("aws_iam_policy")


def test_each_role_is_trusted_by_its_own_service_account_only(lake: Config) -> None:
    assert trust_problems(lake) == []


def test_the_bucket_is_private_encrypted_tls_only_and_guards_its_locks(lake: Config) -> None:
    assert bucket_problems(lake) == []


def test_the_lake_key_rotates_and_is_used_through_s3_only(lake: Config) -> None:
    assert kms_problems(lake) == []


def test_lifecycle_rules_are_scoped_to_their_prefixes(lake: Config) -> None:
    assert lifecycle_problems(lake) == []


def test_versioning_is_off_unless_chosen_and_old_versions_expire(lake: Config) -> None:
    assert versioning_problems(lake) == []


# --- and each check catches what it is for --------------------------------------------------------
def _statement(config: Config, document: str, sid: str) -> dict:
    return next(s for s in config.policy_document(document)["statement"] if s.get("sid") == sid)


def _sse(config: Config) -> dict:
    return config.resource("aws_s3_bucket_server_side_encryption_configuration", "lake")["rule"][0]


def _rules(config: Config) -> list[dict]:
    return config.resource("aws_s3_bucket_lifecycle_configuration", "lake")["rule"]


def _trust(config: Config) -> dict:
    return config.policy_document("trust")["statement"][0]


Breakage = Callable[[Config], object]
LAKE_ACCESS = "${data.aws_iam_policy_document.lake_access.json}"
LOG_ACCESS = "${data.aws_iam_policy_document.log_access.json}"
CAS_DENY = "DenyUnconditionalWritesOfLocksAndManifests"
ROLE_BREAKAGES: dict[str, tuple[str, Breakage]] = {
    "s3:* on the lake": (
        "task",
        lambda c: _statement(c, "lake_access", "LakeObjects")["actions"].append("s3:*"),
    ),
    "'*' as a resource": (
        "dask",
        lambda c: _statement(c, "lake_access", "LakeObjects")["resources"].append("*"),
    ),
    "an action the code never calls": (
        "task",
        lambda c: _statement(c, "lake_access", "LakeObjects")["actions"].append("s3:PutObjectAcl"),
    ),
    "the whole bucket's objects": (
        "dask",
        lambda c: _statement(c, "lake_access", "LakeObjects").update(resources=[f"{BUCKET}/*"]),
    ),
    "a listing without s3:prefix": (
        "task",
        lambda c: _statement(c, "lake_access", "LakeListing").pop("condition"),
    ),
    "a listing of the whole bucket": (
        "airflow",
        lambda c: _statement(c, "log_access", "AirflowLogListing")["condition"][0].update(
            values=["*"]
        ),
    ),
    "the Dask workers on the logs": (
        "dask",
        lambda c: c.policy_document("dask")["source_policy_documents"].append(LOG_ACCESS),
    ),
    "Airflow on the lake": (
        "airflow",
        lambda c: c.policy_document("airflow")["source_policy_documents"].append(LAKE_ACCESS),
    ),
    "no guard of locks and manifests": (
        "task",
        lambda c: c.policy_document("lake_access")["statement"].pop(),
    ),
    "a guard of only one condition key": (
        "dask",
        lambda c: _statement(c, "lake_access", CAS_DENY)["condition"].pop(),
    ),
    "KMS without kms:ViaService": (
        "task",
        lambda c: _statement(c, "kms_use", "LakeKeyThroughS3").pop("condition"),
    ),
    "kms:* on the key": (
        "airflow",
        lambda c: _statement(c, "kms_use", "LakeKeyThroughS3")["actions"].append("kms:*"),
    ),
    "Glue on every database": (
        "task",
        lambda c: c.policy_document("glue")["statement"][0]["resources"].append(
            "arn:${local.partition}:glue:*:*:database/*"
        ),
    ),
    "the lake unreadable": (
        "dask",
        lambda c: _statement(c, "lake_access", "LakeObjects")["actions"].remove("s3:GetObject"),
    ),
    "the lake's old files never deleted": (
        "task",
        lambda c: _statement(c, "lake_access", "LakeObjects")["actions"].remove("s3:DeleteObject"),
    ),
    "no listing: a missing lock answers 403": (
        "task",
        lambda c: _statement(c, "lake_access", "LakeListing")["actions"].remove("s3:ListBucket"),
    ),
    "no use of the lake's key": (
        "dask",
        lambda c: _statement(c, "kms_use", "LakeKeyThroughS3")["actions"].remove("kms:Decrypt"),
    ),
    "IAM in a role policy": (
        "task",
        lambda c: _statement(c, "lake_access", "LakeBucketLocation")["actions"].append(
            "iam:PassRole"
        ),
    ),
}


@pytest.mark.parametrize("breakage", sorted(ROLE_BREAKAGES))
def test_the_role_checks_catch(lake: Config, breakage: str) -> None:
    role, breaking = ROLE_BREAKAGES[breakage]
    breaking(lake)
    assert role_policy_problems(lake, role)


OTHER_BREAKAGES: dict[str, tuple[Callable[[Config], list[str]], Breakage]] = {
    "SSE-S3 by default": (
        bucket_problems,
        lambda c: _sse(c)["apply_server_side_encryption_by_default"][0].update(
            sse_algorithm="AES256"
        ),
    ),
    "no bucket keys": (bucket_problems, lambda c: _sse(c).update(bucket_key_enabled=False)),
    "public policies allowed": (
        bucket_problems,
        lambda c: c.resource("aws_s3_bucket_public_access_block", "lake").update(
            block_public_policy=False
        ),
    ),
    "ACLs back": (
        bucket_problems,
        lambda c: c.resource("aws_s3_bucket_ownership_controls", "lake")["rule"][0].update(
            object_ownership="ObjectWriter"
        ),
    ),
    "plain HTTP allowed": (
        bucket_problems,
        lambda c: c.policy_document("bucket")["statement"].pop(0),
    ),
    "TLS 1.0 allowed": (
        bucket_problems,
        lambda c: c.policy_document("bucket")["statement"].pop(1),
    ),
    "unconditional lock writes allowed": (
        bucket_problems,
        lambda c: c.policy_document("bucket")["statement"].pop(),
    ),
    "a guard missing the manifests": (bucket_problems, lambda c: c.locals["cas_objects"].pop()),
    "no key rotation": (
        kms_problems,
        lambda c: c.resource("aws_kms_key", "lake").update(enable_key_rotation=False),
    ),
    "the key used outside S3": (
        kms_problems,
        lambda c: _statement(c, "kms", "WorkloadsUseItThroughS3Only")["condition"].pop(0),
    ),
    "any ServiceAccount of the namespace": (
        trust_problems,
        lambda c: _trust(c)["condition"][0].update(
            values=["system:serviceaccount:${var.kubernetes_namespace}:*"]
        ),
    ),
    "any audience": (trust_problems, lambda c: _trust(c)["condition"].pop()),
    "a renamed ServiceAccount": (
        trust_problems,
        lambda c: c.locals["service_accounts"].update(dask="dask"),
    ),
    "staging expiring in the whole lake": (
        lifecycle_problems,
        lambda c: _rules(c)[2]["filter"][0].update(prefix="${var.lake_prefix}/"),
    ),
    "no abort of multipart uploads": (lifecycle_problems, lambda c: _rules(c).pop(0)),
    "rejected rows expiring by default": (
        lifecycle_problems,
        lambda c: c.variables["rejected_keep_days"].update(default=30),
    ),
    "versioning on by default": (
        versioning_problems,
        lambda c: c.variables["versioning_enabled"].update(default=True),
    ),
}


@pytest.mark.parametrize("breakage", sorted(OTHER_BREAKAGES))
def test_the_bucket_key_trust_and_lifecycle_checks_catch(lake: Config, breakage: str) -> None:
    check, breaking = OTHER_BREAKAGES[breakage]
    breaking(lake)
    assert check(lake)
