"""Issue 9: one regression test per bug, against the real stack.

DynamoDB Local, the real proxy (uvicorn, real HTTP) and the real stream consumer
writing the changelog; CPython replicas on in-memory browser storage talk to the
proxy through ``HttpRemote``. Each test has its own user, so its own scope. Writes
that bypass pysync go straight to DynamoDB Local with boto3 (``ddb``).

The stream consumer runs in the test's event loop (``consumer``), so a test can
hold its appends to the test's scope: the changelog lagging behind the data
table, deterministically.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

import pysync
from pysync import AppSchema, CollectionSpec, HttpRemote, RemoteError, Sync
from pysync._sync._items import sort_key
from pysync.server import (
    Changelog,
    DynamoDBLocal,
    ProxyConfig,
    StreamConsumer,
    create_tables,
    dynamodb_client,
    local_session,
)
from pysync.testing import MemoryBrowser, MemoryTab

from .conftest import FaultyAPI, changelog, claims, hs256, wait_until
from .hostile_corpus import S

TABLE = "pysync_issue9"
CHANGES = f"{TABLE}_changes"
SCHEMA = AppSchema(1, {"todos": CollectionSpec()})
WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"})
KEYS = frozenset({"pk", "sk"})

Hook = Callable[[str, dict[str, Any]], Any]


async def _run(result: Any) -> None:
    if inspect.isawaitable(result):
        await result


async def quick_sleep(seconds: float) -> None:
    """The engine's pauses (backoff, waiting for the changelog), shortened but real."""
    await asyncio.sleep(min(seconds, 0.05))


# --- the stack ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tables(dynamodb: DynamoDBLocal) -> None:
    client = dynamodb_client(ProxyConfig(dynamodb_endpoint=dynamodb.endpoint), local_session())
    try:
        create_tables(client, TABLE)
    finally:
        client.close()


@pytest.fixture(scope="module")
def issue9_proxy(tables: None, make_proxy: Callable[..., str]) -> str:
    return make_proxy(table=TABLE) + "/dynamodb"


class Consumer:
    """The stream consumer filling ``<TABLE>_changes``; :meth:`hold` makes it lag."""

    def __init__(self, api: FaultyAPI, worker: StreamConsumer) -> None:
        self.api, self.worker = api, worker
        self._gates: list[asyncio.Event] = []

    def hold(self, scope: str) -> None:
        """Stall the appends to ``scope``'s changelog until :meth:`release`.

        The stream records wait in the consumer (as when it lags): nothing is lost.
        """
        gate = asyncio.Event()
        self._gates.append(gate)

        async def wait(_: dict[str, Any]) -> None:
            await gate.wait()

        def appends_to_scope(body: dict[str, Any]) -> bool:
            head = (body.get("TransactItems") or [{}])[0].get("Update", {})
            return bool(head.get("TableName") == CHANGES and head["Key"]["pk"] == S(scope))

        self.api.inject("TransactWriteItems", wait, when=appends_to_scope, times=10**9)

    def release(self) -> None:
        for gate in self._gates:
            gate.set()


@pytest.fixture
async def consumer(tables: None, api: FaultyAPI) -> AsyncIterator[Consumer]:
    worker = StreamConsumer(
        api, TABLE, Changelog(api, CHANGES), poll_interval=0.01, lease_duration=1.0
    )
    await worker.start()
    running = Consumer(api, worker)
    try:
        yield running
    finally:
        running.release()
        await worker.stop()  # releases its lease: the next test's consumer takes it at once


