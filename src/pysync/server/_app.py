"""The ASGI application: DynamoDB endpoint, health check, CORS, access log, static files.

Routes:

- ``POST /dynamodb`` — DynamoDB JSON protocol (``X-Amz-Target: DynamoDB_20120810.<Op>``,
  ``Content-Type: application/x-amz-json-1.0``, ``Authorization: Bearer <jwt>``).
- ``GET /changes?scope=<scope>`` — realtime changelog entries as Server-Sent Events.
- ``GET /healthz`` — liveness.
- ``POST /dev/token`` — dev-only sign-in (only with ``dev_tokens``; see ``_devtokens``).
- ``/pyodide/`` — the offline Pyodide distribution (``config.pyodide_dir``).
- ``/pyscript/`` — npm ``@pyscript/core``'s ``dist`` (``config.pyscript_dir``); other names
  there come from ``<web_dir>/pyscript/`` (the PyScript example page).
- ``/`` — the web app (``config.web_dir``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from os import PathLike, stat_result
from pathlib import Path
from typing import Any

import botocore.session  # type: ignore[import-untyped]
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from .._remote import TARGET_PREFIX
from ._auth import Principal, TokenVerifier
from ._batch import BATCH_TARGET, batch_calls, batch_reply, error_reply
from ._batch import CONCURRENCY as BATCH_CONCURRENCY
from ._changelog import Changelog
from ._config import ProxyConfig
from ._devtokens import DEV_TOKEN_PATH, DevTokens
from ._dynamo import DynamoDBAPI
from ._errors import ClientDisconnected, ProxyError, SerializationError, Throttled, ValidationError
from ._forward import Forwarder, UpstreamResponse
from ._limits import HeaderLimits, Limits
from ._numbers import check_attribute_numbers, json_float, json_int
from ._policy import Policy, user_request_token
from ._ratelimit import RateLimiter
from ._realtime import ChangeFeed, ChangesEndpoint
from ._signing import JSON_CONTENT_TYPE, Signer
from ._streams import StreamConsumer

API_PATH = "/dynamodb"
CHANGES_PATH = "/changes"
_STREAMS_PREFIX = "DynamoDBStreams_20120810."
_LOG_KEY = "pysync.log"
# Operations whose success puts a record in the table's stream.
_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"})

access_logger = logging.getLogger("pysync.access")
logger = logging.getLogger("pysync.proxy")

# Pinned here rather than trusting the platform's mimetypes table, which on
# older Pythons lacks .wasm/.mjs (browsers refuse to stream-compile wasm otherwise).
MEDIA_TYPES: Mapping[str, str] = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".whl": "application/octet-stream",
    ".json": "application/json",
    ".zip": "application/zip",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".py": "text/x-python; charset=utf-8",
    ".map": "application/json",
}


class _StaticFiles(StaticFiles):
    """StaticFiles with :data:`MEDIA_TYPES` applied."""

    def file_response(
        self,
        full_path: str | PathLike[str],
        stat_result: stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        media_type = MEDIA_TYPES.get(Path(full_path).suffix.lower())
        if media_type is not None:
            response.headers["content-type"] = media_type
        return response


class AccessLog:
    """Pure-ASGI middleware writing one JSON line per request to ``pysync.access``.

    It logs method, path, status, duration, sizes, the operation, the token
    subject and the tables and scopes touched; never headers, tokens or bodies.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not access_logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        entry: dict[str, Any] = {"method": scope["method"], "path": scope["path"]}
        scope[_LOG_KEY] = entry
        sent = 0

        async def send_and_count(message: Message) -> None:
            nonlocal sent
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_and_count)
        finally:
            client = scope.get("client")
            entry.update(
                ms=round((time.perf_counter() - start) * 1000, 3),
                bytes_out=sent,
                client=client[0] if client else None,
                ts=round(time.time(), 3),
            )
            access_logger.info(json.dumps(entry, separators=(",", ":")))


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Duplicate keys are where two JSON parsers disagree (first wins vs last wins).
    result = dict(pairs)
    if len(result) != len(pairs):
        raise SerializationError("duplicate key in JSON object")
    return result


def _no_constants(name: str) -> Any:
    raise SerializationError(f"{name} is not valid JSON")


