"""Connection and request limits, enforced in the HTTP protocol before the app sees a request.

An ASGI middleware only runs once the server has read and parsed every header,
so the limits on what a client may send live one level lower, in a small
subclass of uvicorn's httptools protocol (:func:`protocol_class`), which
:func:`uvicorn_config` plugs into uvicorn. Per connection it enforces:

- the connection caps, total and per client address, in ``connection_made``: a
  connection beyond a cap gets a canned 503 with ``Retry-After: 1`` and is closed
  at once, without reading from it;
- the size of the request line plus headers, counted as the bytes arrive and
  fed to the parser in slices that never go past the limit (431), the number of
  headers (431) and the length of ``Authorization`` (431), checked in the
  parser's callbacks before the app is called;
- ``Content-Length`` against the body limit when the headers end, and the bytes
  of a chunked body as they arrive (413);
- a deadline from the first byte of a request (from the connection's opening for
  its first request) until its headers are complete, and one from there until
  its body is complete (408);
- the idle time between requests on a keep-alive connection (uvicorn's
  ``timeout_keep_alive``).

A refused request gets a short canned response in DynamoDB's error shape with
``Connection: close``; the app is never called, or, if it was already running
(a body that is too slow or too long), it sees a disconnect. The connection is
then half-closed and its remaining input discarded for at most
:data:`LINGER_SECONDS` or :data:`LINGER_BYTES`, so a client that is still
sending can read the response instead of a reset. Refusals are counted and
summarised on the ``pysync.limits`` logger at most once a minute.

:class:`HeaderLimits` repeats the header checks as ASGI middleware, for
``create_app`` run by another ASGI server (where they come after that server's
parsing, so they only save the token verification).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ._config import ProxyConfig

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("pysync.limits")

#: After a refusal: how long the connection stays half-open to let the client read the response.
LINGER_SECONDS = 1.0
#: After a refusal: how many more bytes are read (and dropped) before closing at once.
LINGER_BYTES = 64 * 1024
#: How often refusals are summarised in the log.
LOG_INTERVAL = 60.0

_REASONS = {
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}
_ERROR_TYPES = {
    408: "RequestTimeoutException",
    413: "ValidationException",
    431: "ValidationException",
    503: "ServiceUnavailable",
}


def canned_response(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 refusal in DynamoDB's error shape, closing the connection."""
    body = json.dumps(
        {"__type": f"com.amazonaws.dynamodb.v20120810#{_ERROR_TYPES[status]}", "message": message},
        separators=(",", ":"),
    ).encode()
    retry = b"retry-after: 1\r\n" if status == 503 else b""
    return (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n".encode()
        + b"content-type: application/x-amz-json-1.0\r\n"
        + f"content-length: {len(body)}\r\n".encode()
        + retry
        + b"connection: close\r\n\r\n"
        + body
    )


_TOO_MANY_CONNECTIONS = canned_response(503, "too many connections, retry later")


