"""The outbox's storage: a transaction's entries are one row, which every reader and
writer of the outbox sees as entries; a database of the older layout (an entry per
row) keeps its outbox when the new layout opens it."""

from __future__ import annotations

from typing import Any

import pysync
from pysync import AppSchema, CollectionSpec, Sync
from pysync._outbox_rows import LAYOUT, Outbox, idb_version
from pysync._store import Transaction
from pysync.testing import MemoryBrowser, MemoryDynamo
from tests.model.layout import layout_1_schema

SCHEMA = AppSchema(1, {"todos": CollectionSpec(), "lists": CollectionSpec()})


async def no_sleep(_: float) -> None:
    return None


async def open_tab(browser: MemoryBrowser) -> pysync.Replica:
    return await pysync.connect("app", "alice", SCHEMA, platform=browser.tab())


async def rows(replica: pysync.Replica) -> list[dict[str, Any]]:
    return await replica.store.query("_outbox")


async def test_a_transaction_is_stored_as_one_row_and_read_as_entries() -> None:
    replica = await open_tab(MemoryBrowser())
    async with replica.transaction() as tx:
        tx.put("lists", {"id": "l1", "name": "home"})
        for i in range(3):
            tx.put("todos", {"id": f"t{i}", "list": "l1"})
        tx.delete("todos", "t2")  # created here: the transaction keeps no entry for it
    await replica["todos"].put({"id": "alone"})

    group, single = await rows(replica)
    assert [(e["collection"], e["id"]) for e in group["entries"]] == [
        ("lists", "l1"),
        ("todos", "t0"),
        ("todos", "t1"),
    ]
    assert group["records"] == [["lists", "l1"], ["todos", "t0"], ["todos", "t1"]]
    assert "entries" not in single
    assert single["id"] == "alone"
    entries = await replica.outbox()
    assert [e["id"] for e in entries] == ["l1", "t0", "t1", "alone"]
    assert all("records" not in e and "rejected" not in e for e in entries)
    assert len({e["group"] for e in entries[:3]}) == 1
    assert replica.status.pending == 4
    await replica._refresh_counts()  # the recount agrees with the write's own tally
    assert replica.status.pending == 4
    assert await replica.sync_state("todos", "t1") == "pending"
    assert await replica.sync_state("todos", "t2") == "synced"
    replica.close()


async def test_edits_after_a_transaction_fold_into_its_row_or_follow_it_and_all_land() -> None:
    dynamo = MemoryDynamo()
    replica = await open_tab(MemoryBrowser())
    async with replica.transaction() as tx:
        tx.put("todos", {"id": "a", "n": 1})
        tx.put("todos", {"id": "b", "n": 1})
        tx.put("todos", {"id": "c", "n": 1})
    await replica["todos"].increment("a", "n", 5)  # pending: folds into the row's entry
    await replica["todos"].delete("c")  # created here: its entry leaves the row
    (row,) = await rows(replica)
    assert [(e["id"], e["value"]) for e in row["entries"]] == [
        ("a", {"id": "a", "n": 6}),
        ("b", {"id": "b", "n": 1}),
    ]
    await _mark(replica, "inflight")  # as a push sending it would
    await replica["todos"].increment("b", "n", 2)  # in flight: a new entry follows it
    _first_a, first_b, later = await replica.outbox()
    assert (later["id"], later["follows"]) == ("b", first_b["mid"])
    assert "row" not in later
    assert replica.status.pending == 3

    report = await Sync(replica, dynamo.connection(), sleep=no_sleep).push()
    assert report.pushed == 3
    assert report.rejected == 0
    assert await rows(replica) == []
    await replica._refresh_counts()
    assert replica.status.pending == 0
    other = await pysync.connect("app", "bob", SCHEMA, platform=MemoryBrowser().tab())
    await Sync(other, dynamo.connection(), scope="u#alice", sleep=no_sleep).pull()
    assert await other["todos"].query() == [{"id": "a", "n": 6}, {"id": "b", "n": 3}]
    for r in (replica, other):
        r.close()


