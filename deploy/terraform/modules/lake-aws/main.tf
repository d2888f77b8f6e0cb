# The lake's AWS side: its bucket (bucket.tf, lifecycle.tf), its KMS key (kms.tf) and one IAM
# role per workload, assumed through IRSA from the existing EKS cluster (iam.tf).

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region

  # IRSA's condition keys are the issuer without its scheme: oidc.eks.<region>.amazonaws.com/id/<ID>
  oidc_issuer = trimsuffix(trimprefix(var.oidc_issuer_url, "https://"), "/")

  # The Kubernetes ServiceAccounts of deploy/kubernetes/base/airflow/serviceaccounts.yaml, one
  # IAM role each: the task pods and the lake-command Job; the Dask scheduler and workers; the
  # Airflow components.
  service_accounts = {
    task    = "events-lake-task"
    dask    = "events-lake-dask"
    airflow = "airflow"
  }

  # The compare-and-swap objects (processing/logic/layout.py, processing/adapters/cas.py): the
  # dates' locks and the two manifests that switch versions, published and kept for a rollback.
  # They are only ever written with If-None-Match: * or If-Match: <etag>; an unconditional PUT is
  # a bug or a run that bypasses the lock, and is denied (bucket.tf, iam.tf). IAM's '*' spans '/'.
  cas_objects = [
    "${aws_s3_bucket.lake.arn}/${var.lake_prefix}/_locks/*",
    "${aws_s3_bucket.lake.arn}/${var.lake_prefix}/events/*/_manifest.json",
    "${aws_s3_bucket.lake.arn}/${var.lake_prefix}/_previous/*/_manifest.json",
  ]
}

# The lake and the logs share the bucket: neither prefix may contain the other, or one's
# permissions and expiry rules would reach into the other.
resource "terraform_data" "prefixes_apart" {
  lifecycle {
    precondition {
      condition     = !startswith("${var.lake_prefix}/", "${var.airflow_logs_prefix}/") && !startswith("${var.airflow_logs_prefix}/", "${var.lake_prefix}/")
      error_message = "lake_prefix and airflow_logs_prefix must not contain one another."
    }
  }
}
