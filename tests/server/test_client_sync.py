"""The sync engine against DynamoDB Local through the real proxy (CPython replicas).

Replicas run on the in-memory store here; tests/e2e prove the same in Chromium.
Each test uses its own user, so its own scope.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

import pysync
from pysync import AppSchema, CollectionSpec, HttpRemote, Index, RemoteError, Sync
from pysync._sync._items import sort_key
from pysync.server import DynamoDBLocal, ProxyConfig, create_tables, dynamodb_client, local_session
from pysync.testing import MemoryBrowser

from .conftest import Direct, claims, hs256

TABLE = "pysync_sync"
SCHEMA = AppSchema(1, {"todos": CollectionSpec(indexes=(Index("by_done", "done"),))})
_users = itertools.count()


@pytest.fixture(scope="module")
def sync_proxy(dynamodb: DynamoDBLocal, make_proxy: Callable[..., str]) -> str:
    config = ProxyConfig(table=TABLE, dynamodb_endpoint=dynamodb.endpoint)
    client = dynamodb_client(config, local_session())
    try:
        create_tables(client, TABLE)
    finally:
        client.close()  # its sockets would otherwise be reported unclosed at exit
    return make_proxy(table=TABLE) + "/dynamodb"


class Device:
    """One device of a user: its own browser storage, replica and sync engine."""

    def __init__(self, replica: pysync.Replica, sync: Sync, remote: Any) -> None:
        self.replica, self.sync, self.remote = replica, sync, remote
        self.todos = replica["todos"]


class Faulty:
    """A remote that fails on purpose: before sending, or after (the reply is lost)."""

    def __init__(self, inner: HttpRemote) -> None:
        self.inner = inner
        self.fail_before: list[RemoteError] = []
        self.lose_replies = 0
        self.lost_reply = RemoteError("NetworkError", "connection reset after the write", 0, {})
        self.lose_only: str | None = None  # lose replies of this operation only
        self.refusals: list[str] = []  # error codes the server answered
        self.calls: list[str] = []

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(operation)
        if self.fail_before:
            raise self.fail_before.pop(0)
        try:
            result = await self.inner.call(operation, payload)
        except RemoteError as error:
            self.refusals.append(error.code)
            raise
        if self.lose_replies and operation != "Query" and self.lose_only in (None, operation):
            self.lose_replies -= 1
            raise self.lost_reply
        return result


async def no_sleep(_: float) -> None:
    return None


@pytest.fixture
def user() -> str:
    return f"sync-user-{next(_users)}"


@pytest.fixture
def device(sync_proxy: str, user: str) -> Callable[..., Any]:
    async def make(**options: Any) -> Device:
        replica = await pysync.connect("app", user, SCHEMA, platform=MemoryBrowser().tab())
        remote = Faulty(HttpRemote(sync_proxy, hs256(claims(user))))
        return Device(
            replica, Sync(replica, remote, table=TABLE, sleep=no_sleep, **options), remote
        )

    return make


def server_item(direct: Direct, user: str, key: str) -> dict[str, Any] | None:
    got = direct.call(
        "GetItem",
        {
            "TableName": TABLE,
            "ConsistentRead": True,
            "Key": {"pk": {"S": f"u#{user}"}, "sk": {"S": sort_key("app", "todos", key)}},
        },
    )
    return got.get("Item")


async def test_push_writes_conditional_versions(device: Any, direct: Direct, user: str) -> None:
    a = await device()
    await a.todos.put({"id": "t1", "title": "milk", "done": False})
    report = await a.sync.push()
    assert report.pushed == 1
    item = server_item(direct, user, "t1")
    assert item is not None
    assert item["_v"] == {"N": "1"}
    assert item["title"] == {"S": "milk"}
    assert item["_c"] == {"S": a.replica.client_id}
    assert await a.replica.outbox() == []
    assert (await a.replica.store.get("todos", "t1") or {})["_v"] == 1
    await a.todos.patch("t1", {"done": True})
    await a.todos.increment("t1", "likes", 3)
    await a.sync.push()
    item = server_item(direct, user, "t1")
    assert item is not None
    assert (item["_v"], item["done"], item["likes"]) == ({"N": "2"}, {"BOOL": True}, {"N": "3"})
    await a.todos.delete("t1")
    await a.sync.push()
    item = server_item(direct, user, "t1")
    assert item is not None
    assert item["_del"] == {"BOOL": True}  # a tombstone, so other devices learn of the delete
    assert await a.todos.sync_state("t1") == "synced"


async def test_base_sync_brings_everything_including_writes_that_bypass_the_proxy(
    device: Any, direct: Direct, user: str
) -> None:
    for i in range(30):
        direct.call(
            "PutItem",
            {
                "TableName": TABLE,
                "Item": {
                    "pk": {"S": f"u#{user}"},
                    "sk": {"S": sort_key("app", "todos", f"d{i:02}")},
                    "id": {"S": f"d{i:02}"},
                    "done": {"BOOL": i % 2 == 0},
                    "_v": {"N": "1"},
                },
            },
        )
    b = await device()
    await b.todos.put({"id": "local-only-pending", "done": False})
    report = await b.sync.pull()
    assert report.base_sync
    assert await b.todos.count() == 31
    assert await b.todos.count(index="by_done", equals=True) == 15
    assert await b.todos.get("d03") == {"id": "d03", "done": False}


async def test_edits_of_different_fields_merge(device: Any, direct: Direct, user: str) -> None:
    a, b = await device(), await device()
    await a.todos.put({"id": "t", "title": "milk", "done": False, "n": 1})
    await a.sync.sync()
    await b.sync.sync()
    await a.todos.patch("t", {"title": "oat milk"})
    await b.todos.patch("t", {"done": True})
    await a.sync.push()
    report = await b.sync.push()
    assert report.conflicts == 1
    merged = {"id": "t", "title": "oat milk", "done": True, "n": 1}
    assert await b.todos.get("t") == merged
    item = server_item(direct, user, "t")
    assert item is not None
    assert item["title"] == {"S": "oat milk"}
    assert item["done"] == {"BOOL": True}
    assert item["_v"] == {"N": "3"}
    (conflict,) = await b.replica.store.query("_conflicts")
    assert conflict["local"]["done"] is True
    assert conflict["remote"]["title"] == "oat milk"
    assert conflict["result"] == merged


@pytest.mark.parametrize(
    ("strategy", "winner"), [("lww", "second"), ("server", "first"), ("client", "second")]
)
async def test_same_field_conflicts_follow_the_strategy(
    device: Any, strategy: str, winner: str
) -> None:
    a, b = await device(), await device(strategy=strategy)
    await a.todos.put({"id": "t", "title": "start"})
    await a.sync.sync()
    await b.sync.sync()
    await a.todos.patch("t", {"title": "first"})
    b.replica.platform.browser.now_ms += 1000  # type: ignore[attr-defined]
    await b.todos.patch("t", {"title": "second"})  # later by the clock
    await a.sync.push()
    await b.sync.push()
    assert (await b.todos.get("t") or {})["title"] == winner
    (conflict,) = await b.replica.store.query("_conflicts")
    assert {conflict["local"]["title"], conflict["remote"]["title"]} == {"first", "second"}


async def test_callback_strategy(device: Any) -> None:
    def keep_both(base: Any, local: Any, remote: Any) -> Any:
        return {**remote, "title": f"{remote['title']} | {local['title']}"}

    a, b = await device(), await device(strategy=keep_both)
    await a.todos.put({"id": "t", "title": "x"})
    await a.sync.sync()
    await b.sync.sync()
    await a.todos.patch("t", {"title": "A"})
    await b.todos.patch("t", {"title": "B"})
    await a.sync.push()
    await b.sync.push()
    assert (await b.todos.get("t") or {})["title"] == "A | B"


async def test_a_lost_reply_neither_duplicates_nor_loses(
    device: Any, direct: Direct, user: str
) -> None:
    a = await device()
    await a.todos.put({"id": "t", "title": "once"})
    a.remote.lose_replies = 1
    report = await a.sync.push()
    assert report.pushed == 1
    assert report.conflicts == 0
    item = server_item(direct, user, "t")
    assert item is not None
    assert item["_v"] == {"N": "1"}
    assert await a.replica.outbox() == []


async def test_a_5xx_and_throttling_storm_is_ridden_out(
    device: Any, direct: Direct, user: str
) -> None:
    a = await device()
    await a.todos.put({"id": "t", "title": "eventually"})
    a.remote.fail_before = [
        RemoteError("ServiceUnavailable", "down", 503, {}),
        RemoteError("ThrottlingException", "slow down", 429, {}),
        RemoteError("NetworkError", "offline", 0, {}),
        RemoteError("InternalServerError", "oops", 500, {}),
    ]
    assert (await a.sync.push()).pushed == 1
    assert server_item(direct, user, "t") is not None


async def test_a_rejected_change_does_not_block_the_others(
    device: Any, direct: Direct, user: str
) -> None:
    a = await device()
    await a.todos.put({"id": "huge", "blob": "x" * 420_000})  # over DynamoDB's 400 KB item limit
    await a.todos.put({"id": "fine", "title": "ok"})
    report = await a.sync.push()
    assert (report.pushed, report.rejected) == (1, 1)
    assert server_item(direct, user, "fine") is not None
    assert server_item(direct, user, "huge") is None
    assert await a.todos.sync_state("huge") == "rejected"
    assert a.replica.status.rejected == 1
    (entry,) = await a.replica.outbox()
    assert entry["error"]["code"] in ("ValidationException", "PayloadTooLarge", "RequestTooLarge")
    await a.replica.discard(entry["mid"])
    assert await a.todos.get("huge") is None
    assert await a.replica.outbox() == []


async def test_a_local_transaction_is_atomic_on_the_server(
    device: Any, direct: Direct, user: str
) -> None:
    a = await device()
    async with a.replica.transaction() as tx:
        tx.put("todos", {"id": "x", "n": 1})
        tx.put("todos", {"id": "y", "n": 2})
    await a.sync.push()
    assert "TransactWriteItems" in a.remote.calls
    assert server_item(direct, user, "x") is not None
    assert server_item(direct, user, "y") is not None


async def test_increments_from_two_devices_add_up_even_in_a_conflict(device: Any) -> None:
    a, b = await device(), await device()
    await a.todos.put({"id": "t", "n": 0, "note": ""})
    await a.sync.sync()
    await b.sync.sync()
    await a.todos.patch("t", {"note": "A"})
    await a.todos.increment("t", "n", 2)
    await b.todos.patch("t", {"note": "B"})
    await b.todos.increment("t", "n", 5)
    await a.sync.push()
    await b.sync.push()
    assert (await b.todos.get("t") or {})["n"] == 7


async def test_changes_go_out_as_plain_conditional_writes_billed_one_unit_each(
    device: Any, direct: Direct, user: str
) -> None:
    a = await device()
    async with a.replica.transaction() as tx:  # a local transaction: one request, atomic
        for i in range(60):
            tx.put("todos", {"id": f"g{i}", "n": i})
    for i in range(120):
        await a.todos.put({"id": f"t{i}", "n": i})
    a.remote.calls.clear()
    report = await a.sync.push()
    assert report.pushed == 180
    writes = [c for c in a.remote.calls if c != "Query" and c != "GetItem"]
    # The group alone, then each independent change as one conditional PutItem.
    assert writes == ["TransactWriteItems"] + ["PutItem"] * 120
    # DynamoDB Local reports what each write consumed: 1 unit per PutItem of up to
    # 1 KB (and 2.0 for any transaction, where DynamoDB bills 2 per item).
    assert report.capacity_units == 120 + 2.0
    assert server_item(direct, user, "t119") is not None
    assert server_item(direct, user, "g59") is not None
    assert await a.replica.outbox() == []


async def test_independent_changes_go_out_in_packs_as_an_option(
    device: Any, direct: Direct, user: str
) -> None:
    a = await device(pack_size=50)
    for i in range(120):
        await a.todos.put({"id": f"t{i}", "n": i})
    a.remote.calls.clear()
    report = await a.sync.push()
    assert report.pushed == 120
    writes = [c for c in a.remote.calls if c != "Query" and c != "GetItem"]
    assert writes == ["TransactWriteItems"] * 3  # packs of 50, 50 and 20
    assert report.capacity_units > 0  # DynamoDB Local: 2.0 a transaction (see above)
    assert server_item(direct, user, "t119") is not None
    assert await a.replica.outbox() == []


async def test_a_conflict_in_a_pack_does_not_hold_back_the_others(
    device: Any, direct: Direct, user: str
) -> None:
    a, b = await device(strategy="client", pack_size=50), await device()
    await a.todos.put({"id": "shared", "title": "v1"})
    await a.sync.sync()
    await b.sync.sync()
    await b.todos.patch("shared", {"title": "from b"})
    await b.sync.push()
    await a.todos.patch("shared", {"title": "from a"})
    for i in range(10):
        await a.todos.put({"id": f"p{i}"})
    report = await a.sync.push()
    assert (report.pushed, report.conflicts) == (11, 1)  # the merged change pushed after
    assert (server_item(direct, user, "shared") or {})["title"] == {"S": "from a"}
    for i in range(10):
        assert server_item(direct, user, f"p{i}") is not None
    assert await a.replica.outbox() == []


async def test_a_transaction_resent_with_its_token_is_not_applied_twice(
    device: Any, direct: Direct, user: str
) -> None:
    # The proxy replaces the ClientRequestToken with one derived from the user and the
    # client's token. After a 429 the client sends the same request again, token
    # included, without settling first: made to come after the transaction landed,
    # the resend must still be recognised by DynamoDB as that transaction, and
    # succeed as it (with another token it is cancelled: the increments' conditions
    # find their own mutation, which the client then settles as landed).
    a = await device()
    async with a.replica.transaction() as tx:
        tx.put("todos", {"id": "tx1", "n": 1})
        tx.put("todos", {"id": "tx2", "n": 2})
    await a.sync.push()
    async with a.replica.transaction() as tx:
        tx.increment("todos", "tx1", "n", 10)
        tx.increment("todos", "tx2", "n", 20)
    a.remote.calls.clear()
    a.remote.lose_replies, a.remote.lose_only = 1, "TransactWriteItems"
    a.remote.lost_reply = RemoteError("ThrottlingException", "slow down", 429, {})
    report = await a.sync.push()
    assert (report.pushed, report.conflicts, report.rejected) == (2, 0, 0)
    assert a.remote.refusals == []
    writes = [call for call in a.remote.calls if call != "GetItem"]
    assert writes == ["TransactWriteItems", "TransactWriteItems"]  # landed, then resent
    first, second = server_item(direct, user, "tx1"), server_item(direct, user, "tx2")
    assert first is not None
    assert second is not None
    assert first["n"] == {"N": "11"}
    assert second["n"] == {"N": "22"}
    assert await a.replica.outbox() == []