class Wire:
    """A device's remote: the real :class:`HttpRemote`, with the faults a test sets.

    ``refuse_writes``: the next writes are refused for good (ValidationException,
    400), unsent. ``lose_replies``: the next writes are sent, then fail as a lost
    reply (a network error, status 0); ``on_lost`` runs in between. ``stall``: the
    next write is sent and its reply never comes (``stalled`` is set): the tab
    dies waiting. ``before`` and ``after`` hooks get every call's operation and
    payload (``after`` only when it succeeded).
    """

    def __init__(self, inner: HttpRemote) -> None:
        self.inner = inner
        self.refuse_writes = 0
        self.lose_replies = 0
        self.on_lost: Hook | None = None
        self.stall = False
        self.stalled = asyncio.Event()
        self.before: list[Hook] = []
        self.after: list[Hook] = []
        self.calls: list[str] = []

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(operation)
        for hook in list(self.before):
            await _run(hook(operation, payload))
        write = operation in WRITES
        if write and self.refuse_writes:
            self.refuse_writes -= 1
            raise RemoteError("ValidationException", "refused by the test", 400, {})
        result = await self.inner.call(operation, payload)
        if write and self.stall:
            self.stall = False
            self.stalled.set()
            await asyncio.Future()  # never: cancelled when the tab crashes
        if write and self.lose_replies:
            self.lose_replies -= 1
            if self.on_lost is not None:
                await _run(self.on_lost(operation, payload))
            raise RemoteError("NetworkError", "connection reset after the write", 0, {})
        for hook in list(self.after):
            await _run(hook(operation, payload))
        return result


@dataclass
class Device:
    """One device (a tab of its own browser profile) of the test's user."""

    replica: pysync.Replica
    sync: Sync
    wire: Wire
    browser: MemoryBrowser
    tab: MemoryTab

    @property
    def todos(self) -> pysync.Collection:
        return self.replica["todos"]


@pytest.fixture
def user() -> str:
    return f"issue9-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def device(issue9_proxy: str, user: str) -> AsyncIterator[Callable[..., Awaitable[Device]]]:
    """Open a device; ``browser=`` reopens one from that browser's storage."""
    made: list[Device] = []

    async def make(strategy: Any = "lww", browser: MemoryBrowser | None = None) -> Device:
        browser = browser or MemoryBrowser()
        tab = browser.tab()
        replica = await pysync.connect("app", user, SCHEMA, platform=tab)
        wire = Wire(HttpRemote(issue9_proxy, hs256(claims(user))))
        sync = Sync(replica, wire, table=TABLE, strategy=strategy, sleep=quick_sleep)
        made.append(Device(replica, sync, wire, browser, tab))
        return made[-1]

    yield make
    for one in made:
        one.replica.close()
        await one.wire.inner.close()


# --- reading the server ------------------------------------------------------------


def key(user: str, doc_id: str) -> dict[str, Any]:
    return {"pk": S(f"u#{user}"), "sk": S(sort_key("app", "todos", doc_id))}


def server_item(ddb: Any, user: str, doc_id: str) -> dict[str, Any] | None:
    """The data item (consistent read), system fields included; ``None`` if there is none."""
    got = ddb.get_item(TableName=TABLE, Key=key(user, doc_id), ConsistentRead=True)
    item: dict[str, Any] | None = got.get("Item")
    return item


def _plain(value: dict[str, Any]) -> Any:
    (kind, inner), *_ = value.items()
    if kind == "N":
        number = float(inner)
        return int(number) if number.is_integer() else number
    if kind == "M":
        return {k: _plain(v) for k, v in inner.items()}
    if kind == "L":
        return [_plain(v) for v in inner]
    if kind == "NULL":
        return None
    return inner


def server_doc(ddb: Any, user: str, doc_id: str) -> dict[str, Any] | None:
    """The document as the server has it (``None``: no item, or a tombstone)."""
    item = server_item(ddb, user, doc_id)
    if item is None or item.get("_del") == {"BOOL": True}:
        return None
    return {k: _plain(v) for k, v in item.items() if not k.startswith("_") and k not in KEYS}


async def conflicts(device: Device) -> list[dict[str, Any]]:
    """The conflicts recorded on the device (its ``_conflicts`` store)."""
    return await device.replica.store.query("_conflicts")


async def logged(ddb: Any, user: str, match: Callable[[dict[str, Any]], bool]) -> None:
    """Wait until the scope's changelog holds an entry that ``match``es."""
    await wait_until(lambda: any(match(e) for e in changelog(ddb, TABLE, f"u#{user}")))


