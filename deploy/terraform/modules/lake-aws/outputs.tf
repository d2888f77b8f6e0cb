output "bucket_name" {
  description = "The lake's bucket."
  value       = aws_s3_bucket.lake.bucket
}

output "bucket_arn" {
  description = "The lake's bucket ARN."
  value       = aws_s3_bucket.lake.arn
}

output "region" {
  description = "The bucket's region (PROCESSING_S3_REGION)."
  value       = local.region
}

output "lake_url" {
  description = "The lake's root, s3://<bucket>/<prefix> (PROCESSING_DEST)."
  value       = "s3://${aws_s3_bucket.lake.bucket}/${var.lake_prefix}"
}

output "airflow_logs_url" {
  description = "Airflow's remote log folder, s3://<bucket>/<prefix> (AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER)."
  value       = "s3://${aws_s3_bucket.lake.bucket}/${var.airflow_logs_prefix}"
}

output "kms_key_arn" {
  description = "The lake's KMS key (PROCESSING_S3_KMS_KEY_ID, with PROCESSING_S3_SSE=aws:kms)."
  value       = aws_kms_key.lake.arn
}

output "kms_alias" {
  description = "The key's alias."
  value       = aws_kms_alias.lake.name
}

output "task_role_arn" {
  description = "IRSA role of ServiceAccount events-lake-task (eks.amazonaws.com/role-arn)."
  value       = aws_iam_role.workload["task"].arn
}

output "dask_role_arn" {
  description = "IRSA role of ServiceAccount events-lake-dask."
  value       = aws_iam_role.workload["dask"].arn
}

output "airflow_role_arn" {
  description = "IRSA role of ServiceAccount airflow."
  value       = aws_iam_role.workload["airflow"].arn
}
