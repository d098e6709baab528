"""The changelog appender against DynamoDB Local: format, gap-free seqs, retries, exactly-once."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from pysync.server import Change, Changelog, Head, parse_record

from .conftest import FaultyAPI, N, S, aws_error, changelog, seqs


def change(
    scope: str,
    key: str,
    sseq: int,
    *,
    shard: str = "shard-a",
    op: str = "put",
    version: int | None = 1,
    extra: dict[str, Any] | None = None,
) -> Change:
    """A change as the consumer builds it from a stream record."""
    item = None
    if op == "put":
        item = {"pk": S(scope), "sk": S(key), "_v": N(version or 1), **(extra or {})}
    return Change(
        scope=scope,
        key=key,
        op="put" if op == "put" else "delete",
        item=item,
        version=str(version) if op == "put" and version is not None else None,
        old_version=str(version) if op == "delete" and version is not None else None,
        ts=1_795_000_000_000,
        sseq=f"{sseq:021d}",
        shard=shard,
    )


@pytest.fixture
def table(make_tables: Callable[[str], str]) -> str:
    return make_tables("cl")


async def test_entries_have_the_documented_format(api: FaultyAPI, ddb: Any, table: str) -> None:
    log = Changelog(api, f"{table}_changes", clock=lambda: 1_000_000.0)
    tombstone = change("u#a", "todos#2", 11, version=3, extra={"_del": {"BOOL": True}})
    written = await log.append_all(
        [
            change("u#a", "todos#1", 10, extra={"title": S("x"), "_hlc": S("h"), "_c": S("c")}),
            tombstone,
            change("u#a", "todos#1", 12, op="delete", version=1),
        ]
    )
    entries = changelog(ddb, table, "u#a")
    assert written["u#a"] == entries  # what listeners get is exactly what is stored
    assert seqs(entries) == [1, 2, 3]
    first, second, third = entries
    assert first == {
        "pk": S("u#a"),
        "sk": N(1),
        "key": S("todos#1"),
        "op": S("put"),
        "item": {
            "M": {
                "pk": S("u#a"),
                "sk": S("todos#1"),
                "_v": N(1),
                "title": S("x"),
                "_hlc": S("h"),
                "_c": S("c"),
            }
        },
        "_v": N(1),
        "ts": N(1_795_000_000_000),
        "sseq": S("000000000000000000010"),
        "_ttl": N(1_000_000 + 7 * 24 * 3600),
    }
    assert second["op"] == S("put")  # a tombstone is a put of the item with _del
    assert second["item"]["M"]["_del"] == {"BOOL": True}
    assert second["_v"] == N(3)
    assert third["op"] == S("delete")
    assert "item" not in third
    assert "_v" not in third
    assert third["old_v"] == N(1)
    head = ddb.get_item(
        TableName=f"{table}_changes", Key={"pk": S("u#a"), "sk": N(0)}, ConsistentRead=True
    )["Item"]
    assert head == {
        "pk": S("u#a"),
        "sk": N(0),
        "head": N(3),
        "sseq": S("000000000000000000012"),
        "shards": {"M": {"shard-a": S("000000000000000000012")}},
    }
    assert log.stats.transactions == 1


async def test_retention_can_be_disabled(api: FaultyAPI, ddb: Any, table: str) -> None:
    await Changelog(api, f"{table}_changes", retention=0).append("u#a", [change("u#a", "k#1", 1)])
    await Changelog(api, f"{table}_changes", retention=60).append("u#a", [change("u#a", "k#2", 2)])
    entries = changelog(ddb, table, "u#a")
    assert "_ttl" not in entries[0]
    assert abs(int(entries[1]["_ttl"]["N"]) - (time.time() + 60)) < 5


@pytest.mark.parametrize("appenders", [2, 8])
async def test_concurrent_appenders_produce_exactly_1_to_n(
    api: FaultyAPI, ddb: Any, table: str, appenders: int
) -> None:
    """Appenders as separate processes (own caches), one scope, batches of 1 to 10."""
    per_appender = 40

    async def run(number: int) -> Changelog:
        log = Changelog(api, f"{table}_changes")
        pending = [
            change("s#hot", f"w{number}#{i}", i + 1, shard=f"shard-{number}")
            for i in range(per_appender)
        ]
        rng = random.Random(number)
        while pending:
            size = rng.randint(1, 10)
            await log.append("s#hot", pending[:size])
            pending = pending[size:]
        return log

    logs = await asyncio.gather(*(run(n) for n in range(appenders)))
    entries = changelog(ddb, table, "s#hot")
    total = appenders * per_appender
    assert seqs(entries) == list(range(1, total + 1))
    keys = [entry["key"]["S"] for entry in entries]
    assert len(set(keys)) == total
    for number in range(appenders):  # each appender's own order is kept
        mine = [int(k.split("#")[1]) for k in keys if k.startswith(f"w{number}#")]
        assert mine == list(range(per_appender))
    conflicts = sum(log.stats.conflicts for log in logs)
    worst = max(log.stats.max_attempts for log in logs)
    print(f"\n{appenders} appenders: {total} entries, {conflicts} conflicts, max attempts {worst}")
    assert worst < 40  # jittered backoff keeps the worst case bounded


async def test_injected_conflicts_and_throttling_are_retried(
    api: FaultyAPI, ddb: Any, table: str
) -> None:
    log = Changelog(api, f"{table}_changes")
    api.inject("TransactWriteItems", aws_error("TransactionConflictException"))
    api.inject("TransactWriteItems", aws_error("ThrottlingException"))
    api.inject("TransactWriteItems", aws_error("InternalServerError", 500))
    api.inject(
        "TransactWriteItems",
        aws_error(
            "TransactionCanceledException",
            CancellationReasons=[{"Code": "None"}, {"Code": "TransactionConflict"}],
        ),
    )
    api.inject(
        "TransactWriteItems",
        aws_error(
            "TransactionCanceledException",
            CancellationReasons=[{"Code": "ThrottlingError"}, {"Code": "None"}],
        ),
    )
    await log.append("u#a", [change("u#a", "k#1", 1), change("u#a", "k#2", 2)])
    assert seqs(changelog(ddb, table, "u#a")) == [1, 2]
    assert log.stats.retries == 5
    assert api.count("TransactWriteItems") == 6


async def test_errors_that_cannot_succeed_are_raised(api: FaultyAPI, table: str) -> None:
    log = Changelog(api, f"{table}_changes")
    api.inject("TransactWriteItems", aws_error("AccessDeniedException"))
    with pytest.raises(Exception, match="AccessDeniedException"):
        await log.append("u#a", [change("u#a", "k#1", 1)])
    api.inject(
        "TransactWriteItems",
        aws_error(
            "TransactionCanceledException",
            CancellationReasons=[{"Code": "None"}, {"Code": "ValidationError"}],
        ),
    )
    with pytest.raises(Exception, match="TransactionCanceledException"):
        await log.append("u#a", [change("u#a", "k#1", 1)])


async def test_replayed_records_are_appended_once(api: FaultyAPI, ddb: Any, table: str) -> None:
    """A consumer that crashed after appending and before checkpointing reads records again."""
    before = Changelog(api, f"{table}_changes")
    await before.append("u#a", [change("u#a", f"k#{i}", i) for i in range(1, 6)])
    after = Changelog(api, f"{table}_changes")  # a new process: no cached head
    await after.append("u#a", [change("u#a", f"k#{i}", i) for i in range(3, 9)])
    await after.append("u#a", [change("u#a", f"k#{i}", i) for i in range(1, 9)])
    entries = changelog(ddb, table, "u#a")
    assert seqs(entries) == list(range(1, 9))
    assert [e["key"]["S"] for e in entries] == [f"k#{i}" for i in range(1, 9)]
    assert after.stats.duplicates == 3 + 8


async def test_sequence_numbers_are_compared_per_shard_and_as_integers(
    api: FaultyAPI, ddb: Any, table: str
) -> None:
    """Another shard's lower sequence number is not a duplicate; "9" < "10" numerically."""
    log = Changelog(api, f"{table}_changes")
    await log.append("u#a", [change("u#a", "k#1", 500, shard="shard-x")])
    await log.append("u#a", [change("u#a", "k#2", 100, shard="shard-y")])
    short = change("u#a", "k#3", 0, shard="shard-z")
    await log.append("u#a", [replace(short, sseq="9")])
    await log.append("u#a", [replace(short, key="k#4", sseq="10")])
    await Changelog(api, f"{table}_changes").append("u#a", [replace(short, key="k#4", sseq="10")])
    assert [e["key"]["S"] for e in changelog(ddb, table, "u#a")] == ["k#1", "k#2", "k#3", "k#4"]