def parse_body(raw: bytes) -> tuple[dict[str, Any], bytes]:
    """Parse a request body; return the object and its canonical re-serialization.

    The proxy forwards the canonical bytes, never the browser's, so DynamoDB
    reads exactly the document the policy checked (no parser differentials).
    Numbers are strict (``_numbers``): JSON numbers are 64-bit integers, ``N``
    values DynamoDB numbers in ASCII; anything else is a 400 ``ValidationException``.
    """
    try:
        document = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_unique_keys,
            parse_constant=_no_constants,
            parse_int=json_int,
            parse_float=json_float,
        )
    except UnicodeDecodeError:
        raise SerializationError("request body is not UTF-8") from None
    except (ValueError, RecursionError):
        raise SerializationError("request body is not valid JSON") from None
    if not isinstance(document, dict):
        raise SerializationError("request body must be a JSON object")
    check_attribute_numbers(document)
    return document, canonical_body(document)


def canonical_body(document: dict[str, Any]) -> bytes:
    """The bytes the proxy forwards for ``document``: compact JSON, UTF-8."""
    try:
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        raise SerializationError("request body contains an unpaired surrogate") from None


def _error_response(error: ProxyError) -> Response:
    return Response(
        error.body(),
        status_code=error.status,
        headers=error.headers,
        media_type=JSON_CONTENT_TYPE,
    )


class DynamoDBEndpoint:
    """Authenticate, rate-limit, check, sign and forward one DynamoDB request."""

    def __init__(
        self,
        config: ProxyConfig,
        verifier: TokenVerifier,
        policy: Policy,
        signer: Signer,
        limiter: RateLimiter,
    ) -> None:
        self.config = config
        self.verifier = verifier
        self.policy = policy
        self.signer = signer
        self.limiter = limiter
        self.forwarder: Forwarder | None = None
        # Called after every write DynamoDB accepted (the stream consumer's poke, when
        # this process runs one: it reads the write now instead of after its pause).
        self.written: Callable[[], None] | None = None
        model = botocore.session.get_session().get_service_model("dynamodb")
        self.known_operations = frozenset(model.operation_names)

    def operation(self, target: str | None) -> str:
        """The operation named by ``X-Amz-Target``; 400 if DynamoDB has no such operation."""
        if not target:
            raise ProxyError(400, "UnknownOperationException", "missing X-Amz-Target header")
        if target.startswith(_STREAMS_PREFIX):
            return target  # a real AWS API, but never exposed: the policy denies it
        prefix, _, operation = target.partition(".")
        if prefix + "." != TARGET_PREFIX or operation not in self.known_operations:
            raise ProxyError(400, "UnknownOperationException", "unknown X-Amz-Target")
        return operation

    async def read_body(self, request: Request) -> bytes:
        """The request body, refused with 413 as soon as it exceeds the configured limit."""
        limit = self.config.max_body_bytes
        too_large = ProxyError(413, "ValidationException", f"request body exceeds {limit} bytes")
        declared = request.headers.get("content-length")
        if declared is not None:
            # Not isdigit() alone: "²" passes it, and int() refuses it (a 500).
            if not (declared.isascii() and declared.isdigit()):
                raise ValidationError("invalid Content-Length")
            if len(declared) > 18 or int(declared) > limit:
                raise too_large
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
        except ClientDisconnect:  # gone, or cut by a limit (_limits.py): nobody reads the answer
            raise ClientDisconnected() from None
        return b"".join(chunks)

    async def handle(self, request: Request) -> Response:
        """Starlette endpoint for ``POST /dynamodb``."""
        log: dict[str, Any] = request.scope.get(_LOG_KEY, {})
        try:
            principal = await self.verifier.verify(request.headers.get("authorization"))
            log["sub"] = principal.subject
            wait = self.limiter.acquire(principal.subject)
            if wait:
                raise Throttled(wait)
            target = request.headers.get("x-amz-target")
            operation = "Batch" if target == BATCH_TARGET else self.operation(target)
            log["op"] = operation
            content_type = request.headers.get("content-type", "")
            if content_type.partition(";")[0].strip().lower() != JSON_CONTENT_TYPE:
                raise SerializationError(f"Content-Type must be {JSON_CONTENT_TYPE}")
            document, body = parse_body(await self.read_body(request))
            if operation == "Batch":
                return await self._batch(principal, batch_calls(document), log)
            upstream = await self._forward(principal, operation, document, body, log)
        except ClientDisconnected as error:
            # No fault of the server's, so no traceback: the client hung up mid-body.
            logger.info("client disconnected before the end of its %s request", log.get("op"))
            log["error"] = error.error_type
            return _error_response(error)
        except ProxyError as error:
            log["error"] = error.error_type
            return _error_response(error)
        except Exception:
            log["error"] = "InternalServerError"
            return _error_response(_internal_error(log.get("op")))
        if "x-amzn-requestid" in upstream.headers:
            log["request_id"] = upstream.headers["x-amzn-requestid"]
        return Response(upstream.body, status_code=upstream.status, headers=upstream.headers)

    async def _forward(
        self,
        principal: Principal,
        operation: str,
        document: dict[str, Any],
        body: bytes | None,
        log: dict[str, Any],
    ) -> UpstreamResponse:
        """Check one call against the policy, sign it and send it to DynamoDB.

        ``body`` is ``document``'s canonical bytes (``None``: not made yet).
        """
        access = self.policy.check(operation, document, principal.scopes)
        if operation == "TransactWriteItems" and "ClientRequestToken" in document:
            # All users share the proxy's AWS identity: a token of one user must
            # not meet another user's transaction (see user_request_token).
            document["ClientRequestToken"] = user_request_token(
                principal.subject, document["ClientRequestToken"]
            )
            body = None
        if body is None:
            body = canonical_body(document)
        log["tables"] = sorted(access.tables.union(log.get("tables", ())))
        log["scopes"] = sorted(access.scopes.union(log.get("scopes", ())))
        credentials = await self.signer.frozen_credentials()
        forwarder = self.forwarder
        assert forwarder is not None, "the app's lifespan has not started"
        headers = self.signer.sign(forwarder.url, body, TARGET_PREFIX + operation, credentials)
        upstream = await forwarder.send(body, headers)
        if upstream.status == 200 and operation in _WRITES and self.written is not None:
            self.written()
        return upstream

    async def _batch(
        self, principal: Principal, calls: list[tuple[str, dict[str, Any]]], log: dict[str, Any]
    ) -> Response:
        """Answer a batch (``_batch``): each call checked, sent and answered on its own."""
        log["calls"] = len(calls)
        # The request's own token pays for the first call.
        paid = 1 + self.limiter.take(principal.subject, len(calls) - 1)
        slots = asyncio.Semaphore(BATCH_CONCURRENCY)

        async def one(index: int, operation: str, document: dict[str, Any]) -> tuple[int, bytes]:
            if index >= paid:
                return error_reply(Throttled(self.limiter.wait(principal.subject)))
            try:
                async with slots:
                    upstream = await self._forward(principal, operation, document, None, log)
            except ProxyError as error:
                return error_reply(error)
            except Exception:
                return error_reply(_internal_error(f"batched {operation}"))
            return upstream.status, upstream.body

        replies = await asyncio.gather(*(one(i, *call) for i, call in enumerate(calls)))
        log["statuses"] = sorted({status for status, _ in replies})
        return Response(batch_reply(replies), media_type=JSON_CONTENT_TYPE)


