"""The client's realtime feed, in CPython: the in-memory browser's event sources, MemoryDynamo.

Device ``a`` writes and pushes (the server appends changelog entries); the
test plays the proxy's ``GET /changes`` stream to device ``b`` by delivering
those entries, and the browser's ``EventSource`` by failing sources.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

import pysync
from pysync import AppSchema, CollectionSpec, Replica, Sync
from pysync._sync._feed import STABLE_MS, RealtimeFeed
from pysync._sync._items import sort_key
from pysync.testing import MemoryBrowser, MemoryConnection, MemoryDynamo, MemoryEventSource

from ._loop import settle, until

USER = "rt"
SCOPE = f"u#{USER}"
URL = "https://app.example/changes"
SCHEMA = AppSchema(1, {"docs": CollectionSpec()})


class Sleeper:
    """The engine's sleep: records each delay; waits for ``gate`` when one is set."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.gate is not None:
            await self.gate.wait()


@dataclass
class Device:
    browser: MemoryBrowser
    replica: Replica
    remote: MemoryConnection
    sync: Sync
    sleeper: Sleeper

    def sources(self) -> list[MemoryEventSource]:
        return self.browser.event_sources

    def source(self) -> MemoryEventSource:
        (source,) = self.browser.open_event_sources(URL)
        return source

    def pulls(self) -> int:
        """Changelog Queries this device sent (each pull sends at least one)."""
        return sum(
            1
            for operation, payload in self.remote.calls
            if operation == "Query" and payload["TableName"] == "pysync_changes"
        )

    async def doc(self, key: str) -> dict[str, Any] | None:
        return await self.replica["docs"].get(key)


def event(db: MemoryDynamo, seq: int) -> str:
    """The ``data`` of the SSE event that carries changelog entry ``seq``."""
    (entry,) = [e for e in db.changes(SCOPE) if int(e["sk"]["N"]) == seq]
    return json.dumps({"scope": SCOPE, "seq": seq, "entry": entry})


@pytest.fixture
async def devices() -> AsyncIterator[Callable[[], Awaitable[Device]]]:
    db = MemoryDynamo()
    made: list[Device] = []

    async def make() -> Device:
        browser = MemoryBrowser()
        replica = await pysync.connect("app", USER, SCHEMA, platform=browser.tab())
        sleeper = Sleeper()
        remote = db.connection()
        made.append(Device(browser, replica, remote, Sync(replica, remote, sleep=sleeper), sleeper))
        return made[-1]

    make.db = db  # type: ignore[attr-defined]
    yield make
    for device in made:
        device.sync.stop()
        device.replica.close()


@pytest.fixture
def db(devices: Any) -> MemoryDynamo:
    found: MemoryDynamo = devices.db
    return found


async def write(a: Device, *keys: str) -> None:
    """``a`` writes one document per key and pushes them (one changelog entry each)."""
    for key in keys:
        await a.replica["docs"].put({"id": key, "n": len(key)})
        await a.sync.push()


async def listening(b: Device, token: Callable[[], str] | str = "token") -> MemoryEventSource:
    b.sync.listen(URL, token)
    await until(lambda: b.browser.open_event_sources(URL))
    return b.source()


async def test_expired_reopens_with_a_fresh_token_after_the_cursor(
    devices: Any, db: MemoryDynamo
) -> None:
    a, b = await devices(), await devices()
    await b.sync.sync()
    tokens = iter(["t1", "t2"])
    first = await listening(b, lambda: next(tokens))
    assert first.params == {"scope": SCOPE, "token": "t1", "after": "0"}
    first.deliver("ready", '{"head": 0, "after": 0}')
    assert b.sync.realtime_connected
    await write(a, "x")
    first.deliver("message", event(db, 1))
    await until(lambda: b.doc("x"))

    first.deliver("expired", "{}")
    assert not first.open  # closed at once: the browser must not reconnect with t1
    assert not b.sync.realtime_connected
    await until(lambda: len(b.sources()) == 2)
    second = b.source()
    assert second.params == {"scope": SCOPE, "token": "t2", "after": "1"}
    assert len(b.sleeper.delays) == 1
    assert 0.5 <= b.sleeper.delays[0] <= 1.0
    # A late event of the replaced source is ignored.
    await write(a, "late")
    first.on_event("message", event(db, 2))
    await settle()
    assert await b.doc("late") is None
    second.deliver("message", event(db, 2))
    await until(lambda: b.doc("late"))


