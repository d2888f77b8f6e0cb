"""The FAB auth manager's settings (prod): single sign-on with your OpenID Connect provider.

Loaded by the api-server from ``[fab] config_file``. Users are created at their first login and
get their Airflow roles from their groups at every login (``AUTH_ROLES_MAPPING``); a user in no
mapped group gets the role ``Public``, which grants nothing. Nothing about the provider or the
people is in git: the discovery URL, the client and the mapping are the files of the Secret
``airflow-oidc``, projected beside this file (``secret-templates/airflow-oidc.yaml``).

To log in with passwords kept in the metadata database instead, or with LDAP, change
``AUTH_TYPE`` (``AUTH_DB``: users made with ``airflow users create``; ``AUTH_LDAP``: the
``AUTH_LDAP_*`` settings), as deploy/README.md says.
"""

from __future__ import annotations

import json
from pathlib import Path

from flask_appbuilder.const import AUTH_OAUTH

#: The files of the Secret airflow-oidc, projected into this file's folder.
HERE = Path(__file__).resolve().parent


def _secret(key: str) -> str:
    """A file of the Secret airflow-oidc. Flask loads this module with ``silent=True``, which
    swallows a missing file's error and leaves FAB on its defaults: fail loudly instead."""
    try:
        return (HERE / key).read_text().strip()
    except FileNotFoundError:
        raise RuntimeError(
            f"webserver_config.py: no {key!r} in {HERE}: create the Secret airflow-oidc with "
            "the keys of deploy/kubernetes/secret-templates/airflow-oidc.yaml"
        ) from None


AUTH_TYPE = AUTH_OAUTH
AUTH_USER_REGISTRATION = True  # a user of the provider is created at their first login
AUTH_USER_REGISTRATION_ROLE = "Public"  # no permission until a group maps to a role
AUTH_ROLES_SYNC_AT_LOGIN = True  # leaving a group takes its role away at the next login
AUTH_ROLES_MAPPING: dict[str, list[str]] = json.loads(_secret("roles_mapping.json"))

# The provider named "oidc": Airflow's FAB security manager reads any provider not among its
# built-in ones (github, google, azure, okta, keycloak...) from the OpenID Connect userinfo
# endpoint: username from preferred_username, roles from the "groups" claim (ask for it in the
# scope if your provider needs to: Dex and Okta do; Keycloak needs a group mapper instead).
OAUTH_PROVIDERS = [
    {
        "name": "oidc",
        "icon": "fa-key",
        "token_key": "access_token",
        "remote_app": {
            "client_id": _secret("client_id"),
            "client_secret": _secret("client_secret"),
            "server_metadata_url": _secret("metadata_url"),
            "client_kwargs": {"scope": _secret("scope")},
        },
    }
]
