"""pysync server side: the DynamoDB proxy (auth, policy, SigV4, forwarding) and dev tools.

Needs the ``server`` extra (``pip install pysync[server]``). Entry points:

- :func:`create_app` builds the ASGI app from a :class:`ProxyConfig`;
- :class:`Policy` / :class:`TableRule` describe what tokens may do;
- :class:`TokenVerifier` checks bearer tokens, :func:`issue_token` mints dev tokens;
- :class:`DynamoDBLocal` and :func:`create_tables` set up a development database.
"""

from ._app import API_PATH, create_app, verifier_from_config
from ._auth import Principal, TokenVerifier, issue_token
from ._config import DEV_JWT_SECRET, ProxyConfig
from ._devstack import DynamoDBLocal, create_tables, dynamodb_client, local_session
from ._errors import ProxyError
from ._policy import PROTOCOL_FIELDS, Policy, TableRule

__all__ = [
    "API_PATH",
    "DEV_JWT_SECRET",
    "PROTOCOL_FIELDS",
    "DynamoDBLocal",
    "Policy",
    "Principal",
    "ProxyConfig",
    "ProxyError",
    "TableRule",
    "TokenVerifier",
    "create_app",
    "create_tables",
    "dynamodb_client",
    "issue_token",
    "local_session",
    "verifier_from_config",
]
