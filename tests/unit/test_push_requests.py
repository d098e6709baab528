"""The requests a push sends: plain conditional writes by default, packs as an option.

By default every change is one ``PutItem``/``UpdateItem`` conditioned on the exact
state its edit started from (billed one write unit per KB), ``push_concurrency``
of them out at once; ``Sync(pack_size=n)`` sends independent changes in
``TransactWriteItems`` packs (billed twice); a local transaction is always one
``TransactWriteItems``. Every write asks for ``ReturnConsumedCapacity=TOTAL`` and
the push reports the sum (``PushReport.capacity_units``). Rounds overlap, and a
record's changes still land in order.

In memory: one :class:`MemoryDynamo` (it bills as DynamoDB documents: 1 unit per
KB, 2 in a transaction).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import pysync
from pysync import AppSchema, CollectionSpec, Replica, Sync
from pysync._marshal import from_item
from pysync._sync._items import sort_key
from pysync.testing import MemoryBrowser, MemoryConnection, MemoryDynamo

APP = "app"
USER = "pr"
SCOPE = f"u#{USER}"
SCHEMA = AppSchema(1, {"docs": CollectionSpec()})
WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems")


async def no_sleep(_: float) -> None:
    return None


class Counting:
    """A remote that yields to the event loop inside each call and counts calls out at once."""

    def __init__(self, inner: MemoryConnection) -> None:
        self.inner = inner
        self.out = 0
        self.most = 0

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.out += 1
        self.most = max(self.most, self.out)
        try:
            for _ in range(3):  # as a network round trip would
                await asyncio.sleep(0)
            return await self.inner.call(operation, payload)
        finally:
            self.out -= 1


Device = tuple[Replica, Sync, MemoryConnection]
MakeDevice = Callable[..., Awaitable[Device]]


@pytest.fixture
def db() -> MemoryDynamo:
    return MemoryDynamo()


@pytest.fixture
async def device(db: MemoryDynamo) -> AsyncIterator[MakeDevice]:
    made: list[Replica] = []

    async def make(wrap: Callable[[MemoryConnection], Any] | None = None, **options: Any) -> Device:
        replica = await pysync.connect(APP, USER, SCHEMA, platform=MemoryBrowser().tab())
        made.append(replica)
        remote = db.connection()
        sync = Sync(replica, wrap(remote) if wrap else remote, sleep=no_sleep, **options)
        return replica, sync, remote

    yield make
    for replica in made:
        replica.close()


def writes(remote: MemoryConnection) -> list[tuple[str, dict[str, Any]]]:
    return [(op, payload) for op, payload in remote.calls if op in WRITES]


def server_doc(db: MemoryDynamo, key: str) -> dict[str, Any] | None:
    item = db.item("pysync", SCOPE, sort_key(APP, "docs", key))
    if item is None:
        return None
    return {k: v for k, v in from_item(item).items() if k not in ("pk", "sk") and k[0] != "_"}


async def test_the_default_push_sends_one_plain_conditional_write_per_change(
    device: MakeDevice, db: MemoryDynamo
) -> None:
    replica, sync, remote = await device()
    for i in range(120):
        await replica["docs"].put({"id": f"d{i}", "n": i})
    report = await sync.push()
    assert (report.pushed, report.conflicts, report.rejected) == (120, 0, 0)
    sent = writes(remote)
    assert [op for op, _ in sent] == ["PutItem"] * 120
    for _, payload in sent:
        assert payload["ConditionExpression"] == "attribute_not_exists(pk)"
        assert payload["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
        assert payload["ReturnConsumedCapacity"] == "TOTAL"
    assert report.capacity_units == 120.0  # one unit per change of up to 1 KB

    remote.calls.clear()
    await replica["docs"].patch("d1", {"n": -1})
    await replica["docs"].put({"id": "d2", "n": -2})
    await replica["docs"].delete("d3")
    report = await sync.push()
    sent = writes(remote)
    assert sorted(op for op, _ in sent) == ["PutItem", "PutItem", "UpdateItem"]
    for _, payload in sent:
        # The exact state each edit started from: its version and its mutation id.
        assert "#v = :base AND #bm = :bm" in payload["ConditionExpression"]
        assert payload["ExpressionAttributeNames"]["#bm"] == "_m"
        assert payload["ReturnConsumedCapacity"] == "TOTAL"
    assert report.capacity_units == 3.0
    assert server_doc(db, "d1") == {"id": "d1", "n": -1}
    assert server_doc(db, "d2") == {"id": "d2", "n": -2}
    assert await replica.outbox() == []


async def test_a_large_change_is_billed_per_kb(device: MakeDevice) -> None:
    replica, sync, _ = await device()
    await replica["docs"].put({"id": "big", "text": "x" * 2500})
    report = await sync.push()
    assert report.capacity_units == 3.0


async def test_packs_stay_an_option_at_twice_the_capacity(
    device: MakeDevice, db: MemoryDynamo
) -> None:
    replica, sync, remote = await device(pack_size=50)
    for i in range(120):
        await replica["docs"].put({"id": f"d{i}", "n": i})
    report = await sync.push()
    assert report.pushed == 120
    sent = writes(remote)
    assert [op for op, _ in sent] == ["TransactWriteItems"] * 3  # 50 + 50 + 20
    for _, payload in sent:
        assert payload["ReturnConsumedCapacity"] == "TOTAL"
        for element in payload["TransactItems"]:
            (put,) = element.values()
            assert "ReturnConsumedCapacity" not in put  # a parameter of the transaction
            assert put["ConditionExpression"] == "attribute_not_exists(pk)"
    assert report.capacity_units == 240.0  # transactional writes: two units each
    assert server_doc(db, "d119") == {"id": "d119", "n": 119}


async def test_a_local_transaction_is_still_one_transact_write_items(
    device: MakeDevice, db: MemoryDynamo
) -> None:
    replica, sync, remote = await device()
    async with replica.transaction() as tx:
        for i in range(30):
            tx.put("docs", {"id": f"t{i}", "n": i})
    await replica["docs"].put({"id": "alone"})
    report = await sync.push()
    assert report.pushed == 31
    assert sorted(op for op, _ in writes(remote)) == ["PutItem", "TransactWriteItems"]
    assert report.capacity_units == 61.0  # 30 items x 2 in the transaction, 1 alone
    assert server_doc(db, "t29") == {"id": "t29", "n": 29}


async def test_sync_adds_the_capacity_of_both_its_pushes(device: MakeDevice) -> None:
    replica, sync, _ = await device()
    await replica["docs"].put({"id": "a"})
    await replica["docs"].put({"id": "b"})
    report = await sync.sync()
    assert (report.push.pushed, report.push.capacity_units) == (2, 2.0)


@pytest.mark.parametrize(("concurrency", "pack"), [(1, 1), (3, 1), (8, 1), (2, 10)])
async def test_at_most_push_concurrency_requests_are_out(
    device: MakeDevice, concurrency: int, pack: int
) -> None:
    counting: list[Counting] = []

    def wrap(remote: MemoryConnection) -> Counting:
        counting.append(Counting(remote))
        return counting[0]

    replica, sync, _ = await device(wrap, push_concurrency=concurrency, pack_size=pack)
    sync.pusher.window = 20  # several rounds, overlapping
    for i in range(100):
        await replica["docs"].put({"id": f"d{i}"})
    report = await sync.push()
    assert report.pushed == 100
    assert counting[0].most == concurrency


async def test_overlapping_rounds_keep_each_records_changes_in_order(
    device: MakeDevice, db: MemoryDynamo
) -> None:
    # Edits made while a record's write is out become entries of their own; with small
    # rounds, the next round is picked while those writes are out: it must leave the
    # records out alone (their edits wait for the acknowledgement that rebases them).
    replica, sync, remote = await device(push_concurrency=4)
    sync.pusher.window = 5
    docs = replica["docs"]
    for i in range(40):
        await docs.put({"id": f"d{i}", "n": 0})
    edits: dict[str, int] = {}

    async def edit_while_out(_operation: str, payload: dict[str, Any]) -> None:
        key = from_item(payload["Item"] if "Item" in payload else payload["Key"])["sk"]
        doc_id = key.rsplit("#", 1)[-1]
        count = edits.get(doc_id, 0)
        if count < 3 and int(doc_id[1:]) % 3 == 0:
            edits[doc_id] = count + 1
            await docs.patch(doc_id, {"n": count + 1})

    for _ in range(200):
        remote.before_next(edit_while_out, operations=["PutItem", "UpdateItem"])
    report = await sync.push()
    remote.clear_faults()
    again = await sync.push()
    assert (report.conflicts, report.rejected, again.conflicts, again.rejected) == (0, 0, 0, 0)
    assert await replica.outbox() == []
    assert edits  # the hook did edit records while they were out
    for i in range(40):
        assert server_doc(db, f"d{i}") == await docs.get(f"d{i}")
    for doc_id, count in edits.items():
        assert server_doc(db, doc_id) == {"id": doc_id, "n": count}
        sk = sort_key(APP, "docs", doc_id)
        versions = [
            int(w.new["_v"]["N"])
            for w in db.applied
            if w.table == "pysync" and w.sk == sk and w.new is not None
        ]
        assert versions == list(range(1, len(versions) + 1))  # one after the other


def test_push_concurrency_must_be_positive() -> None:
    async def run() -> None:
        replica = await pysync.connect(APP, USER, SCHEMA, platform=MemoryBrowser().tab())
        try:
            with pytest.raises(ValueError, match="push_concurrency"):
                Sync(replica, MemoryDynamo().connection(), push_concurrency=0)
        finally:
            replica.close()

    asyncio.run(run())


async def test_a_records_later_change_waits_for_its_change_still_out(
    device: MakeDevice, db: MemoryDynamo
) -> None:
    # a0's write is left in flight by a push that gave up (the network stayed down for
    # it), and a0 is edited again: a second entry, to go after the first. The next push
    # sends a0's first entry (settling it) in one round and picks the next round while
    # it is out: the second entry must wait for it, whatever else goes meanwhile.
    replica, sync, remote = await device()
    sync.pusher.window = 5
    docs = replica["docs"]
    for i in range(10):
        await docs.put({"id": f"a{i}", "n": 0})
    down = pysync.RemoteError("NetworkError", "offline", 0, {})
    a0 = sort_key(APP, "docs", "a0")
    remote.fail_next(100, down, when=lambda _op, payload: json.dumps(a0) in json.dumps(payload))
    with pytest.raises(pysync.RemoteError):
        await sync.push()
    remote.clear_faults()
    assert [e["state"] for e in await replica.outbox()] == ["inflight"]
    await docs.patch("a0", {"n": 1})
    for i in range(10):
        await docs.put({"id": f"b{i}"})
    first, second = [e["hlc"] for e in await replica.outbox() if e["id"] == "a0"]
    remote.calls.clear()
    report = await sync.push()
    # a0's writes in the order sent (its first entry may go twice: it meets its probe)
    sent = [
        item["_hlc"]
        for item in (from_item(p["Item"]) for op, p in remote.calls if op == "PutItem")
        if item["sk"] == a0 and "_del" not in item
    ]
    assert sent[-1] == second
    assert second not in sent[: sent.index(second)]
    assert first not in sent[sent.index(second) :]  # the second went after the first landed
    # (a0's settle writes a probe tombstone, which its create then meets as a conflict)
    assert (report.pushed, report.rejected) == (12, 0)
    assert await replica.outbox() == []
    assert server_doc(db, "a0") == {"id": "a0", "n": 1} == await docs.get("a0")
    for i in range(10):
        assert server_doc(db, f"b{i}") == {"id": f"b{i}"}


async def test_a_push_reads_no_changelog_head_while_the_feed_is_connected(
    device: MakeDevice,
) -> None:
    """While the realtime feed is connected, the push bounds where a lost reply is
    looked for with the pull's cursor instead of a head read first (a round trip
    before every push, on the way of every change to the other devices). Without
    the feed, the head read is also the check that the server answers before
    anything is marked in flight: it stays."""
    replica, sync, remote = await device()

    def head_reads() -> int:
        return sum(
            1
            for op, payload in remote.calls
            if op == "GetItem" and payload["TableName"].endswith("_changes")
        )

    await sync.pull()
    assert await sync.puller.cursor() is not None
    remote.calls.clear()
    await replica["docs"].put({"id": "a"})
    await sync.push()  # no feed: the head is read
    assert head_reads() == 1
    replica._set_status(realtime=True)  # as a connected feed sets it
    remote.calls.clear()
    await replica["docs"].put({"id": "b"})
    await replica["docs"].put({"id": "c"})
    await sync.push()
    assert head_reads() == 0
    assert not await replica.outbox()
    assert {d["id"] for d in await replica["docs"].query()} == {"a", "b", "c"}


async def test_the_push_reads_the_outbox_in_short_slices(
    device: MakeDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Choosing what to send reads at most READ_SLICE entries per store transaction:
    reading and decoding a round's hundreds of entries at once was one long task."""
    from pysync._sync import _push

    replica, sync, _ = await device()
    for first in range(0, 300, 100):  # 300 single entries, written 100 at a time
        await replica._write(
            [replica["docs"]._put_write({"id": f"d{i:03d}"}) for i in range(first, first + 100)]
        )
    reads: list[int | None] = []
    query = replica.store.query

    async def spy(store: str, **options: Any) -> Any:
        if store == "_outbox":
            reads.append(options.get("limit"))
        return await query(store, **options)

    monkeypatch.setattr(replica.store, "query", spy)
    report = await sync.push()
    assert report.pushed == 300
    assert reads
    assert all(limit is not None and limit <= _push.READ_SLICE for limit in reads)
    assert not await replica.outbox()