async def test_finished_shards_leave_the_head(api: FaultyAPI, ddb: Any, table: str) -> None:
    log = Changelog(api, f"{table}_changes")
    await log.append("u#a", [change("u#a", "k#1", 1, shard="parent")])
    log.finished_shards.add("parent")
    await log.append("u#a", [change("u#a", "k#2", 2, shard="child")])
    head = ddb.get_item(
        TableName=f"{table}_changes", Key={"pk": S("u#a"), "sk": N(0)}, ConsistentRead=True
    )["Item"]
    assert head["shards"] == {"M": {"child": S("000000000000000000002")}}
    assert Head.from_item(head).seq == 2


async def test_large_batches_are_split_into_transactions(
    api: FaultyAPI, ddb: Any, table: str
) -> None:
    log = Changelog(api, f"{table}_changes")
    await log.append("u#a", [change("u#a", f"k#{i}", i) for i in range(1, 251)])
    assert log.stats.transactions == 3  # 99 + 99 + 52
    big = {"blob": S("x" * 300_000)}
    await log.append("u#b", [change("u#b", f"k#{i}", i, extra=big) for i in range(1, 16)])
    assert log.stats.transactions > 3 + 1  # 4 MB per transaction
    assert seqs(changelog(ddb, table, "u#a")) == list(range(1, 251))
    assert seqs(changelog(ddb, table, "u#b")) == list(range(1, 16))