async def test_a_rejected_transaction_counts_each_entry_and_is_discarded_whole() -> None:
    replica = await open_tab(MemoryBrowser())
    await replica["todos"].put({"id": "kept", "title": "before"})
    async with replica.transaction() as tx:
        tx.put("todos", {"id": "x"})
        tx.put("todos", {"id": "y"})
    await _mark(replica, "rejected")
    await replica._refresh_counts()
    assert (replica.status.pending, replica.status.rejected) == (1, 2)
    _, group = await rows(replica)
    assert group["rejected"] == [e["n"] for e in group["entries"]]

    x = (await replica.outbox())[1]
    await replica.discard(x["mid"])
    assert [e["id"] for e in await replica.outbox()] == ["kept"]
    assert await replica["todos"].get_many(["x", "y"]) == [None, None]
    assert (replica.status.pending, replica.status.rejected) == (1, 0)
    replica.close()


def _spy_on_get_many(tx: Transaction, read: list[list[Any]]) -> None:
    """Record in ``read`` the keys of each ``get_many`` of ``tx``."""
    get_many = tx.get_many

    def spy(store: str, keys: Any) -> Any:
        read.append(list(keys))
        return get_many(store, keys)

    tx.get_many = spy  # type: ignore[method-assign]


async def test_reading_many_records_of_one_transaction_reads_its_row_once() -> None:
    replica = await open_tab(MemoryBrowser())
    async with replica.transaction() as tx:
        for i in range(50):
            tx.put("todos", {"id": f"t{i:02d}"})
    targets = [("todos", f"t{i:02d}") for i in range(50)]
    read: list[list[Any]] = []

    def body(tx: Transaction) -> Any:
        _spy_on_get_many(tx, read)
        return Outbox(tx).read_records([*targets, ("todos", "none")])

    found = await replica.store.run("_outbox", "readonly", body)
    assert [[e["id"] for e in group] for group in found.result] == [
        *([t[1]] for t in targets),
        [],
    ]
    assert len(read) == 1
    assert len(read[0]) == 1
    replica.close()


async def test_an_outbox_of_the_older_layout_is_kept_and_pushed() -> None:
    """A database written by pysync before the row layout (an entry per row, indexed by
    ``(collection, id)`` and by state) opens with its outbox whole: counted, followed
    by new edits, discarded and pushed."""
    browser = MemoryBrowser()
    old = await browser.tab().open_store(
        layout_1_schema(SCHEMA.store_schema("pysync:app:alice"), 1)
    )
    await old.put_many("todos", [{"id": "a", "n": 1}, {"id": "b", "n": 2}, {"id": "r", "n": 3}])
    await old.put_many(
        "_meta",
        [
            {"key": "schema", "version": 1},
            {"key": "client", "id": "c0ffee0123456789"},
            {"key": "clock", "hlc": "000000000001000-000003-c0ffee0123456789", "n": 3},
        ],
    )
    await old.put_many(
        "_outbox",
        [
            _old_entry(1, "a", group="g1"),
            _old_entry(2, "b", group="g1"),
            _old_entry(3, "r", state="rejected"),
        ],
    )
    old.close()

    replica = await open_tab(browser)
    assert replica.store.schema.version == idb_version(1)
    assert (await replica.store.get("_meta", "layout")) == {"key": "layout", "outbox": LAYOUT}
    assert [e["id"] for e in await replica.outbox()] == ["a", "b", "r"]
    assert (replica.status.pending, replica.status.rejected) == (2, 1)
    assert await replica.sync_state("todos", "r") == "rejected"
    await replica["todos"].increment("b", "n", 10)  # folds into the pending entry
    assert [e["value"] for e in await replica.outbox()][:2] == [
        {"id": "a", "n": 1},
        {"id": "b", "n": 12},
    ]
    await replica.discard("mid-3")
    assert await replica["todos"].get("r") is None

    dynamo = MemoryDynamo()
    report = await Sync(replica, dynamo.connection(), sleep=no_sleep).push()
    assert (report.pushed, report.rejected) == (2, 0)
    assert await replica.outbox() == []
    other = await pysync.connect("app", "bob", SCHEMA, platform=MemoryBrowser().tab())
    await Sync(other, dynamo.connection(), scope="u#alice", sleep=no_sleep).pull()
    assert await other["todos"].query() == [{"id": "a", "n": 1}, {"id": "b", "n": 12}]
    for r in (replica, other):
        r.close()


