"""What the syncing tab pulls reaches the live queries of the other tabs of its browser."""

from __future__ import annotations

import asyncio
from typing import Any

import pysync
from pysync import AppSchema, CollectionSpec, Sync
from pysync.testing import MemoryBrowser, MemoryDynamo

SCHEMA = AppSchema(1, {"todos": CollectionSpec()})


async def no_sleep(_: float) -> None:
    return None


async def test_a_pulled_change_updates_the_other_tabs_live_queries() -> None:
    db = MemoryDynamo()
    browser = MemoryBrowser()
    leader = await pysync.connect("app", "alice", SCHEMA, platform=browser.tab())
    follower = await pysync.connect("app", "alice", SCHEMA, platform=browser.tab())
    other = await pysync.connect("app", "alice", SCHEMA, platform=MemoryBrowser().tab())
    seen: list[list[Any]] = []
    subscription = follower["todos"].watch(lambda docs: seen.append([d["id"] for d in docs]))
    try:
        await subscription.settled()
        assert leader.status.leader
        assert not follower.status.leader
        await other["todos"].put({"id": "from-elsewhere", "title": "hi"})
        await Sync(other, db.connection(), sleep=no_sleep).sync()

        await Sync(leader, db.connection(), sleep=no_sleep).sync()  # the leader pulls it
        for _ in range(50):  # the BroadcastChannel delivers on a later turn
            if seen[-1] == ["from-elsewhere"]:
                break
            await asyncio.sleep(0)
        await subscription.settled()
        assert seen[-1] == ["from-elsewhere"]
    finally:
        subscription.cancel()
        for replica in (leader, follower, other):
            replica.close()