async def test_an_item_too_large_for_an_entry_is_marked_trunc(
    api: FaultyAPI, ddb: Any, table: str
) -> None:
    log = Changelog(api, f"{table}_changes")
    huge = {"blob": S("x" * (400 * 1024 - 200))}
    await log.append("u#a", [change("u#a", "k#1", 1, extra=huge), change("u#a", "k#2", 2)])
    first, second = changelog(ddb, table, "u#a")
    assert first["trunc"] == {"BOOL": True}
    assert "item" not in first
    assert (first["op"], first["key"], first["_v"]) == (S("put"), S("k#1"), N(1))
    assert "item" in second
    assert "trunc" not in second
    assert log.stats.truncated == 1


async def test_scopes_are_appended_concurrently_and_listeners_see_each_batch(
    api: FaultyAPI, ddb: Any, table: str
) -> None:
    seen: list[tuple[str, list[int]]] = []
    log = Changelog(api, f"{table}_changes", listener=lambda s, e: seen.append((s, seqs(e))))
    changes = [change(f"u#{i % 5}", f"k#{i}", i + 1) for i in range(50)]
    await log.append_all(changes)
    for scope in (f"u#{n}" for n in range(5)):
        entries = changelog(ddb, table, scope)
        assert seqs(entries) == list(range(1, 11))
        expected = [c.key for c in changes if c.scope == scope]
        assert [e["key"]["S"] for e in entries] == expected
    assert sorted(seen) == [(f"u#{n}", list(range(1, 11))) for n in range(5)]


def test_parse_record_kinds() -> None:
    keys = {"pk": S("u#a"), "sk": S("todos#1")}
    new = {**keys, "_v": N(2), "title": S("t")}
    old = {**keys, "_v": N(1)}

    def record(name: str, **images: Any) -> dict[str, Any]:
        return {
            "eventName": name,
            "dynamodb": {
                "ApproximateCreationDateTime": 1795681200.5,
                "Keys": keys,
                "SequenceNumber": "000000000000000000042",
                **images,
            },
        }

    insert = parse_record(record("INSERT", NewImage=new), "sh")
    assert insert == Change(
        "u#a", "todos#1", "put", new, "2", None, 1795681200500, "0" * 19 + "42", "sh"
    )
    modify = parse_record(record("MODIFY", NewImage=new, OldImage=old), "sh")
    assert modify is not None
    assert (modify.op, modify.version) == ("put", "2")
    for name in ("REMOVE", "UNKNOWN_TO_SDK_VERSION", "ANYTHING"):  # TTL deletes have no name
        removed = parse_record(record(name, OldImage=old), "sh")
        assert removed is not None
        assert (removed.op, removed.item, removed.old_version) == ("delete", None, "1")
    bad = record("INSERT", NewImage=new)
    bad["dynamodb"]["Keys"] = {"pk": N(1), "sk": S("x")}
    assert parse_record(bad, "sh") is None