def _old_entry(n: int, key: str, *, group: str | None = None, state: str = "pending") -> Any:
    value = {"id": key, "n": {"a": 1, "b": 2, "r": 3}[key]}
    return {
        "n": n,
        "mid": f"mid-{n}",
        "collection": "todos",
        "id": key,
        "op": "put",
        "value": value,
        "set": {},
        "inc": {},
        "base": None,
        "base_v": None,
        "base_m": None,
        "follows": None,
        "new": True,
        "hlc": f"000000000001000-00000{n}-c0ffee0123456789",
        "group": group,
        "state": state,
        "error": None if state == "pending" else {"code": "X", "message": "no", "at": 1},
    }


async def _mark(replica: pysync.Replica, state: str) -> None:
    """Set every entry's state, as the push does (through the rows)."""

    def body(tx: Transaction) -> None:
        outbox = Outbox(tx)

        def write(entries: list[dict[str, Any]]) -> None:
            for entry in entries:
                if entry["group"] is not None:
                    outbox.put({**entry, "state": state})
            outbox.issue()

        outbox.read_all().then(write)

    await replica.store.run("_outbox", "readwrite", body)


async def test_dropping_an_entry_of_a_row_gone_or_unread_never_drops_the_row() -> None:
    """An acknowledgement may come after the row went (another tab's push acknowledged
    it): dropping it is a no-op, never a delete of a row whose other entries were
    not read."""
    replica = await open_tab(MemoryBrowser())
    async with replica.transaction() as tx:
        tx.put("todos", {"id": "a"})
        tx.put("todos", {"id": "b"})
    a, b = await replica.outbox()

    def drop_unread(tx: Transaction) -> None:
        outbox = Outbox(tx)
        outbox.delete(a)  # its row was not read in this transaction
        outbox.issue()

    await replica.store.run("_outbox", "readwrite", drop_unread)
    assert [e["id"] for e in await replica.outbox()] == ["a", "b"]

    def drop_read(tx: Transaction) -> None:
        outbox = Outbox(tx)

        def drop(_: object) -> None:
            outbox.delete(a)
            outbox.issue()

        outbox.read_records([("todos", "a")]).then(drop)

    await replica.store.run("_outbox", "readwrite", drop_read)
    assert [e["id"] for e in await replica.outbox()] == ["b"]
    await replica.store.run("_outbox", "readwrite", drop_read)  # gone: nothing happens
    assert [e["mid"] for e in await replica.outbox()] == [b["mid"]]
    replica.close()


async def test_slices_pass_the_leading_rows_they_are_told_to_and_read_the_rest() -> None:
    """The push passes unread the rows of its plain writes still out, most often the
    oldest: only those leading the outbox are passed; any after the first row to be
    read is read too (the reader tells them apart)."""
    from pysync._outbox_rows import slices

    replica = await open_tab(MemoryBrowser())
    for i in range(6):
        await replica["todos"].put({"id": f"t{i}"})
    first, second, _, fourth, *_ = [row["n"] for row in await rows(replica)]

    async def read(past: set[int]) -> list[str]:
        return [
            e["id"] for found in [s async for s in slices(replica.store, 2, past)] for e in found
        ]

    assert await read(set()) == [f"t{i}" for i in range(6)]
    assert await read({first, second, fourth}) == ["t2", "t3", "t4", "t5"]
    assert await read({row["n"] for row in await rows(replica)}) == []
    replica.close()


async def test_reading_records_skips_the_plain_rows_the_reader_holds() -> None:
    """The push's acknowledgement holds the plain entries it sent: their rows are not
    read again, only the other rows of their records (a follower's)."""
    replica = await open_tab(MemoryBrowser())
    for i in range(3):
        await replica["todos"].put({"id": f"t{i}"})
    sent = await replica.outbox()
    async with replica.transaction() as tx:  # t1's follower, in a row of its own
        tx.put("todos", {"id": "t1", "more": True})
        tx.put("todos", {"id": "t9"})
    read: list[list[Any]] = []

    def body(tx: Transaction) -> Any:
        _spy_on_get_many(tx, read)
        targets = [("todos", e["id"]) for e in sent]
        return Outbox(tx).read_records(targets, skip={e["n"] for e in sent})

    found = await replica.store.run("_outbox", "readonly", body)
    assert [[e["id"] for e in group] for group in found.result] == [[], ["t1"], []]
    assert [len(keys) for keys in read] == [1]  # the transaction's row alone
    replica.close()
