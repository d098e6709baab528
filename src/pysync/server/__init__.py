"""pysync server side: the DynamoDB proxy (auth, policy, SigV4, forwarding) and dev tools.

Needs the ``server`` extra (``pip install pysync[server]``). Entry points:

- :func:`create_app` builds the ASGI app from a :class:`ProxyConfig`;
- :class:`Policy` / :class:`TableRule` describe what tokens may do;
- :class:`TokenVerifier` checks bearer tokens, :func:`issue_token` mints dev tokens
  (and :class:`DevTokens`, the dev-only sign-in endpoint of ``pysync dev``);
- :class:`DynamoDBLocal` and :func:`create_tables` set up a development database;
- :class:`StreamConsumer` reads the data table's stream into the :class:`Changelog`;
  :class:`ChangeFeed` fans new entries out to ``GET /changes`` subscribers
  (see docs/changelog.md).
"""

from ._app import API_PATH, CHANGES_PATH, Runtime, create_app, verifier_from_config
from ._auth import Principal, TokenVerifier, issue_token
from ._changelog import Change, Changelog, Head, parse_record
from ._config import DEV_JWT_SECRET, ProxyConfig
from ._devstack import DynamoDBLocal, create_tables, dynamodb_client, local_session
from ._devtokens import DEMO_SHARED_SCOPE, DEV_TOKEN_PATH, DevTokens
from ._dynamo import DynamoDBAPI, DynamoDBError
from ._errors import ProxyError
from ._policy import PROTOCOL_FIELDS, Policy, TableRule
from ._realtime import ChangeFeed, Subscription
from ._signing import Signer
from ._streams import SHARD_END, Lease, LeaseTable, StreamConsumer

__all__ = [
    "API_PATH",
    "CHANGES_PATH",
    "DEMO_SHARED_SCOPE",
    "DEV_JWT_SECRET",
    "DEV_TOKEN_PATH",
    "PROTOCOL_FIELDS",
    "SHARD_END",
    "Change",
    "ChangeFeed",
    "Changelog",
    "DevTokens",
    "DynamoDBAPI",
    "DynamoDBError",
    "DynamoDBLocal",
    "Head",
    "Lease",
    "LeaseTable",
    "Policy",
    "Principal",
    "ProxyConfig",
    "ProxyError",
    "Runtime",
    "Signer",
    "StreamConsumer",
    "Subscription",
    "TableRule",
    "TokenVerifier",
    "create_app",
    "create_tables",
    "dynamodb_client",
    "issue_token",
    "local_session",
    "parse_record",
    "verifier_from_config",
]
