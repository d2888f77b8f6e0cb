# Credentials come from the environment, never from here: AWS's chain (AWS_PROFILE, SSO, a CI
# role) and Google's Application Default Credentials (gcloud auth application-default login, or
# workload identity federation in CI).

provider "aws" {
  region              = var.aws_region
  allowed_account_ids = var.aws_account_id == null ? null : [var.aws_account_id]

  default_tags {
    tags = {
      project     = "events-lake"
      environment = local.environment
      managed-by  = "terraform"
    }
  }
}

provider "google" {
  project = var.gcp_project_id
}