@dataclass(frozen=True)
class Limits:
    """The limits of :func:`protocol_class`; see docs/security.md#limits."""

    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    max_authorization_bytes: int = 8 * 1024
    max_body_bytes: int = 4 * 1024 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 1000
    max_connections_per_address: int = 100

    def __post_init__(self) -> None:
        for name in (
            "max_header_bytes",
            "max_headers",
            "max_authorization_bytes",
            "max_body_bytes",
            "max_connections",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_connections_per_address < 0:
            raise ValueError("max_connections_per_address must be 0 (no cap) or more")
        for name in ("header_timeout", "body_timeout", "keep_alive_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0 seconds")

    @classmethod
    def from_config(cls, config: ProxyConfig) -> Limits:
        """The limits that ``config`` sets."""
        return cls(
            max_header_bytes=config.max_header_bytes,
            max_headers=config.max_headers,
            max_authorization_bytes=config.max_authorization_bytes,
            max_body_bytes=config.max_body_bytes,
            header_timeout=config.header_timeout,
            body_timeout=config.body_timeout,
            keep_alive_timeout=config.keep_alive_timeout,
            max_connections=config.max_client_connections,
            max_connections_per_address=config.max_connections_per_address,
        )


@dataclass
class ConnectionStats:
    """What the protocol instances of one server share: open connections and refusals."""

    total: int = 0
    per_address: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    _unlogged: Counter[str] = field(default_factory=Counter)
    _logged_at: float = 0.0

    def refuse(self, reason: str) -> None:
        """Count a refusal; log the counts since the last summary at most once per interval."""
        self.refused[reason] += 1
        self._unlogged[reason] += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_INTERVAL:
            summary = ", ".join(
                f"{name} x{count}" for name, count in sorted(self._unlogged.items())
            )
            logger.warning("refused since the last report: %s (see docs/security.md)", summary)
            self._unlogged.clear()
            self._logged_at = now


class _Refusal(Exception):
    """Raised in a parser callback to stop parsing; the refusal is in ``protocol._refusal``."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with :class:`Limits`; subclassed by :func:`protocol_class`."""

    limits: Limits = Limits()
    stats: ConnectionStats = ConnectionStats()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.limits.keep_alive_timeout  # type: ignore[assignment]
        self._address = ""
        self._admitted = False
        self._reading_head = True  # between requests, or before a request's headers end
        self._head_bytes = 0
        self._header_count = 0
        self._content_length: bytes | None = None
        self._body_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str, str] | None = None
        self._lingering = False
        self._linger_budget = LINGER_BYTES
        self._linger_timer: asyncio.TimerHandle | None = None

    # --- connections ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        limits, stats = self.limits, self.stats
        per_address = limits.max_connections_per_address
        if stats.total >= limits.max_connections:
            reason = "503 total connections"
        elif per_address and address and stats.per_address[address] >= per_address:
            reason = "503 connections per address"
        else:
            self._admitted = True
            self._address = address
            stats.total += 1
            stats.per_address[address] += 1
            super().connection_made(transport)
            self._arm_head_timer()
            return
        # Never counted, never read: answer and close.
        stats.refuse(reason)
        self.transport = transport
        transport.write(_TOO_MANY_CONNECTIONS)
        transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        for timer in (self._head_timer, self._body_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        stats = self.stats
        stats.total -= 1
        stats.per_address[self._address] -= 1
        if stats.per_address[self._address] <= 0:
            del stats.per_address[self._address]
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._linger_budget -= len(data)
            if self._linger_budget < 0:
                self.transport.close()
            return
        if not self._admitted:
            return
        self._unset_keepalive_if_required()
        limit = self.limits.max_header_bytes
        while data:
            if self._reading_head:
                if self._head_timer is None:
                    self._arm_head_timer()
                # Never hand the parser more head than the limit allows: what it buffers stays
                # small (httptools concatenates a header value's pieces, quadratic in its size).
                room = max(1, limit - self._head_bytes)
                chunk, data = (data, b"") if len(data) <= room else (data[:room], data[room:])
                self._head_bytes += len(chunk)
            else:
                chunk, data = data, b""
            self._feed(chunk)
            if self._lingering or self.transport.is_closing():
                return
            if self._reading_head and self._head_bytes >= limit:
                self._refuse(431, f"request headers exceed {limit} bytes", "header size")
                self.data_received(data)  # counted against the linger budget
                return

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._refusal is not None:  # raised by a callback below
                self._refuse(*self._refusal)
            else:
                self.stats.refuse("400 malformed")
                self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade:
            pass  # no WebSockets or other upgrades here: the app answers the request as it is

    # --- parser callbacks -------------------------------------------------------------

    def _stop(self, status: int, message: str, label: str) -> None:
        self._refusal = (status, message, label)
        raise _Refusal(message)

    def on_message_begin(self) -> None:
        self._header_count = 0
        self._content_length = None
        self._body_bytes = 0
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        limits = self.limits
        if self._header_count > limits.max_headers:
            self._stop(431, f"more than {limits.max_headers} request headers", "header count")
        lowered = name.lower()
        if lowered == b"authorization" and len(value) > limits.max_authorization_bytes:
            limit = limits.max_authorization_bytes
            self._stop(431, f"Authorization exceeds {limit} bytes", "authorization size")
        if lowered == b"content-length":
            self._content_length = value
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        limits = self.limits
        length = self._content_length
        # llhttp has already refused a malformed or conflicting Content-Length.
        if length is not None and length.strip().isdigit() and int(length) > limits.max_body_bytes:
            self._stop(413, f"request body exceeds {limits.max_body_bytes} bytes", "body size")
        self._reading_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._body_timer = self.loop.call_later(limits.body_timeout, self._body_too_slow)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_body_bytes:  # chunked bodies have no length
            limit = self.limits.max_body_bytes
            self._stop(413, f"request body exceeds {limit} bytes", "body size")
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._reading_head = True
        self._head_bytes = 0
        super().on_message_complete()

    # --- deadlines and refusals -----------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_too_slow)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.flow.read_paused:  # the server is not reading (pipelining): not the client's fault
            self._arm_head_timer()
        elif self._head_bytes:
            timeout = self.limits.header_timeout
            self._refuse(408, f"request headers not received within {timeout} s", "header time")
        else:  # nothing sent: an idle connection, closed without a word
            self.stats.refuse("idle connections")
            self.transport.close()

    def _body_too_slow(self) -> None:
        self._body_timer = None
        if self.flow.read_paused:  # the app is not reading the body yet: not the client's fault
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_too_slow)
        else:
            timeout = self.limits.body_timeout
            self._refuse(408, f"request body not received within {timeout} s", "body time")

    def _refuse(self, status: int, message: str, label: str) -> None:
        if self._lingering or not self._admitted:
            return
        self._lingering = True
        self.stats.refuse(f"{status} {label}")
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None
        self._unset_keepalive_if_required()
        cycle = self.cycle
        respond = True
        if cycle is not None and not cycle.response_complete:
            respond = not cycle.response_started
            cycle.disconnected = True  # the app's sends are dropped, its receive() disconnects
            cycle.message_event.set()
        transport = self.transport
        if respond:
            transport.write(canned_response(status, message))
        if transport.can_write_eof():
            transport.write_eof()
        self.flow.resume_reading()
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, transport.close)


