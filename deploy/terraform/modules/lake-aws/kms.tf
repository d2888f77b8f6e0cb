# The lake's own key: the bucket's default encryption (with S3 Bucket Keys, so S3 asks KMS for a
# data key per bucket and period, not per object) and the key PROCESSING_S3_KMS_KEY_ID names.

resource "aws_kms_key" "lake" {
  description             = "${var.name}: the events lake (s3://${var.bucket_name}/${var.lake_prefix}) and Airflow's task logs"
  key_usage               = "ENCRYPT_DECRYPT"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = var.tags
}

resource "aws_kms_alias" "lake" {
  name          = "alias/${var.name}-lake"
  target_key_id = aws_kms_key.lake.key_id
}

data "aws_iam_policy_document" "kms" {
  # In a key policy, "Resource": "*" is the key itself, never another resource: these three
  # checks read it as a wildcard over the account.
  #checkov:skip=CKV_AWS_109:a key policy's Resource "*" means this key only; administration is the account root's, as AWS's default key policy has it
  #checkov:skip=CKV_AWS_111:a key policy's Resource "*" means this key only; the workload roles may only encrypt and decrypt through S3 (kms:ViaService)
  #checkov:skip=CKV_AWS_356:a key policy's Resource "*" means this key only; no other resource can be named in it

  statement {
    sid       = "AccountRootAdministers"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "WorkloadsUseItThroughS3Only"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [for role in aws_iam_role.workload : role.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:CallerAccount"
      values   = [local.account_id]
    }
  }
}
