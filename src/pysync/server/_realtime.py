"""Realtime fan-out: new changelog entries to browsers, as Server-Sent Events.

``GET /changes?scope=<scope>`` (token in ``Authorization: Bearer`` or, since
``EventSource`` cannot set headers, ``?token=``) streams::

    retry: 1000
    id: <cursor>
    event: ready
    data: {"scope": "u#alice", "head": 41, "after": 41}

    id: 42
    data: {"scope": "u#alice", "seq": 42, "entry": {<the changelog item, DynamoDB JSON>}}

    : ping                                    (every ``sse_heartbeat`` seconds)

Entries come in seq order without gaps, starting after the ``Last-Event-ID``
header (so an ``EventSource`` reconnect resumes where it stopped, even when its
URL says ``after``), ``?after=<seq>`` or, by default, the head at subscribe time.

Each proxy process keeps one :class:`ChangeFeed`. For every scope that has
subscribers it tails the changelog: entries appended by the consumer in this
process arrive at once (no extra read), and a consistent Query
``sk > last`` every ``realtime_poll_interval`` (and whenever a local append
skips a seq) picks up entries appended by consumers in other replicas. So any
replica can serve any subscriber, with or without a consumer of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from itertools import islice
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ._auth import Principal, TokenVerifier
from ._dynamo import DynamoDBAPI, DynamoDBError
from ._errors import ProxyError, Throttled, ValidationError
from ._numbers import ascii_digits
from ._policy import Policy
from ._ratelimit import RateLimiter
from ._signing import JSON_CONTENT_TYPE

logger = logging.getLogger("pysync.realtime")

Entry = dict[str, Any]


def entry_seq(entry: Entry) -> int:
    """The seq of a changelog entry (its ``sk``)."""
    return int(entry["sk"]["N"])


class _Tail:
    """The recent entries of one scope, consecutive up to ``last``."""

    def __init__(self, scope: str, last: int, size: int) -> None:
        self.scope = scope
        self.last = last
        self.entries: deque[Entry] = deque(maxlen=size)
        #: The SSE text of each entry in memory, made once for all the scope's subscribers.
        self.texts: dict[int, str] = {}
        self.subscribers: set[Subscription] = set()
        self.fetching: asyncio.Task[None] | None = None
        self.again = False

    def offer(self, entries: list[Entry]) -> bool:
        """Add entries that continue ``last``; True if one skipped a seq (fetch needed)."""
        added = False
        gap = False
        for entry in sorted(entries, key=entry_seq):
            seq = entry_seq(entry)
            if seq <= self.last:
                continue
            if seq != self.last + 1:
                gap = True
                break
            if len(self.entries) == self.entries.maxlen:
                self.texts.pop(entry_seq(self.entries[0]), None)
            self.entries.append(entry)
            self.last = seq
            added = True
        if added:
            for subscriber in self.subscribers:
                subscriber.wake.set()
        return gap

    def text(self, entry: Entry) -> str:
        """The SSE event of ``entry`` (encoded once while the entry is in memory)."""
        seq = entry_seq(entry)
        text = self.texts.get(seq)
        if text is None:
            event = {"scope": self.scope, "seq": seq, "entry": entry}
            text = f"id: {seq}\ndata: {_json(event)}\n\n"
            if self.entries and entry_seq(self.entries[0]) <= seq <= self.last:
                self.texts[seq] = text
        return text

    def since(self, cursor: int) -> list[Entry] | None:
        """Entries after ``cursor`` from memory; ``None`` if they are no longer all in memory."""
        if cursor >= self.last:
            return []
        first = entry_seq(self.entries[0]) if self.entries else self.last + 1
        if cursor + 1 < first:
            return None
        return list(islice(self.entries, cursor + 1 - first, None))


class Subscription:
    """One subscriber's position in a scope's changes; see :meth:`ChangeFeed.subscribe`."""

    def __init__(self, feed: ChangeFeed, tail: _Tail, head: int, cursor: int) -> None:
        self.feed = feed
        self.scope = tail.scope
        self.head = head
        self.cursor = cursor
        self.wake = asyncio.Event()
        self.closed = False
        self._tail = tail

    async def next(self, wait: float) -> list[Entry] | None:
        """The next entries in seq order; ``[]`` after ``wait`` seconds; ``None`` once closed."""
        deadline = time.monotonic() + wait
        while not self.closed:
            self.wake.clear()
            batch = self._tail.since(self.cursor)
            if batch is None:  # fell behind the tail's memory: read the changelog
                batch = await self.feed.query(self.scope, self.cursor)
            if batch:
                self.cursor = entry_seq(batch[-1])
                return batch
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), remaining)
        return None

    def text(self, entry: Entry) -> str:
        """The SSE event of one of this scope's entries."""
        return self._tail.text(entry)

    def close(self) -> None:
        """Stop this subscription (idempotent)."""
        if not self.closed:
            self.closed = True
            self.wake.set()
            self.feed._unsubscribe(self, self._tail)


