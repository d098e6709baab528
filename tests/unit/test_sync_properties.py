"""Properties of push, pull and merge under random interleavings (Hypothesis, in memory).

Two or three devices (separate browsers) of one user edit a few records of one
collection and sync through one :class:`MemoryDynamo` in a random order, with
lost replies, 5xx bursts (long enough to abort a push), edits made while a push
is in flight, permanent refusals (then retried), clocks that jump (also
backwards), a lagging changelog, expired changelog entries and forgotten
transaction tokens. At the end every device syncs until a whole round changes
nothing. Then:

(a) convergence: every device has exactly the server's documents;
(b) no edit is lost silently: each value a local edit wrote (a field's value;
    for a delete, the record's absence) is in the final state, or it was
    *seen and replaced*: an edit (on any device) was made on top of a state
    holding that value and changed it, or a record of the document in some
    device's ``_conflicts`` holds it as its local or remote side. Every value
    is unique, so "made on top of a state holding it" is exact. Folding is
    allowed for: a later edit on the same device replaces an earlier one (its
    state held the earlier value), and a delete of a record created on this
    device and never pushed cancels both and claims nothing (it is "moot": a
    record another device created meanwhile may stay);
(c) increments are never lost nor doubled: a counter that is only ever
    incremented ends at the sum of all increments made on all devices;
(d) no write is applied twice: the server's ``_v`` is the number of writes
    applied to the item, and no mutation id (``_m``) was applied twice;
(e) nothing is left in any outbox.

The sync-engine bugs these tests found are reproduced one by one at the end of
this module, as regression tests.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pysync
from pysync import AppSchema, CollectionSpec, DocumentNotFoundError, RemoteError, Sync
from pysync._marshal import from_item
from pysync._sync._items import sort_key
from pysync.testing import MemoryBrowser, MemoryConnection, MemoryDynamo

TABLE = "pysync"
USER = "prop"
SCOPE = f"u#{USER}"
SCHEMA = AppSchema(1, {"docs": CollectionSpec()})
PLAIN = ("a", "b")  # put, patched, deleted (few ids: edits collide often)
COUNTERS = ("k0", "k1")  # only incremented (field n) and patched (field tag)
FIELDS = ("x", "y")
WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems")
START_MS = 1_800_000_000_000
SYSTEM = ("pk", "sk", "_v", "_hlc", "_c", "_m", "_del", "_ttl")


async def no_sleep(_: float) -> None:
    return None


def union_remote_wins(
    base: dict[str, Any] | None, local: dict[str, Any] | None, remote: dict[str, Any] | None
) -> dict[str, Any] | None:
    """A callback strategy: keep both sides' fields, the server's on a clash."""
    if local is None or remote is None:
        return remote if remote is not None else local
    return {**local, **remote}


STRATEGIES: dict[str, Any] = {
    "lww": "lww",
    "server": "server",
    "client": "client",
    "callback": union_remote_wins,
}


# -- programs ---------------------------------------------------------------------------

device_index = st.integers(0, 2)
plain_id = st.sampled_from(PLAIN)
counter_id = st.sampled_from(COUNTERS)
put_fields = st.sets(st.sampled_from(FIELDS), max_size=2)
edit_op = st.one_of(
    st.tuples(st.just("put"), plain_id, put_fields),
    st.tuples(st.just("patch"), plain_id, st.sampled_from(FIELDS)),
    st.tuples(st.just("increment"), counter_id, st.integers(1, 5)),
    st.tuples(st.just("delete"), plain_id, st.none()),
    # Patches of a counter's other fields, concurrent with increments.
    st.tuples(st.just("patch"), counter_id, st.just("tag")),
)

#: How often each kind of step is drawn.
STEP_WEIGHTS = {
    "edit": 8,
    "transaction": 2,
    "edit_in_flight": 2,
    "push": 3,
    "pull": 3,
    "sync": 4,
    "lose_replies": 2,
    "burst": 1,
    "refuse": 1,
    "retry": 1,
    "clock": 2,
    "deliver": 1,
    "expire": 1,
    "forget_tokens": 1,
}
#: Replies lost in a row: 1 (the retry learns the outcome at once) or 8 (the push gives up
#: with its write landed, and learns the outcome only later).
LOST_REPLIES = (1, 8)


def make_step(
    kind: str,
    device: int,
    op: tuple[str, str, Any],
    ops: list[tuple[str, str, Any]],
    number: int,
) -> tuple[str, Any, Any]:
    """One step of a program, from independently drawn parts (which shrink well)."""
    if kind in ("edit", "edit_in_flight"):
        return (kind, device, op)
    if kind == "transaction":
        return (kind, device, ops)
    if kind in ("push", "pull", "sync", "refuse", "retry"):
        return (kind, device, None)
    if kind == "lose_replies":
        return (kind, device, LOST_REPLIES[number % len(LOST_REPLIES)])
    if kind == "burst":
        return (kind, device, (1, 3, 8)[number % 3])
    if kind == "clock":
        return (kind, device, (number - 5) * 1000)
    if kind == "deliver":
        return (kind, None, number % 4 + 1)
    if kind == "expire":  # keep the newest 0 to 3 entries
        return (kind, None, number % 4)
    return (kind, None, None)


program_op = st.builds(
    make_step,
    st.sampled_from([kind for kind, weight in STEP_WEIGHTS.items() for _ in range(weight)]),
    device_index,
    edit_op,
    st.lists(edit_op, min_size=2, max_size=3, unique_by=lambda op: op[1]),
    st.integers(0, 10),
)


@dataclass
class Edit:
    """One local edit that committed, and the local document it was made on."""

    n: int
    device: int
    key: str
    op: str
    values: dict[str, Any]  # put: the fields; patch: the set fields; increment: {n: delta}
    pre: dict[str, Any] | None
    moot: bool = False  # a delete that cancelled this device's own unpushed create


@dataclass
class Device:
    replica: pysync.Replica
    sync: Sync
    remote: MemoryConnection
    browser: MemoryBrowser


@dataclass
class World:
    """The devices, the server and everything that happened."""

    db: MemoryDynamo
    devices: list[Device]
    edits: list[Edit] = field(default_factory=list)
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    log: list[str] = field(default_factory=list)

    def value(self) -> str:
        return f"v{next(self.counter)}"


# -- running a program ------------------------------------------------------------------


async def open_world(count: int, strategies: list[str], lagging: bool) -> World:
    db = MemoryDynamo(tables=(TABLE,), lagging=lagging)
    for key in COUNTERS:
        db.handle(
            "PutItem",
            {
                "TableName": TABLE,
                "Item": {
                    "pk": {"S": SCOPE},
                    "sk": {"S": sort_key("app", "docs", key)},
                    "id": {"S": key},
                    "n": {"N": "0"},
                    "_v": {"N": "1"},
                },
            },
        )
    db.deliver()
    devices = []
    for i in range(count):
        browser = MemoryBrowser(now_ms=START_MS + 1000 * i)
        replica = await pysync.connect("app", USER, SCHEMA, platform=browser.tab())
        remote = db.connection()
        strategy = STRATEGIES[strategies[i % len(strategies)]]
        sync = Sync(replica, remote, table=TABLE, sleep=no_sleep, strategy=strategy)
        devices.append(Device(replica, sync, remote, browser))
        await sync.pull()  # every device starts with the counters
    return World(db, devices)


def planned(world: World, op: tuple[str, str, Any]) -> tuple[str, str, dict[str, Any]]:
    """An edit with fresh unique values."""
    kind, key, arg = op
    if kind == "put":
        return kind, key, {name: world.value() for name in sorted(arg)}
    if kind == "patch":
        return kind, key, {arg: world.value()}
    if kind == "increment":
        return kind, key, {"n": arg}
    return kind, key, {}


async def edit(world: World, index: int, op: tuple[str, str, Any]) -> None:
    """One local edit; recorded if it committed."""
    replica = world.devices[index].replica
    kind, key, values = planned(world, op)
    docs = replica["docs"]
    pre = await docs.get(key)
    try:
        if kind == "put":
            await docs.put({"id": key, **values})
        elif kind == "patch":
            await docs.patch(key, values)
        elif kind == "increment":
            await docs.increment(key, "n", values["n"])
        elif pre is not None:
            await docs.delete(key)
        else:
            return
    except DocumentNotFoundError:
        return
    moot = kind == "delete" and not await pending(replica, key)
    world.edits.append(Edit(len(world.edits), index, key, kind, values, pre, moot))
    world.log.append(f"  dev{index} {kind} {key} {values} (on {pre}){' moot' * moot}")


async def pending(replica: pysync.Replica, key: str) -> bool:
    return any(entry["id"] == key for entry in await replica.outbox())


async def transaction(world: World, index: int, ops: list[tuple[str, str, Any]]) -> None:
    replica = world.devices[index].replica
    docs = replica["docs"]
    plans = [planned(world, op) for op in ops]
    pres = {key: await docs.get(key) for _, key, _ in plans}
    plans = [p for p in plans if p[0] != "delete" or pres[p[1]] is not None]
    if any(p[0] in ("patch", "increment") and pres[p[1]] is None for p in plans) or not plans:
        return
    async with replica.transaction() as tx:
        for kind, key, values in plans:
            if kind == "put":
                tx.put("docs", {"id": key, **values})
            elif kind == "patch":
                tx.patch("docs", key, values)
            elif kind == "increment":
                tx.increment("docs", key, "n", values["n"])
            else:
                tx.delete("docs", key)
    for kind, key, values in plans:
        moot = kind == "delete" and not await pending(replica, key)
        world.edits.append(Edit(len(world.edits), index, key, kind, values, pres[key], moot))
    world.log.append(f"  dev{index} transaction {plans} (on {pres})")


async def step(world: World, op: tuple[str, Any, Any]) -> None:
    kind, index, arg = op
    device = world.devices[index % len(world.devices)] if index is not None else None
    if index is not None:
        index %= len(world.devices)
    world.log.append(f"{kind} {index} {arg}")
    if kind == "edit":
        await edit(world, index, arg)
    elif kind == "transaction":
        await transaction(world, index, arg)
    elif kind in ("push", "pull", "sync"):
        assert device is not None
        try:
            report = await getattr(device.sync, kind)()
            world.log.append(f"  -> {report}")
        except RemoteError as error:  # a burst outlasted the retries: offline for now
            world.log.append(f"  -> {error!r}")
    elif kind == "lose_replies":  # the write lands, its reply (and n - 1 more) do not
        assert device is not None
        device.remote.lose_replies(arg, operations=WRITES)
    elif kind == "burst":
        assert device is not None
        error = RemoteError("ServiceUnavailable", "burst", 503, {})
        device.remote.fail_next(arg, error)
    elif kind == "refuse":  # a permanent refusal: the change waits as rejected
        assert device is not None
        refusal = RemoteError("ValidationException", "refused", 400, {})
        device.remote.fail_next(1, refusal, operations=WRITES)
    elif kind == "retry":
        assert device is not None
        await retry_rejected(device)
    elif kind == "edit_in_flight":
        assert device is not None

        async def hook(_operation: str, _payload: dict[str, Any], i: int = index) -> None:
            world.log.append(f"  (in flight on dev{i})")
            await edit(world, i, arg)

        device.remote.before_next(hook, operations=WRITES)
    elif kind == "clock":
        assert device is not None
        device.browser.now_ms += arg
    elif kind == "deliver":
        world.db.deliver(arg)
    elif kind == "expire":
        head = world.db.item(f"{TABLE}_changes", SCOPE, 0) or {"head": {"N": "0"}}
        world.db.drop_changes(SCOPE, below=int(head["head"]["N"]) + 1 - arg)
    elif kind == "forget_tokens":
        world.db.forget_tokens()


async def retry_rejected(device: Device) -> int:
    """Queue every rejected change of a device again (as the app would, after a fix)."""
    rejected = [e for e in await device.replica.outbox() if e["state"] == "rejected"]
    for entry in rejected:
        await device.replica.retry(entry["mid"])
    return len(rejected)


async def settle(world: World, rounds: int = 8) -> None:
    """Faults off, changelog delivered, then sync every device until nothing changes."""
    world.log.append("settle")
    world.db.lagging = False
    world.db.deliver()
    for device in world.devices:
        device.remote.clear_faults()
        device.browser.now_ms += 15 * 60 * 1000  # later: a write still unseen did not land
    for _ in range(rounds):
        quiet = True
        for device in world.devices:
            if await retry_rejected(device):
                quiet = False
            report = await device.sync.sync()
            world.log.append(f"  -> {report}")
            if report.push.pushed or report.push.conflicts or report.pull.applied:
                quiet = False
            if report.pull.base_sync:
                quiet = False
        if quiet:
            return
    raise AssertionError(f"no quiescence after {rounds} rounds")


async def run(count: int, strategies: list[str], lagging: bool, program: list[Any]) -> World:
    world = await open_world(count, strategies, lagging)
    try:
        for op in program:
            await step(world, op)
        await settle(world)
        await check(world)
    except BaseException as error:
        error.add_note("\n".join(world.log[-200:]))
        raise
    finally:
        for device in world.devices:
            device.replica.close()
    return world


# -- the properties ---------------------------------------------------------------------


def server_documents(db: MemoryDynamo) -> dict[str, dict[str, Any]]:
    out = {}
    for item in db.items(TABLE, SCOPE):
        values = from_item(item)
        if not values.get("_del"):
            out[values["id"]] = {k: v for k, v in values.items() if k not in SYSTEM}
    return out


def replaced(edit: Edit, name: str, value: Any, edits: list[Edit]) -> bool:
    """Whether an edit was made on a state where ``name`` was ``value`` and changed it."""
    for other in edits:
        if other.key != edit.key or other.pre is None or other.pre.get(name) != value:
            continue
        if other.op == "delete":
            return True
        if other.op == "put" and other.values.get(name) != value:
            return True
        if other.op == "patch" and name in other.values and other.values[name] != value:
            return True
    return False


def recorded(edit: Edit, name: str, value: Any, conflicts: list[dict[str, Any]]) -> bool:
    for conflict in conflicts:
        if conflict["id"] != edit.key:
            continue
        for side in ("local", "remote"):
            doc = conflict[side]
            if name is None and doc is None:
                return True  # a delete, kept as one side of the conflict
            if name is not None and doc is not None and doc.get(name) == value:
                return True
    return False


async def check(world: World) -> None:
    db = world.db
    server = server_documents(db)
    # (a) convergence
    for i, device in enumerate(world.devices):
        local = {doc["id"]: doc for doc in await device.replica["docs"].query()}
        assert local == server, f"device {i} diverged:\n{local}\nserver:\n{server}"
    # (e) empty outboxes
    for i, device in enumerate(world.devices):
        outbox = await device.replica.outbox()
        assert outbox == [], f"device {i} still has {outbox}"
    # (b) no edit lost silently
    conflicts = [c for d in world.devices for c in await d.replica.store.query("_conflicts")]
    for edit in world.edits:
        final = server.get(edit.key)
        if edit.op == "delete":
            if final is None or edit.moot:
                continue
            recreated = any(
                other.key == edit.key and other.n > edit.n and other.pre is None
                for other in world.edits
            )
            assert recreated or recorded(edit, None, None, conflicts), (
                f"delete lost silently: {edit}"
            )
            continue
        if edit.op == "increment":
            continue
        for name, value in edit.values.items():
            if final is not None and final.get(name) == value:
                continue
            assert replaced(edit, name, value, world.edits) or recorded(
                edit, name, value, conflicts
            ), f"{name}={value!r} of {edit} lost silently; final {final}"
    # (c) increments add up
    for key in COUNTERS:
        total = sum(e.values["n"] for e in world.edits if e.key == key and e.op == "increment")
        assert server[key]["n"] == total, f"{key}: n = {server[key]['n']}, increments {total}"
    # (d) no write applied twice
    applied: dict[str, list[Any]] = {}
    for write in db.applied:
        if write.table == TABLE and write.new is not None:
            applied.setdefault(str(write.sk), []).append(write.new)
    for sk, writes in applied.items():
        assert int(writes[-1]["_v"]["N"]) == len(writes), f"{sk}: _v {writes[-1]['_v']}"
        mids = [w["_m"]["S"] for w in writes if "_m" in w]
        twice = {m for m in mids if mids.count(m) > 1}
        assert not twice, f"{sk}: mutations applied twice: {twice}"


# -- the tests --------------------------------------------------------------------------

PROFILE = settings(
    max_examples=int(os.environ.get("PYSYNC_EXAMPLES", "60")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROFILE
@given(
    count=st.integers(2, 3),
    strategies=st.lists(st.sampled_from(sorted(STRATEGIES)), min_size=1, max_size=3),
    lagging=st.booleans(),
    program=st.lists(program_op, min_size=10, max_size=50),
)
def test_random_interleavings_converge_and_lose_nothing(
    count: int, strategies: list[str], lagging: bool, program: list[Any]
) -> None:
    asyncio.run(run(count, strategies, lagging, program))


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_a_busy_day_converges(strategy: str) -> None:
    """A fixed, long program (every kind of step), for each strategy."""
    ops: list[Any] = []
    for i in range(6):
        d, e, f = i % 3, (i + 1) % 3, (i + 2) % 3
        ops += [
            ("edit", d, ("put", PLAIN[i % 2], {"x", "y"})),
            ("edit", e, ("patch", PLAIN[i % 2], "x")),
            ("edit", d, ("increment", COUNTERS[i % 2], i + 1)),
            ("edit", f, ("increment", COUNTERS[i % 2], 1)),
            ("lose_replies", d, 1),
            ("sync", d, None),
            ("edit_in_flight", e, ("patch", PLAIN[(i + 1) % 2], "y")),
            ("transaction", d, [("put", "b", {"x"}), ("increment", "k1", 2)]),
            ("refuse", e, None),
            ("clock", d, -3000),
            ("sync", e, None),
            ("edit", f, ("delete", PLAIN[(i + 1) % 2], None)),
            ("burst", f, 3),
            ("deliver", None, 2),
            ("sync", f, None),
            ("retry", e, None),
            ("expire", None, 3),
        ]
    asyncio.run(run(3, [strategy], True, ops))


# -- the bugs found, one by one -----------------------------------------------------------


@pytest.fixture
async def make_device() -> Any:
    """Devices (separate browsers) of one user on a given MemoryDynamo; closed at the end."""
    opened: list[Device] = []

    async def make(db: MemoryDynamo, strategy: str = "lww", ahead_ms: int = 0) -> Device:
        browser = MemoryBrowser(now_ms=START_MS + ahead_ms)
        replica = await pysync.connect("app", USER, SCHEMA, platform=browser.tab())
        remote = db.connection()
        sync = Sync(replica, remote, table=TABLE, sleep=no_sleep, strategy=STRATEGIES[strategy])
        opened.append(Device(replica, sync, remote, browser))
        return opened[-1]

    yield make
    for device in opened:
        device.replica.close()


async def synced(*devices: Device) -> None:
    for _ in range(2):
        for device in devices:
            await device.sync.sync()


async def test_bug1_a_lost_reply_of_an_increment_applies_it_twice(make_device: Any) -> None:
    db = MemoryDynamo()
    a = await make_device(db)
    await a.replica["docs"].put({"id": "k", "n": 0})
    await a.sync.sync()
    await a.replica["docs"].increment("k", "n", 1)
    a.remote.lose_replies(1, operations=["UpdateItem"])
    assert (await a.sync.push()).pushed == 1
    assert server_documents(db)["k"]["n"] == 1  # it is 2


async def test_bug2_a_conflict_merges_edits_made_while_in_flight(make_device: Any) -> None:
    db = MemoryDynamo()
    a = await make_device(db, strategy="client")  # a's side wins the conflict on n
    b = await make_device(db)
    await a.replica["docs"].put({"id": "k", "n": 0})
    await synced(a, b)
    await a.replica["docs"].patch("k", {"tag": "A"})
    await b.replica["docs"].increment("k", "n", 2)
    await b.sync.push()

    async def in_flight(_operation: str, _payload: dict[str, Any]) -> None:
        await a.replica["docs"].increment("k", "n", 3)

    a.remote.before_next(in_flight, operations=["UpdateItem"])
    await a.sync.push()  # the patch conflicts with b's increment; +3 is made meanwhile
    await synced(a, b)
    assert server_documents(db)["k"] == {"id": "k", "n": 5, "tag": "A"}  # n is 6


async def test_bug3_a_landed_transaction_is_rejected_after_its_token(make_device: Any) -> None:
    db = MemoryDynamo()
    a = await make_device(db)
    async with a.replica.transaction() as tx:
        tx.put("docs", {"id": "x", "v": 1})
        tx.put("docs", {"id": "y", "v": 1})
    a.remote.lose_replies(8)  # it lands, and the network stays down
    with pytest.raises(RemoteError):
        await a.sync.push()
    db.forget_tokens()  # back more than ten minutes later
    report = await a.sync.push()
    assert (report.pushed, report.rejected) == (2, 0)  # (0, 2)
    assert await a.replica.outbox() == []


async def test_bug4_a_cancelled_create_hides_the_server_record(make_device: Any) -> None:
    db = MemoryDynamo()
    a, b = await make_device(db), await make_device(db)
    await synced(a, b)
    await b.replica["docs"].put({"id": "d", "x": 1})
    await b.sync.sync()
    await a.replica["docs"].put({"id": "d", "x": 2})  # a has not seen b's d yet
    await a.sync.pull()  # b's d is skipped: a's create is pending
    await a.replica["docs"].delete("d")  # cancels a's create, which never left the device
    await synced(a, b)
    assert await a.replica["docs"].get("d") == server_documents(db)["d"]  # a has None


async def test_bug4b_a_discard_restores_a_stale_base(make_device: Any) -> None:
    db = MemoryDynamo()
    a, b = await make_device(db), await make_device(db)
    await a.replica["docs"].put({"id": "d", "x": 1})
    await synced(a, b)
    await a.replica["docs"].patch("d", {"x": 2})
    await b.replica["docs"].patch("d", {"y": 3})
    await b.sync.push()
    await a.sync.pull()  # b's change is skipped: a's patch is pending
    a.remote.fail_next(1, RemoteError("ValidationException", "refused", 400, {}), operations=WRITES)
    await a.sync.push()
    (entry,) = await a.replica.outbox()
    await a.replica.discard(entry["mid"])
    await synced(a, b)
    assert await a.replica["docs"].get("d") == {"id": "d", "x": 1, "y": 3}  # no y


async def test_bug5_a_landed_write_overwritten_since_is_redone(make_device: Any) -> None:
    db = MemoryDynamo()
    a, b = await make_device(db), await make_device(db)
    await a.replica["docs"].put({"id": "k", "n": 0, "tag": "-"})
    await synced(a, b)
    await a.replica["docs"].patch("k", {"tag": "A"})
    await a.replica["docs"].increment("k", "n", 1)  # one write, conditioned on the version
    a.remote.lose_replies(8)  # it lands; a goes offline without knowing
    with pytest.raises(RemoteError):
        await a.sync.push()
    await b.sync.sync()  # b sees n = 1 ...
    await b.replica["docs"].increment("k", "n", 2)  # ... and adds 2
    await b.sync.push()
    await synced(a, b)
    assert server_documents(db)["k"] == {"id": "k", "n": 3, "tag": "A"}  # n is 4


async def test_bug6_an_increment_ack_claims_unseen_changes(make_device: Any) -> None:
    db = MemoryDynamo()
    a, b = await make_device(db, strategy="server"), await make_device(db)
    await a.replica["docs"].put({"id": "k", "n": 0, "tag": "-"})
    await synced(a, b)
    await b.replica["docs"].patch("k", {"tag": "B"})
    await b.sync.push()
    await a.replica["docs"].increment("k", "n", 1)
    await a.sync.push()  # lands on top of b's tag; a's record now claims that version
    seen = await a.replica["docs"].get("k")
    await a.replica["docs"].patch("k", {"tag": "A"})
    await a.sync.push()
    # Either a's record showed "B" before the patch (then "A" replaces it knowingly), or the
    # patch meets "B" as a conflict (the server strategy keeps it). Neither happens: a's
    # record showed "-" with B's version, and "A" overwrote "B" without a conflict.
    assert seen is not None
    assert seen["tag"] == "B" or server_documents(db)["k"]["tag"] == "B"


async def test_bug7_a_truncated_changelog_entry_deletes_the_record(make_device: Any) -> None:
    db = MemoryDynamo(max_entry_bytes=1000)  # the real appender's limit is 400 KB
    a, b = await make_device(db), await make_device(db)
    await synced(a, b)
    await a.replica["docs"].put({"id": "big", "blob": "x" * 2000})
    await a.sync.sync()
    assert db.changes(SCOPE)[-1].get("trunc") == {"BOOL": True}
    await b.sync.sync()
    assert await b.replica["docs"].get("big") == {"id": "big", "blob": "x" * 2000}  # None


async def test_bug8_a_merged_change_loses_its_increment_in_a_second_conflict(
    make_device: Any,
) -> None:
    db = MemoryDynamo()
    a, b = await make_device(db, strategy="server"), await make_device(db)
    await a.replica["docs"].put({"id": "k", "n": 0, "tag": "-"})
    await synced(a, b)
    await a.replica["docs"].patch("k", {"tag": "A"})
    await a.replica["docs"].increment("k", "n", 1)  # one write, conditioned on the version
    await b.replica["docs"].patch("k", {"tag": "B"})
    await b.sync.push()

    async def b_adds(_operation: str, _payload: dict[str, Any]) -> None:
        await b.replica["docs"].increment("k", "n", 2)
        await b.sync.sync()

    # a's write conflicts; its merged result, queued as a put, conflicts again with b's +2.
    a.remote.before_next(b_adds, operations=["PutItem"])
    await a.sync.push()
    await synced(a, b)
    assert server_documents(db)["k"]["n"] == 3  # it was 2: a's +1 was merged away


async def test_bug9_a_write_settled_after_its_record_last_changed_waits_forever(
    make_device: Any,
) -> None:
    db = MemoryDynamo()
    a, b = await make_device(db), await make_device(db)
    await b.replica["docs"].put({"id": "d", "x": 1})
    await b.replica["docs"].patch("d", {"x": 2})
    await b.sync.sync()
    await a.sync.sync()
    cursor = await a.sync.puller.cursor()
    assert cursor is not None
    # An uncertain create of d first sent when d's last change was already in the changelog.
    entry = {"collection": "docs", "id": "d", "mid": "m-never-sent", "since": cursor}
    item = db.item(TABLE, SCOPE, sort_key("app", "docs", "d"))
    assert item is not None
    assert await a.sync.puller.landed({**entry, "base_v": None, "new": True}, item) is False


async def test_bug10_a_changelog_expired_up_to_its_head_goes_unnoticed(make_device: Any) -> None:
    db = MemoryDynamo()
    a, b = await make_device(db), await make_device(db)
    await synced(a, b)
    await b.replica["docs"].put({"id": "d", "x": 1})
    await b.sync.sync()
    head = int((db.item(f"{TABLE}_changes", SCOPE, 0) or {})["head"]["N"])
    db.drop_changes(SCOPE, below=head + 1)  # every entry a has not read expired
    report = await a.sync.pull()
    assert report.base_sync  # it found nothing after its cursor and stopped there
    assert await a.replica["docs"].get("d") == {"id": "d", "x": 1}


async def test_bug17_a_discarded_delete_revives_what_a_base_sync_saw_deleted(
    make_device: Any,
) -> None:
    """Found by the randomized model (seeds 5003256, 5003299): a document deleted on
    the server for good (no tombstone) while this device deleted it too left a base
    sync nothing to meet, neither an item nor a local key, so no mark; discarding the
    refused delete put the document back, and no pull read it again."""
    db = MemoryDynamo()
    a = await make_device(db)
    await a.replica["docs"].put({"id": "d", "x": 1})
    await a.sync.sync()
    key = {"pk": {"S": SCOPE}, "sk": {"S": sort_key("app", "docs", "d")}}
    db.handle("DeleteItem", {"TableName": TABLE, "Key": key})  # a writer bypassing pysync
    await a.replica["docs"].delete("d")
    a.remote.fail_next(1, RemoteError("ValidationException", "refused", 400, {}), operations=WRITES)
    await a.sync.push()
    head = int((db.item(f"{TABLE}_changes", SCOPE, 0) or {})["head"]["N"])
    db.drop_changes(SCOPE, below=head + 1)  # every entry a has not read expired
    assert (await a.sync.pull()).base_sync
    (entry,) = await a.replica.outbox()
    await a.replica.discard(entry["mid"])  # d comes back as a last knew it
    await a.sync.sync()
    assert await a.replica["docs"].get("d") is None  # as on the server


async def test_a_skipped_change_does_not_hold_the_cursor_back(make_device: Any) -> None:
    db = MemoryDynamo()
    a, b = await make_device(db), await make_device(db)
    await b.replica["docs"].put({"id": "d", "x": 1})
    await synced(a, b)
    a.remote.fail_next(1, RemoteError("ValidationException", "refused", 400, {}), operations=WRITES)
    await a.replica["docs"].patch("d", {"x": 2})
    await a.sync.push()  # rejected: it stays until the app retries or discards it
    for value in (3, 4):
        await b.replica["docs"].patch("d", {"y": value})
        await b.sync.push()
        await a.sync.pull()  # skipped: a's change is pending
    head = int((db.item(f"{TABLE}_changes", SCOPE, 0) or {})["head"]["N"])
    assert await a.sync.puller.cursor() == head  # later pulls do not read them again
    (entry,) = await a.replica.outbox()
    await a.replica.discard(entry["mid"])
    await a.sync.pull()  # the record whose changes were skipped is read again
    assert await a.replica["docs"].get("d") == {"id": "d", "x": 1, "y": 4}


EXPIRED = RemoteError("ExpiredTokenException", "token expired", 401, {})


async def test_bug11_an_edit_made_while_the_push_picks_its_window_is_lost(
    make_device: Any,
) -> None:
    db = MemoryDynamo()
    a = await make_device(db)
    await a.replica["docs"].put({"id": "d", "x": 1})
    await a.replica["docs"].put({"id": "tmp", "x": 1})  # never pushed
    await a.sync.sync()
    await a.replica["docs"].patch("d", {"x": 2})
    await a.replica["docs"].put({"id": "new", "x": 1})
    head = a.sync.puller.head

    async def app_writes_meanwhile() -> int:  # between reading the window and sending it
        a.sync.puller.head = head  # type: ignore[method-assign]
        await a.replica["docs"].patch("d", {"y": 3})  # folds into the pending entry
        await a.replica["docs"].delete("new")  # cancels the pending create
        return await head()

    a.sync.puller.head = app_writes_meanwhile  # type: ignore[method-assign]
    await a.sync.push()
    await a.sync.sync()
    assert server_documents(db)["d"] == {"id": "d", "x": 2, "y": 3}  # y was lost
    assert "new" not in server_documents(db)  # it came back
    assert await a.replica["docs"].get("new") is None


async def test_bug12_a_device_back_after_long_doubles_an_uncertain_increment(
    make_device: Any,
) -> None:
    db = MemoryDynamo()
    a, b = await make_device(db), await make_device(db)
    await a.replica["docs"].put({"id": "k", "n": 0})
    await synced(a, b)
    for i in range(3):  # a is away; b writes; old entries expire
        await b.replica["docs"].put({"id": f"o{i}", "x": i})
        await b.sync.sync()
    head = int((db.item(f"{TABLE}_changes", SCOPE, 0) or {})["head"]["N"])
    db.drop_changes(SCOPE, below=head)
    db.lagging = True  # and the stream consumer is a little behind
    await a.replica["docs"].increment("k", "n", 1)
    await b.replica["docs"].increment("k", "n", 2)
    a.remote.lose_replies(1, operations=["UpdateItem"])  # a's +1 lands, its reply is lost
    a.remote.fail_next(
        8,
        RemoteError("NetworkError", "offline", 0, {}),
        when=lambda _op, payload: payload.get("TableName") == TABLE,  # not the head
    )
    with pytest.raises(RemoteError):
        await a.sync.push()
    await b.sync.push()  # b's +2 lands on top of a's +1
    with pytest.raises(RemoteError, match="ChangelogBehind"):
        await a.sync.push()  # it waits for the changelog instead of sending it again
    db.lagging = False
    db.deliver()
    await synced(a, b)
    assert server_documents(db)["k"]["n"] == 3  # it was 4


async def test_bug13_an_expired_token_rejects_changes(make_device: Any) -> None:
    db = MemoryDynamo()
    a, b = await make_device(db), await make_device(db)
    await a.replica["docs"].put({"id": "k", "n": 0})
    await synced(a, b)
    await a.replica["docs"].increment("k", "n", 1)
    a.remote.lose_replies(1, operations=["UpdateItem"])  # +1 lands, its reply is lost
    # The settle's read of the item meets an old token.
    a.remote.fail_next(1, EXPIRED, when=lambda _op, payload: payload.get("TableName") == TABLE)
    with pytest.raises(RemoteError, match="ExpiredToken"):
        await a.sync.push()  # the round stops; nothing is rejected
    assert [e["state"] for e in await a.replica.outbox()] == ["inflight"]
    await b.replica["docs"].increment("k", "n", 2)
    await b.sync.push()
    await synced(a, b)
    assert server_documents(db)["k"]["n"] == 3


async def test_bug14_a_transaction_conflict_rejects_a_group(make_device: Any) -> None:
    db = MemoryDynamo()
    a = await make_device(db)
    async with a.replica.transaction() as tx:
        tx.put("docs", {"id": "x", "v": 1})
        tx.put("docs", {"id": "y", "v": 1})
    reasons = [{"Code": "TransactionConflict"}, {"Code": "None"}]
    busy = RemoteError("TransactionCanceledException", "", 400, {"CancellationReasons": reasons})
    a.remote.fail_next(1, busy, operations=["TransactWriteItems"])
    report = await a.sync.push()  # another transaction held x for a moment
    assert (report.pushed, report.rejected) == (2, 0)
    assert await a.replica.outbox() == []


async def test_bug15_a_failing_merge_callback_blocks_every_change(make_device: Any) -> None:
    def picky(
        base: dict[str, Any] | None, local: dict[str, Any] | None, remote: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        raise ValueError("the app's merge has a bug")

    db = MemoryDynamo()
    a, b = await make_device(db), await make_device(db)
    a.sync.pusher.strategy = lambda _collection: picky
    await a.replica["docs"].put({"id": "bad", "x": 0})
    await synced(a, b)
    await b.replica["docs"].patch("bad", {"x": 1})
    await b.sync.push()
    await a.replica["docs"].patch("bad", {"x": 2})
    await a.replica["docs"].put({"id": "good", "x": 1})
    report = await a.sync.push()  # it raised ValueError, and every later push too
    assert (report.pushed, report.conflicts, report.rejected) == (1, 1, 1)
    assert "good" in server_documents(db)
    (entry,) = await a.replica.outbox()
    assert (entry["state"], entry["error"]["code"]) == ("rejected", "MergeFailed")


async def test_bug16_retrying_one_change_of_a_rejected_transaction_splits_it(
    make_device: Any,
) -> None:
    db = MemoryDynamo()
    a = await make_device(db)
    async with a.replica.transaction() as tx:
        tx.put("docs", {"id": "x", "v": 1})
        tx.put("docs", {"id": "y", "v": 1})
    refusal = RemoteError("ValidationException", "refused", 400, {})
    a.remote.fail_next(1, refusal, operations=WRITES)
    assert (await a.sync.push()).rejected == 2
    first, _ = await a.replica.outbox()
    await a.replica.retry(first["mid"])  # the app retries the change it was shown
    assert [e["state"] for e in await a.replica.outbox()] == ["pending", "pending"]
    assert (await a.sync.push()).pushed == 2  # as one transaction again
    assert set(server_documents(db)) == {"x", "y"}
