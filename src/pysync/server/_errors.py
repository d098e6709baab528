"""Errors the proxy returns, in DynamoDB's own JSON error shape."""

from __future__ import annotations

import json
import math

_NAMESPACE = "com.amazonaws.dynamodb.v20120810#"


class ProxyError(Exception):
    """A request the proxy refuses; rendered as ``{"__type": ..., "message": ...}``.

    ``error_type`` is the short DynamoDB error name (``AccessDeniedException``);
    ``status`` the HTTP status code.
    """

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = headers or {}

    def body(self) -> bytes:
        """The JSON body DynamoDB clients parse (botocore reads ``__type`` and ``message``)."""
        return json.dumps(
            {"__type": _NAMESPACE + self.error_type, "message": self.message},
            separators=(",", ":"),
        ).encode()


class AccessDenied(ProxyError):
    """Well-formed request that the policy does not allow (HTTP 403)."""

    def __init__(self, message: str) -> None:
        super().__init__(403, "AccessDeniedException", message)


class ValidationError(ProxyError):
    """Structurally invalid request: wrong types, unparseable expression (HTTP 400)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "ValidationException", message)


class SerializationError(ProxyError):
    """Body that is not a UTF-8 JSON object (HTTP 400)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "SerializationException", message)


class ClientDisconnected(ProxyError):
    """The client went away before its request was complete (status 499, as nginx logs it).

    Nobody reads the answer. The proxy logs it at info level, without a
    traceback: it is no fault of the server's (a client that hangs up mid-body,
    or one cut off by a connection limit).
    """

    def __init__(self) -> None:
        super().__init__(
            499, "ClientDisconnected", "the client disconnected before the end of its request"
        )


class AuthError(ProxyError):
    """Missing, malformed, expired or untrusted bearer token (HTTP 401)."""

    def __init__(self, message: str, error_type: str = "UnrecognizedClientException") -> None:
        super().__init__(401, error_type, message, {"WWW-Authenticate": "Bearer"})


class Throttled(ProxyError):
    """The caller's token bucket is empty (HTTP 429, with ``Retry-After``)."""

    def __init__(self, retry_after: float) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(
            429,
            "ThrottlingException",
            "Rate of requests exceeds the allowed rate for this token",
            {"Retry-After": str(seconds)},
        )