def _internal_error(what: object) -> ProxyError:
    """Log the exception being handled; DynamoDB's retryable 500 shape for the browser.

    A bug, or a failure such as an expired role that cannot be refreshed: the log
    gets the details, the browser none.
    """
    logger.exception("unexpected error in %s", what or "request")
    return ProxyError(500, "InternalServerError", "internal error in the pysync proxy")


@dataclass
class Runtime:
    """What a running app holds (``app.state.pysync`` during its lifespan).

    ``consumer`` and ``changelog`` are ``None`` unless ``config.consumer`` is set.
    """

    api: DynamoDBAPI
    feed: ChangeFeed
    changelog: Changelog | None
    consumer: StreamConsumer | None
    loop: asyncio.AbstractEventLoop

    def close_streams(self) -> None:
        """End every SSE stream; safe from any thread or a signal handler.

        ASGI servers wait for open responses before shutting down, and an SSE
        response never ends by itself: call this when the server is asked to stop.
        """
        self.loop.call_soon_threadsafe(self.feed.close_all)


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok", "version": __version__})


def create_app(
    config: ProxyConfig,
    *,
    session: botocore.session.Session | None = None,
    verifier: TokenVerifier | None = None,
    policy: Policy | None = None,
    dev_tokens: DevTokens | None = None,
) -> Starlette:
    """Build the proxy ASGI app.

    ``session`` is the botocore session whose credential chain signs requests
    (default: a new session using ``config.aws_profile``). ``verifier`` and
    ``policy`` default to what ``config`` describes. ``dev_tokens`` mounts the
    dev-only sign-in ``POST /dev/token`` (``pysync dev`` only, never ``serve``).
    """
    if session is None:
        session = botocore.session.Session(profile=config.aws_profile)
    if verifier is None:
        verifier = verifier_from_config(config)
    endpoint = DynamoDBEndpoint(
        config,
        verifier,
        policy or Policy.for_table(config.table),
        Signer(config.region, session=session),
        RateLimiter(config.rate_limit, config.rate_burst),
    )

    changes = ChangesEndpoint(
        endpoint.verifier,
        endpoint.policy,
        endpoint.limiter,
        config.changelog_table,
        heartbeat=config.sse_heartbeat,
        max_streams_per_subject=config.max_streams_per_subject,
        max_streams_total=config.max_streams,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        endpoint.forwarder = Forwarder(
            config.dynamodb_url,
            timeout=config.upstream_timeout,
            max_connections=config.max_connections,
        )
        runtime = await start_runtime(config, endpoint.signer)
        changes.feed = runtime.feed
        if runtime.consumer is not None:
            endpoint.written = runtime.consumer.poke
        app.state.pysync = runtime
        try:
            yield
        finally:
            await stop_runtime(runtime)
            await endpoint.forwarder.aclose()

    routes: list[BaseRoute] = [
        Route(CHANGES_PATH, changes.handle, methods=["GET"]),
        Route(API_PATH, endpoint.handle, methods=["POST"]),
        # botocore appends "/" to an endpoint URL that has a path.
        Route(API_PATH + "/", endpoint.handle, methods=["POST"]),
        Route("/healthz", _healthz, methods=["GET"]),
    ]
    if dev_tokens is not None:
        routes.append(Route(DEV_TOKEN_PATH, dev_tokens.handle, methods=["POST"]))
    if config.pyodide_dir is not None:
        routes.append(Mount("/pyodide", app=_StaticFiles(directory=config.pyodide_dir)))
    if config.pyscript_dir is not None:
        pyscript = _StaticFiles(directory=config.pyscript_dir, html=True)
        if config.web_dir is not None:  # the dist has no index.html: the example page is there
            pyscript.all_directories.append(config.web_dir / "pyscript")
        routes.append(Mount("/pyscript", app=pyscript))
    if config.web_dir is not None:
        routes.append(Mount("/", app=_StaticFiles(directory=config.web_dir, html=True)))
    # The HTTP protocol (uvicorn_config) enforces the header limits first; this repeats them
    # for other ASGI servers, before any token is verified.
    middleware = [Middleware(AccessLog), Middleware(HeaderLimits, Limits.from_config(config))]
    if config.allowed_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(config.allowed_origins),
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=[
                    "authorization",
                    "content-type",
                    "x-amz-target",
                    "x-amz-user-agent",
                    "amz-sdk-invocation-id",
                    "amz-sdk-request",
                ],
                expose_headers=["x-amzn-requestid", "x-amz-crc32", "retry-after"],
                max_age=600,
            )
        )
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


