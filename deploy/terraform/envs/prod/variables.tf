# --- AWS ------------------------------------------------------------------------------------------

variable "aws_region" {
  description = "The lake's region (the EKS cluster's, to keep S3 traffic in-region)."
  type        = string
}

variable "aws_account_id" {
  description = "The AWS account this root may touch (the provider refuses any other), or null."
  type        = string
  default     = null
}

variable "bucket_name" {
  description = "The lake's bucket, created here (globally unique)."
  type        = string
}

variable "lake_prefix" {
  description = "The lake's prefix in the bucket: PROCESSING_DEST is s3://<bucket_name>/<lake_prefix>."
  type        = string
  default     = "events-lake"
}

variable "airflow_logs_prefix" {
  description = "Airflow's remote task logs' prefix in the bucket."
  type        = string
  default     = "airflow-logs"
}

variable "eks_oidc_provider_arn" {
  description = "ARN of the existing EKS cluster's IAM OIDC provider (IRSA)."
  type        = string
}

variable "eks_oidc_issuer_url" {
  description = "The EKS cluster's OIDC issuer URL (https://oidc.eks.<region>.amazonaws.com/id/<ID>): IRSA and Google's workload identity federation both trust it."
  type        = string
}

variable "glue_database" {
  description = "PROCESSING_GLUE_DATABASE, if the lake is registered in the Glue Data Catalog (the task role then gets the Glue actions); null otherwise."
  type        = string
  default     = null
}

variable "staging_expiration_days" {
  description = "S3 expiry of <lake_prefix>/_staging/ (a backstop: the pipeline removes failed runs' staging itself)."
  type        = number
  default     = 7
}

variable "previous_expiration_days" {
  description = "S3 expiry of <lake_prefix>/_previous/ (the version kept for a rollback), or null for none (prod: none, the next publish, expire and forget replace or remove it). See the module's variable for what a store-side expiry cannot do."
  type        = number
  default     = null
}

variable "rejected_keep_days" {
  description = "S3 expiry of <lake_prefix>/rejected/, or null for none: a few days above PROCESSING_REJECTED_KEEP_DAYS, as a backstop of expire."
  type        = number
  default     = null
}

variable "airflow_logs_expiration_days" {
  description = "S3 expiry of Airflow's task logs."
  type        = number
  default     = 90
}

variable "versioning_enabled" {
  description = "S3 versioning on the lake's bucket (off: see deploy/terraform/modules/lake-aws/bucket.tf)."
  type        = bool
  default     = false
}

# --- GCP ------------------------------------------------------------------------------------------

variable "gcp_project_id" {
  description = "The project of the reader's service account and the workload identity pool."
  type        = string
}

variable "gcp_billing_project_id" {
  description = "PROCESSING_BILLING_PROJECT, where read sessions are created and billed; null: gcp_project_id."
  type        = string
  default     = null
}

variable "bigquery_dataset_project_id" {
  description = "The project of the events table (PROCESSING_SOURCE bigquery://<project>.<dataset>.<table>)."
  type        = string
}

variable "bigquery_dataset_id" {
  description = "The dataset of the events table: the reader may read it and nothing else."
  type        = string
}

variable "gcp_service_account_id" {
  description = "The reader's service account id."
  type        = string
  default     = "events-lake-reader-prod"
}

variable "workload_identity_pool_id" {
  description = "The workload identity pool's id (a deleted pool's id stays taken for 30 days)."
  type        = string
  default     = "events-lake-prod"
}