class ChangeFeed:
    """Per-process fan-out of changelog entries to subscribers, one tail per subscribed scope.

    Wire :meth:`publish` as the local :class:`Changelog`'s listener; call
    :meth:`start` to poll for entries that other replicas append.
    """

    def __init__(
        self,
        api: DynamoDBAPI,
        table: str,
        *,
        poll_interval: float = 1.0,
        buffer_size: int = 1024,
        page_size: int = 500,
    ) -> None:
        self.api = api
        self.table = table
        self.poll_interval = poll_interval
        self.buffer_size = buffer_size
        self.page_size = page_size
        self._tails: dict[str, _Tail] = {}
        self._poller: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def scopes(self) -> frozenset[str]:
        """Scopes with at least one subscriber."""
        return frozenset(self._tails)

    @property
    def subscribers(self) -> int:
        """Open subscriptions."""
        return sum(len(tail.subscribers) for tail in self._tails.values())

    async def start(self) -> None:
        """Start the slow poll (unless ``poll_interval`` is 0)."""
        if self._poller is None and self.poll_interval > 0:
            self._poller = asyncio.create_task(self._poll(), name="pysync-change-feed")

    def close_all(self) -> None:
        """End every subscription (their SSE streams finish); new ones are refused."""
        self._closed = True
        for tail in list(self._tails.values()):
            for subscriber in list(tail.subscribers):
                subscriber.close()

    async def aclose(self) -> None:
        """:meth:`close_all` and stop polling."""
        self.close_all()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    def publish(self, scope: str, entries: list[Entry]) -> None:
        """Entries just appended to ``scope`` (by this process's consumer)."""
        tail = self._tails.get(scope)
        if tail is not None and tail.offer(entries):
            self._fetch_soon(tail)

    async def subscribe(self, scope: str, after: int | None = None) -> Subscription:
        """Follow ``scope`` from ``after`` (default: its current head)."""
        if self._closed:
            raise RuntimeError("the change feed is closed")
        reply = await self.api.call(
            "GetItem",
            {
                "TableName": self.table,
                "Key": {"pk": {"S": scope}, "sk": {"N": "0"}},
                "ConsistentRead": True,
            },
        )
        head = int(reply.get("Item", {}).get("head", {}).get("N", "0"))
        tail = self._tails.get(scope)
        if tail is None:
            tail = self._tails[scope] = _Tail(scope, head, self.buffer_size)
        elif tail.last < head:
            self._fetch_soon(tail)
        subscription = Subscription(self, tail, head, head if after is None else after)
        tail.subscribers.add(subscription)
        return subscription

    def _unsubscribe(self, subscription: Subscription, tail: _Tail) -> None:
        tail.subscribers.discard(subscription)
        if not tail.subscribers and self._tails.get(tail.scope) is tail:
            del self._tails[tail.scope]
            if tail.fetching is not None:
                tail.fetching.cancel()

    async def query(self, scope: str, after: int, limit: int | None = None) -> list[Entry]:
        """Up to ``limit`` entries of ``scope`` after seq ``after`` (consistent Query)."""
        reply = await self.api.call(
            "Query",
            {
                "TableName": self.table,
                "KeyConditionExpression": "pk = :p AND sk > :c",
                "ExpressionAttributeValues": {":p": {"S": scope}, ":c": {"N": str(after)}},
                "ConsistentRead": True,
                "Limit": limit or self.page_size,
            },
        )
        items: list[Entry] = reply.get("Items", [])
        return items

    def _fetch_soon(self, tail: _Tail) -> None:
        if tail.fetching is not None and not tail.fetching.done():
            tail.again = True
            return
        tail.fetching = asyncio.create_task(self._fetch(tail))

    async def _fetch(self, tail: _Tail) -> None:
        try:
            while True:
                tail.again = False
                for _ in range(20):  # at most 20 pages per round
                    entries = await self.query(tail.scope, tail.last)
                    tail.offer(entries)
                    if len(entries) < self.page_size:
                        break
                if not tail.again:
                    return
        except DynamoDBError as error:
            logger.warning("reading the changelog of %s failed: %s", tail.scope, error)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            for tail in list(self._tails.values()):
                self._fetch_soon(tail)


def _error(error: ProxyError) -> Response:
    return Response(
        error.body(), status_code=error.status, headers=error.headers, media_type=JSON_CONTENT_TYPE
    )


