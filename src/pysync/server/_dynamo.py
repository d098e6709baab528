"""A small asynchronous DynamoDB and DynamoDB Streams client for the server's own calls.

The stream consumer, the changelog appender and the realtime feed call
DynamoDB themselves. They use the proxy's request path (:class:`Signer` for
SigV4 with botocore's credential chain and refresh, a pooled aiohttp session
configured like :class:`Forwarder`) instead of a second SDK: no new
dependency, no worker threads, about 1 ms per call against DynamoDB Local.
Bodies are sent from a buffer, so multi-megabyte transactions do not block
the event loop.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
from typing import Any

import aiohttp

from .._remote import TARGET_PREFIX
from ._signing import Signer

STREAMS_TARGET = "DynamoDBStreams_20120810."

#: Error types worth retrying (with backoff): throttling, conflicts, server-side trouble.
RETRYABLE_ERRORS = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "TransactionConflictException",
        "TransactionInProgressException",
    }
)


class DynamoDBError(Exception):
    """An error reply from DynamoDB (or DynamoDB Streams), or a transport failure.

    ``error_type`` is the short name (after ``#`` in ``__type``), ``body`` the
    parsed error document (``CancellationReasons`` for cancelled transactions).
    """

    def __init__(self, status: int, error_type: str, message: str, body: dict[str, Any]) -> None:
        super().__init__(f"{error_type}: {message}")
        self.status = status
        self.error_type = error_type
        self.message = message
        self.body = body

    @property
    def retryable(self) -> bool:
        """True for throttling, conflicts, 5xx and transport failures."""
        return self.error_type in RETRYABLE_ERRORS or self.status >= 500


def parse_error(status: int, raw: bytes) -> DynamoDBError:
    """Turn an error reply into :class:`DynamoDBError` (``message`` or ``Message``)."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    error_type = str(body.get("__type", "UnknownError")).rpartition("#")[2]
    message = str(body.get("message") or body.get("Message") or "")
    return DynamoDBError(status, error_type, message, body)


async def backoff(attempt: int, *, base: float = 0.005, cap: float = 1.0) -> None:
    """Sleep a "full jitter" exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    await asyncio.sleep(random.uniform(0, min(cap, base * 2 ** min(attempt, 30))))


class DynamoDBAPI:
    """Signed JSON-protocol calls to DynamoDB and DynamoDB Streams; create it in the event loop.

    ``streams_url`` defaults to ``dynamodb_url`` (DynamoDB Local serves both).
    Subclass and override :meth:`request` to inject faults in tests.
    """

    def __init__(
        self,
        signer: Signer,
        dynamodb_url: str,
        streams_url: str | None = None,
        *,
        timeout: float = 10.0,
        max_connections: int = 16,
    ) -> None:
        self.signer = signer
        self.dynamodb_url = dynamodb_url
        self.streams_url = streams_url or dynamodb_url
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections),
            timeout=aiohttp.ClientTimeout(total=timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )

    async def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        """Call a DynamoDB operation (``PutItem``, ``Query``...); raise :class:`DynamoDBError`."""
        return await self.request(self.dynamodb_url, TARGET_PREFIX + operation, body)

    async def streams(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        """Call a DynamoDB Streams operation (``GetRecords``...); raise :class:`DynamoDBError`."""
        return await self.request(self.streams_url, STREAMS_TARGET + operation, body)

    async def request(self, url: str, target: str, body: dict[str, Any]) -> dict[str, Any]:
        """Sign and send one request; the parsed reply, or :class:`DynamoDBError`."""
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        credentials = await self.signer.frozen_credentials()
        headers = self.signer.sign(url, data, target, credentials)
        try:
            async with self._session.post(
                url, data=io.BytesIO(data), headers=headers, allow_redirects=False
            ) as response:
                raw = await response.read()
                status = response.status
        except TimeoutError:
            raise DynamoDBError(504, "ServiceUnavailable", "no answer in time", {}) from None
        except aiohttp.ClientError as error:
            raise DynamoDBError(502, "ServiceUnavailable", f"unreachable: {error}", {}) from None
        if status != 200:
            raise parse_error(status, raw)
        result: dict[str, Any] = json.loads(raw)
        return result

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._session.close()
