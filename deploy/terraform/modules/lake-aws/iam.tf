# One IAM role per workload, assumed through IRSA (AssumeRoleWithWebIdentity with the pod's
# projected ServiceAccount token) from the existing cluster's OIDC provider, each with only the
# S3 actions its code calls (processing/adapters through s3fs; Airflow's S3 log handler):
#   task    events-lake-task  the task pods and the lake-command Job: the lake, task logs, Glue
#   dask    events-lake-dask  the Dask scheduler and workers: the lake
#   airflow airflow           the Airflow components: task logs (the UI reads them)

data "aws_iam_policy_document" "trust" {
  for_each = local.service_accounts

  statement {
    sid     = "IrsaServiceAccount"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.kubernetes_namespace}:${each.value}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "workload" {
  for_each = local.service_accounts

  name                 = "${var.name}-${each.key}"
  description          = "${var.name}: IRSA role of ServiceAccount ${var.kubernetes_namespace}/${each.value}"
  assume_role_policy   = data.aws_iam_policy_document.trust[each.key].json
  max_session_duration = 3600
  tags                 = var.tags

  lifecycle {
    precondition {
      condition     = endswith(var.oidc_provider_arn, ":oidc-provider/${local.oidc_issuer}")
      error_message = "oidc_provider_arn is not the provider of oidc_issuer_url (${local.oidc_issuer}): a role nobody could assume. Take both from the same cluster."
    }
  }
}

# --- what each role may do ----------------------------------------------------------------------

# The lake: objects read, written (single and multipart uploads, server-side copies) and deleted
# under the lake's prefix only; listings with a prefix, of that prefix only (a request without
# one, e.g. HeadBucket or S3's check behind a 404, may list the bucket's key names: see
# LakeListing). What s3fs sends for the pipeline's
# calls: GetObject/HeadObject (cat, info, exists, conditional reads), PutObject (pipe, uploads,
# CopyObject's target, conditional writes), DeleteObject(s) (rm, conditional deletes of the lock),
# ListObjectsV2 (ls, find, info of a directory), multipart parts of large Parquet files.
data "aws_iam_policy_document" "lake_access" {
  statement {
    sid = "LakeObjects"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${aws_s3_bucket.lake.arn}/${var.lake_prefix}/*"]
  }

  # Listing with a prefix is allowed for the lake's prefix only (s3fs always lists "<dir>/").
  # IfExists, because the pipeline depends on S3 answering a GET or HEAD of a missing key with
  # 404 (an absent lock or manifest; a 403 is "access denied", exit 2), which S3 does only for
  # a caller allowed s3:ListBucket; whether that check carries the key as s3:prefix (as
  # ceph/s3-tests' test_head_object_404_with_policy_prefix says) could not be tested against AWS
  # here, so a request without s3:prefix (that check, HeadBucket, a listing without a prefix)
  # passes too: a listing of the bucket's key names, never an object's content.
  statement {
    sid       = "LakeListing"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]

    condition {
      test     = "StringLikeIfExists"
      variable = "s3:prefix"
      values   = ["${var.lake_prefix}/*"]
    }
  }

  # s3fs's makedirs (the run's write probe, processing/adapters/staging.py) checks that the bucket
  # exists with HeadBucket (a ListBucket without s3:prefix, which LakeListing admits), then, if
  # that is refused, GetBucketLocation; were both refused it would try to create the bucket and
  # the run would fail. Kept so that the probe does not depend on LakeListing's IfExists alone.
  statement {
    sid       = "LakeBucketLocation"
    actions   = ["s3:GetBucketLocation"]
    resources = [aws_s3_bucket.lake.arn]
  }

  # The same guard as the bucket policy's, in the role itself (a bucket policy can be replaced by
  # whoever owns the bucket; this travels with the role).
  statement {
    sid       = "DenyUnconditionalWritesOfLocksAndManifests"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = local.cas_objects

    condition {
      test     = "Null"
      variable = "s3:if-none-match"
      values   = ["true"]
    }

    condition {
      test     = "Null"
      variable = "s3:if-match"
      values   = ["true"]
    }
  }
}

# Airflow's task logs (S3 remote logging: head, read, write one object per try; list a try's logs).
data "aws_iam_policy_document" "log_access" {
  statement {
    sid       = "AirflowLogObjects"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.lake.arn}/${var.airflow_logs_prefix}/*"]
  }

  statement {
    sid       = "AirflowLogListing"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.lake.arn]

    condition {
      test     = "StringLikeIfExists"
      variable = "s3:prefix"
      values   = ["${var.airflow_logs_prefix}/*"]
    }
  }
}

# The lake's key, through S3 only (SSE-KMS objects: GenerateDataKey to write, Decrypt to read,
# both for multipart uploads and copies).
data "aws_iam_policy_document" "kms_use" {
  statement {
    sid       = "LakeKeyThroughS3"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.lake.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "task" {
  source_policy_documents = [
    data.aws_iam_policy_document.lake_access.json,
    data.aws_iam_policy_document.log_access.json,
    data.aws_iam_policy_document.kms_use.json,
  ]
}

data "aws_iam_policy_document" "dask" {
  source_policy_documents = [
    data.aws_iam_policy_document.lake_access.json,
    data.aws_iam_policy_document.kms_use.json,
  ]
}

data "aws_iam_policy_document" "airflow" {
  source_policy_documents = [
    data.aws_iam_policy_document.log_access.json,
    data.aws_iam_policy_document.kms_use.json,
  ]
}

resource "aws_iam_role_policy" "task" {
  name   = "lake-and-task-logs"
  role   = aws_iam_role.workload["task"].id
  policy = data.aws_iam_policy_document.task.json
}

resource "aws_iam_role_policy" "dask" {
  name   = "lake"
  role   = aws_iam_role.workload["dask"].id
  policy = data.aws_iam_policy_document.dask.json
}

resource "aws_iam_role_policy" "airflow" {
  name   = "task-logs"
  role   = aws_iam_role.workload["airflow"].id
  policy = data.aws_iam_policy_document.airflow.json
}

# The Glue Data Catalog (PROCESSING_GLUE_DATABASE): the publish and the in-cluster rollback run as
# events-lake-task; the actions of processing/adapters/glue_catalog.py and deploy/README.md step 6.
data "aws_iam_policy_document" "glue" {
  count = var.glue_database == null ? 0 : 1

  statement {
    sid = "GlueCatalogOfTheLake"
    actions = [
      "glue:GetDatabase",
      "glue:CreateDatabase",
      "glue:GetTable",
      "glue:CreateTable",
      "glue:UpdateTable",
      "glue:GetPartitions",
      "glue:BatchCreatePartition",
      "glue:BatchUpdatePartition",
      "glue:BatchDeletePartition",
    ]
    resources = [
      "arn:${local.partition}:glue:${local.region}:${local.account_id}:catalog",
      "arn:${local.partition}:glue:${local.region}:${local.account_id}:database/${var.glue_database}",
      "arn:${local.partition}:glue:${local.region}:${local.account_id}:table/${var.glue_database}/*",
    ]
  }
}

resource "aws_iam_role_policy" "task_glue" {
  count = var.glue_database == null ? 0 : 1

  name   = "glue-catalog"
  role   = aws_iam_role.workload["task"].id
  policy = data.aws_iam_policy_document.glue[0].json
}
