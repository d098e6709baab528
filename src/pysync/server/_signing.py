"""AWS SigV4 signing of forwarded DynamoDB requests with botocore's credential chain."""

from __future__ import annotations

import asyncio
from functools import lru_cache
from urllib.parse import urlsplit

import botocore.session  # type: ignore[import-untyped]
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials  # type: ignore[import-untyped]

JSON_CONTENT_TYPE = "application/x-amz-json-1.0"


@lru_cache(maxsize=16)
def host_header(url: str) -> str:
    """The ``Host`` an HTTP client sends for ``url`` (default ports omitted)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


class NoCredentialsError(RuntimeError):
    """botocore's credential chain found nothing to sign with."""


class Signer:
    """Sign DynamoDB (and DynamoDB Streams) JSON-protocol requests.

    Credentials come from ``session`` (default: a fresh ``botocore.session``,
    i.e. environment variables, the shared config/profile, container and
    instance roles). Refreshable credentials (roles, SSO) are refreshed in a
    worker thread so a slow STS call never blocks the event loop.
    """

    def __init__(self, region: str, *, session: botocore.session.Session | None = None) -> None:
        self.region = region
        credentials = (session or botocore.session.Session()).get_credentials()
        if credentials is None:
            raise NoCredentialsError(
                "no AWS credentials found (environment, profile or role); see docs/proxy.md"
            )
        self._credentials: Credentials = credentials

    async def frozen_credentials(self) -> ReadOnlyCredentials:
        """Current credentials; refreshes off the event loop when they are about to expire."""
        credentials = self._credentials
        if isinstance(credentials, RefreshableCredentials) and credentials.refresh_needed():
            return await asyncio.to_thread(credentials.get_frozen_credentials)
        return credentials.get_frozen_credentials()

    def sign(
        self, url: str, body: bytes, target: str, credentials: ReadOnlyCredentials
    ) -> dict[str, str]:
        """Headers for POSTing exactly ``body`` to ``url``, signed over those bytes.

        Returns ``Host``, ``Content-Type``, ``X-Amz-Target``, ``X-Amz-Date``,
        ``Authorization`` and, for temporary credentials, ``X-Amz-Security-Token``.
        """
        request = AWSRequest(
            method="POST",
            url=url,
            data=body,
            # An explicit Host is both signed and sent, so the two cannot differ
            # (and botocore skips parsing the URL twice per request).
            headers={
                "Host": host_header(url),
                "Content-Type": JSON_CONTENT_TYPE,
                "X-Amz-Target": target,
            },
        )
        # DynamoDB Streams requests are signed for service "dynamodb" as well.
        SigV4Auth(credentials, "dynamodb", self.region).add_auth(request)
        return dict(request.headers.items())
