"""One table, many apps, over HTTP: DynamoDB Local, the real proxy and stream consumer.

Two apps of one user (``todo-app`` and ``other-app``) sync through the proxy to
one table and scope, with the same collection name and the same ids. Each app's
items live under ``<app>/`` in the sort key: each sees only its own documents
through push, base sync (its ``begins_with`` Query passes the proxy's policy),
changelog pull and the realtime feed (``GET /changes``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

import pysync
from pysync import AppSchema, CollectionSpec, HttpRemote, Sync
from pysync._sync._items import sort_key
from pysync.server import DynamoDBLocal, Policy, ProxyError, create_tables
from pysync.testing import MemoryBrowser

from .conftest import changelog, claims, hs256, wait_until
from .hostile_corpus import S

TABLE = f"pysync_ns_{uuid.uuid4().hex[:8]}"
SCHEMA = AppSchema(1, {"todos": CollectionSpec()})
TODO, OTHER = "todo-app", "other-app"


async def no_sleep(_: float) -> None:
    return None


class Recorder:
    """A device's remote: the real :class:`HttpRemote`, recording every call."""

    def __init__(self, inner: HttpRemote) -> None:
        self.inner = inner
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((operation, payload))
        return await self.inner.call(operation, payload)


@dataclass
class Device:
    app: str
    replica: pysync.Replica
    sync: Sync
    remote: Recorder

    @property
    def todos(self) -> pysync.Collection:
        return self.replica["todos"]

    async def docs(self) -> dict[Any, dict[str, Any]]:
        return {doc["id"]: doc for doc in await self.todos.query()}


@pytest.fixture(scope="module")
def proxy(ddb: Any, dynamodb: DynamoDBLocal, make_proxy: Callable[..., str]) -> str:
    """A proxy on the module's table that runs the stream consumer (changelog, realtime)."""
    create_tables(ddb, TABLE)
    return make_proxy(table=TABLE, consumer=True, stream_poll_interval=0.005, lease_duration=3.0)


@pytest.fixture
def user() -> str:
    return f"ns-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def device(proxy: str, user: str) -> AsyncIterator[Callable[[str], Awaitable[Device]]]:
    made: list[Device] = []

    async def make(app: str) -> Device:
        replica = await pysync.connect(app, user, SCHEMA, platform=MemoryBrowser().tab())
        remote = Recorder(HttpRemote(proxy + "/dynamodb", hs256(claims(user))))
        made.append(
            Device(app, replica, Sync(replica, remote, table=TABLE, sleep=no_sleep), remote)
        )
        return made[-1]

    yield make
    for one in made:
        one.sync.stop()
        one.replica.close()
        await one.remote.inner.close()


def own(app: str, *keys: Any) -> dict[Any, dict[str, Any]]:
    return {k: {"id": k, "title": f"{app} {k}"} for k in keys}


async def logged(ddb: Any, user: str, count: int) -> None:
    """Wait until the scope's changelog holds ``count`` entries."""
    await wait_until(lambda: len(changelog(ddb, TABLE, f"u#{user}")) >= count)


