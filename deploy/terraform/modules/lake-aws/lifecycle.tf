# What the store expires by itself. The pipeline's own retention (expire, forget, gc) stays the
# primary tool: it counts from the event date and works under each date's lock (README
# "Retention"); these rules are backstops, each scoped to its prefix. S3 counts days from each
# object's creation, rounded up to the next midnight UTC, and applies rules asynchronously.
resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  #checkov:skip=CKV_AWS_300:the first rule aborts incomplete multipart uploads after 1 day (asserted by tests/terraform); checkov 3.3.30 drops the static rules when it renders a dynamic rule with a known for_each (dev's previous-versions rule)
  bucket = aws_s3_bucket.lake.id

  # Parts of multipart uploads a writer abandoned (a killed worker) are billed until aborted.
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  # Noncurrent versions exist only if versioning is (or ever was) on: see bucket.tf.
  rule {
    id     = "noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    expiration {
      expired_object_delete_marker = true
    }
  }

  # Failed runs' staging: removed by the next run of the date, gc, forget and expire.
  rule {
    id     = "lake-staging"
    status = "Enabled"

    filter {
      prefix = "${var.lake_prefix}/_staging/"
    }

    expiration {
      days = var.staging_expiration_days
    }
  }

  # The version kept for a rollback: off unless previous_expiration_days is set (its description
  # says what the store cannot do here).
  dynamic "rule" {
    for_each = var.previous_expiration_days == null ? [] : [var.previous_expiration_days]

    content {
      id     = "lake-previous-versions"
      status = "Enabled"

      filter {
        prefix = "${var.lake_prefix}/_previous/"
      }

      expiration {
        days = rule.value
      }
    }
  }

  # Published rejected rows (the source record of each): off unless rejected_keep_days is set.
  dynamic "rule" {
    for_each = var.rejected_keep_days == null ? [] : [var.rejected_keep_days]

    content {
      id     = "lake-rejected-rows"
      status = "Enabled"

      filter {
        prefix = "${var.lake_prefix}/rejected/"
      }

      expiration {
        days = rule.value
      }
    }
  }

  rule {
    id     = "airflow-logs"
    status = "Enabled"

    filter {
      prefix = "${var.airflow_logs_prefix}/"
    }

    expiration {
      days = var.airflow_logs_expiration_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.lake]
}
