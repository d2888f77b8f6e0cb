# BigQuery for the pipeline's pods on EKS, without a service account key: the pods' Kubernetes
# ServiceAccount tokens are exchanged for Google credentials through workload identity federation,
# then impersonate the reader's service account, which may read the events dataset and open read
# sessions in the billing project, nothing else.
#
# Why an OIDC provider on the EKS cluster's issuer, and not the pool's AWS provider type: the AWS
# credential source of google-auth signs its GetCallerIdentity request with credentials it reads
# from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN or from the instance metadata
# service only, not from IRSA's web identity token (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE).
# On EKS it would federate the node's instance role, shared by every pod on the node, not the
# pod's own, or fail where pods cannot reach the metadata service (google-auth's
# google/auth/aws.py, the AWS security credentials it looks up; the same limit is reported for
# the other languages' libraries: googleapis/google-auth-library-java#948, golang/oauth2#643). So the identity the AWS roles
# trust, the pod's Kubernetes ServiceAccount, is federated directly: the pool trusts the
# cluster's OIDC issuer (the same one IRSA trusts), and a projected ServiceAccount token with an
# audience of its own is the subject token.

locals {
  subjects = [
    for name in var.kubernetes_service_accounts : "system:serviceaccount:${var.kubernetes_namespace}:${name}"
  ]

  apis = var.enable_apis ? {
    for entry in [
      { project = var.project_id, service = "iam.googleapis.com" },
      { project = var.project_id, service = "iamcredentials.googleapis.com" },
      { project = var.project_id, service = "sts.googleapis.com" },
      { project = var.billing_project_id, service = "bigquerystorage.googleapis.com" },
    ] : "${entry.project}/${entry.service}" => entry
  } : {}
}

resource "google_project_service" "needed" {
  for_each = local.apis

  project            = each.value.project
  service            = each.value.service
  disable_on_destroy = false
}

resource "google_service_account" "reader" {
  project      = var.project_id
  account_id   = var.service_account_id
  display_name = "events-lake BigQuery reader"
  description  = "Read by the events-lake pods in ${var.kubernetes_namespace} (workload identity federation from EKS); no key."

  depends_on = [google_project_service.needed] # IAM's API, on a new project
}

# Read sessions of the BigQuery Storage Read API are created in, and billed to, this project.
resource "google_project_iam_member" "read_session_user" {
  project = var.billing_project_id
  role    = "roles/bigquery.readSessionUser"
  member  = "serviceAccount:${google_service_account.reader.email}"
}

# The events dataset only (its tables' metadata and rows): never a project-wide grant.
resource "google_bigquery_dataset_iam_member" "data_viewer" {
  project    = var.dataset_project_id
  dataset_id = var.dataset_id
  role       = "roles/bigquery.dataViewer"
  member     = "serviceAccount:${google_service_account.reader.email}"
}

resource "google_iam_workload_identity_pool" "eks" {
  project                   = var.project_id
  workload_identity_pool_id = var.workload_identity_pool_id
  display_name              = "events-lake EKS"
  description               = "Kubernetes ServiceAccounts of the events-lake pods on EKS"

  depends_on = [google_project_service.needed]
}

resource "google_iam_workload_identity_pool_provider" "eks" {
  project                            = var.project_id
  workload_identity_pool_id          = google_iam_workload_identity_pool.eks.workload_identity_pool_id
  workload_identity_pool_provider_id = var.workload_identity_provider_id
  display_name                       = "EKS cluster issuer"
  description                        = "The EKS cluster's OIDC issuer (the one its IRSA roles trust)"

  # A projected ServiceAccount token's claims: sub = system:serviceaccount:<ns>:<name>, and
  # kubernetes.io.{namespace, serviceaccount.name, pod.name}.
  attribute_mapping = {
    "google.subject"                 = "assertion.sub"
    "attribute.namespace"            = "assertion['kubernetes.io']['namespace']"
    "attribute.service_account_name" = "assertion['kubernetes.io']['serviceaccount']['name']"
  }

  # Only the pipeline's namespace and its two BigQuery readers get a federated token at all.
  attribute_condition = join(" && ", [
    "attribute.namespace == '${var.kubernetes_namespace}'",
    "attribute.service_account_name in [${join(", ", [for name in var.kubernetes_service_accounts : "'${name}'"])}]",
  ])

  oidc {
    issuer_uri        = trimsuffix(var.oidc_issuer_url, "/") # as the tokens' iss reads
    allowed_audiences = [var.token_audience]
  }
}

# Each subject may impersonate the reader (iam.serviceAccounts.getAccessToken): exactly the two
# ServiceAccounts, never the whole pool.
resource "google_service_account_iam_member" "workload_identity_user" {
  for_each = toset(local.subjects)

  service_account_id = google_service_account.reader.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "principal://iam.googleapis.com/${google_iam_workload_identity_pool.eks.name}/subject/${each.value}"
}
