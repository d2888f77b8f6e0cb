# The lake's bucket: private, owner-enforced, encrypted with the lake's key by default, TLS only,
# and no unconditional write of a lock or a manifest.

resource "aws_s3_bucket" "lake" {
  #checkov:skip=CKV_AWS_21:versioning is opt-in (versioning_enabled): deleted objects would outlive an erasure as noncurrent versions, and rollback is the pipeline's own _previous/ (see the comment below)
  #checkov:skip=CKV_AWS_144:no cross-region replica: a replica is a copy that forget and expire cannot reach (README "Data protection"); a second region is a decision for the data's owner
  #checkov:skip=CKV2_AWS_62:nothing consumes bucket events: Airflow schedules the runs and each publish registers itself (Glue, metrics)
  #checkov:skip=CKV_AWS_18:object-level audit is CloudTrail data events, set account-wide by the security team; server access logs would need a second bucket of their own
  bucket = var.bucket_name
  tags   = var.tags
}

# Versioning: off unless versioning_enabled. README "Data protection": an erasure (forget) must
# not leave copies behind, and a versioned bucket keeps every overwritten or deleted object as a
# noncurrent version. A rollback is the pipeline's own business (_previous/, taken under the
# date's lock); S3's versions would add an unlocked copy of every lock refresh (every quarter of
# PROCESSING_LOCK_TTL_SECONDS), manifest switch and removed staging file, and delete markers that
# slow down the listings the publish stands on. Turned on (to guard against deletion by mistake),
# the lifecycle rule "noncurrent-versions" (lifecycle.tf) deletes noncurrent versions after
# noncurrent_version_expiration_days (1 by default): an erased row then outlives its erasure by
# that long at most. That rule is there with versioning off too, in case it is ever turned on
# outside Terraform. (Removing this resource suspends versioning; it cannot be undone.)
resource "aws_s3_bucket_versioning" "lake" {
  count  = var.versioning_enabled ? 1 : 0
  bucket = aws_s3_bucket.lake.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.lake.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "lake" {
  bucket                  = aws_s3_bucket.lake.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "lake" {
  bucket = aws_s3_bucket.lake.id

  rule {
    object_ownership = "BucketOwnerEnforced" # ACLs off: the account owns every object
  }
}

resource "aws_s3_bucket_policy" "lake" {
  bucket = aws_s3_bucket.lake.id
  policy = data.aws_iam_policy_document.bucket.json

  depends_on = [aws_s3_bucket_public_access_block.lake]
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.lake.arn, "${aws_s3_bucket.lake.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "DenyTlsBelow12"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.lake.arn, "${aws_s3_bucket.lake.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }

  # Locks and manifests change only by compare-and-swap (If-None-Match: * to create, If-Match:
  # <etag> to replace): deny a PutObject on them that carries neither header, whoever sends it.
  # These keys are never written by multipart upload or server-side copy (both would be denied
  # here too: S3 refuses conditional copies); every other key of the lake is unaffected.
  statement {
    sid       = "DenyUnconditionalWritesOfLocksAndManifests"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = local.cas_objects

    principals {
      type        = "*"
      identifiers = ["*"]
    }

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
