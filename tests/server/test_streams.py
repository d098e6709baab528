"""The stream consumer against DynamoDB Local: every kind of write, crashes, leases, faults."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pysync.server import (
    SHARD_END,
    Changelog,
    DynamoDBLocal,
    LeaseTable,
    ProxyConfig,
    Signer,
    StreamConsumer,
    create_tables,
    dynamodb_client,
    local_session,
)

from .conftest import (
    FaultyAPI,
    N,
    S,
    StartConsumer,
    aws_error,
    changelog,
    consumers,
    seqs,
    wait_until,
)

LEASE = 0.6  # seconds; short so that take-overs are quick
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def start_consumer(api: FaultyAPI) -> AsyncIterator[StartConsumer]:
    """Start consumers with test timings; all are stopped after the test."""
    # These tests write bare items and count entries: no stamps (see test_stamp.py).
    async with consumers(api, lease_duration=LEASE, stamp=False) as start:
        yield start


@pytest.fixture(scope="module")
def ttl_stack() -> Iterator[Future[tuple[DynamoDBLocal, str]]]:
    """Its own DynamoDB Local with one table holding an already expired item.

    DynamoDB Local's TTL sweep runs about every 10 s, and with many tables it can
    skip a table for minutes, so the TTL test gets a fresh instance. It starts in
    a background thread when the module starts, so that Java's start and the
    sweep overlap with the other tests of this module.
    """
    database = DynamoDBLocal()

    def start() -> tuple[DynamoDBLocal, str]:
        database.start()
        client = dynamodb_client(ProxyConfig(dynamodb_endpoint=database.endpoint), local_session())
        create_tables(client, "ttl")
        key = {"pk": S("u#ttl"), "sk": S("todos#gone")}
        client.put_item(TableName="ttl", Item={**key, "_v": N(4), "_ttl": N(int(time.time()) - 60)})
        client.close()
        return database, "ttl"

    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(start)
    database.stop()


def _names(**names: str) -> dict[str, str]:
    return {f"#{alias}": name for alias, name in names.items()}


@pytest.mark.usefixtures("ttl_stack")
async def test_every_kind_of_write_reaches_the_changelog_in_order(
    ddb: Any, make_tables: Callable[[str], str], start_consumer: StartConsumer
) -> None:
    """Writes straight to DynamoDB (boto3, no proxy): puts, updates, tombstones, deletes,
    batch writes and transactions, interleaved over two scopes."""
    table = make_tables("kinds")
    await start_consumer(table)
    a, b = "u#alice", "s#team"

    def key(scope: str, sk: str) -> dict[str, Any]:
        return {"pk": S(scope), "sk": S(sk)}

    def write() -> None:
        ddb.put_item(TableName=table, Item={**key(a, "todos#1"), "_v": N(1), "title": S("one")})
        ddb.put_item(TableName=table, Item={**key(b, "notes#1"), "_v": N(1)})
        ddb.update_item(
            TableName=table,
            Key=key(a, "todos#1"),
            UpdateExpression="SET title = :t, #v = :v",
            ExpressionAttributeNames=_names(v="_v"),
            ExpressionAttributeValues={":t": S("uno"), ":v": N(2)},
        )
        ddb.put_item(TableName=table, Item={**key(a, "todos#2"), "_v": N(1)})
        ddb.put_item(
            TableName=table, Item={**key(a, "todos#2"), "_v": N(2), "_del": {"BOOL": True}}
        )
        ddb.delete_item(TableName=table, Key=key(a, "todos#1"))
        ddb.update_item(
            TableName=table,
            Key=key(b, "notes#1"),
            UpdateExpression="SET #v = :v",
            ExpressionAttributeNames=_names(v="_v"),
            ExpressionAttributeValues={":v": N(2)},
        )
        ddb.delete_item(TableName=table, Key=key(b, "notes#1"))
        ddb.batch_write_item(
            RequestItems={
                table: [
                    {"PutRequest": {"Item": {**key(a, f"batch#{i}"), "_v": N(1)}}} for i in range(5)
                ]
            }
        )
        ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": {**key(a, "tx#1"), "_v": N(1)}}},
                {"Put": {"TableName": table, "Item": {**key(a, "tx#2"), "_v": N(1)}}},
            ]
        )

    await asyncio.to_thread(write)
    entries_a = await wait_until(
        lambda: len(changelog(ddb, table, a)) >= 12 and changelog(ddb, table, a)
    )
    entries_b = await wait_until(
        lambda: len(changelog(ddb, table, b)) >= 3 and changelog(ddb, table, b)
    )
    await asyncio.sleep(0.1)
    assert seqs(changelog(ddb, table, a)) == list(range(1, 13))  # nothing more, nothing twice
    assert seqs(entries_b) == [1, 2, 3]

    def summary(entry: dict[str, Any]) -> tuple[Any, ...]:
        item = entry.get("item", {}).get("M", {})
        version = entry.get("_v", entry.get("old_v", {})).get("N")
        return (entry["op"]["S"], entry["key"]["S"], version, "_del" in item)

    assert [summary(e) for e in entries_a[:5]] == [
        ("put", "todos#1", "1", False),
        ("put", "todos#1", "2", False),
        ("put", "todos#2", "1", False),
        ("put", "todos#2", "2", True),  # a tombstone is a put with _del
        ("delete", "todos#1", "2", False),  # old_v: the version that was deleted
    ]
    assert {e["key"]["S"] for e in entries_a[5:10]} == {f"batch#{i}" for i in range(5)}
    assert {e["key"]["S"] for e in entries_a[10:]} == {"tx#1", "tx#2"}
    assert [summary(e) for e in entries_b] == [
        ("put", "notes#1", "1", False),
        ("put", "notes#1", "2", False),
        ("delete", "notes#1", "2", False),
    ]
    assert entries_a[1]["item"]["M"] == {**key(a, "todos#1"), "_v": N(2), "title": S("uno")}
    assert "item" not in entries_a[4]
    sseqs = [int(e["sseq"]["S"]) for e in entries_a]
    assert sseqs == sorted(sseqs)
    assert all(abs(int(e["ts"]["N"]) / 1000 - time.time()) < 120 for e in entries_a)


async def test_crash_between_append_and_checkpoint_appends_nothing_twice(
    ddb: Any,
    api: FaultyAPI,
    make_tables: Callable[[str], str],
    start_consumer: StartConsumer,
    dynamodb: DynamoDBLocal,
) -> None:
    table = make_tables("crash")
    frozen = asyncio.Event()

    async def freeze(body: dict[str, Any]) -> None:
        frozen.set()
        await asyncio.Event().wait()  # the process hangs here until it is killed

    def is_checkpoint(body: dict[str, Any]) -> bool:
        return body.get("TableName") == f"{table}_streams" and ":cp" in body.get(
            "ExpressionAttributeValues", {}
        )

    api.inject("UpdateItem", freeze, when=is_checkpoint)
    first = await start_consumer(table, worker_id="first")
    for i in range(5):
        ddb.put_item(TableName=table, Item={"pk": S("u#a"), "sk": S(f"k#{i}"), "_v": N(1)})
    await wait_until(frozen.is_set)
    appended = len(changelog(ddb, table, "u#a"))
    assert appended >= 1  # appended, but the checkpoint never happened
    await first.abort()  # crash: no checkpoint, no lease release
    for i in range(5, 8):
        ddb.put_item(TableName=table, Item={"pk": S("u#a"), "sk": S(f"k#{i}"), "_v": N(1)})

    other = FaultyAPI(Signer("us-east-1", session=local_session()), dynamodb.endpoint)
    try:
        second = await start_consumer(table, other, worker_id="second")
        await wait_until(lambda: len(changelog(ddb, table, "u#a")) >= 8, limit=10)
        await asyncio.sleep(0.1)
        entries = changelog(ddb, table, "u#a")
        assert seqs(entries) == list(range(1, 9))
        assert [e["key"]["S"] for e in entries] == [f"k#{i}" for i in range(8)]
        assert second.changelog.stats.duplicates == appended  # re-read, not re-appended
        assert second.stats.leases_taken == 1  # after the first's lease expired
    finally:
        await second.abort()
        await other.aclose()


async def test_two_consumers_share_by_lease_and_hand_over(
    ddb: Any,
    api: FaultyAPI,
    make_tables: Callable[[str], str],
    start_consumer: StartConsumer,
) -> None:
    table = make_tables("pair")

    def put(start: int, stop: int) -> None:
        for i in range(start, stop):
            ddb.put_item(TableName=table, Item={"pk": S("s#x"), "sk": S(f"k#{i:03d}"), "_v": N(1)})

    def owners() -> dict[str, Any]:
        arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        items = ddb.query(
            TableName=f"{table}_streams",
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": S(arn)},
            ConsistentRead=True,
        )["Items"]
        return {item["sk"]["S"]: item.get("owner", {}).get("S") for item in items}

    one = await start_consumer(table, worker_id="one")
    two = await start_consumer(table, worker_id="two")
    await asyncio.to_thread(put, 0, 20)
    await wait_until(lambda: len(changelog(ddb, table, "s#x")) >= 20)
    await wait_until(lambda: len(one.owned) + len(two.owned) == 1)
    owner, idle = (one, two) if one.owned else (two, one)
    assert idle.stats.records == 0  # one owner per shard: the other read nothing
    assert list(owners().values()) == [owner.worker_id]

    await owner.stop()  # graceful: releases the lease, the other takes it at once
    await wait_until(lambda: idle.owned, limit=LEASE * 3)
    assert list(owners().values()) == [idle.worker_id]
    await asyncio.to_thread(put, 20, 40)
    await wait_until(lambda: len(changelog(ddb, table, "s#x")) >= 40)

    third = await start_consumer(table, worker_id="three")
    await idle.abort()  # a crash: the lease is taken after it expires
    started = time.monotonic()
    await wait_until(lambda: third.owned, limit=LEASE * 6)
    waited = time.monotonic() - started
    assert waited >= LEASE * 0.5  # the last heartbeat came at most LEASE / 3 before the crash
    await asyncio.to_thread(put, 40, 50)
    await wait_until(lambda: len(changelog(ddb, table, "s#x")) >= 50)
    await asyncio.sleep(0.1)
    entries = changelog(ddb, table, "s#x")
    assert seqs(entries) == list(range(1, 51))
    assert [e["key"]["S"] for e in entries] == [f"k#{i:03d}" for i in range(50)]


async def test_stream_and_append_faults_are_survived(
    ddb: Any, api: FaultyAPI, make_tables: Callable[[str], str], start_consumer: StartConsumer
) -> None:
    table = make_tables("faults")
    for i in range(3):
        ddb.put_item(TableName=table, Item={"pk": S("u#a"), "sk": S(f"k#{i}"), "_v": N(1)})
    api.inject("GetRecords", aws_error("LimitExceededException"))
    api.inject("GetRecords", aws_error("InternalServerError", 500))
    api.inject("TransactWriteItems", aws_error("ProvisionedThroughputExceededException"))
    api.inject("TransactWriteItems", aws_error("AccessDeniedException"))  # retried, logged
    consumer = await start_consumer(table)
    await wait_until(lambda: len(changelog(ddb, table, "u#a")) >= 3)
    # After a checkpoint: the iterator expires, then records were trimmed (a long outage).
    api.inject("GetRecords", aws_error("ExpiredIteratorException"))
    api.inject("GetRecords", aws_error("TrimmedDataAccessException"))
    await wait_until(lambda: consumer.stats.trimmed == 1)
    for i in range(3, 6):
        ddb.put_item(TableName=table, Item={"pk": S("u#a"), "sk": S(f"k#{i}"), "_v": N(1)})
    await wait_until(lambda: len(changelog(ddb, table, "u#a")) >= 6)
    await asyncio.sleep(0.1)
    assert seqs(changelog(ddb, table, "u#a")) == list(range(1, 7))
    assert consumer.stats.expired_iterators == 1
    assert consumer.changelog.stats.duplicates == 3  # re-read from TRIM_HORIZON, skipped
    assert consumer.changelog.stats.retries >= 1


async def test_trimmed_before_the_first_read_is_no_alarm(
    ddb: Any,
    api: FaultyAPI,
    make_tables: Callable[[str], str],
    start_consumer: StartConsumer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With no checkpoint nothing read can be missing: "CHANGES LOST" is only for a gap
    after a checkpoint (DynamoDB Local answers a fresh stream's first read so)."""
    table = make_tables("trimstart")
    api.inject("GetRecords", aws_error("TrimmedDataAccessException"))
    consumer = await start_consumer(table)
    await wait_until(lambda: consumer.stats.trimmed == 1)
    ddb.put_item(TableName=table, Item={"pk": S("u#a"), "sk": S("k#0"), "_v": N(1)})
    await wait_until(lambda: len(changelog(ddb, table, "u#a")) == 1)
    assert not [r for r in caplog.records if "CHANGES LOST" in r.getMessage()]