async def test_two_apps_on_one_table_and_scope_over_http(
    device: Callable[[str], Awaitable[Device]], ddb: Any, user: str, proxy: str
) -> None:
    scope = f"u#{user}"
    todo1, other1 = await device(TODO), await device(OTHER)
    for one in (todo1, other1):
        await one.todos.put({"id": "t1", "title": f"{one.app} t1"})
        await one.todos.put({"id": 7, "title": f"{one.app} 7"})
        report = await one.sync.push()
        assert (report.pushed, report.conflicts, report.rejected) == (2, 0, 0)
    items = ddb.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": S(scope)},
        ConsistentRead=True,
    )["Items"]
    assert {item["sk"]["S"]: item["title"]["S"] for item in items} == {
        sort_key(app, "todos", k): f"{app} {k}" for app in (TODO, OTHER) for k in ("t1", 7)
    }
    await logged(ddb, user, 4)

    # Base sync through the proxy: a begins_with Query the policy lets through.
    todo2, other2 = await device(TODO), await device(OTHER)
    for one in (todo2, other2):
        synced = await one.sync.sync()
        assert (synced.pull.base_sync, synced.pull.applied) == (True, 2)
        assert await one.docs() == own(one.app, "t1", 7)
        (query,) = [p for op, p in one.remote.calls if op == "Query" and p["TableName"] == TABLE]
        assert "begins_with(sk, :ns)" in query["KeyConditionExpression"]
        assert query["ExpressionAttributeValues"][":ns"] == S(f"{one.app}/")
        assert await one.sync.puller.cursor() == 4

    # Changelog pull: each applies its own changes and passes the other app's.
    await other1.todos.delete("t1")
    await other1.todos.put({"id": "o-only", "title": f"{OTHER} o-only"})
    await other1.sync.push()
    await todo1.todos.patch("t1", {"title": f"{TODO} t1 again"})
    await todo1.sync.push()
    await logged(ddb, user, 7)
    pulled = await todo2.sync.pull()
    assert (pulled.applied, pulled.base_sync) == (1, False)
    assert await todo2.docs() == {**own(TODO, 7), "t1": {"id": "t1", "title": f"{TODO} t1 again"}}
    pulled = await other2.sync.pull()
    assert (pulled.applied, pulled.base_sync) == (2, False)
    assert await other2.docs() == own(OTHER, 7, "o-only")
    for one in (todo2, other2):
        assert await one.sync.puller.cursor() == 7

    # Realtime: the scope's SSE feed carries both apps' entries; each engine applies its own.
    token = hs256(claims(user))
    params = {"scope": scope, "token": token, "after": "7"}
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("GET", proxy + "/changes", params=params) as response,
    ):
        assert response.status_code == 200
        events = _events(response)
        assert (await anext(events))[0] == "ready"
        await other1.todos.put({"id": "t3", "title": f"{OTHER} t3"})
        await other1.sync.push()  # seq 8
        await todo1.todos.put({"id": "t3", "title": f"{TODO} t3"})
        await todo1.sync.push()  # seq 9
        for _ in range(2):
            kind, data = await asyncio.wait_for(anext(events), 10)
            assert kind == "message"
            for one in (todo2, other2):
                one.sync._on_event(kind, data)
    for one in (todo2, other2):
        await wait_until(lambda one=one: _cursor_is(one, 9))
        assert (await one.todos.get("t3") or {}).get("title") == f"{one.app} t3"
    assert await todo2.docs() == {
        **own(TODO, 7, "t3"),
        "t1": {"id": "t1", "title": f"{TODO} t1 again"},
    }
    assert await other2.docs() == own(OTHER, 7, "o-only", "t3")


async def _cursor_is(one: Device, seq: int) -> bool:
    return await one.sync.puller.cursor() == seq


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event type, data) of a Server-Sent Events stream (comments skipped)."""
    kind, data = "message", ""
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield kind, data
            kind, data = "message", ""
        elif line.startswith("event:"):
            kind = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data = line.removeprefix("data:").removeprefix(" ")


def test_the_policy_pins_the_base_sync_query_to_the_tokens_scope() -> None:
    policy = Policy.for_table("app")

    def base_sync(scope: str) -> dict[str, Any]:
        return {
            "TableName": "app",
            "KeyConditionExpression": "pk = :p AND begins_with(sk, :ns)",
            "ExpressionAttributeValues": {":p": S(scope), ":ns": S("todo-app/")},
            "ConsistentRead": True,
            "Limit": 500,
        }

    access = policy.check("Query", base_sync("u#alice"), {"u#alice"})
    assert access.scopes == {"u#alice"}
    with pytest.raises(ProxyError, match="scope"):
        policy.check("Query", base_sync("u#bob"), {"u#alice"})
    # The namespace prefix is no way around the scope: pk stays pinned.
    with pytest.raises(ProxyError, match="must be 'pk = :value'"):
        policy.check(
            "Query",
            {
                "TableName": "app",
                "KeyConditionExpression": "begins_with(sk, :ns)",
                "ExpressionAttributeValues": {":ns": S("todo-app/")},
            },
            {"u#alice"},
        )
