variable "name" {
  description = "Prefix of every name made here (IAM roles <name>-task, <name>-dask, <name>-airflow; the key alias alias/<name>-lake), e.g. events-lake-prod."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,40}$", var.name))
    error_message = "name: 3-41 lower-case letters, digits and '-', starting with a letter."
  }
}

variable "bucket_name" {
  description = "The lake's bucket (created here). The lake is s3://<bucket_name>/<lake_prefix> (PROCESSING_DEST), Airflow's task logs s3://<bucket_name>/<airflow_logs_prefix>."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name)) && !strcontains(var.bucket_name, "..")
    error_message = "bucket_name: 3-63 lower-case letters, digits, '.' and '-' (S3's bucket naming rules)."
  }
}

variable "lake_prefix" {
  description = "The lake's prefix in the bucket, without slashes at either end: the path of PROCESSING_DEST after the bucket. Every lake permission and lifecycle rule is scoped to it."
  type        = string
  default     = "events-lake"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._=-]*(/[A-Za-z0-9][A-Za-z0-9._=-]*)*$", var.lake_prefix))
    error_message = "lake_prefix: a non-empty key prefix without leading or trailing '/' (e.g. events-lake)."
  }
}

variable "airflow_logs_prefix" {
  description = "Where Airflow's remote task logs go in the same bucket (AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER = s3://<bucket_name>/<airflow_logs_prefix>). Must not overlap the lake's prefix."
  type        = string
  default     = "airflow-logs"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._=-]*(/[A-Za-z0-9][A-Za-z0-9._=-]*)*$", var.airflow_logs_prefix))
    error_message = "airflow_logs_prefix: a non-empty key prefix without leading or trailing '/' (e.g. airflow-logs)."
  }
}

variable "kubernetes_namespace" {
  description = "The namespace of the pipeline's pods (the kustomize overlay's): the IAM roles trust its ServiceAccounts airflow, events-lake-task and events-lake-dask only."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.kubernetes_namespace))
    error_message = "kubernetes_namespace: a Kubernetes namespace name (RFC 1123 label)."
  }
}

variable "oidc_provider_arn" {
  description = "ARN of the EXISTING EKS cluster's IAM OIDC provider (IRSA), e.g. arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE. The cluster is not managed here."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+$", var.oidc_provider_arn))
    error_message = "oidc_provider_arn: arn:aws:iam::<account>:oidc-provider/<issuer host and path>."
  }
}

variable "oidc_issuer_url" {
  description = "The EKS cluster's OIDC issuer URL (aws eks describe-cluster --query cluster.identity.oidc.issuer), https://oidc.eks.<region>.amazonaws.com/id/<ID>: the one the OIDC provider above is for."
  type        = string

  validation {
    condition     = can(regex("^https://[^/]+(/.*)?$", var.oidc_issuer_url))
    error_message = "oidc_issuer_url: an https:// URL."
  }
}

variable "glue_database" {
  description = "The Glue database the publish registers the lake in (PROCESSING_GLUE_DATABASE), or null: with it, the task role gets the Glue actions of deploy/README.md step 6 on the catalog, that database and its tables; without it, none."
  type        = string
  default     = null
}

variable "staging_expiration_days" {
  description = "Days after which S3 deletes objects under <lake_prefix>/_staging/. A backstop only: the next run of a date, gc, forget and expire remove failed runs' staging themselves (and what a failed run kept for inspection, its rejected rows among it). It must stay far above a run's length; a publish whose staging this deleted is abandoned by the next run, and the published version stays."
  type        = number
  default     = 7

  validation {
    condition     = var.staging_expiration_days >= 2
    error_message = "staging_expiration_days: at least 2 (S3 counts from each object's creation, rounded to the next midnight UTC)."
  }
}

variable "previous_expiration_days" {
  description = <<-EOT
    Days after which S3 deletes the version kept for a rollback (<lake_prefix>/_previous/), or null for no such rule (the default: the next publish of a date replaces it, and expire / forget remove it). What a store-side expiry of _previous/ cannot do that the pipeline does (README "Retention"): it counts days from each object's creation, not from the event date (a rerun or a backfill restarts the clock); it takes no date's lock, so it can delete a kept version while a rollback copies it; and it rewrites no manifest, so a kept version that lost some files is refused by rollback as damaged. Whole dates are expire's only (PROCESSING_KEEP_DAYS).
  EOT
  type        = number
  default     = null

  validation {
    condition     = var.previous_expiration_days == null ? true : var.previous_expiration_days >= 1
    error_message = "previous_expiration_days: null or at least 1."
  }
}

variable "rejected_keep_days" {
  description = <<-EOT
    Days after which S3 deletes published rejected rows (<lake_prefix>/rejected/), or null for no rule. Mirrors PROCESSING_REJECTED_KEEP_DAYS (expire --rejected-keep-days), which is the better tool: it counts from the event date, takes the date's lock and rewrites the manifests without the files. The store's rule rewrites no manifest, so a date whose rejected files it deleted still lists them (verify reports them missing and the next run of the date replaces it, a rollback to it is refused as damaged). Set it a few days above PROCESSING_REJECTED_KEEP_DAYS, as a backstop for what expire missed. Rejected rows under _staging/ and _previous/ follow those prefixes' rules.
  EOT
  type        = number
  default     = null

  validation {
    condition     = var.rejected_keep_days == null ? true : var.rejected_keep_days >= 1
    error_message = "rejected_keep_days: null or at least 1."
  }
}

variable "airflow_logs_expiration_days" {
  description = "Days after which S3 deletes Airflow's task logs (<airflow_logs_prefix>/). They hold counts, paths, dates and run ids, no ids or records (README \"Data protection\")."
  type        = number
  default     = 30

  validation {
    condition     = var.airflow_logs_expiration_days >= 1
    error_message = "airflow_logs_expiration_days: at least 1."
  }
}

variable "versioning_enabled" {
  description = "Turn on S3 versioning (off by default: see the comment in bucket.tf). When on, noncurrent versions expire after noncurrent_version_expiration_days, so an erasure (forget) leaves no copy for longer than that."
  type        = bool
  default     = false
}

variable "noncurrent_version_expiration_days" {
  description = "Days a noncurrent object version (an overwritten or deleted object, when versioning is or was ever on) is kept before S3 deletes it. Keep it far below your erasure deadline."
  type        = number
  default     = 1

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && var.noncurrent_version_expiration_days <= 7
    error_message = "noncurrent_version_expiration_days: 1 to 7 (an erased row must not survive as an old version for long)."
  }
}

variable "kms_deletion_window_days" {
  description = "Waiting period before a scheduled deletion of the lake's KMS key takes effect (every object of the lake is unreadable without it)."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days: 7 to 30."
  }
}

variable "tags" {
  description = "Tags for every resource that takes them (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