def protocol_class(limits: Limits) -> type[LimitedHttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` with ``limits`` and its own counters."""
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {"limits": limits, "stats": ConnectionStats()},
    )


def uvicorn_config(app: Any, config: ProxyConfig, **options: Any) -> uvicorn.Config:
    """``uvicorn.Config`` for ``app`` with the limits of ``config`` (``options`` go to uvicorn).

    WebSockets are off (``ws="none"``): an upgraded connection would leave the protocol
    that counts and limits it.
    """
    import uvicorn

    options.setdefault("ws", "none")
    return uvicorn.Config(
        app,
        http=protocol_class(Limits.from_config(config)),
        timeout_keep_alive=max(1, round(config.keep_alive_timeout)),  # the protocol uses the float
        **options,
    )


class HeaderLimits:
    """ASGI middleware repeating the header limits, for servers other than :func:`uvicorn_config`.

    With :func:`uvicorn_config` the protocol has already refused such requests; elsewhere the
    server has parsed the headers but the token is not verified yet.
    """

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self.check(scope["headers"])
            if refusal is not None:
                status, message = refusal
                body = canned_response(status, message).partition(b"\r\n\r\n")[2]
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [
                            (b"content-type", b"application/x-amz-json-1.0"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def check(self, headers: list[tuple[bytes, bytes]]) -> tuple[int, str] | None:
        """The refusal (status, message) for these headers, or None."""
        limits = self.limits
        if len(headers) > limits.max_headers:
            return 431, f"more than {limits.max_headers} request headers"
        size = 0
        for name, value in headers:
            size += len(name) + len(value) + 4
            if name == b"authorization" and len(value) > limits.max_authorization_bytes:
                return 431, f"Authorization exceeds {limits.max_authorization_bytes} bytes"
        if size > limits.max_header_bytes:
            return 431, f"request headers exceed {limits.max_header_bytes} bytes"
        return None
