"""What every tab's status shows about the sync, the recorded conflicts, and rejected changes.

The leader tab's :class:`~pysync.Sync` sets the sync fields of its status
(``last_error``, ``syncing``, ``progress``, ``last_synced``, ``realtime``) and
broadcasts them; the other tabs of the browser show them too, while ``leader``,
``online`` and the counts stay each tab's own. Conflicts met by a push are
recorded until the app dismisses them (``Replica.conflicts()`` /
``dismiss_conflict()``); a refused change carries the time it was refused, and
retrying or discarding it lets the background sync push what waited behind it.

In memory: tabs of a :class:`MemoryBrowser`, devices on one :class:`MemoryDynamo`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

import pysync
from pysync import AppSchema, CollectionSpec, RemoteError, Replica, Status, Sync
from pysync._marshal import from_item
from pysync._sync._items import sort_key
from pysync.testing import MemoryBrowser, MemoryConnection, MemoryDynamo, MemoryTab

from ._loop import settle, until

APP = "app"
USER = "st"
SCOPE = f"u#{USER}"
SCHEMA = AppSchema(1, {"docs": CollectionSpec()})
START_MS = 1_800_000_000_000
WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems")
SYNC_FIELDS = ("last_error", "syncing", "progress", "last_synced", "realtime")
URL = "https://app.example/changes"


async def no_sleep(_: float) -> None:
    return None


def sync_fields(status: Status) -> dict[str, Any]:
    return {name: getattr(status, name) for name in SYNC_FIELDS}


@dataclass
class Tab:
    browser: MemoryBrowser
    replica: Replica
    remote: MemoryConnection
    sync: Sync

    @property
    def status(self) -> Status:
        return self.replica.status

    @property
    def docs(self) -> pysync.Collection:
        return self.replica["docs"]

    @property
    def platform(self) -> MemoryTab:
        assert isinstance(self.replica.platform, MemoryTab)
        return self.replica.platform


MakeTab = Callable[..., Awaitable[Tab]]


@pytest.fixture
def db() -> MemoryDynamo:
    return MemoryDynamo()


@pytest.fixture
async def tab(db: MemoryDynamo) -> AsyncIterator[MakeTab]:
    """``await tab(browser)``: a new tab of ``browser`` (a new browser: another device)
    with its replica and a Sync (not started) on the shared MemoryDynamo."""
    made: list[Tab] = []

    async def make(browser: MemoryBrowser | None = None, **options: Any) -> Tab:
        browser = browser or MemoryBrowser(now_ms=START_MS)
        replica = await pysync.connect(APP, USER, SCHEMA, platform=browser.tab())
        remote = db.connection()
        made.append(Tab(browser, replica, remote, Sync(replica, remote, sleep=no_sleep, **options)))
        return made[-1]

    yield make
    for one in made:
        one.sync.stop()
        one.replica.close()


def server_doc(db: MemoryDynamo, key: str) -> dict[str, Any] | None:
    item = db.item("pysync", SCOPE, sort_key(APP, "docs", key))
    if item is None or "_del" in item:
        return None
    return {k: v for k, v in from_item(item).items() if k not in ("pk", "sk") and k[0] != "_"}


def refusing(key: str) -> Callable[[str, dict[str, Any]], bool]:
    """Matches the writes of document ``key`` (alone or in a pack)."""
    needle = json.dumps(sort_key(APP, "docs", key))
    return lambda _operation, payload: needle in json.dumps(payload)


REFUSAL = RemoteError("ValidationException", "Item size has exceeded the maximum", 400, {})


# -- 1. the sync fields, shown by every tab ------------------------------------------------


async def test_a_follower_tab_shows_the_leaders_sync(tab: MakeTab, db: MemoryDynamo) -> None:
    leader = await tab()
    follower = await tab(leader.browser)
    assert (leader.status.leader, follower.status.leader) == (True, False)
    assert follower.status.last_synced is None
    await leader.docs.put({"id": "a", "n": 1})
    await leader.docs.put({"id": "b", "n": 2})
    await until(lambda: follower.status.pending == 2)

    seen_mid_sync: list[dict[str, Any]] = []

    async def while_pushing(_operation: str, _payload: dict[str, Any]) -> None:
        # The follower shows the leader's sync as it happens.
        await until(lambda: follower.status.syncing and follower.status.progress is not None)
        seen_mid_sync.append(sync_fields(follower.status))

    leader.remote.before_next(while_pushing, operations=WRITES)
    leader.browser.now_ms = START_MS + 5_000
    report = await leader.sync.sync()
    assert report.push.pushed == 2
    assert seen_mid_sync == [
        {
            "last_error": None,
            "syncing": True,
            "progress": "pushing 1 of 2",
            "last_synced": None,
            "realtime": False,
        }
    ]
    assert leader.status.last_synced == START_MS + 5_000
    await until(lambda: follower.status.last_synced == START_MS + 5_000)
    assert sync_fields(follower.status) == sync_fields(leader.status)
    assert (follower.status.syncing, follower.status.progress) == (False, None)
    # The follower re-counted the outbox the leader's sync emptied.
    await until(lambda: follower.status.pending == 0)
    assert (follower.status.leader, follower.status.online) == (False, True)
    assert server_doc(db, "a") == {"id": "a", "n": 1}


async def test_a_failed_sync_shows_its_error_in_every_tab_until_a_sync_succeeds(
    tab: MakeTab,
) -> None:
    leader = await tab()
    follower = await tab(leader.browser)
    await leader.docs.put({"id": "a"})
    leader.browser.now_ms = START_MS + 1_000
    await leader.sync.sync()
    await until(lambda: follower.status.last_synced == START_MS + 1_000)

    await leader.docs.put({"id": "b"})
    leader.remote.fail_next(1, RemoteError("NotAuthorized", "token expired", 401, {}))
    leader.browser.now_ms = START_MS + 2_000
    with pytest.raises(RemoteError):
        await leader.sync.sync()
    assert leader.status.last_error == "NotAuthorized: token expired"
    assert leader.status.last_synced == START_MS + 1_000  # the last sync that succeeded
    await until(lambda: follower.status.last_error is not None and not follower.status.syncing)
    assert follower.status.last_error == "NotAuthorized: token expired"
    assert sync_fields(follower.status) == sync_fields(leader.status)
    assert follower.status.pending == leader.status.pending == 1

    leader.browser.now_ms = START_MS + 3_000
    await leader.sync.sync()
    assert (leader.status.last_error, leader.status.last_synced) == (None, START_MS + 3_000)
    await until(lambda: follower.status.last_synced == START_MS + 3_000)
    assert follower.status.last_error is None
    await until(lambda: follower.status.pending == 0)


async def test_a_follower_takes_only_the_sync_fields_from_the_leader(tab: MakeTab) -> None:
    leader = await tab()
    follower = await tab(leader.browser)
    await follower.docs.put({"id": "mine"})
    await until(lambda: leader.status.pending == 1)
    # A status message that also names the tab-own fields (as a buggy or newer leader
    # might send): the follower takes the sync fields only.
    sender = leader.platform.channel(leader.replica.name + ":changes", lambda _: None)
    sender.post(
        {
            "type": "status",
            "last_error": "boom",
            "syncing": True,
            "progress": "pulling page 3",
            "last_synced": 42,
            "realtime": True,
            "leader": True,
            "online": False,
            "pending": 99,
            "rejected": 7,
            "conflicts": 5,
        }
    )
    await until(lambda: follower.status.last_error == "boom")
    await settle()
    assert sync_fields(follower.status) == {
        "last_error": "boom",
        "syncing": True,
        "progress": "pulling page 3",
        "last_synced": 42,
        "realtime": True,
    }
    assert (follower.status.leader, follower.status.online) == (False, True)
    assert (follower.status.pending, follower.status.rejected, follower.status.conflicts) == (
        1,
        0,
        0,
    )
    # The leader is the source of its own sync fields: it ignores such messages.
    assert leader.status.last_error is None
    assert leader.status.last_synced is None
    sender.close()


async def test_after_the_leader_closes_the_new_leader_reports_the_sync(tab: MakeTab) -> None:
    first = await tab()
    second = await tab(first.browser)
    third = await tab(first.browser)
    await first.docs.put({"id": "a"})
    first.browser.now_ms = START_MS + 1_000
    await first.sync.sync()
    await until(lambda: third.status.last_synced == START_MS + 1_000)

    first.sync.stop()
    first.replica.close()
    await until(lambda: second.status.leader)
    assert not third.status.leader
    # The new leader carries on from what it showed.
    assert second.status.last_synced == START_MS + 1_000
    await second.docs.put({"id": "b"})
    await until(lambda: third.status.pending == 1)
    second.browser.now_ms = START_MS + 2_000
    await second.sync.sync()
    await until(lambda: third.status.last_synced == START_MS + 2_000)
    assert sync_fields(third.status) == sync_fields(second.status)
    await until(lambda: third.status.pending == 0)

    # A stale broadcast of the old leader (still in flight when it closed) would not
    # move the new leader's status: only followers take status messages.
    stale = second.platform.channel(second.replica.name + ":changes", lambda _: None)
    stale.post({"type": "status", "last_synced": 1, "last_error": "old leader"})
    await settle()
    assert second.status.last_synced == START_MS + 2_000
    assert second.status.last_error is None
    stale.close()


async def test_a_background_sync_of_the_new_leader_reaches_the_followers(tab: MakeTab) -> None:
    first = await tab()
    second = await tab(first.browser)
    third = await tab(first.browser)
    for one in (first, second, third):
        one.sync.start(interval=3600)
    await until(lambda: third.status.last_synced is not None and not third.status.syncing)
    first.platform.crash()  # the leader's tab goes away without closing anything
    first.sync.stop()
    await until(lambda: second.status.leader)
    second.browser.now_ms = START_MS + 60_000
    await third.docs.put({"id": "from-a-follower"})  # wakes the new leader's loop
    await until(lambda: third.status.last_synced == START_MS + 60_000)
    await until(lambda: third.status.pending == 0 and not third.status.syncing)
    assert sync_fields(third.status) == sync_fields(second.status)


async def test_a_leader_lost_mid_sync_does_not_leave_the_tabs_showing_a_sync(
    tab: MakeTab,
) -> None:
    first = await tab()
    second = await tab(first.browser)
    third = await tab(first.browser)
    for one in (first, second, third):
        one.sync.start(interval=3600)
    await until(lambda: third.status.last_synced is not None and not third.status.syncing)
    hang = asyncio.Event()  # never set: the leader's push never returns

    async def hung(_operation: str, _payload: dict[str, Any]) -> None:
        await hang.wait()

    first.remote.before_next(hung, operations=WRITES)
    await third.docs.put({"id": "a"})
    await until(lambda: third.status.syncing and third.status.progress == "pushing 1 of 1")
    first.platform.crash()  # the leader's tab is killed in the middle of its push
    first.sync.stop()
    await until(lambda: second.status.leader)
    first.browser.now_ms += 1_000
    now = first.browser.now_ms
    await until(lambda: third.status.last_synced == now)  # the new leader synced
    assert (third.status.syncing, third.status.progress) == (False, None)
    assert (second.status.syncing, second.status.progress) == (False, None)
    await until(lambda: third.status.pending == 0)


async def test_the_realtime_field_follows_the_leaders_feed_in_every_tab(tab: MakeTab) -> None:
    leader = await tab()
    follower = await tab(leader.browser)
    await leader.sync.sync()
    leader.sync.listen(URL, "token")
    await until(lambda: leader.browser.open_event_sources(URL))
    (source,) = leader.browser.open_event_sources(URL)
    assert leader.status.realtime is False
    source.deliver("ready", '{"head": 0, "after": 0}')
    assert leader.status.realtime is True
    await until(lambda: follower.status.realtime)
    source.deliver("error", "reconnecting")  # the browser reconnects by itself
    assert leader.status.realtime is False
    await until(lambda: not follower.status.realtime)


async def test_a_new_leader_shows_its_own_feeds_realtime_state(tab: MakeTab) -> None:
    first = await tab()
    second = await tab(first.browser)
    third = await tab(first.browser)
    for one in (first, second, third):
        one.sync.start(interval=3600)
    await until(lambda: third.status.last_synced is not None and not third.status.syncing)
    # Only the second tab follows the feed, and its stream is up.
    second.sync.listen(URL, "token")
    await until(lambda: first.browser.open_event_sources(URL))
    (source,) = first.browser.open_event_sources(URL)
    source.deliver("ready", "{}")
    assert second.sync.realtime_connected
    # The leader's sync broadcasts its fields: realtime=False (it has no feed).
    first.browser.now_ms += 1_000
    now = first.browser.now_ms
    await first.docs.put({"id": "a"})
    await until(lambda: second.status.last_synced == now and not second.status.syncing)
    assert second.status.realtime is False  # mirrors the leader
    first.sync.stop()
    first.replica.close()
    await until(lambda: second.status.leader)
    await settle()
    assert second.sync.realtime_connected
    assert second.status.realtime is True
    await until(lambda: third.status.realtime)


# -- 2. recorded conflicts ----------------------------------------------------------------


async def conflicting_edit(a: Tab, b: Tab, key: str, ahead_ms: int) -> tuple[str, str]:
    """``a`` and ``b`` (two devices) edit field ``title`` of synced document ``key``;
    ``a`` syncs first, then ``b`` (its edit ``ahead_ms`` later) meets it. Returns the
    clocks of ``b``'s edit and of ``a``'s on the server."""
    await a.docs.patch(key, {"title": f"a's {key}"})
    b.browser.now_ms = a.browser.now_ms + ahead_ms
    await b.docs.patch(key, {"title": f"b's {key}"})
    (b_edit,) = [e for e in await b.replica.outbox() if e["id"] == key]
    await a.sync.sync()
    item = a.remote.db.item("pysync", SCOPE, sort_key(APP, "docs", key))
    assert item is not None
    await b.sync.sync()
    return b_edit["hlc"], item["_hlc"]["S"]


async def test_a_conflict_is_recorded_with_both_sides_until_dismissed(tab: MakeTab) -> None:
    a = await tab()
    b = await tab()
    b_tab = await tab(b.browser)  # a second tab of device b
    for key in ("x", "y"):
        await a.docs.put({"id": key, "title": "v0", "n": 1})
    await a.sync.sync()
    await b.sync.sync()
    assert b.status.conflicts == 0

    local_hlc, remote_hlc = await conflicting_edit(a, b, "x", ahead_ms=1_000)  # b's wins
    (conflict,) = await b.replica.conflicts()
    assert conflict["collection"] == "docs"
    assert conflict["id"] == "x"
    assert conflict["base"] == {"id": "x", "title": "v0", "n": 1}
    assert conflict["local"] == {"id": "x", "title": "b's x", "n": 1}
    assert conflict["remote"] == {"id": "x", "title": "a's x", "n": 1}
    assert conflict["result"] == {"id": "x", "title": "b's x", "n": 1}
    assert conflict["strategy"] == "lww"
    assert (conflict["hlc"], conflict["remote_hlc"]) == (local_hlc, remote_hlc)
    assert local_hlc > remote_hlc  # why lww kept b's edit
    assert isinstance(conflict["cid"], str)
    assert conflict["cid"]
    assert b.status.conflicts == 1
    # Synced, with a conflict to review: the document says so until it is dismissed.
    assert await b.docs.sync_state("x") == "conflict"
    assert await b.docs.sync_state("y") == "synced"
    await until(lambda: b_tab.status.conflicts == 1)
    # The result is what both devices end with.
    await a.sync.sync()
    assert await a.docs.get("x") == await b.docs.get("x") == conflict["result"]
    assert await a.replica.conflicts() == []  # a met no conflict: its edit landed first

    a.browser.now_ms += 10_000
    await conflicting_edit(a, b, "y", ahead_ms=1_000)  # a second one, newer
    newest, oldest = await b.replica.conflicts()
    assert (newest["id"], oldest["cid"]) == ("y", conflict["cid"])
    assert newest["hlc"] > oldest["hlc"]
    assert b.status.conflicts == 2
    await until(lambda: b_tab.status.conflicts == 2)

    await b.replica.dismiss_conflict(conflict["cid"])
    assert [c["cid"] for c in await b.replica.conflicts()] == [newest["cid"]]
    assert b.status.conflicts == 1
    await until(lambda: b_tab.status.conflicts == 1)
    assert [c["cid"] for c in await b_tab.replica.conflicts()] == [newest["cid"]]

    await b_tab.replica.dismiss_conflict()  # all of them, from the other tab
    assert await b_tab.replica.conflicts() == []
    assert await b.docs.sync_state("x") == "synced"
    assert b_tab.status.conflicts == 0
    await until(lambda: b.status.conflicts == 0)
    # Dismissing forgets the record only: the documents stay as the sync left them.
    assert (await b.docs.get("x") or {})["title"] == "b's x"


async def test_the_strategy_that_decided_is_recorded(tab: MakeTab) -> None:
    a = await tab()
    b = await tab(strategy="server")
    await a.docs.put({"id": "x", "title": "v0"})
    await a.sync.sync()
    await b.sync.sync()
    await conflicting_edit(a, b, "x", ahead_ms=1_000)  # later, but the server's side wins
    (conflict,) = await b.replica.conflicts()
    assert conflict["strategy"] == "server"
    assert conflict["result"] == conflict["remote"] == {"id": "x", "title": "a's x"}
    assert await b.docs.get("x") == {"id": "x", "title": "a's x"}
    assert b.status.conflicts == 1


async def test_a_conflict_with_a_remote_delete_records_remote_none(tab: MakeTab) -> None:
    a = await tab()
    b = await tab()
    await a.docs.put({"id": "x", "title": "v0"})
    await a.sync.sync()
    await b.sync.sync()
    await a.docs.delete("x")
    b.browser.now_ms = a.browser.now_ms + 1_000
    await b.docs.patch("x", {"title": "b's"})
    await a.sync.sync()
    await b.sync.sync()
    (conflict,) = await b.replica.conflicts()
    assert conflict["remote"] is None
    assert conflict["local"] == {"id": "x", "title": "b's"}
    assert conflict["base"] == {"id": "x", "title": "v0"}
    assert conflict["result"] == await b.docs.get("x")


async def test_dismissing_an_unknown_conflict_changes_nothing(tab: MakeTab) -> None:
    a = await tab()
    b = await tab()
    await a.docs.put({"id": "x", "title": "v0"})
    await a.sync.sync()
    await b.sync.sync()
    await conflicting_edit(a, b, "x", ahead_ms=1_000)
    before = await b.replica.conflicts()
    await b.replica.dismiss_conflict("no-such-cid")
    assert await b.replica.conflicts() == before
    assert b.status.conflicts == 1


# -- 3. rejected changes: when, and what a retry or discard wakes ---------------------------


async def test_a_refusal_records_when_and_a_refusal_after_a_retry_a_new_time(
    tab: MakeTab,
) -> None:
    a = await tab()
    await a.docs.put({"id": "big"})
    a.remote.fail_next(1000, REFUSAL, operations=WRITES, when=refusing("big"))
    a.browser.now_ms = START_MS + 7_000
    report = await a.sync.push()
    assert report.rejected == 1
    (entry,) = await a.replica.outbox()
    assert entry["state"] == "rejected"
    assert entry["error"] == {
        "code": "ValidationException",
        "message": "Item size has exceeded the maximum",
        "at": START_MS + 7_000,
    }
    assert a.status.rejected == 1

    await a.replica.retry(entry["mid"])
    a.browser.now_ms = START_MS + 65_000
    assert (await a.sync.push()).rejected == 1
    (again,) = await a.replica.outbox()
    assert again["state"] == "rejected"
    assert again["error"]["at"] == START_MS + 65_000


async def started(one: Tab) -> None:
    """Start the background sync with a long interval: only wake-ups make it sync."""
    one.sync.start(interval=3600)
    await until(lambda: one.status.last_synced is not None and not one.status.syncing)


async def synced_after(leader: Tab, write: Callable[[], Awaitable[object]]) -> None:
    """``write()``, then wait for the background round it woke to finish (the clock
    moves first, so the round's ``last_synced`` tells it from the earlier ones)."""
    leader.browser.now_ms += 1_000
    await write()
    now = leader.browser.now_ms
    await until(lambda: leader.status.last_synced == now and not leader.status.syncing)
    await settle()
    assert not leader.status.syncing  # no other round was due


async def test_discarding_a_rejected_change_wakes_the_background_sync(
    tab: MakeTab, db: MemoryDynamo
) -> None:
    a = await tab()
    await a.docs.put({"id": "doc", "title": "v0", "done": False})
    await started(a)
    assert server_doc(db, "doc") is not None

    a.remote.fail_next(1000, REFUSAL, operations=WRITES, when=refusing("doc"))
    await synced_after(a, lambda: a.docs.patch("doc", {"title": "refused"}))
    assert (a.status.pending, a.status.rejected) == (0, 1)
    await synced_after(a, lambda: a.docs.patch("doc", {"done": True}))
    # The later change waits behind the refused one for the app to decide.
    assert (a.status.pending, a.status.rejected) == (1, 1)
    assert server_doc(db, "doc") == {"id": "doc", "title": "v0", "done": False}
    a.remote.clear_faults()

    refused = next(e for e in await a.replica.outbox() if e["state"] == "rejected")
    # No interval passes (it is an hour): the discard itself wakes the sync.
    await synced_after(a, lambda: a.replica.discard(refused["mid"]))
    assert (a.status.pending, a.status.rejected) == (0, 0)
    assert server_doc(db, "doc") == {"id": "doc", "title": "v0", "done": True}
    assert await a.docs.get("doc") == {"id": "doc", "title": "v0", "done": True}


async def test_retrying_a_rejected_change_wakes_the_background_sync(
    tab: MakeTab, db: MemoryDynamo
) -> None:
    a = await tab()
    await a.docs.put({"id": "doc", "title": "v0", "done": False})
    await started(a)

    a.remote.fail_next(1, REFUSAL, operations=WRITES, when=refusing("doc"))  # once
    await synced_after(a, lambda: a.docs.patch("doc", {"title": "retried"}))
    await synced_after(a, lambda: a.docs.patch("doc", {"done": True}))
    assert (a.status.pending, a.status.rejected) == (1, 1)

    refused = next(e for e in await a.replica.outbox() if e["state"] == "rejected")
    await synced_after(a, lambda: a.replica.retry(refused["mid"]))
    assert (a.status.pending, a.status.rejected) == (0, 0)
    assert server_doc(db, "doc") == {"id": "doc", "title": "retried", "done": True}


async def test_a_change_refused_again_in_the_background_gets_a_new_time(tab: MakeTab) -> None:
    a = await tab()
    await started(a)
    a.remote.fail_next(1000, REFUSAL, operations=WRITES, when=refusing("big"))
    await synced_after(a, lambda: a.docs.put({"id": "big"}))
    (first,) = await a.replica.outbox()
    assert first["error"]["at"] == a.browser.now_ms
    a.browser.now_ms += 30_000
    await synced_after(a, lambda: a.replica.retry(first["mid"]))
    (again,) = await a.replica.outbox()
    assert again["state"] == "rejected"
    assert again["error"]["at"] == a.browser.now_ms > first["error"]["at"]
    assert a.status.rejected == 1


async def test_a_discard_in_another_tab_wakes_the_leaders_background_sync(
    tab: MakeTab, db: MemoryDynamo
) -> None:
    leader = await tab()
    follower = await tab(leader.browser)
    await leader.docs.put({"id": "doc", "title": "v0"})
    await started(leader)
    leader.remote.fail_next(1000, REFUSAL, operations=WRITES, when=refusing("doc"))
    await synced_after(leader, lambda: follower.docs.patch("doc", {"title": "refused"}))
    await synced_after(leader, lambda: follower.docs.patch("doc", {"n": 1}))
    assert (leader.status.pending, leader.status.rejected) == (1, 1)
    await until(lambda: (follower.status.pending, follower.status.rejected) == (1, 1))
    leader.remote.clear_faults()

    refused = next(e for e in await follower.replica.outbox() if e["state"] == "rejected")
    await synced_after(leader, lambda: follower.replica.discard(refused["mid"]))
    assert server_doc(db, "doc") == {"id": "doc", "title": "v0", "n": 1}
    await until(lambda: (follower.status.pending, follower.status.rejected) == (0, 0))
    assert follower.status.last_synced == leader.status.last_synced
