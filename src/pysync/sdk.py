"""Standard AWS SDKs against the pysync proxy, with a user's bearer token.

The proxy speaks DynamoDB's JSON protocol at ``POST /dynamodb``, so botocore (and
boto3, which is botocore underneath) works against it unchanged once it stops
signing with SigV4 and sends ``Authorization: Bearer <token>`` instead::

    from pysync.sdk import proxy_client

    ddb = proxy_client("https://app.example.com/dynamodb", token)
    ddb.put_item(TableName="pysync", Item={"pk": {"S": "u#alice"}, "sk": {"S": "x"}})

The proxy applies the same per-user policy as to pysync's own requests: a key
outside the token's scopes is refused with ``AccessDeniedException``.

This module imports botocore only when called, so it also loads in the page
(Pyodide) once the ``botocore`` package is loaded (see docs/sdks.md); it is not
imported by ``pysync`` itself.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = ["bearer", "proxy_client"]

Token = str | Callable[[], str]

_IN_PYODIDE = sys.platform == "emscripten"


def bearer(client: Any, token: Token) -> Any:
    """Make an existing botocore/boto3 client send ``Authorization: Bearer <token>``.

    ``token`` is a string or a callable returning the current token (called before
    every request, so a refreshed token is picked up). The client should be created
    with ``Config(signature_version=UNSIGNED)``: a SigV4 ``Authorization`` would be
    replaced anyway, but signing needs AWS credentials the caller does not have.
    Works for ``boto3.resource("dynamodb", ...).meta.client`` too. Returns ``client``.
    """

    def add_authorization(request: Any, **_: Any) -> None:
        value = token() if callable(token) else token
        request.headers["Authorization"] = f"Bearer {value}"
        if _IN_PYODIDE:
            # botocore keeps some header values as bytes; urllib3's Pyodide backend hands
            # them to fetch() as Uint8Arrays, which arrive as "68,121,...".
            for name, header in list(request.headers.items()):
                if isinstance(header, bytes):
                    request.headers[name] = header.decode("latin-1")

    client.meta.events.register("before-send.dynamodb", add_authorization)
    return client


def proxy_client(
    url: str,
    token: Token,
    *,
    region: str = "us-east-1",
    session: Any = None,
    config: Any = None,
) -> Any:
    """A low-level DynamoDB client (``boto3.client("dynamodb")``'s API) for the proxy.

    ``url`` is the proxy's DynamoDB endpoint, ``https://host/dynamodb``. ``region`` is
    only used by botocore to build the client (the proxy signs for its own region).
    ``session`` may be a ``boto3.Session`` or a ``botocore.session.Session`` (default:
    a new botocore session); ``config`` a ``botocore.config.Config`` merged under the
    unsigned signature version.
    """
    from botocore import UNSIGNED  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]

    unsigned = Config(signature_version=UNSIGNED)
    merged = config.merge(unsigned) if config is not None else unsigned
    if session is None:
        import botocore.session  # type: ignore[import-untyped]

        session = botocore.session.get_session()
    create = getattr(session, "create_client", None) or session.client
    client = create("dynamodb", region_name=region, endpoint_url=url, config=merged)
    return bearer(client, token)
