variable "project_id" {
  description = "The GCP project that holds the reader's service account and the workload identity pool."
  type        = string
}

variable "billing_project_id" {
  description = "The project the BigQuery read sessions are created in and billed to (PROCESSING_BILLING_PROJECT); roles/bigquery.readSessionUser is granted there."
  type        = string
}

variable "dataset_project_id" {
  description = "The project of the events dataset (the source bigquery://<project>.<dataset>.<table>)."
  type        = string
}

variable "dataset_id" {
  description = "The events dataset: roles/bigquery.dataViewer is granted on it alone, never on the project."
  type        = string
}

variable "service_account_id" {
  description = "The reader's service account id (its e-mail's local part), e.g. events-lake-reader-prod."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.service_account_id))
    error_message = "service_account_id: 6-30 lower-case letters, digits and '-', starting with a letter."
  }
}

variable "workload_identity_pool_id" {
  description = "The workload identity pool's id, e.g. events-lake-prod (4-32 characters; a deleted pool's id stays taken for 30 days)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]{4,32}$", var.workload_identity_pool_id)) && !startswith(var.workload_identity_pool_id, "gcp-")
    error_message = "workload_identity_pool_id: 4-32 of [a-z0-9-], not starting with gcp-."
  }
}

variable "workload_identity_provider_id" {
  description = "The pool's OIDC provider id (the EKS cluster's issuer)."
  type        = string
  default     = "eks"

  validation {
    condition     = can(regex("^[a-z0-9-]{4,32}$", var.workload_identity_provider_id)) && !startswith(var.workload_identity_provider_id, "gcp-")
    error_message = "workload_identity_provider_id: 4-32 of [a-z0-9-], not starting with gcp-."
  }
}

variable "oidc_issuer_url" {
  description = "The EKS cluster's OIDC issuer URL, https://oidc.eks.<region>.amazonaws.com/id/<ID>: the same issuer the IRSA roles trust. Google's STS fetches its public discovery document and keys."
  type        = string

  validation {
    condition     = can(regex("^https://[^/]+(/.*)?$", var.oidc_issuer_url))
    error_message = "oidc_issuer_url: an https:// URL."
  }
}

variable "kubernetes_namespace" {
  description = "The namespace of the pipeline's pods: only its ServiceAccounts below are admitted."
  type        = string
}

variable "kubernetes_service_accounts" {
  description = "The ServiceAccounts that read BigQuery: the task pods' and the Dask workers' (deploy/kubernetes/base/airflow/serviceaccounts.yaml). Airflow's own components never read it."
  type        = list(string)
  default     = ["events-lake-task", "events-lake-dask"]
}

variable "token_audience" {
  description = "The audience of the projected ServiceAccount token mounted in the pods for Google (serviceAccountToken.audience in the pod template), and the provider's only allowed audience."
  type        = string
  default     = "events-lake-gcp"
}

variable "token_path" {
  description = "Where that token is mounted in the pods: the credential configuration's credential_source.file."
  type        = string
  default     = "/var/run/secrets/gcp/token"
}

variable "enable_apis" {
  description = "Enable the APIs this needs (IAM, IAM credentials and STS in project_id; the BigQuery Storage API in billing_project_id). Never disabled on destroy."
  type        = bool
  default     = true
}