class ChangesEndpoint:
    """``GET /changes``: authenticate, check the scope like a changelog Query, stream SSE."""

    def __init__(
        self,
        verifier: TokenVerifier,
        policy: Policy,
        limiter: RateLimiter,
        changelog_table: str,
        *,
        heartbeat: float = 15.0,
        max_streams_per_subject: int = 16,
        max_streams_total: int = 500,
    ) -> None:
        self.verifier = verifier
        self.policy = policy
        self.limiter = limiter
        self.changelog_table = changelog_table
        self.heartbeat = heartbeat
        self.max_streams = max_streams_per_subject
        self.max_streams_total = max_streams_total
        self.feed: ChangeFeed | None = None
        self._open: dict[str, int] = {}
        self._total = 0

    @property
    def open_streams(self) -> int:
        """Streams open (or being opened) in this process."""
        return self._total

    def _server_full(self) -> ProxyError:
        return ProxyError(
            503,
            "ServiceUnavailable",
            "too many open change streams on this server",
            {"Retry-After": "5"},
        )

    def _acquire(self, subject: str) -> None:
        self._open[subject] = self._open.get(subject, 0) + 1
        self._total += 1

    def _release(self, subject: str) -> None:
        self._total -= 1
        count = self._open.get(subject, 1) - 1
        if count:
            self._open[subject] = count
        else:
            self._open.pop(subject, None)

    async def handle(self, request: Request) -> Response:
        """Starlette endpoint for ``GET /changes``."""
        log: dict[str, Any] = request.scope.get("pysync.log", {})
        log["op"] = "Subscribe"
        try:
            if self._total >= self.max_streams_total:  # before any token work
                raise self._server_full()
            principal, scope, after = await self._check(request, log)
            feed = self.feed
            if feed is None:
                raise ProxyError(503, "ServiceUnavailable", "the change feed is not running")
            if self._open.get(principal.subject, 0) >= self.max_streams:
                raise ProxyError(
                    429, "LimitExceededException", "too many open change streams for this token"
                )
            if self._total >= self.max_streams_total:  # again: others may have opened meanwhile
                raise self._server_full()
            self._acquire(principal.subject)  # held from here, so concurrent opens count
            try:
                subscription = await feed.subscribe(scope, after)
            except DynamoDBError as error:
                self._release(principal.subject)
                logger.warning("subscribing to %s failed: %s", scope, error)
                raise ProxyError(
                    503, "ServiceUnavailable", "could not read the changelog"
                ) from None
            except BaseException as error:
                self._release(principal.subject)
                if isinstance(error, RuntimeError):
                    raise ProxyError(
                        503, "ServiceUnavailable", "the server is shutting down"
                    ) from None
                raise
        except ProxyError as error:
            log["error"] = error.error_type
            return _error(error)

        def release() -> None:
            subscription.close()
            self._release(principal.subject)

        return _EventStream(
            self._events(subscription, principal),
            release,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _check(
        self, request: Request, log: dict[str, Any]
    ) -> tuple[Principal, str, int | None]:
        authorization = request.headers.get("authorization")
        token = request.query_params.get("token")
        if authorization is None and token:
            authorization = f"Bearer {token}"
        principal = await self.verifier.verify(authorization)
        log["sub"] = principal.subject
        wait = self.limiter.acquire(principal.subject)
        if wait:
            raise Throttled(wait)
        scope = request.query_params.get("scope")
        if not scope:
            raise ValidationError("the scope query parameter is required")
        log["tables"] = [self.changelog_table]
        log["scopes"] = [scope]
        # The same rules as a changelog Query for this scope (tables, operation, scopes).
        self.policy.check(
            "Query",
            {
                "TableName": self.changelog_table,
                "KeyConditionExpression": "pk = :p",
                "ExpressionAttributeValues": {":p": {"S": scope}},
            },
            principal.scopes,
        )
        # Last-Event-ID first: on a browser's automatic reconnect the URL still holds
        # the ``after`` it was opened with, and the header says how far it got since.
        raw_after = request.headers.get("last-event-id") or request.query_params.get("after")
        if raw_after is None or raw_after == "":
            return principal, scope, None
        if not ascii_digits(raw_after):  # not isdigit(): "²" passes it and int() refuses it
            raise ValidationError("after / Last-Event-ID must be a changelog seq (0-9, at most 18)")
        return principal, scope, int(raw_after)

    async def _events(self, subscription: Subscription, principal: Principal) -> AsyncIterator[str]:
        scope = subscription.scope
        try:
            ready = {"scope": scope, "head": subscription.head, "after": subscription.cursor}
            yield f"retry: 1000\nid: {subscription.cursor}\nevent: ready\ndata: {_json(ready)}\n\n"
            while True:
                remaining = principal.expires_at - time.time()
                if remaining <= 0:
                    yield "event: expired\ndata: {}\n\n"
                    return
                try:
                    batch = await subscription.next(min(self.heartbeat, remaining))
                except DynamoDBError as error:  # the client reconnects and pulls
                    logger.warning("change stream of %s ended: %s", scope, error)
                    return
                if batch is None:
                    return
                if not batch:
                    yield ": ping\n\n"
                    continue
                yield "".join(subscription.text(entry) for entry in batch)
        finally:
            subscription.close()


class _EventStream(StreamingResponse):
    """A StreamingResponse that runs ``release`` once it ends, however it ends.

    Starlette never starts the generator of a client that disconnected before the
    response began, so the generator's own ``finally`` cannot be what frees the slot.
    """

    def __init__(
        self, content: AsyncIterator[str], release: Callable[[], None], **options: Any
    ) -> None:
        super().__init__(content, **options)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
            self._release = _nothing


def _nothing() -> None:
    pass


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
