output "service_account_email" {
  description = "The reader's service account (impersonated by the pods; it has no key)."
  value       = google_service_account.reader.email
}

output "token_audience" {
  description = "The audience of the projected ServiceAccount token the pods present to Google."
  value       = var.token_audience
}

output "workload_identity_pool_name" {
  description = "projects/<number>/locations/global/workloadIdentityPools/<pool>."
  value       = google_iam_workload_identity_pool.eks.name
}

output "workload_identity_provider_name" {
  description = "projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>."
  value       = google_iam_workload_identity_pool_provider.eks.name
}

output "principals" {
  description = "The federated principals allowed to impersonate the reader."
  value       = [for member in google_service_account_iam_member.workload_identity_user : member.member]
}

# What google-auth reads from GOOGLE_APPLICATION_CREDENTIALS: trade the pod's projected token
# (credential_source) at Google's STS for a federated token, then impersonate the reader. It holds
# no secret: the token file is the credential, and it expires within the hour.
output "credential_configuration" {
  description = "The external_account credential configuration (JSON) for the pods: mount it and point GOOGLE_APPLICATION_CREDENTIALS at it."
  value = jsonencode({
    type                              = "external_account"
    audience                          = "//iam.googleapis.com/${google_iam_workload_identity_pool_provider.eks.name}"
    subject_token_type                = "urn:ietf:params:oauth:token-type:jwt"
    token_url                         = "https://sts.googleapis.com/v1/token"
    service_account_impersonation_url = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/${google_service_account.reader.email}:generateAccessToken"
    credential_source = {
      file   = var.token_path
      format = { type = "text" }
    }
  })
}
