"""One table, many apps: each app's items live under ``<namespace>/`` in the sort key.

Two apps of one user (``todo-app`` and ``other-app``) sync to the same table and
scope, with a collection of the same name and documents of the same ids. Each
sees only its own documents, through every path: push, changelog pull, base
sync, realtime events, settling a write whose reply was lost, stale marks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

import pysync
from pysync import AppSchema, CollectionSpec, RemoteError, Replica, SchemaError, Sync
from pysync._sync._items import namespace_prefix, parse_sort_key, sort_key
from pysync.testing import MemoryBrowser, MemoryConnection, MemoryDynamo

USER = "alice"
SCOPE = f"u#{USER}"
URL = "https://app.example/changes"
SCHEMA = AppSchema(1, {"todos": CollectionSpec()})
TODO, OTHER = "todo-app", "other-app"


async def no_sleep(_: float) -> None:
    return None


@dataclass
class Device:
    app: str
    browser: MemoryBrowser
    replica: Replica
    remote: MemoryConnection
    sync: Sync

    @property
    def todos(self) -> pysync.Collection:
        return self.replica["todos"]

    async def docs(self) -> dict[Any, dict[str, Any]]:
        return {doc["id"]: doc for doc in await self.todos.query()}

    def queries(self, table: str = "pysync") -> list[dict[str, Any]]:
        return [p for op, p in self.remote.calls if op == "Query" and p["TableName"] == table]


MakeDevice = Callable[..., Awaitable[Device]]


@pytest.fixture
def db() -> MemoryDynamo:
    return MemoryDynamo()


@pytest.fixture
async def device(db: MemoryDynamo) -> AsyncIterator[MakeDevice]:
    made: list[Device] = []

    async def make(app: str, **options: Any) -> Device:
        browser = MemoryBrowser()
        replica = await pysync.connect(app, USER, SCHEMA, platform=browser.tab())
        remote = db.connection()
        sync = Sync(replica, remote, sleep=no_sleep, **options)
        made.append(Device(app, browser, replica, remote, sync))
        return made[-1]

    yield make
    for one in made:
        one.sync.stop()
        one.replica.close()


def head(db: MemoryDynamo) -> int:
    found = db.item("pysync_changes", SCOPE, 0)
    return 0 if found is None else int(found["head"]["N"])


def event(db: MemoryDynamo, seq: int) -> str:
    """The ``data`` of the SSE event that carries changelog entry ``seq``."""
    (entry,) = [e for e in db.changes(SCOPE) if int(e["sk"]["N"]) == seq]
    return json.dumps({"scope": SCOPE, "seq": seq, "entry": entry})


async def until(check: Callable[[], Any], rounds: int = 1000) -> None:
    for _ in range(rounds):
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition did not become true")


async def write_both(todo: Device, other: Device) -> None:
    """Both apps write documents of the same collection and ids, and push them."""
    for one in (todo, other):
        await one.todos.put({"id": "t1", "title": f"{one.app} t1"})
        await one.todos.put({"id": 7, "title": f"{one.app} 7"})  # an int id: n:7
        await one.todos.put({"id": "n:7", "title": f"{one.app} n:7"})  # escaped: s:n:7
        report = await one.sync.push()
        assert (report.pushed, report.conflicts, report.rejected) == (3, 0, 0)


def own(app: str) -> dict[Any, dict[str, Any]]:
    return {k: {"id": k, "title": f"{app} {k}"} for k in ("t1", 7, "n:7")}


def test_the_sort_key_layout() -> None:
    assert sort_key("todo-app", "todos", "t1") == "todo-app/todos#t1"
    assert sort_key("todo-app", "todos", 7) == "todo-app/todos#n:7"
    assert sort_key("todo-app", "todos", "n:7") == "todo-app/todos#s:n:7"
    assert sort_key("todo-app", "todos", "a/b#c") == "todo-app/todos#a/b#c"
    assert namespace_prefix("todo-app") == "todo-app/"
    for key in ("t1", 7, "n:7", "s:x", "a/b#c", ""):
        assert parse_sort_key(sort_key("todo-app", "todos", key), "todo-app") == ("todos", key)
    # Another namespace's keys, a namespace that is a prefix of another, and keys
    # pysync did not write are not this namespace's documents.
    assert parse_sort_key("other-app/todos#t1", "todo-app") is None
    assert parse_sort_key("todo-app/todos#t1", "todo") is None
    assert parse_sort_key("todos#t1", "todo-app") is None
    assert parse_sort_key("todo-app/todos", "todo-app") is None
    assert parse_sort_key("todo-app/todos#n:x", "todo-app") is None


async def test_two_apps_of_one_user_see_only_their_own_documents(
    device: MakeDevice, db: MemoryDynamo
) -> None:
    todo1, other1 = await device(TODO), await device(OTHER)
    await write_both(todo1, other1)
    # Push: six items, three per app; neither overwrote nor conflicted with the other.
    sks = {item["sk"]["S"] for item in db.items("pysync", SCOPE)}
    assert sks == {sort_key(app, "todos", k) for app in (TODO, OTHER) for k in ("t1", 7, "n:7")}
    for app in (TODO, OTHER):
        item = db.item("pysync", SCOPE, sort_key(app, "todos", "t1"))
        assert item is not None
        assert (item["title"], item["_v"]) == ({"S": f"{app} t1"}, {"N": "1"})

    # Base sync (a new device of each app): only the app's own items are read.
    todo2, other2 = await device(TODO), await device(OTHER)
    for one in (todo2, other2):
        synced = await one.sync.sync()
        assert synced.pull.base_sync
        assert synced.pull.applied == 3
        assert await one.docs() == own(one.app)
        assert await one.sync.puller.cursor() == head(db) == 6
        (query,) = one.queries()
        assert query["KeyConditionExpression"] == "pk = :p AND begins_with(sk, :ns)"
        assert query["ExpressionAttributeValues"][":ns"] == {"S": f"{one.app}/"}

    # Changelog pull: the other app's changes are passed, never applied nor counted.
    await todo1.todos.patch("t1", {"done": True})
    await todo1.sync.push()
    await other1.todos.delete("t1")
    await other1.todos.put({"id": "o-only", "title": "other's alone"})
    await other1.sync.push()
    assert head(db) == 9
    pulled = await todo2.sync.pull()
    assert (pulled.applied, pulled.base_sync, pulled.skipped_pending) == (1, False, 0)
    assert await todo2.docs() == {
        **own(TODO),
        "t1": {"id": "t1", "title": f"{TODO} t1", "done": True},
    }
    pulled = await other2.sync.pull()
    assert (pulled.applied, pulled.base_sync) == (2, False)
    expected = {**own(OTHER), "o-only": {"id": "o-only", "title": "other's alone"}}
    del expected["t1"]
    assert await other2.docs() == expected
    for one in (todo1, todo2, other1, other2):
        await one.sync.sync()
        assert await one.sync.puller.cursor() == 9
        assert await one.replica.outbox() == []
    assert await todo1.docs() == await todo2.docs()
    assert await other1.docs() == await other2.docs() == expected


async def test_a_pull_of_only_other_apps_changes_moves_the_cursor(
    device: MakeDevice, db: MemoryDynamo
) -> None:
    todo, other = await device(TODO), await device(OTHER)
    await todo.sync.sync()
    for i in range(5):
        await other.todos.put({"id": f"o{i}", "title": "not todo's"})
    await other.sync.push()
    report = await todo.sync.pull()
    assert (report.applied, report.pages, report.base_sync) == (0, 1, False)
    assert await todo.sync.puller.cursor() == head(db) == 5
    assert await todo.docs() == {}
    # A base sync (after a gap: entry 6 expired) ignores them too.
    for doc_id in ("o8", "o9"):
        await other.todos.put({"id": doc_id})
        await other.sync.push()
    (expired,) = [e for e in db.changes(SCOPE) if e["sk"] == {"N": "6"}]
    expired_key = {"pk": expired["pk"], "sk": expired["sk"]}
    db.handle("DeleteItem", {"TableName": "pysync_changes", "Key": expired_key})
    report = await todo.sync.pull()
    assert (report.base_sync, report.applied) == (True, 0)
    assert await todo.sync.puller.cursor() == 7
    assert await todo.docs() == {}


async def test_a_truncated_entry_of_another_app_is_not_read() -> None:
    db = MemoryDynamo(max_entry_bytes=2_000)
    todo = Device(TODO, *(await _open(db, TODO)))
    other = Device(OTHER, *(await _open(db, OTHER)))
    try:
        await todo.sync.sync()
        await other.todos.put({"id": "big", "text": "x" * 5_000})
        await todo.todos.put({"id": "big", "text": "y" * 5_000})
        await other.sync.push()
        await todo.sync.push()
        assert all("item" not in e for e in db.changes(SCOPE))  # both entries are "trunc"
        todo.remote.calls.clear()
        report = await todo.sync.pull()
        assert report.applied == 1
        reads = [
            p["Key"]["sk"]["S"]
            for op, p in todo.remote.calls
            if op == "GetItem" and p["TableName"] == "pysync"
        ]
        assert reads
        assert all(sk.startswith(f"{TODO}/") for sk in reads), reads
        assert (await todo.todos.get("big") or {})["text"] == "y" * 5_000
    finally:
        for one in (todo, other):
            one.replica.close()


async def _open(
    db: MemoryDynamo, app: str
) -> tuple[MemoryBrowser, Replica, MemoryConnection, Sync]:
    browser = MemoryBrowser()
    replica = await pysync.connect(app, USER, SCHEMA, platform=browser.tab())
    remote = db.connection()
    return browser, replica, remote, Sync(replica, remote, sleep=no_sleep)


async def test_realtime_events_of_another_app_advance_the_cursor_only(
    device: MakeDevice, db: MemoryDynamo
) -> None:
    todo1, other1, todo2 = await device(TODO), await device(OTHER), await device(TODO)
    await todo2.sync.sync()
    todo2.sync.listen(URL, "token")
    await until(lambda: todo2.browser.open_event_sources(URL))
    (source,) = todo2.browser.open_event_sources(URL)
    pulls = len(todo2.queries("pysync_changes"))

    await other1.todos.put({"id": "t1", "title": "other's"})
    await other1.sync.push()  # seq 1
    await todo1.todos.put({"id": "t1", "title": "todo's"})
    await todo1.sync.push()  # seq 2
    source.deliver("message", event(db, 1))
    source.deliver("message", event(db, 2))
    await until(lambda: todo2.todos.get("t1"))
    assert await todo2.docs() == {"t1": {"id": "t1", "title": "todo's"}}
    await until(lambda: _cursor_is(todo2, 2))

    await other1.todos.put({"id": "t2", "title": "other's"})
    await other1.sync.push()  # seq 3: the other app's alone
    source.deliver("message", event(db, 3))
    await until(lambda: _cursor_is(todo2, 3))
    assert await todo2.todos.get("t2") is None
    await todo1.todos.patch("t1", {"title": "todo's 2"})
    await todo1.sync.push()  # seq 4: continues the cursor, applied at once
    source.deliver("message", event(db, 4))
    await until(lambda: _cursor_is(todo2, 4))
    assert await todo2.docs() == {"t1": {"id": "t1", "title": "todo's 2"}}
    assert len(todo2.queries("pysync_changes")) == pulls  # no catch-up pull was needed


async def _cursor_is(one: Device, seq: int) -> bool:
    return await one.sync.puller.cursor() == seq


async def test_a_lost_reply_settles_through_a_changelog_holding_another_apps_entries(
    device: MakeDevice, db: MemoryDynamo
) -> None:
    todo1, todo2, other = await device(TODO), await device(TODO), await device(OTHER)
    await todo1.todos.put({"id": "t1", "n": 0})
    await todo1.sync.sync()
    await todo2.sync.sync()
    await todo1.todos.patch("t1", {"n": 1})
    todo1.remote.lose_replies(1, operations=["UpdateItem"])

    async def meanwhile(_operation: str, _payload: dict[str, Any]) -> None:
        # Before the retry reads t1 back: the other app writes its own t1, and another
        # device of this app writes over todo1's write (whose reply was lost).
        await other.todos.put({"id": "t1", "n": 100})
        await other.sync.push()
        await todo2.sync.pull()
        await todo2.todos.patch("t1", {"m": 2})
        await todo2.sync.push()

    todo1.remote.before_next(
        meanwhile, operations=["GetItem"], when=lambda _op, p: p["TableName"] == "pysync"
    )
    todo1.remote.calls.clear()
    report = await todo1.sync.push()
    assert (report.pushed, report.conflicts, report.rejected) == (1, 0, 0)
    assert todo1.queries("pysync_changes")  # settled by the changelog: its write is there
    item = db.item("pysync", SCOPE, sort_key(TODO, "todos", "t1"))
    assert item is not None
    assert (item["n"], item["m"], item["_v"]) == (
        {"N": "1"},
        {"N": "2"},
        {"N": "3"},
    )
    theirs = db.item("pysync", SCOPE, sort_key(OTHER, "todos", "t1"))
    assert theirs is not None
    assert (theirs["n"], theirs["_v"]) == ({"N": "100"}, {"N": "1"})
    await todo1.sync.sync()
    assert await todo1.todos.get("t1") == {"id": "t1", "n": 1, "m": 2}
    assert await other.todos.get("t1") == {"id": "t1", "n": 100}


async def test_a_stale_mark_reads_back_the_apps_own_item(device: MakeDevice) -> None:
    todo1, todo2, other = await device(TODO), await device(TODO), await device(OTHER)
    await other.todos.put({"id": "t1", "title": "other's"})
    await other.sync.push()
    await todo1.todos.put({"id": "t1", "title": "todo's"})
    await todo1.sync.push()
    await todo2.sync.sync()
    # todo2's edit is refused for good; meanwhile todo1 changes t1.
    await todo2.todos.patch("t1", {"title": "refused"})
    refused = RemoteError("ValidationException", "refused by the test", 400, {})
    todo2.remote.fail_next(1, refused, operations=["UpdateItem", "PutItem"])
    assert (await todo2.sync.push()).rejected == 1
    await todo1.todos.patch("t1", {"title": "todo's 2"})
    await todo1.sync.push()
    assert (await todo2.sync.pull()).skipped_pending == 1  # marked stale
    (entry,) = await todo2.replica.outbox()
    await todo2.replica.discard(entry["mid"])
    await todo2.sync.pull()  # reads the marked record: this app's t1
    assert await todo2.todos.get("t1") == {"id": "t1", "title": "todo's 2"}


async def test_two_app_names_share_documents_through_one_namespace(device: MakeDevice) -> None:
    web = await device("todo-web", namespace="todo")
    mobile = await device("todo-mobile", namespace="todo")
    alone = await device("todo")  # the app name is the default namespace
    other = await device("todo-web")  # a namespace of its own: todo-web/
    await web.todos.put({"id": "shared", "from": "web"})
    await web.sync.sync()
    for one in (mobile, alone, other):
        await one.sync.sync()
    assert await mobile.docs() == await alone.docs() == {"shared": {"id": "shared", "from": "web"}}
    assert await other.docs() == {}
    assert (web.sync.namespace, other.sync.namespace) == ("todo", "todo-web")
    assert web.replica.name != mobile.replica.name  # local databases stay apart


@pytest.mark.parametrize(
    "name",
    ["", "-todo", ".todo", "_todo", "to/do", "to#do", "to do", "tödo", "t:x", "x" * 65, "a\n"],
)
async def test_bad_app_names_and_namespaces_are_refused(device: MakeDevice, name: str) -> None:
    with pytest.raises(ValueError, match="app name must be 1 to 64 characters"):
        await pysync.connect(name, USER, SCHEMA, platform=MemoryBrowser().tab())
    good = await device("good")
    with pytest.raises(ValueError, match="namespace must be 1 to 64 characters"):
        Sync(good.replica, good.remote, namespace=name)


async def test_good_app_names_and_namespaces_are_taken(device: MakeDevice) -> None:
    for name in ("a", "7", "Todo.App_2-x", "x" * 64):
        one = await device(name)
        assert Sync(one.replica, one.remote, namespace=name).namespace == name


@pytest.mark.parametrize("name", ["to/dos", "to#dos", "#", "/"])
def test_collection_names_may_not_hold_key_delimiters(name: str) -> None:
    with pytest.raises(SchemaError, match="may not contain '/' or '#'"):
        AppSchema(1, {name: CollectionSpec()})
