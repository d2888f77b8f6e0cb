# What deploy/kubernetes's overlay takes from here (scripts/terraform_overlay.py reads
# terraform output -json): keep these names.

output "kubernetes_namespace" {
  description = "The namespace the roles and the federation trust."
  value       = local.kubernetes_namespace
}

output "lake_url" {
  description = "PROCESSING_DEST."
  value       = module.lake.lake_url
}

output "aws_region" {
  description = "PROCESSING_S3_REGION."
  value       = module.lake.region
}

output "kms_key_arn" {
  description = "PROCESSING_S3_KMS_KEY_ID (with PROCESSING_S3_SSE=aws:kms)."
  value       = module.lake.kms_key_arn
}

output "airflow_logs_url" {
  description = "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER."
  value       = module.lake.airflow_logs_url
}

output "task_role_arn" {
  description = "eks.amazonaws.com/role-arn of ServiceAccount events-lake-task."
  value       = module.lake.task_role_arn
}

output "dask_role_arn" {
  description = "eks.amazonaws.com/role-arn of ServiceAccount events-lake-dask."
  value       = module.lake.dask_role_arn
}

output "airflow_role_arn" {
  description = "eks.amazonaws.com/role-arn of ServiceAccount airflow."
  value       = module.lake.airflow_role_arn
}

output "gcp_service_account" {
  description = "The BigQuery reader the pods impersonate."
  value       = module.bigquery_reader.service_account_email
}

output "gcp_token_audience" {
  description = "The audience of the projected ServiceAccount token for Google."
  value       = module.bigquery_reader.token_audience
}

output "gcp_credential_configuration" {
  description = "The external_account credential configuration (JSON) for GOOGLE_APPLICATION_CREDENTIALS."
  value       = module.bigquery_reader.credential_configuration
}