async def test_a_refused_source_reopens_with_a_growing_delay_reset_by_a_lasting_stream(
    devices: Any,
) -> None:
    b = await devices()
    await b.sync.sync()
    await listening(b)
    b.browser.emit(URL, "error", "reconnecting")  # the browser retries by itself
    await settle()
    assert (len(b.sources()), b.sleeper.delays) == (1, [])

    for n in range(1, 9):
        b.browser.fail_event_sources(URL)  # gave up for good: 401, 503 …
        await until(lambda n=n: len(b.sources()) == n + 1)
        delay = min(60.0, 2.0 ** (n - 1))
        assert delay / 2 <= b.sleeper.delays[-1] <= delay
    assert [s.open for s in b.sources()] == [False] * 8 + [True]
    assert {s.params["token"] for s in b.sources()} == {"token"}

    # A ready followed at once by expired (a stale token) is still a failure.
    b.source().deliver("ready", "{}")
    b.source().deliver("expired", "{}")
    await until(lambda: len(b.sources()) == 10)
    assert 30.0 <= b.sleeper.delays[-1] <= 60.0

    # A stream that lasted was a success: the next delay starts small again.
    b.source().deliver("ready", "{}")
    b.browser.now_ms += STABLE_MS
    b.browser.fail_event_sources(URL)
    await until(lambda: len(b.sources()) == 11)
    assert 0.5 <= b.sleeper.delays[-1] <= 1.0


async def test_stop_cancels_a_pending_reopen(devices: Any) -> None:
    b = await devices()
    await b.sync.sync()
    await listening(b)
    b.sleeper.gate = asyncio.Event()
    b.browser.fail_event_sources(URL)
    await until(lambda: b.sleeper.delays)  # the reopen waits out its delay
    b.sync.stop()
    b.sleeper.gate.set()
    await settle()
    assert len(b.sources()) == 1
    assert not b.browser.open_event_sources()

    # stop() also closes an open source.
    b.sleeper.gate = None
    source = await listening(b)
    b.sync.stop()
    assert not source.open


async def test_a_failing_token_function_is_retried_later(devices: Any) -> None:
    b = await devices()
    await b.sync.sync()
    calls: list[int] = []

    def token() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("signed out")
        return "fresh"

    source = await listening(b, token)
    assert source.params["token"] == "fresh"
    assert len(b.sleeper.delays) == 1
    assert "signed out" in (b.replica.status.last_error or "")


async def test_events_together_apply_in_seq_order_and_duplicates_are_ignored(
    devices: Any, db: MemoryDynamo
) -> None:
    a, b = await devices(), await devices()
    await b.sync.sync()
    source = await listening(b)
    b.sync.start(interval=3600)  # no polling: only notify() and local writes wake it
    await until(lambda: b.pulls() == 2 and not b.replica.status.syncing)
    await write(a, "x", "y", "z")
    for seq in (3, 1, 2):  # together, out of order
        source.deliver("message", event(db, seq))
    await until(lambda: b.doc("z"))
    assert [d["id"] for d in await b.replica["docs"].query()] == ["x", "y", "z"]
    assert (await b.doc("z") or {})["n"] == 1

    # Seen again (a resumed stream replays): ignored, no pull.
    for seq in (1, 3, 2, 3):
        source.deliver("message", event(db, seq))
    await settle()
    assert b.pulls() == 2
    assert await b.sync.puller.cursor() == 3


async def test_a_gap_triggers_one_catch_up_pull(devices: Any, db: MemoryDynamo) -> None:
    a, b = await devices(), await devices()
    await b.sync.sync()
    source = await listening(b)
    b.sync.start(interval=3600)
    await until(lambda: b.pulls() == 2 and not b.replica.status.syncing)
    await write(a, "x", "y", "z")
    source.deliver("message", event(db, 3))  # 1 and 2 missed
    await until(lambda: b.doc("x"))
    await until(lambda: not b.replica.status.syncing)
    assert b.pulls() == 3
    assert await b.sync.puller.cursor() == 3
    source.deliver("message", event(db, 3))  # the event again: already pulled
    await settle()
    assert b.pulls() == 3


async def test_an_event_during_a_sync_is_applied_after_it(devices: Any, db: MemoryDynamo) -> None:
    a, b = await devices(), await devices()
    await b.sync.sync()
    source = await listening(b)
    await write(a, "x", "y")
    async with b.sync._lock:  # as a sync in progress holds it
        source.deliver("message", event(db, 1))
        await settle()
        assert await b.doc("x") is None
    await until(lambda: b.doc("x"))  # no background loop: the feed itself applied it
    assert b.pulls() == 1

    async with b.sync._lock:
        source.deliver("message", event(db, 2))
        await b.sync._pull()  # the sync pulled it meanwhile: the event is then a duplicate
    await settle()
    assert (await b.doc("y") or {})["id"] == "y"
    assert b.pulls() == 2


