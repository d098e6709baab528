"""Realtime over real HTTP: a proxy running the consumer, SSE subscribers, a second replica."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pysync.server import DynamoDBLocal, create_app, create_tables, local_session
from pysync.server._devstack import free_port

from .conftest import (
    JSON_TYPE,
    ORIGIN,
    SECRET,
    N,
    S,
    ServerThread,
    changelog,
    claims,
    hs256,
    proxy_config,
    wait_until,
)
from .hostile_corpus import AUDIENCE, ISSUER

HEARTBEAT = 0.3
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    """The module's table and its two proxies."""

    table: str
    url: str  # runs the stream consumer
    replica: str  # no consumer: serves realtime by tailing the changelog
    app: Any


@pytest.fixture(scope="module")
def stack(
    ddb: Any, dynamodb: DynamoDBLocal, jwks_file: Path, static_dirs: tuple[Path, Path]
) -> Iterator[Stack]:
    table = f"rt_{uuid.uuid4().hex[:10]}"
    create_tables(ddb, table)
    common = {"table": table, "sse_heartbeat": HEARTBEAT, "max_streams_per_subject": 4}
    config = proxy_config(
        dynamodb,
        jwks_file,
        static_dirs,
        consumer=True,
        stream_poll_interval=0.005,
        lease_duration=3.0,
        **common,
    )
    replica_config = proxy_config(
        dynamodb, jwks_file, static_dirs, realtime_poll_interval=0.2, **common
    )
    app = create_app(config, session=local_session())
    with (
        ServerThread(app) as server,
        ServerThread(create_app(replica_config, session=local_session())) as replica,
    ):
        yield Stack(table, server.url, replica.url, app)


def token(*scopes: str, ttl: int = 600) -> str:
    return hs256(claims("carol", scopes=list(scopes), exp=int(time.time()) + ttl))


def new_scope() -> str:
    return f"s#{uuid.uuid4().hex[:8]}"


class Events:
    """A parsed Server-Sent Events stream."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.comments = 0

    async def next(self, limit: float = 5.0) -> dict[str, str] | None:
        """The next event's fields (comments are counted, not returned); None at the end."""
        fields: dict[str, str] = {}
        async with asyncio.timeout(limit):
            async for line in self._lines:
                if not line:
                    if fields:
                        return fields
                    continue
                if line.startswith(":"):
                    self.comments += 1
                    continue
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        return None

    async def changes(self, count: int, limit: float = 10.0) -> list[dict[str, Any]]:
        """The next ``count`` change events, parsed (their ``id`` checked against ``seq``)."""
        found = []
        while len(found) < count:
            event = await self.next(limit)
            assert event is not None, "the stream ended"
            assert "event" not in event, event
            data = json.loads(event["data"])
            assert int(event["id"]) == data["seq"]
            found.append(data)
        return found


