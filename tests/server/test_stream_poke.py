"""StreamConsumer.poke: a write that just landed is read at once, not after the poll pause."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pysync.server import StreamConsumer

from .conftest import FaultyAPI, N, S, StartConsumer, changelog, consumers, wait_until

LONG_PAUSE = 3.0  # a poll interval no test waits out


@pytest.fixture
async def start_consumer(api: FaultyAPI) -> AsyncIterator[StartConsumer]:
    async with consumers(api, lease_duration=5.0, stamp=False) as start:
        yield start


async def _idle(consumer: StreamConsumer, interval: float = LONG_PAUSE) -> None:
    """Wait until the consumer reads its shard and has just begun a pause after an empty poll."""
    await wait_until(lambda: consumer.owned and consumer.stats.empty_polls > 0)
    before = consumer.stats.empty_polls
    await wait_until(lambda: consumer.stats.empty_polls > before, limit=2 * interval + 5)


def _put(ddb: Any, table: str, sk: str) -> None:
    ddb.put_item(
        TableName=table, Item={"pk": S("u#poke"), "sk": S(sk), "_v": N(1), "_m": S(f"m-{sk}")}
    )


async def test_a_poke_ends_the_pause_and_the_write_is_appended_at_once(
    ddb: Any, make_tables: Callable[[str], str], start_consumer: StartConsumer
) -> None:
    table = make_tables("poke")
    consumer = await start_consumer(table, poll_interval=LONG_PAUSE)
    await _idle(consumer)

    # Without a poke the write waits for the end of the pause.
    _put(ddb, table, "todos#1")
    await asyncio.sleep(0.5)
    assert changelog(ddb, table, "u#poke") == []

    _put(ddb, table, "todos#2")
    poked = time.monotonic()
    consumer.poke()
    await wait_until(lambda: len(changelog(ddb, table, "u#poke")) == 2, limit=1.0)
    assert time.monotonic() - poked < 1.0
    assert [e["key"]["S"] for e in changelog(ddb, table, "u#poke")] == ["todos#1", "todos#2"]
    assert consumer.stats.poked_polls == 1


async def test_a_poke_during_a_get_records_cuts_the_pause_after_it(
    api: FaultyAPI, make_tables: Callable[[str], str], start_consumer: StartConsumer
) -> None:
    """A write that lands while a GetRecords is on its way may be missed by that read: the
    poke made meanwhile is kept, so the pause after that read ends at once."""
    interval = 1.0
    table = make_tables("pokeinflight")
    consumer = await start_consumer(table, poll_interval=interval)
    await _idle(consumer, interval)
    stalled = asyncio.Event()
    release = asyncio.Event()

    async def stall(body: dict[str, Any]) -> None:
        stalled.set()
        await release.wait()

    api.inject("GetRecords", stall)  # the next read, after the current pause
    await asyncio.wait_for(stalled.wait(), 2 * interval + 1)
    consumer.poke()
    release.set()
    released = time.monotonic()
    reads = api.count("GetRecords")
    await wait_until(lambda: api.count("GetRecords") > reads, limit=interval / 2)
    assert time.monotonic() - released < interval / 2
    assert consumer.stats.poked_polls == 1


async def test_pokes_without_writes_at_most_double_the_idle_polls(
    api: FaultyAPI, make_tables: Callable[[str], str], start_consumer: StartConsumer
) -> None:
    """A poke storm on an idle stream: each poke-woken read finds nothing and is followed
    by a full pause, so GetRecords stays within two per poll interval."""
    interval = 0.2
    table = make_tables("pokestorm")
    consumer = await start_consumer(table, poll_interval=interval)
    await wait_until(lambda: consumer.owned and consumer.stats.polls > 0)
    before = api.count("GetRecords")
    started = time.monotonic()
    while time.monotonic() - started < 2.0:
        consumer.poke()
        await asyncio.sleep(0.005)
    reads = api.count("GetRecords") - before
    elapsed = time.monotonic() - started
    # Without pokes: about elapsed / interval reads; with a poke every 5 ms and no bound,
    # hundreds.
    assert reads <= 2 * elapsed / interval + 2, reads
    assert consumer.stats.poked_polls > 0


async def test_a_poke_without_a_reader_does_nothing(api: FaultyAPI) -> None:
    """Before the consumer reads a shard (or after it stopped), a poke is a no-op."""
    consumer = StreamConsumer(api, "nowhere", changelog=None)  # type: ignore[arg-type]
    consumer.poke()
    assert consumer.stats.poked_polls == 0