def holds_current(ddb: Any, user: str, doc_id: str) -> bool:
    """Whether the changelog's last entry of ``doc_id`` is the item as the server has it now."""
    item = server_item(ddb, user, doc_id)
    mine = [e for e in changelog(ddb, TABLE, f"u#{user}") if e["key"] == key(user, doc_id)["sk"]]
    if not mine:
        return item is None
    last = mine[-1]
    if item is None:
        return bool(last["op"] == S("delete"))
    return bool(last.get("_v") == item.get("_v") and last.get("_m") == item.get("_m"))


async def converge(device: Device, ddb: Any, user: str, *doc_ids: str) -> None:
    """Push, wait until the changelog holds what the server has of ``doc_ids``, pull.

    The pull then reads a changelog that has caught up with the data table (a pull
    while the consumer lags shows an older state: that is not what these tests test).
    """
    await device.sync.push()
    for doc_id in doc_ids:
        await wait_until(lambda doc_id=doc_id: holds_current(ddb, user, doc_id))
    await device.sync.pull()


def of(doc_id: str, **image: Any) -> Callable[[dict[str, Any]], bool]:
    """Matches changelog entries of ``doc_id`` (``op`` and image fields given as keywords)."""

    def match(entry: dict[str, Any]) -> bool:
        if entry["key"] != S(sort_key("app", "todos", doc_id)):
            return False
        if "op" in image and entry["op"] != S(image["op"]):
            return False
        fields = entry.get("item", {}).get("M", {})
        wanted = {k: v for k, v in image.items() if k != "op"}
        return all(_plain(fields.get(k, {"NULL": True})) == v for k, v in wanted.items())

    return match


# --- the bugs ----------------------------------------------------------------------


@pytest.mark.usefixtures("consumer")
async def test_bug9_1_a_version_number_reused_after_a_hard_delete_is_a_conflict(
    device: Any, ddb: Any, user: str
) -> None:
    """A key removed for good and created again restarts at ``_v = 1``: an old
    pending edit conditioned on ``_v = 2`` must meet the new item's version 2 as a
    conflict, not overwrite it."""
    a, b = await device(strategy="server"), await device()
    await a.todos.put({"id": "t", "title": "one"})
    await a.sync.push()
    await a.todos.patch("t", {"title": "two"})
    await a.sync.push()  # version 2
    await a.todos.patch("t", {"title": "from a"})  # pending, on version 2
    ddb.delete_item(TableName=TABLE, Key=key(user, "t"))  # removed for good
    await b.todos.put({"id": "t", "title": "re-created", "owner": "b"})
    await b.sync.push()  # version 1 again
    await b.todos.patch("t", {"title": "re-created, edited"})
    await b.sync.push()  # version 2 again: another state
    await converge(a, ddb, user, "t")
    recreated = {"id": "t", "title": "re-created, edited", "owner": "b"}
    assert server_doc(ddb, user, "t") == recreated
    (conflict,) = await conflicts(a)
    assert conflict["local"]["title"] == "from a"
    assert conflict["remote"] == recreated
    assert await a.todos.get("t") == recreated
    assert await a.replica.outbox() == []


@pytest.mark.usefixtures("consumer")
async def test_bug9_2_a_delete_in_a_transaction_after_a_pending_edit_lands(
    device: Any, ddb: Any, user: str
) -> None:
    """A delete inside ``transaction()`` after a pending plain edit of the same
    document is pushed after that edit, on the version it creates: no conflict with
    itself, and with ``"server"`` the device's own delete is not lost."""
    a = await device(strategy="server")
    await a.todos.put({"id": "t", "title": "one"})
    await a.sync.push()
    await a.todos.patch("t", {"title": "two"})  # a plain edit, still pending
    async with a.replica.transaction() as tx:
        tx.delete("todos", "t")
        tx.put("todos", {"id": "u", "title": "with it"})
    await converge(a, ddb, user, "t", "u")
    assert server_doc(ddb, user, "t") is None
    assert server_doc(ddb, user, "u") == {"id": "u", "title": "with it"}
    assert await a.todos.get("t") is None
    assert await conflicts(a) == []
    assert await a.replica.outbox() == []