async def test_a_long_outbox_is_read_in_short_slices_and_not_whole_for_each_round(
    device: MakeDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rounds read the outbox only until what they read decides: a transaction at the
    head (one row) decides at once, singles once the window is full. Reading the
    whole outbox for every transaction's round was quadratic in a long backlog. A
    row may hold a whole transaction: the slices shrink to about READ_SLICE
    entries, not READ_SLICE rows (which could be 100 transactions of 100). The
    rows of the plain writes of the round still out are not read again."""
    from pysync._outbox_rows import entries_of
    from pysync._sync import _push

    replica, sync, _ = await device()
    for first in range(0, 500, 100):
        async with replica.transaction() as tx:
            for i in range(first, first + 100):
                tx.put("docs", {"id": f"t{i:03d}"})
    for first in range(0, 1000, 100):
        await replica._write(
            [replica["docs"]._put_write({"id": f"s{i:04d}"}) for i in range(first, first + 100)]
        )
    decoded: list[int] = []
    query = replica.store.query

    async def spy(store: str, **options: Any) -> Any:
        found = await query(store, **options)
        if store == "_outbox":
            decoded.append(len(entries_of(found)))
        return found

    monkeypatch.setattr(replica.store, "query", spy)
    report = await sync.push()
    assert report.pushed == 1500
    # Each round reads its own entries and a slice more, passing unread the rows of
    # the plain writes still out (1,804 here). Reading those too decoded 2,804;
    # reading the whole outbox for each transaction's round, 12,006.
    assert sum(decoded) <= 1.3 * 1500, sum(decoded)
    assert max(decoded) <= _push.READ_SLICE
    assert not await replica.outbox()