async def test_a_notify_or_a_local_write_during_a_sync_starts_another_round(
    devices: Any,
) -> None:
    b = await devices()
    await listening(b)
    b.sync.start(interval=3600)
    await until(lambda: b.pulls() == 1 and not b.replica.status.syncing)

    async def reconnect_meanwhile(_operation: str, _payload: dict[str, Any]) -> None:
        b.browser.emit(URL, "ready", "{}")  # a reconnected stream asks for a catch-up

    b.remote.before_next(reconnect_meanwhile, operations=["Query"])
    b.sync.notify()
    await until(lambda: b.pulls() == 3 and not b.replica.status.syncing)

    async def write_meanwhile(_operation: str, _payload: dict[str, Any]) -> None:
        await b.replica["docs"].put({"id": "w"})

    b.remote.before_next(write_meanwhile, operations=["Query"])
    b.sync.notify()
    await until(lambda: b.replica.status.pending == 0 and b.pulls() == 5)
    db: MemoryDynamo = b.remote.db
    assert db.item("pysync", SCOPE, sort_key("app", "docs", "w")) is not None


async def test_only_the_leader_tab_applies_the_feed(devices: Any, db: MemoryDynamo) -> None:
    a, b = await devices(), await devices()
    # A second tab of b's browser: same storage, same cursor.
    tab = await pysync.connect("app", USER, SCHEMA, platform=b.browser.tab())
    follower = Sync(tab, db.connection(), sleep=Sleeper())
    try:
        await b.sync.sync()
        await until(lambda: b.replica.status.leader and not tab.status.leader)
        applied: list[int] = []
        apply_entries = follower.puller.apply_entries

        async def counted(items: list[dict[str, Any]]) -> Any:
            applied.append(len(items))
            return await apply_entries(items)

        follower.puller.apply_entries = counted  # type: ignore[method-assign]
        b.sync.listen(URL, "token")
        follower.listen(URL, "token")
        await until(lambda: len(b.browser.open_event_sources(URL)) == 2)
        await write(a, "x")
        for source in reversed(b.browser.open_event_sources(URL)):  # the follower's first
            source.deliver("message", event(db, 1))
        await until(lambda: tab["docs"].get("x"))  # the leader's write, seen by both tabs
        await settle()
        assert applied == []
    finally:
        follower.stop()
        tab.close()


# -- connectivity: the feed closes while offline and reopens at once when back ------------


async def test_going_offline_closes_the_feed_and_coming_back_reopens_it_at_once(
    devices: Any, db: MemoryDynamo
) -> None:
    a, b = await devices(), await devices()
    await write(a, "x", "y")
    await b.sync.sync()
    b.sync.start(interval=3600)
    first = await listening(b)
    assert first.params["after"] == "2"
    first.deliver("ready", '{"head": 2, "after": 2}')
    assert (b.sync.realtime_connected, b.replica.status.realtime) == (True, True)

    b.browser.set_online(False)
    assert not first.open  # closed at once: no stream (nor browser retries) while offline
    assert (b.sync.realtime_connected, b.replica.status.realtime) == (False, False)
    await settle()
    assert b.browser.open_event_sources() == []
    assert len(b.sources()) == 1

    b.browser.set_online(True)
    await until(lambda: b.browser.open_event_sources(URL))
    second = b.source()
    assert b.sleeper.delays == []  # no backoff: going offline was no failure of the feed
    assert second.params == {"scope": SCOPE, "token": "token", "after": "2"}
    second.deliver("ready", '{"head": 2, "after": 2}')
    assert (b.sync.realtime_connected, b.replica.status.realtime) == (True, True)
    # The reopened stream carries on after the cursor.
    await write(a, "z")
    second.deliver("message", event(db, 3))
    await until(lambda: b.doc("z"))
    assert len(b.sources()) == 2


async def test_a_reopen_due_while_offline_opens_nothing_until_back_online(devices: Any) -> None:
    b = await devices()
    await b.sync.sync()
    b.sync.start(interval=3600)
    await listening(b)
    b.sleeper.gate = asyncio.Event()
    b.browser.fail_event_sources(URL)
    await until(lambda: b.sleeper.delays)  # the reopen waits out its delay
    b.browser.set_online(False)
    b.sleeper.gate.set()  # the delay is over while offline
    await settle()
    assert len(b.sources()) == 1
    assert b.browser.open_event_sources() == []

    b.sleeper.gate = None
    b.browser.set_online(True)
    await until(lambda: b.browser.open_event_sources(URL))
    assert len(b.sources()) == 2
    assert len(b.sleeper.delays) == 1  # the reopen when back waited for nothing