async def test_bug9_3_a_lost_create_settled_after_a_hard_delete_is_not_sent_again(
    device: Any, ddb: Any, user: str, consumer: Consumer
) -> None:
    """A create lands, its reply is lost, someone removes the item for good before
    the retry while the changelog lags: the settle must not take the missing item
    for "did not land" and bring the document back."""
    a = await device()
    consumer.hold(f"u#{user}")  # the changelog lags: the create is not in it yet

    def removed_by_someone_else(operation: str, payload: dict[str, Any]) -> None:
        ddb.delete_item(TableName=TABLE, Key=key(user, "t"))

        def catch_up(operation: str, payload: dict[str, Any]) -> None:
            # The settle has read the changelog once: from now on the consumer catches up.
            if operation == "Query" and payload["TableName"] == CHANGES:
                consumer.release()

        a.wire.after.append(catch_up)

    a.wire.lose_replies = 1  # the create lands, its reply is lost
    a.wire.on_lost = removed_by_someone_else
    await a.todos.put({"id": "t", "title": "short-lived"})
    await a.sync.push()
    consumer.release()
    await converge(a, ddb, user, "t")
    assert server_doc(ddb, user, "t") is None
    assert await a.todos.get("t") is None
    assert await a.replica.outbox() == []


@pytest.mark.usefixtures("consumer")
async def test_bug9_4_the_recorded_local_side_is_the_devices_own_edit(
    device: Any, ddb: Any, user: str
) -> None:
    """The local edit equals the server's document and its increment is re-applied
    to the server's value: the recorded ``local`` stays the device's own edit."""
    a, b = await device(), await device()
    await a.todos.put({"id": "t", "title": "draft", "n": 0})
    await a.sync.push()
    await b.sync.pull()
    await b.todos.patch("t", {"title": "final"})
    await b.todos.increment("t", "n", 5)
    await b.sync.push()
    await a.todos.patch("t", {"title": "final"})  # the same edit as b's
    await a.todos.increment("t", "n", 5)
    assert (await a.sync.push()).conflicts == 1
    (conflict,) = await conflicts(a)
    assert conflict["local"] == {"id": "t", "title": "final", "n": 5}
    assert conflict["remote"] == {"id": "t", "title": "final", "n": 5}
    assert conflict["result"] == {"id": "t", "title": "final", "n": 10}
    assert server_doc(ddb, user, "t") == {"id": "t", "title": "final", "n": 10}


@pytest.mark.usefixtures("consumer")
async def test_bug9_5_re_creating_a_document_deleted_here_is_no_conflict(
    device: Any, ddb: Any, user: str
) -> None:
    """Re-creating a document this device deleted meets its own tombstone: nothing
    changed remotely, so the new document lands, with no conflict (``"server"``
    would otherwise delete it again)."""
    a = await device(strategy="server")
    await a.todos.put({"id": "t", "title": "first life"})
    await a.sync.push()
    await a.todos.delete("t")
    await a.sync.push()  # its own tombstone
    await a.todos.put({"id": "t", "title": "second life"})
    await converge(a, ddb, user, "t")
    assert server_doc(ddb, user, "t") == {"id": "t", "title": "second life"}
    assert await a.todos.get("t") == {"id": "t", "title": "second life"}
    assert await conflicts(a) == []
    assert await a.replica.outbox() == []


@pytest.mark.usefixtures("consumer")
async def test_bug9_6_discarding_a_rejected_change_keeps_a_later_edit(
    device: Any, ddb: Any, user: str
) -> None:
    """Discarding a rejected change shows the server's version with the later
    pending edit on top, and a write made on that view keeps the later edit."""
    a = await device()
    await a.todos.put({"id": "t", "title": "one"})
    await a.sync.push()
    a.wire.refuse_writes = 1
    await a.todos.patch("t", {"title": "refused"})
    assert (await a.sync.push()).rejected == 1
    (refused,) = await a.replica.outbox()
    await a.todos.patch("t", {"note": "later"})
    await a.replica.discard(refused["mid"])
    shown = await a.todos.get("t")
    assert shown == {"id": "t", "title": "one", "note": "later"}
    await a.todos.put({**shown, "done": True})  # the app writes what it shows
    await converge(a, ddb, user, "t")
    final = {"id": "t", "title": "one", "note": "later", "done": True}
    assert server_doc(ddb, user, "t") == final
    assert await a.todos.get("t") == final
    assert await a.replica.outbox() == []