async def test_a_fresh_stack_reports_no_lost_changes(
    ddb: Any,
    api: FaultyAPI,
    make_tables: Callable[[str], str],
    start_consumer: StartConsumer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first writes of a new stack, as `pysync dev` meets them, without injected faults.

    A consumer started on the empty stream of new tables holds a TRIM_HORIZON
    iterator; DynamoDB Local refuses it as trimmed at the first GetRecords after
    the first writes. Nothing of the shard was read, so that is no gap: no
    "CHANGES LOST", and the re-read from TRIM_HORIZON brings every record.
    """
    caplog.set_level(logging.INFO, logger="pysync.streams")
    table = make_tables("fresh")
    consumer = await start_consumer(table)
    await wait_until(lambda: consumer.stats.empty_polls >= 2)  # it waits on the empty shard
    for i in range(3):
        ddb.put_item(TableName=table, Item={"pk": S("u#a"), "sk": S(f"k#{i}"), "_v": N(1)})
    await wait_until(lambda: len(changelog(ddb, table, "u#a")) == 3)
    assert [e["key"]["S"] for e in changelog(ddb, table, "u#a")] == ["k#0", "k#1", "k#2"]
    # DynamoDB Local 3.3.1 does answer TrimmedDataAccessException here: the test covers it.
    assert consumer.stats.trimmed == 1
    assert [
        r.levelname for r in caplog.records if "trimmed before the first read" in r.getMessage()
    ] == ["INFO"]
    assert not [r for r in caplog.records if "CHANGES LOST" in r.getMessage()]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


class FakeStreamAPI(FaultyAPI):
    """Real DynamoDB Local for tables; a scripted stream with a closed parent shard, its
    child and an unrelated shard (DynamoDB Local never splits shards)."""

    ARN = "arn:aws:dynamodb:fake:000000000000:table/fake/stream/1"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

        def record(n: int, sk: str, version: int) -> dict[str, Any]:
            image = {"pk": S("u#a"), "sk": S(sk), "_v": N(version)}
            return {
                "eventName": "MODIFY",
                "dynamodb": {
                    "Keys": {"pk": S("u#a"), "sk": S(sk)},
                    "NewImage": image,
                    "SequenceNumber": f"{n:021d}",
                    "ApproximateCreationDateTime": 1795681200,
                },
            }

        self.shards = [  # listed children first: order must come from the parentage
            {"ShardId": "shardId-2-child", "ParentShardId": "shardId-1-parent"},
            {"ShardId": "shardId-0-other"},
            {"ShardId": "shardId-1-parent", "SequenceNumberRange": {"EndingSequenceNumber": "3"}},
        ]
        self.records = {
            "shardId-1-parent": [record(n, "todos#1", n) for n in (1, 2, 3)],
            "shardId-2-child": [record(n, "todos#1", n) for n in (10, 11)],
            "shardId-0-other": [record(5, "todos#9", 1)],
        }
        self.closed = {"shardId-1-parent"}
        self.reads: list[tuple[str, int, bool]] = []

    async def request(self, url: str, target: str, body: dict[str, Any]) -> dict[str, Any]:
        operation = target.rpartition(".")[2]
        if operation == "DescribeTable" and body["TableName"] == "fake":
            return {
                "Table": {
                    "LatestStreamArn": self.ARN,
                    "StreamSpecification": {"StreamEnabled": True},
                }
            }
        if operation == "DescribeStream":  # two shards per page
            ids = [s["ShardId"] for s in self.shards]
            start = (
                ids.index(body["ExclusiveStartShardId"]) + 1
                if "ExclusiveStartShardId" in body
                else 0
            )
            page = self.shards[start : start + 2]
            description: dict[str, Any] = {"Shards": page}
            if start + 2 < len(self.shards):
                description["LastEvaluatedShardId"] = page[-1]["ShardId"]
            return {"StreamDescription": description}
        if operation == "GetShardIterator":
            shard = body["ShardId"]
            position = 0
            if body["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER":
                numbers = [r["dynamodb"]["SequenceNumber"] for r in self.records[shard]]
                position = numbers.index(body["SequenceNumber"]) + 1
            return {"ShardIterator": f"{shard}|{position}"}
        if operation == "GetRecords":
            shard, _, raw = body["ShardIterator"].partition("|")
            position = int(raw)
            page = self.records[shard][position : position + 2]
            end = position + len(page)
            done = shard in self.closed and end >= len(self.records[shard])
            self.reads.append((shard, position, done))
            reply: dict[str, Any] = {"Records": page}
            if not done:
                reply["NextShardIterator"] = f"{shard}|{end}"
            return reply
        return await super().request(url, target, body)


async def test_parents_before_children_and_closed_shards(
    ddb: Any,
    dynamodb: DynamoDBLocal,
    make_tables: Callable[[str], str],
    start_consumer: StartConsumer,
) -> None:
    table = make_tables("fake")  # its _changes and _streams tables are real
    fake = FakeStreamAPI(Signer("us-east-1", session=local_session()), dynamodb.endpoint)
    try:
        consumer = StreamConsumer(
            fake,
            "fake",
            Changelog(fake, f"{table}_changes"),
            lease_table=f"{table}_streams",
            poll_interval=0.01,
            lease_duration=LEASE,
        )
        await consumer.start()
        await wait_until(lambda: len(changelog(ddb, table, "u#a")) >= 6)
        await asyncio.sleep(0.1)
        entries = changelog(ddb, table, "u#a")
        todos = [int(e["_v"]["N"]) for e in entries if e["key"]["S"] == "todos#1"]
        assert todos == [1, 2, 3, 10, 11]  # the parent's changes first, then the child's
        assert seqs(entries) == list(range(1, 7))
        parent_done = next(i for i, read in enumerate(fake.reads) if read[2])
        first_child = next(i for i, read in enumerate(fake.reads) if read[0] == "shardId-2-child")
        assert first_child > parent_done
        leases = await LeaseTable(fake, f"{table}_streams", "x").list(FakeStreamAPI.ARN)
        assert leases["shardId-1-parent"].checkpoint == SHARD_END
        assert leases["shardId-1-parent"].owner is None
        assert leases["shardId-2-child"].owner == consumer.worker_id
        assert consumer.stats.shards_finished == 1
        await consumer.stop()
        leases = await LeaseTable(fake, f"{table}_streams", "x").list(FakeStreamAPI.ARN)
        assert all(lease.owner is None for lease in leases.values())  # released on stop
    finally:
        await fake.aclose()


async def test_ttl_deletes_reach_the_changelog(
    ttl_stack: Future[tuple[DynamoDBLocal, str]],
) -> None:
    """Last but one in this module: the TTL sweep had the other tests' time to run."""
    database, table = await asyncio.wrap_future(ttl_stack)
    client = FaultyAPI(Signer("us-east-1", session=local_session()), database.endpoint)
    direct = dynamodb_client(ProxyConfig(dynamodb_endpoint=database.endpoint), local_session())
    consumer = StreamConsumer(
        client, table, Changelog(client, f"{table}_changes"), poll_interval=0.01, stamp=False
    )
    await consumer.start()
    try:
        entries = await wait_until(
            lambda: (
                len(changelog(direct, table, "u#ttl")) >= 2 and changelog(direct, table, "u#ttl")
            ),
            limit=25,
        )
    finally:
        await consumer.abort()
        await client.aclose()
        direct.close()
    put, deleted = entries
    assert (put["op"], deleted["op"]) == (S("put"), S("delete"))
    assert deleted["key"] == S("todos#gone")
    assert deleted["old_v"] == N(4)
    assert "item" not in deleted


@pytest.fixture
def consume_process(
    dynamodb: DynamoDBLocal, make_tables: Callable[[str], str]
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    table = make_tables("cli")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "PYSYNC_TABLE": table,
        "PYSYNC_DYNAMODB_ENDPOINT": dynamodb.endpoint,
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pysync.cli",
            "consume",
            "--poll-interval",
            "0.01",
            "--lease-duration",
            "2",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield table, process
    if process.poll() is None:
        process.kill()
        process.wait()
    assert process.stdout is not None
    process.stdout.close()


async def test_pysync_consume_runs_the_consumer_alone(
    ddb: Any, consume_process: tuple[str, subprocess.Popen[str]]
) -> None:
    table, process = consume_process
    for i in range(3):
        item = {"pk": S("u#cli"), "sk": S(f"k#{i}"), "_v": N(1), "_m": S(f"m{i}")}  # no stamps
        ddb.put_item(TableName=table, Item=item)
    await wait_until(lambda: len(changelog(ddb, table, "u#cli")) >= 3, limit=20)
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 10) == 0
    leases = ddb.scan(TableName=f"{table}_streams")["Items"]
    assert len(leases) == 1
    assert "owner" not in leases[0]  # released on SIGTERM
    assert leases[0]["checkpoint"]["S"].isdigit()
