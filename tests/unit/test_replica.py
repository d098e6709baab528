"""The local-first data API on the in-memory platform (fast, deterministic)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

import pysync
from pysync import AppSchema, CollectionSpec, Index
from pysync._outbox_rows import Outbox
from pysync._store import Transaction
from pysync.testing import MemoryBrowser

from ._loop import until

SCHEMA = AppSchema(
    version=1,
    collections={
        "todos": CollectionSpec(
            indexes=(Index("by_done", "done"), Index("by_list", ("list", "n")))
        ),
        "lists": CollectionSpec(),
    },
)


async def open_tab(browser: MemoryBrowser, schema: AppSchema = SCHEMA) -> pysync.Replica:
    return await pysync.connect("demo", "alice", schema, platform=browser.tab())


@pytest.fixture
async def replica() -> Any:
    db = await open_tab(MemoryBrowser())
    yield db
    db.close()


async def test_crud_and_queries(replica: pysync.Replica) -> None:
    todos = replica["todos"]
    added = await todos.add({"title": "write tests", "done": False, "list": "l1", "n": 2})
    assert len(added["id"]) == 32
    await todos.put({"id": "b", "title": "ship", "done": True, "list": "l1", "n": 1})
    assert await todos.get("b") == {"id": "b", "title": "ship", "done": True, "list": "l1", "n": 1}
    assert await todos.patch("b", {"done": False}) == {
        "id": "b",
        "title": "ship",
        "done": False,
        "list": "l1",
        "n": 1,
    }
    await todos.increment("b", "n", 10)
    assert (await todos.get("b") or {})["n"] == 11
    in_list = await todos.query(index="by_list", range=pysync.KeyRange.bound(("l1", 0), ("l1", 5)))
    assert [d["title"] for d in in_list] == ["write tests"]
    assert await todos.count(index="by_done", equals=False) == 2
    found = await todos.query(where=lambda d: d["n"] > 5)
    assert [d["id"] for d in found] == ["b"]
    await todos.delete("b")
    assert await todos.get("b") is None
    assert await todos.get_many([added["id"], "b"]) == [added, None]


async def test_invalid_input_is_refused_and_nothing_is_written(replica: pysync.Replica) -> None:
    todos = replica["todos"]
    with pytest.raises(pysync.ValidationError, match="reserved"):
        await todos.put({"id": "a", "_v": 3})
    with pytest.raises(pysync.ValidationError, match="id"):
        await todos.put({"title": "no id"})
    with pytest.raises(pysync.ValidationError, match="set"):
        await todos.put({"id": "a", "tags": {"x"}})
    with pytest.raises(pysync.ValidationError):
        await todos.put({"id": True})
    with pytest.raises(pysync.DocumentNotFoundError):
        await todos.patch("missing", {"done": True})
    await todos.add({"id": "a"})
    with pytest.raises(pysync.DocumentExistsError):
        await todos.add({"id": "a", "title": "again"})
    assert await todos.get("a") == {"id": "a"}
    assert len(await replica.outbox()) == 1


async def test_every_write_has_its_outbox_entry(replica: pysync.Replica) -> None:
    todos = replica["todos"]
    await todos.put({"id": "a", "title": "one"})
    await todos.put({"id": "b", "title": "two"})
    (a, b) = await replica.outbox()
    assert (a["collection"], a["id"], a["op"], a["value"]) == (
        "todos",
        "a",
        "put",
        {"id": "a", "title": "one"},
    )
    assert a["new"]
    assert a["base"] is None
    assert a["state"] == "pending"
    assert a["n"] < b["n"]
    assert a["hlc"] < b["hlc"]
    assert replica.status.pending == 2
    assert await todos.sync_state("a") == "pending"


async def test_coalescing_rules(replica: pysync.Replica) -> None:
    todos = replica["todos"]
    # put after put keeps the last value (and the first base)
    await todos.put({"id": "a", "title": "v1"})
    await todos.put({"id": "a", "title": "v2"})
    (entry,) = await replica.outbox()
    assert entry["value"] == {"id": "a", "title": "v2"}
    assert entry["new"]
    # delete after create cancels out
    await todos.delete("a")
    assert await replica.outbox() == []
    assert await todos.sync_state("a") == "synced"
    # increments add up (on a record the server already has)
    await replica.store.put("todos", {"id": "c", "likes": 1, "_v": 4})
    await todos.increment("c", "likes")
    await todos.increment("c", "likes", 2)
    (entry,) = await replica.outbox()
    assert (entry["op"], entry["inc"], entry["base"], entry["base_v"]) == (
        "patch",
        {"likes": 3},
        {"id": "c", "likes": 1},
        4,
    )
    assert (await todos.get("c") or {})["likes"] == 4
    # a later set overrides an earlier increment; base stays the first one
    await todos.patch("c", {"likes": 0, "x": 1})
    (entry,) = await replica.outbox()
    assert (entry["set"], entry["inc"], entry["base_v"]) == ({"likes": 0, "x": 1}, {}, 4)
    # delete of a server record stays a delete with the first base
    await todos.delete("c")
    (entry,) = await replica.outbox()
    assert (entry["op"], entry["base"]) == ("delete", {"id": "c", "likes": 1})


async def test_an_edit_during_a_push_is_not_folded_into_it(replica: pysync.Replica) -> None:
    todos = replica["todos"]
    await todos.put({"id": "a", "title": "v1"})
    (entry,) = await replica.outbox()
    await _store_entry(replica, {**entry, "state": "inflight"})
    await todos.patch("a", {"title": "v2"})
    first, second = await replica.outbox()
    assert first["value"] == {"id": "a", "title": "v1"}
    assert first["state"] == "inflight"
    assert (second["op"], second["set"], second["follows"]) == (
        "patch",
        {"title": "v2"},
        first["mid"],
    )
    assert not second["new"]


async def test_status_counts_match_the_outbox_after_every_write() -> None:
    """A write moves the counts by what it changed (it does not count the outbox: two
    requests less per write): after this tab's own writes the status is the outbox it
    committed, through folds, cancellations and rejected entries; what others change
    (a push's refusal, another tab's write) reaches it with the recount they cause."""
    browser = MemoryBrowser()
    tab_a, tab_b = await open_tab(browser), await open_tab(browser)

    async def check(tab: pysync.Replica) -> None:
        states = Counter(e["state"] for e in await tab.outbox())
        assert (tab.status.pending, tab.status.rejected) == (
            states["pending"] + states["inflight"],
            states["rejected"],
        )

    todos = tab_a["todos"]
    await todos.put({"id": "a", "title": "v1"})
    await check(tab_a)
    await todos.put({"id": "a", "title": "v2"})  # folds: still one entry
    await check(tab_a)
    await todos.put({"id": "b"})
    await todos.delete("b")  # cancels b's entry
    await check(tab_a)
    (entry,) = await tab_a.outbox()
    await _store_entry(tab_a, {**entry, "state": "rejected"})  # as a push would
    await tab_a._refresh_counts()  # as a push does after its round
    await todos.put({"id": "c"})
    await check(tab_a)
    assert (tab_a.status.pending, tab_a.status.rejected) == (1, 1)
    await todos.patch("a", {"title": "v3"})  # not folded into the rejected entry
    await check(tab_a)
    async with tab_a.transaction() as tx:
        tx.put("todos", {"id": "d"})
        tx.delete("todos", "c")  # a new entry: c's is not of this transaction
        tx.put("lists", {"id": "l"})
    await check(tab_a)
    # No await between: tab_b writes before the channel tells it about tab_a's write;
    # the recount that message causes brings tab_b's status up to date.
    await tab_a["todos"].put({"id": "e"})
    await tab_b["todos"].put({"id": "f"})
    await until(lambda: (tab_b.status.pending, tab_b.status.rejected) == (7, 1))
    await check(tab_b)
    await check(tab_a)
    tab_a.close()
    tab_b.close()


async def test_transaction_commits_all_or_nothing(replica: pysync.Replica) -> None:
    async with replica.transaction() as tx:
        tx.put("lists", {"id": "l1", "name": "home"})
        tx.put("todos", {"id": "t1", "list": "l1", "n": 1})
        await asyncio.sleep(0)  # awaiting inside is harmless: writes apply on exit
        tx.increment("todos", "t1", "n")
    assert await replica["todos"].get("t1") == {"id": "t1", "list": "l1", "n": 2}
    entries = await replica.outbox()
    assert len({e["group"] for e in entries}) == 1
    assert entries[0]["group"] is not None

    with pytest.raises(pysync.DocumentNotFoundError):
        async with replica.transaction() as tx:
            tx.put("todos", {"id": "t2"})
            tx.patch("lists", "missing", {"name": "x"})
    assert await replica["todos"].get("t2") is None
    assert len(await replica.outbox()) == 2

    with pytest.raises(RuntimeError):
        async with replica.transaction() as tx:
            tx.put("todos", {"id": "t3"})
            raise RuntimeError("app changed its mind")
    assert await replica["todos"].get("t3") is None


async def test_a_transaction_changes_at_most_100_documents(replica: pysync.Replica) -> None:
    todos, lists = replica["todos"], replica["lists"]
    await todos.put({"id": "before"})
    # Exactly 100 documents, over two collections: one push, so it commits.
    async with replica.transaction() as tx:
        for i in range(60):
            tx.put("todos", {"id": f"t{i}", "n": i})
        for i in range(40):
            tx.put("lists", {"id": f"l{i}"})
    assert await todos.count() == 61
    assert await lists.count() == 40
    assert len(await replica.outbox()) == 101

    # 101 documents: refused before anything is written.
    outbox, clock = await replica.outbox(), await replica.store.get("_meta", "clock")
    with pytest.raises(pysync.TransactionTooLargeError, match="at most 100") as raised:
        async with replica.transaction() as tx:
            tx.patch("todos", "t0", {"title": "changed"})
            for i in range(100):
                tx.put("lists", {"id": f"new{i}"})
    assert (raised.value.documents, raised.value.limit) == (101, 100)
    assert isinstance(raised.value, pysync.PysyncError)
    assert await todos.get("t0") == {"id": "t0", "n": 0}
    assert await lists.count() == 40
    assert await replica.outbox() == outbox
    assert await replica.store.get("_meta", "clock") == clock
    assert replica.status.pending == 101

    # Documents count once however often they change, and only when they do change.
    async with replica.transaction() as tx:
        for i in range(100):
            tx.put("todos", {"id": f"u{i}", "n": i})
        for i in range(50):
            tx.increment("todos", f"u{i}", "n")
        tx.put("todos", {"id": "gone"})
        tx.delete("todos", "gone")  # created and deleted here: nothing to push
        tx.delete("lists", "never-existed")  # nothing to delete, nothing to push
    assert (await todos.get("u7") or {})["n"] == 8
    assert await todos.get("gone") is None
    groups = Counter(e["group"] for e in await replica.outbox())
    assert sorted(groups.values())[-2:] == [100, 100]


async def test_clock_is_monotonic_across_reopen_and_backwards_time() -> None:
    browser = MemoryBrowser()
    db = await open_tab(browser)
    await db["todos"].put({"id": "a"})
    browser.now_ms -= 60_000  # the wall clock jumps back a minute
    await db["todos"].put({"id": "b"})
    client = db.client_id
    db.close()
    again = await open_tab(browser)
    assert again.client_id == client
    await again["todos"].put({"id": "c"})
    stamps = [pysync.Timestamp.parse(e["hlc"]) for e in await again.outbox()]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 3
    assert stamps[1].wall == stamps[0].wall
    assert stamps[1].counter == stamps[0].counter + 1
    again.close()


async def test_live_queries_follow_local_and_other_tab_writes() -> None:
    browser = MemoryBrowser()
    tab_a, tab_b = await open_tab(browser), await open_tab(browser)
    seen: list[list[str]] = []
    sub = tab_b["todos"].watch(
        lambda docs: seen.append([d["id"] for d in docs]), index="by_done", equals=False
    )
    await sub.settled()
    await tab_a["todos"].put({"id": "x", "done": False})
    await asyncio.sleep(0)  # the channel message arrives in a later task
    await sub.settled()
    await tab_b["todos"].put({"id": "y", "done": True})  # not in the query: no new result
    await sub.settled()
    await tab_b["todos"].put({"id": "z", "done": False})
    await sub.settled()
    assert seen == [[], ["x"], ["x", "z"]]
    sub.cancel()
    await tab_a["todos"].put({"id": "w", "done": False})
    await asyncio.sleep(0)
    assert seen[-1] == ["x", "z"]
    assert tab_b.status.pending == 3  # counts follow other tabs' writes too
    tab_a.close()
    tab_b.close()


async def test_one_leader_and_hand_over() -> None:
    browser = MemoryBrowser()
    tab_a, tab_b = await open_tab(browser), await open_tab(browser)
    assert tab_a.is_leader
    assert not tab_b.is_leader
    changes: list[bool] = []
    tab_b.on_status(lambda status: changes.append(status.leader))
    browser.tab()  # an unrelated tab changes nothing
    assert isinstance(tab_a.platform, pysync.testing.MemoryTab)
    tab_a.platform.crash()
    assert tab_b.is_leader
    assert changes == [True]
    tab_b.close()


async def test_status_follows_connectivity(replica: pysync.Replica) -> None:
    assert isinstance(replica.platform, pysync.testing.MemoryTab)
    replica.platform.browser.set_online(False)
    assert replica.status.online is False
    replica.platform.browser.set_online(True)
    assert replica.status.online is True


async def test_migration_upgrades_records_and_pending_outbox() -> None:
    browser = MemoryBrowser()
    db = await open_tab(browser)
    await db.store.put("todos", {"id": "synced", "title": "old", "_v": 2})
    await db["todos"].put({"id": "local", "title": "new one"})
    await db["todos"].patch("synced", {"title": "edited"})
    db.close()

    def rename(collection: str, doc: dict[str, Any]) -> dict[str, Any]:
        if collection == "todos" and "title" in doc:
            doc["text"] = doc.pop("title")
        return doc

    v2 = AppSchema(2, SCHEMA.collections, migrations={2: rename})
    db = await open_tab(browser, v2)
    assert await db["todos"].get("synced") == {"id": "synced", "text": "edited"}
    assert await db.store.get("todos", "synced") == {"id": "synced", "text": "edited", "_v": 2}
    put_entry, patch_entry = await db.outbox()
    assert put_entry["value"] == {"id": "local", "text": "new one"}
    assert patch_entry["base"] == {"id": "synced", "text": "old"}
    assert patch_entry["set"] == {"text": "edited"}
    db.close()

    def broken(collection: str, doc: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("bug in step 3")

    with pytest.raises(pysync.MigrationError, match="version 3"):
        await open_tab(browser, AppSchema(3, SCHEMA.collections, migrations={2: rename, 3: broken}))
    db = await open_tab(browser, AppSchema(3, SCHEMA.collections, migrations={2: rename}))
    assert len(await db.outbox()) == 2
    assert await db["todos"].count() == 2
    db.close()


async def test_opening_at_the_stored_version_reads_no_documents(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only an upgrade reads the stored data: a replica of 20,000 documents would
    otherwise read them all (one long task) every time the app starts."""
    from pysync._store import Transaction

    browser = MemoryBrowser()
    db = await open_tab(browser)
    async with db.transaction() as tx:
        tx.put("todos", {"id": "a"})
        tx.put("lists", {"id": "l"})
    db.close()
    queried: list[str] = []
    query = Transaction.query

    def spy(self: Transaction, store: str, **options: Any) -> Any:
        queried.append(store)
        return query(self, store, **options)

    monkeypatch.setattr(Transaction, "query", spy)
    db = await open_tab(browser)
    assert not {"todos", "lists"} & set(queried), queried
    assert await db["todos"].get("a") == {"id": "a"}
    db.close()
    queried.clear()
    db = await open_tab(browser, AppSchema(2, SCHEMA.collections))  # an upgrade reads them
    assert {"todos", "lists"} <= set(queried), queried
    db.close()


async def test_an_index_added_later_covers_existing_documents() -> None:
    browser = MemoryBrowser()
    db = await open_tab(browser)
    await db["lists"].put({"id": "l1", "archived": True})
    await db["lists"].put({"id": "l2", "archived": False})
    db.close()
    collections = {
        **SCHEMA.collections,
        "lists": CollectionSpec(indexes=(Index("by_archived", "archived"),)),
    }
    db = await open_tab(browser, AppSchema(2, collections))
    assert [d["id"] for d in await db["lists"].query(index="by_archived", equals=True)] == ["l1"]
    db.close()


async def _store_entry(replica: pysync.Replica, entry: dict[str, Any]) -> None:
    """Store a changed outbox entry as the push does (through its row)."""

    def body(tx: Transaction) -> None:
        outbox = Outbox(tx)

        def write(_: object) -> None:
            outbox.put(entry)
            outbox.issue()

        outbox.read_entries([entry]).then(write)

    await replica.store.run("_outbox", "readwrite", body)
