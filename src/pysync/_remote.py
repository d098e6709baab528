"""Talking to DynamoDB (through the pysync proxy) in DynamoDB's own JSON protocol.

``HttpRemote`` posts ``X-Amz-Target: DynamoDB_20120810.<Op>`` requests with a
bearer token: with ``pyodide.http.pyfetch`` in the page (asynchronous, never
blocking the main thread), with httpx in CPython. Errors come back as typed
exceptions: retryable ones (network, 5xx, throttling) apart from permanent ones.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ._errors import PysyncError

_RETRYABLE = {
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionConflictException",
    "TransactionInProgressException",
    "LimitExceededException",
}


class RemoteError(PysyncError):
    """DynamoDB (or the proxy) refused a request.

    ``code`` is the error name (``__type`` after the ``#``), ``status`` the HTTP
    status; ``body`` the parsed error document (it holds ``Item`` for a failed
    condition and ``CancellationReasons`` for a cancelled transaction).
    """

    def __init__(self, code: str, message: str, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.body = body

    @property
    def retryable(self) -> bool:
        """Whether retrying later may succeed (network, 5xx, throttling)."""
        return self.status >= 500 or self.status in (0, 429) or self.code in _RETRYABLE


class Remote(Protocol):
    """Anything that answers DynamoDB JSON-protocol calls."""

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send ``operation`` with ``payload``; return the response or raise RemoteError."""
        ...


Send = Callable[[str, dict[str, str], bytes], Awaitable[tuple[int, bytes]]]


def token_function(token: Callable[[], str] | str) -> Callable[[], str]:
    """A function giving the current bearer token, from a token or such a function."""
    return token if callable(token) else (lambda: token)


class HttpRemote:
    """A :class:`Remote` over HTTP to the pysync proxy (or to anything speaking the protocol)."""

    def __init__(
        self,
        url: str,
        token: Callable[[], str] | str,
        send: Send | None = None,
    ) -> None:
        self.url = url
        self._token = token_function(token)
        self._send = send or _default_send()

    async def close(self) -> None:
        """Release the connection pool (CPython); nothing to do in the page."""
        close = getattr(self._send, "aclose", None)
        if close is not None:
            await close()

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"DynamoDB_20120810.{operation}",
            "Authorization": f"Bearer {self._token()}",
        }
        try:
            status, body = await self._send(self.url, headers, json.dumps(payload).encode())
        except RemoteError:
            raise
        except Exception as error:  # the network: offline, reset, CORS, DNS …
            raise RemoteError("NetworkError", repr(error), 0, {}) from error
        try:
            document = json.loads(body) if body else {}
        except ValueError:
            document = {"message": body[:200].decode(errors="replace")}
        if status == 200:
            return document
        kind = str(document.get("__type", "UnknownError")).rsplit("#", 1)[-1]
        message = str(document.get("message") or document.get("Message") or "")
        raise RemoteError(kind, message, status, document)


def _default_send() -> Send:
    if sys.platform == "emscripten":
        return _pyfetch_send
    return _HttpxSend()


async def _pyfetch_send(url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    from pyodide.http import pyfetch

    response = await pyfetch(url, method="POST", headers=headers, body=body.decode())
    return response.status, await response.bytes()


class _HttpxSend:
    def __init__(self) -> None:
        import httpx

        self._client = httpx.AsyncClient(timeout=30)

    async def __call__(self, url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        response = await self._client.post(url, headers=headers, content=body)
        return response.status_code, response.content

    async def aclose(self) -> None:
        await self._client.aclose()