async def test_bug9_7_a_deleted_document_never_comes_back_from_an_older_entry(
    device: Any, ddb: Any, user: str, consumer: Consumer
) -> None:
    """The device's acknowledged delete, then a pull while the changelog holds the
    create but not yet the tombstone: the older entry must not bring it back."""
    a = await device()
    await a.sync.pull()  # the cursor is set
    await a.todos.put({"id": "t", "title": "short-lived"})
    await a.sync.push()
    await logged(ddb, user, of("t", title="short-lived"))
    consumer.hold(f"u#{user}")  # the tombstone's entry is not appended yet
    await a.todos.delete("t")
    await a.sync.push()
    assert await a.replica.outbox() == []
    await a.sync.pull()  # reads the create's entry only
    assert await a.todos.get("t") is None
    consumer.release()
    await logged(ddb, user, of("t", _del=True))
    await a.sync.pull()
    assert await a.todos.get("t") is None
    assert server_doc(ddb, user, "t") is None


@pytest.mark.usefixtures("consumer")
async def test_bug9_8_a_retried_rejected_change_is_not_replayed_after_a_later_edit(
    device: Any, ddb: Any, user: str
) -> None:
    """A delete is refused, the document re-created, then the delete retried as the
    docs say: the record's changes apply in the order they were made (the
    re-create wins), and editing the visible document works."""
    a = await device(strategy="client")
    await a.todos.put({"id": "t", "title": "one"})
    await a.sync.push()
    a.wire.refuse_writes = 1
    await a.todos.delete("t")
    assert (await a.sync.push()).rejected == 1
    (refused,) = await a.replica.outbox()
    await a.todos.put({"id": "t", "title": "again"})  # re-created
    await a.sync.push()
    await a.replica.retry(refused["mid"])  # as the docs say
    await a.todos.patch("t", {"done": True})
    await converge(a, ddb, user, "t")
    final = {"id": "t", "title": "again", "done": True}
    assert server_doc(ddb, user, "t") == final
    assert await a.todos.get("t") == final
    assert await a.replica.outbox() == []


async def test_bug9_9_a_bypass_update_that_leaves_the_version_is_not_overwritten(
    device: Any, ddb: Any, user: str, consumer: Consumer
) -> None:
    """A writer that bypasses pysync and changes a field without touching ``_v``/``_m``.

    The contract for such writers is a new unique ``_m`` and ``ADD _v 1``; for those
    that break it, the stream consumer stamps the item (a fresh ``_m``, ``ADD _v 1``)
    once it has read the write. Until that stamp lands, the item still holds the
    state the device's edit started from, and the edit can overwrite the bypass
    write: that window is documented, not tested. So the device pushes only after
    the changelog holds the bypass write and the stamp has landed (or, without
    stamping, the consumer has polled its stream again with nothing left to do).
    """
    a = await device(strategy="server")
    await a.todos.put({"id": "t", "title": "one"})
    await a.sync.push()
    await a.todos.patch("t", {"title": "from the device"})  # pending, on version 1
    ddb.update_item(
        TableName=TABLE,
        Key=key(user, "t"),
        UpdateExpression="SET #t = :t",
        ExpressionAttributeNames={"#t": "title"},
        ExpressionAttributeValues={":t": S("from the admin")},
    )
    left = (server_item(ddb, user, "t") or {})["_m"]
    await logged(ddb, user, of("t", title="from the admin"))
    polls = consumer.worker.stats.empty_polls
    await wait_until(
        lambda: (
            (server_item(ddb, user, "t") or {}).get("_m") != left
            or consumer.worker.stats.empty_polls >= polls + 3
        )
    )
    await converge(a, ddb, user, "t")
    assert (server_doc(ddb, user, "t") or {})["title"] == "from the admin"
    (conflict,) = await conflicts(a)
    assert conflict["local"]["title"] == "from the device"
    assert conflict["remote"]["title"] == "from the admin"
    assert (await a.todos.get("t") or {})["title"] == "from the admin"