async def start_runtime(
    config: ProxyConfig, signer: Signer, *, worker_id: str | None = None
) -> Runtime:
    """Start the change feed and, if ``config.consumer``, the stream consumer feeding it."""
    api = DynamoDBAPI(
        signer, config.dynamodb_url, config.streams_url, timeout=config.upstream_timeout
    )
    feed = ChangeFeed(api, config.changelog_table, poll_interval=config.realtime_poll_interval)
    await feed.start()
    changelog = consumer = None
    if config.consumer:
        changelog = Changelog(
            api,
            config.changelog_table,
            retention=config.changelog_retention,
            listener=feed.publish,
        )
        consumer = StreamConsumer(
            api,
            config.table,
            changelog,
            lease_table=config.lease_table,
            worker_id=worker_id,
            poll_interval=config.stream_poll_interval,
            lease_duration=config.lease_duration,
        )
        await consumer.start()
    return Runtime(api, feed, changelog, consumer, asyncio.get_running_loop())


async def stop_runtime(runtime: Runtime) -> None:
    """Stop the consumer (releasing its leases), end the SSE streams, close connections."""
    if runtime.consumer is not None:
        await runtime.consumer.stop()
    await runtime.feed.aclose()
    await runtime.api.aclose()


def verifier_from_config(config: ProxyConfig) -> TokenVerifier:
    """The :class:`TokenVerifier` that ``config`` describes."""
    return TokenVerifier(
        secret=config.jwt_secret,
        jwks=json.loads(config.jwks_file.read_text()) if config.jwks_file else None,
        jwks_url=config.jwks_url,
        audience=config.audience,
        issuer=config.issuer,
    )