async def test_listening_while_offline_opens_the_feed_when_back_online(devices: Any) -> None:
    b = await devices()
    await b.sync.sync()
    b.sync.start(interval=3600)
    b.browser.set_online(False)
    b.sync.listen(URL, "token")
    await settle()
    assert b.sources() == []
    b.browser.set_online(True)
    await until(lambda: b.browser.open_event_sources(URL))
    assert b.source().params["after"] == "0"


async def test_a_feed_without_background_sync_follows_connectivity_too(devices: Any) -> None:
    b = await devices()
    await b.sync.sync()
    source = await listening(b)  # listen() alone, no start()
    source.deliver("ready", "{}")
    b.browser.set_online(False)
    assert not source.open
    assert b.replica.status.realtime is False
    b.browser.set_online(True)
    await until(lambda: b.browser.open_event_sources(URL))
    assert len(b.sources()) == 2
    assert b.sleeper.delays == []


async def test_after_stop_coming_back_online_opens_no_feed(devices: Any) -> None:
    b = await devices()
    await b.sync.sync()
    b.sync.start(interval=3600)
    source = await listening(b)
    b.sync.stop()
    assert not source.open
    b.browser.set_online(False)
    b.browser.set_online(True)
    await settle()
    assert len(b.sources()) == 1
    assert b.browser.open_event_sources() == []


async def test_back_online_during_a_backoff_delay_reopens_at_once(devices: Any) -> None:
    b = await devices()
    await b.sync.sync()
    b.sync.start(interval=3600)
    await listening(b)
    b.sleeper.gate = asyncio.Event()  # the delays never end by themselves
    for n in range(1, 4):
        b.browser.fail_event_sources(URL)  # the proxy refused it (503 …)
        await until(lambda n=n: len(b.sleeper.delays) == n)
        b.sleeper.gate.set()
        b.sleeper.gate = asyncio.Event()
        await until(lambda n=n: len(b.sources()) == n + 1)
    b.browser.fail_event_sources(URL)  # a fourth failure: the next reopen waits 4 to 8 s
    await until(lambda: len(b.sleeper.delays) == 4)
    assert b.sleeper.delays[-1] >= 4.0
    b.browser.set_online(False)
    b.browser.set_online(True)
    await until(lambda: b.browser.open_event_sources(URL))


async def test_on_connected_hears_each_change_of_connected() -> None:
    browser = MemoryBrowser()
    sleeper = Sleeper()
    heard: list[bool] = []
    events: list[tuple[str, str]] = []

    async def after() -> int | None:
        return 5

    feed = RealtimeFeed(
        browser.tab(),
        URL,
        {"scope": SCOPE},
        lambda: "token",
        after,
        lambda kind, data: events.append((kind, data)),
        lambda error: None,
        sleeper,
        heard.append,
    )
    feed.start()
    await until(lambda: browser.open_event_sources(URL))
    (source,) = browser.open_event_sources(URL)
    assert source.params == {"scope": SCOPE, "token": "token", "after": "5"}
    assert (heard, feed.connected) == ([], False)
    source.deliver("ready", "{}")
    source.deliver("ready", "{}")  # no change: not heard again
    assert (heard, feed.connected) == ([True], True)
    source.deliver("error", "reconnecting")
    assert (heard, feed.connected) == ([True, False], False)
    source.deliver("ready", "{}")
    assert heard == [True, False, True]

    browser.set_online(False)
    feed.set_online(False)
    feed.set_online(False)
    assert (heard, feed.connected, source.open) == ([True, False, True, False], False, False)
    browser.set_online(True)
    feed.set_online(True)
    await until(lambda: browser.open_event_sources(URL))
    assert sleeper.delays == []
    (again,) = browser.open_event_sources(URL)
    again.deliver("ready", "{}")
    again.deliver("expired", "{}")
    assert heard == [True, False, True, False, True, False]
    await until(lambda: browser.open_event_sources(URL))
    browser.open_event_sources(URL)[0].deliver("ready", "{}")
    feed.stop()
    assert heard == [True, False, True, False, True, False, True, False]
    assert [kind for kind, _ in events] == ["ready"] * 5