@asynccontextmanager
async def subscribe(
    url: str, scope: str, bearer: str | None, *, via_query: bool = False, **params: str
) -> AsyncIterator[tuple[Events, dict[str, Any]]]:
    """Open ``GET /changes`` and read its ``ready`` event."""
    headers = {"Origin": ORIGIN}
    query = {"scope": scope, **params}
    if bearer and via_query:
        query["token"] = bearer
    elif bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    if "last_event_id" in query:
        headers["Last-Event-ID"] = query.pop("last_event_id")
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("GET", url + "/changes", params=query, headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["access-control-allow-origin"] == ORIGIN
        events = Events(response)
        ready = await events.next()
        assert ready is not None
        assert ready["event"] == "ready"
        yield events, json.loads(ready["data"]) | {"id": int(ready["id"])}


def put(ddb: Any, table: str, scope: str, sk: str, version: int = 1, **fields: Any) -> None:
    # Keeps the contract of writers that bypass pysync (a new _m): no stamps.
    item = {"pk": S(scope), "sk": S(sk), "_v": N(version), "_m": S(uuid.uuid4().hex), **fields}
    ddb.put_item(TableName=table, Item=item)


async def test_subscribers_get_their_scope_in_order_and_never_another(
    stack: Stack, ddb: Any
) -> None:
    a, b = new_scope(), new_scope()
    put(ddb, stack.table, a, "todos#old")  # before subscribing: not replayed
    await wait_until(lambda: changelog(ddb, stack.table, a))
    async with (
        subscribe(stack.url, a, token(a, b)) as (events_a, ready_a),
        subscribe(stack.url, b, token(b), via_query=True) as (events_b, ready_b),
    ):
        assert ready_a == {"scope": a, "head": 1, "after": 1, "id": 1}
        assert ready_b == {"scope": b, "head": 0, "after": 0, "id": 0}

        def write() -> None:
            for i in range(10):
                put(ddb, stack.table, a, f"todos#{i}", title=S(f"a{i}"))
                put(ddb, stack.table, b, f"notes#{i}")
            ddb.delete_item(TableName=stack.table, Key={"pk": S(a), "sk": S("todos#0")})

        await asyncio.to_thread(write)
        got_a = await events_a.changes(11)
        got_b = await events_b.changes(10)
    assert [e["seq"] for e in got_a] == list(range(2, 13))
    assert [e["seq"] for e in got_b] == list(range(1, 11))
    assert {e["scope"] for e in got_a} == {a}
    assert {e["scope"] for e in got_b} == {b}
    # Each event carries the changelog entry exactly as a Query returns it.
    stored = {int(e["sk"]["N"]): e for e in changelog(ddb, stack.table, a)}
    assert all(event["entry"] == stored[event["seq"]] for event in got_a)
    assert got_a[-1]["entry"]["op"] == S("delete")
    assert got_a[0]["entry"]["item"]["M"]["title"] == S("a0")


async def test_resume_from_last_event_id_or_after(stack: Stack, ddb: Any) -> None:
    scope = new_scope()
    for i in range(5):
        put(ddb, stack.table, scope, f"k#{i}")
    await wait_until(lambda: len(changelog(ddb, stack.table, scope)) >= 5)
    bearer = token(scope)
    async with subscribe(stack.url, scope, bearer, last_event_id="2") as (events, ready):
        assert (ready["head"], ready["after"]) == (5, 2)
        assert [e["seq"] for e in await events.changes(3)] == [3, 4, 5]  # from the changelog
        put(ddb, stack.table, scope, "k#5")
        assert [e["seq"] for e in await events.changes(1)] == [6]  # live
    async with subscribe(stack.url, scope, bearer, after="0") as (events, ready):
        assert [e["seq"] for e in await events.changes(6)] == [1, 2, 3, 4, 5, 6]
    # A browser's automatic reconnect keeps the URL (and its ?after=) and sends
    # Last-Event-ID: the header, which is further along, wins.
    async with subscribe(stack.url, scope, bearer, after="1", last_event_id="4") as (events, ready):
        assert (ready["after"], ready["id"]) == (4, 4)
        assert [e["seq"] for e in await events.changes(2)] == [5, 6]


async def test_another_replica_serves_realtime_by_tailing_the_changelog(
    stack: Stack, ddb: Any
) -> None:
    scope = new_scope()
    async with subscribe(stack.replica, scope, token(scope)) as (events, _):
        for i in range(3):
            put(ddb, stack.table, scope, f"k#{i}")
        got = await events.changes(3, limit=5)
    assert [e["seq"] for e in got] == [1, 2, 3]


def error_of(response: httpx.Response) -> tuple[int, str]:
    assert response.headers["content-type"] == JSON_TYPE
    body = response.json()
    assert set(body) == {"__type", "message"}
    return response.status_code, body["__type"].rpartition("#")[2]


async def test_refusals_use_the_dynamodb_error_shape(stack: Stack) -> None:
    scope = new_scope()
    async with httpx.AsyncClient(timeout=5) as client:

        async def get(params: dict[str, str], **headers: str) -> tuple[int, str]:
            return error_of(
                await client.get(stack.url + "/changes", params=params, headers=headers)
            )

        assert await get({"scope": scope}) == (401, "MissingAuthenticationTokenException")
        assert await get({"scope": scope, "token": "garbage"}) == (
            401,
            "UnrecognizedClientException",
        )
        expired = hs256(claims("carol", scopes=[scope], exp=int(time.time()) - 3600))
        assert await get({"scope": scope, "token": expired}) == (401, "ExpiredTokenException")
        other = token(new_scope())
        assert await get({"scope": scope, "token": other}) == (403, "AccessDeniedException")
        assert await get({"scope": "*", "token": other}) == (403, "AccessDeniedException")
        assert await get({"token": other}) == (400, "ValidationException")
        mine = token(scope)
        assert await get({"scope": scope, "token": mine, "after": "-1"}) == (
            400,
            "ValidationException",
        )
        assert await get(
            {"scope": scope}, authorization=f"Bearer {mine}", **{"last-event-id": "x"}
        ) == (
            400,
            "ValidationException",
        )
    # At most max_streams_per_subject (4) open streams per token subject.
    async with (
        subscribe(stack.url, scope, mine),
        subscribe(stack.url, scope, mine),
        subscribe(stack.url, scope, mine),
        subscribe(stack.url, scope, mine),
        httpx.AsyncClient(timeout=5) as client,
    ):
        response = await client.get(stack.url + "/changes", params={"scope": scope, "token": mine})
        assert error_of(response) == (429, "LimitExceededException")


async def test_heartbeats_and_the_end_of_the_token(stack: Stack) -> None:
    scope = new_scope()
    async with subscribe(stack.url, scope, token(scope, ttl=2)) as (events, _):
        expired = await events.next(limit=5)
        assert expired == {"event": "expired", "data": "{}"}
        assert await events.next() is None  # the server ended the stream
        assert events.comments >= 2  # ": ping" every HEARTBEAT seconds meanwhile


async def test_putitem_to_sse_latency(stack: Stack, ddb: Any) -> None:
    """Time from boto3 PutItem returning to the SSE event arriving (consumer in the proxy)."""
    scope = new_scope()
    latencies = []
    async with subscribe(stack.url, scope, token(scope)) as (events, _):
        for i in range(40):
            put(ddb, stack.table, scope, f"k#{i}")
            written = time.perf_counter()
            (event,) = await events.changes(1)
            latencies.append((time.perf_counter() - written) * 1000)
            assert event["seq"] == i + 1
    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    print(f"\nPutItem -> SSE event: p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {latencies[-1]:.1f} ms")
    assert p50 < 150


async def test_pysync_serve_ends_open_streams_on_sigterm(stack: Stack, ddb: Any) -> None:
    """uvicorn waits for open responses before it stops: `pysync serve` ends SSE streams."""
    port = free_port()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "PYSYNC_JWT_SECRET": SECRET,
        "PYSYNC_JWT_AUDIENCE": AUDIENCE,
        "PYSYNC_JWT_ISSUER": ISSUER,
        "PYSYNC_ALLOWED_ORIGINS": ORIGIN,
        "PYSYNC_TABLE": stack.table,
        "PYSYNC_DYNAMODB_ENDPOINT": ddb.meta.endpoint_url,
    }
    command = [sys.executable, "-m", "pysync.cli", "serve", "--port", str(port), "--no-consumer"]
    process = await asyncio.create_subprocess_exec(
        *command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:

        async def healthy() -> bool:
            try:
                async with httpx.AsyncClient(timeout=1) as client:
                    return (await client.get(base + "/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(healthy, limit=30, interval=0.05)
        scope = new_scope()
        async with subscribe(base, scope, token(scope)) as (events, _):
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            assert await events.next(limit=5) is None  # ended by the server
        # uvicorn re-raises the signal once it has stopped; its 5 s graceful timeout
        # (the fallback) was not needed.
        assert await asyncio.wait_for(process.wait(), 10) == -signal.SIGTERM
        assert time.monotonic() - started < 4
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_close_streams_ends_every_subscription(stack: Stack, ddb: Any) -> None:
    """What `pysync serve` calls on SIGTERM, since uvicorn waits for open responses.

    Last in this module: the proxy refuses new subscriptions afterwards."""
    scope = new_scope()
    async with subscribe(stack.url, scope, token(scope)) as (events, _):
        await wait_until(lambda: scope in stack.app.state.pysync.feed.scopes)
        stack.app.state.pysync.close_streams()  # from this thread, not the server's
        assert await events.next() is None
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(
            stack.url + "/changes", params={"scope": scope, "token": token(scope)}
        )
    assert error_of(response) == (503, "ServiceUnavailable")


def test_an_event_is_encoded_once_for_every_subscriber_while_in_memory() -> None:
    from pysync.server._realtime import _Tail

    tail = _Tail("s#t", 0, size=2)

    def entry(seq: int) -> dict[str, Any]:
        return {"pk": {"S": "s#t"}, "sk": {"N": str(seq)}, "key": {"S": f"app/docs#{seq}"}}

    first = entry(1)
    tail.offer([first, entry(2)])
    text = tail.text(first)
    assert text is tail.text(dict(first))  # the second stream gets the same string
    assert json.loads(text.split("data: ", 1)[1]) == {"scope": "s#t", "seq": 1, "entry": first}
    assert text.startswith("id: 1\n")
    assert 1 in tail.texts
    tail.offer([entry(3)])  # seq 1 leaves memory, and its text with it
    assert 1 not in tail.texts
    assert tail.text(first) == text  # still right when read back from the changelog
    assert 1 not in tail.texts  # and not kept: it is no longer in memory
