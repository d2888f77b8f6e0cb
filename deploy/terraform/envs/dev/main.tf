# events-lake, dev: the lake's bucket, key and IRSA roles on AWS, the BigQuery reader on GCP.
# The EKS cluster (and its IAM OIDC provider) exists already; the Kubernetes objects are
# deploy/kubernetes/overlays/dev, completed from this root's outputs (terraform output -json).

locals {
  environment          = "dev"
  name                 = "events-lake-dev"
  kubernetes_namespace = "events-lake-dev" # deploy/kubernetes/overlays/dev/kustomization.yaml
}

module "lake" {
  source = "../../modules/lake-aws"

  name                 = local.name
  bucket_name          = var.bucket_name
  lake_prefix          = var.lake_prefix
  airflow_logs_prefix  = var.airflow_logs_prefix
  kubernetes_namespace = local.kubernetes_namespace
  oidc_provider_arn    = var.eks_oidc_provider_arn
  oidc_issuer_url      = var.eks_oidc_issuer_url
  glue_database        = var.glue_database

  staging_expiration_days      = var.staging_expiration_days
  previous_expiration_days     = var.previous_expiration_days
  rejected_keep_days           = var.rejected_keep_days
  airflow_logs_expiration_days = var.airflow_logs_expiration_days
  versioning_enabled           = var.versioning_enabled
}

module "bigquery_reader" {
  source = "../../modules/bigquery-reader-gcp"

  project_id                = var.gcp_project_id
  billing_project_id        = coalesce(var.gcp_billing_project_id, var.gcp_project_id)
  dataset_project_id        = var.bigquery_dataset_project_id
  dataset_id                = var.bigquery_dataset_id
  service_account_id        = var.gcp_service_account_id
  workload_identity_pool_id = var.workload_identity_pool_id
  oidc_issuer_url           = var.eks_oidc_issuer_url
  kubernetes_namespace      = local.kubernetes_namespace
}
