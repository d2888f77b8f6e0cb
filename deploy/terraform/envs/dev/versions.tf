terraform {
  required_version = ">= 1.10.0"

  # Exact versions: an upgrade is a reviewed change of these two lines (and of the
  # .terraform.lock.hcl that your first terraform init writes beside them: commit it then).
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "= 6.47.0"
    }
    google = {
      source  = "hashicorp/google"
      version = "= 7.40.0"
    }
  }

  # The state in a bucket of its own (versioned, encrypted; never the lake's bucket), locked with
  # S3's conditional writes (use_lockfile). A partial configuration: the bucket and its region
  # come from terraform init -backend-config=backend.hcl (bucket = "...", region = "...", kept
  # out of git), so nothing here names an account.
  backend "s3" {
    key          = "events-lake/dev/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}