async def test_bug9_double_increment_after_crash(
    device: Any, ddb: Any, user: str, consumer: Consumer
) -> None:
    """An increment that landed, its device crashed before the reply; another device
    writes the record; the first reopens and settles its in-flight increment while
    the consumer lags. The consumer appends between the settle's changelog scan and
    its head read (injected deterministically): the increment must not be sent again.
    """
    browser = MemoryBrowser()
    a, b = await device(browser=browser), await device()
    await a.todos.put({"id": "c", "n": 0})
    await a.sync.push()
    await logged(ddb, user, of("c", n=0))
    await b.sync.pull()
    consumer.hold(f"u#{user}")  # the consumer lags from here
    await a.todos.increment("c", "n", 1)
    a.wire.stall = True  # the increment lands; the tab dies before its reply
    pushing = asyncio.ensure_future(a.sync.push())
    await a.wire.stalled.wait()
    pushing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pushing
    a.tab.crash()
    a.replica.close()
    await b.todos.patch("c", {"title": "from b"})
    await b.sync.push()  # b writes the record on top of a's increment
    again = await device(browser=browser)  # a reopens, its increment still in the outbox
    assert len(await again.replica.outbox()) == 1
    scanned = False

    def scans(operation: str, payload: dict[str, Any]) -> None:
        nonlocal scanned
        if operation == "Query" and payload["TableName"] == CHANGES:
            scanned = scanned or payload.get("ScanIndexForward", True)

    async def appended_meanwhile(operation: str, payload: dict[str, Any]) -> None:
        backward = operation == "Query" and payload.get("ScanIndexForward") is False
        if scanned and payload.get("TableName") == CHANGES and not backward:
            again.wire.before.remove(appended_meanwhile)
            consumer.release()  # the consumer appends a's increment and b's write now
            await logged(ddb, user, of("c", title="from b"))

    again.wire.after.append(scans)
    again.wire.before.append(appended_meanwhile)
    await converge(again, ddb, user, "c")
    assert server_doc(ddb, user, "c") == {"id": "c", "n": 1, "title": "from b"}
    assert await again.todos.get("c") == {"id": "c", "n": 1, "title": "from b"}
    await converge(b, ddb, user, "c")
    assert await b.todos.get("c") == {"id": "c", "n": 1, "title": "from b"}


# --- found by the randomized model (tests/model/, docs/reliability.md) --------------


async def test_model_f1_a_create_meeting_an_unversioned_item_does_not_loop(
    device: Any, ddb: Any, user: str, consumer: Consumer
) -> None:
    """A writer that bypasses pysync puts an item with no system fields where a device
    has a pending create; the consumer lags, so no stamp gives the item a version. The
    create's condition ("no item") fails, and the merged result must be conditioned on
    the item as it is (no ``_v``), not on "no item" again: that looped within one push.
    """
    a = await device(strategy="lww")
    consumer.hold(f"u#{user}")  # no stamp lands while the device pushes
    await a.todos.put({"id": "t", "title": "from the device"})
    ddb.put_item(TableName=TABLE, Item={**key(user, "t"), "id": S("t"), "title": S("admin")})
    report = await asyncio.wait_for(a.sync.push(), 30)
    assert (report.pushed, report.conflicts) == (1, 1)
    consumer.release()
    await converge(a, ddb, user, "t")
    assert (server_doc(ddb, user, "t") or {})["title"] == "from the device"  # later clock
    (conflict,) = await conflicts(a)
    assert (conflict["base"], conflict["remote"]["title"]) == (None, "admin")
    assert (await a.todos.get("t") or {})["title"] == "from the device"
    assert await a.replica.outbox() == []
