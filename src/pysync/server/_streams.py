"""The DynamoDB Streams consumer: reads every shard of the data table's stream into the changelog.

Coordination works like the Kinesis Client Library, with leases in DynamoDB:
table ``<data table>_streams`` (``pk`` S = stream ARN, ``sk`` S = shard id), one
item per shard with ``owner`` (worker id), ``counter`` (N, bumped by every
heartbeat), ``checkpoint`` (S: last processed sequence number, or
``SHARD_END``) and ``parent`` (S). A worker

- discovers shards (DescribeStream, paginated) and creates missing leases;
- takes a lease that is free, or whose ``counter`` it has seen unchanged for
  ``lease_duration`` on its own monotonic clock (no clock-skew assumptions),
  with a conditional update on that counter, so only one worker wins;
- starts a shard only once its parent's lease says ``SHARD_END`` (parents
  before children, so a key's changes stay in order across splits);
- heartbeats its leases every ``lease_duration / 3``, stops reading a shard at
  once when a heartbeat or a checkpoint finds the lease gone;
- stamps, after appending a batch, the items it shows changed by a writer that
  bypasses pysync without a new ``_m`` (see :func:`~pysync.server._changelog.stamp_of`):
  a conditional ``UpdateItem`` setting ``_m = "stamp:<eventID>"`` and ``ADD _v 1``;
- checkpoints after each appended (and stamped) batch, conditionally on still
  owning the lease.

A crash between an append and its checkpoint re-reads records that are already
in the changelog; the head item's per-shard sequence numbers make the second
append a no-op (see :mod:`pysync.server._changelog`), and the stamps' conditions
make their second try fail harmlessly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any

from ._changelog import Change, Changelog, Stamp, parse_record, stamp_of
from ._dynamo import DynamoDBAPI, DynamoDBError, backoff

logger = logging.getLogger("pysync.streams")

#: Checkpoint of a closed shard whose records are all in the changelog.
SHARD_END = "SHARD_END"
#: Finished leases expire after this many seconds (more than the stream's 24 h retention).
FINISHED_LEASE_TTL = 3 * 24 * 3600


def default_worker_id() -> str:
    """``<host>:<pid>:<random>``: unique per process start."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class Lease:
    """One shard's lease item."""

    shard: str
    parent: str | None = None
    owner: str | None = None
    counter: int = 0
    checkpoint: str | None = None

    @property
    def finished(self) -> bool:
        """True once the shard is closed and all its records are in the changelog."""
        return self.checkpoint == SHARD_END

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Lease:
        """Parse a lease item."""

        def text(name: str) -> str | None:
            value = item.get(name, {}).get("S")
            return value if isinstance(value, str) else None

        return cls(
            shard=item["sk"]["S"],
            parent=text("parent"),
            owner=text("owner"),
            counter=int(item.get("counter", {}).get("N", "0")),
            checkpoint=text("checkpoint"),
        )


class LeaseTable:
    """Leases and checkpoints of one stream in ``<data table>_streams``."""

    def __init__(self, api: DynamoDBAPI, table: str, worker_id: str) -> None:
        self.api = api
        self.table = table
        self.worker_id = worker_id

    def _key(self, stream: str, shard: str) -> dict[str, Any]:
        return {"pk": {"S": stream}, "sk": {"S": shard}}

    async def list(self, stream: str) -> dict[str, Lease]:
        """All leases of ``stream`` (consistent read)."""
        leases: dict[str, Lease] = {}
        request: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": {"S": stream}},
            "ConsistentRead": True,
        }
        while True:
            page = await self.api.call("Query", request)
            for item in page.get("Items", []):
                lease = Lease.from_item(item)
                leases[lease.shard] = lease
            if "LastEvaluatedKey" not in page:
                return leases
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def create(self, stream: str, shard: str, parent: str | None) -> None:
        """Create a shard's lease unless it exists."""
        item: dict[str, Any] = {**self._key(stream, shard), "counter": {"N": "0"}}
        if parent:
            item["parent"] = {"S": parent}
        await self._conditional(
            "PutItem",
            {
                "TableName": self.table,
                "Item": item,
                "ConditionExpression": "attribute_not_exists(sk)",
            },
        )

    async def take(self, stream: str, lease: Lease) -> Lease | None:
        """Become the owner if the lease is unchanged since it was read; the new lease or None."""
        values: dict[str, Any] = {
            ":me": {"S": self.worker_id},
            ":one": {"N": "1"},
            ":c": {"N": str(lease.counter)},
            ":now": {"N": str(int(time.time() * 1000))},
        }
        if lease.owner is None:
            owner_condition = "attribute_not_exists(#o)"
        else:
            owner_condition = "#o = :old"
            values[":old"] = {"S": lease.owner}
        reply = await self._conditional(
            "UpdateItem",
            {
                "TableName": self.table,
                "Key": self._key(stream, lease.shard),
                "UpdateExpression": "SET #o = :me, #c = #c + :one, #u = :now",
                "ConditionExpression": f"attribute_exists(sk) AND #c = :c AND {owner_condition}",
                "ExpressionAttributeNames": {"#o": "owner", "#c": "counter", "#u": "updated"},
                "ExpressionAttributeValues": values,
                "ReturnValues": "ALL_NEW",
            },
        )
        return None if reply is None else Lease.from_item(reply["Attributes"])

    async def renew(self, stream: str, shard: str) -> bool:
        """Heartbeat: bump the counter if this worker still owns the lease."""
        return await self._owned_update(
            stream, shard, "SET #c = #c + :one, #u = :now", {"#c": "counter"}, {":one": {"N": "1"}}
        )

    async def checkpoint(self, stream: str, shard: str, position: str) -> bool:
        """Record the last processed sequence number (or ``SHARD_END``) if still the owner.

        A finished lease is released at the same time and expires after
        :data:`FINISHED_LEASE_TTL`.
        """
        names = {"#cp": "checkpoint"}
        values: dict[str, Any] = {":cp": {"S": position}}
        expression = "SET #cp = :cp, #u = :now"
        if position == SHARD_END:
            expression += ", #ttl = :ttl REMOVE #o"
            names["#ttl"] = "_ttl"
            values[":ttl"] = {"N": str(int(time.time()) + FINISHED_LEASE_TTL)}
        return await self._owned_update(stream, shard, expression, names, values)

    async def release(self, stream: str, shard: str) -> bool:
        """Give the lease up (another worker may take it at once)."""
        return await self._owned_update(stream, shard, "SET #u = :now REMOVE #o", {}, {})

    async def _owned_update(
        self,
        stream: str,
        shard: str,
        expression: str,
        names: dict[str, str],
        values: dict[str, Any],
    ) -> bool:
        reply = await self._conditional(
            "UpdateItem",
            {
                "TableName": self.table,
                "Key": self._key(stream, shard),
                "UpdateExpression": expression,
                "ConditionExpression": "#o = :me",
                "ExpressionAttributeNames": {**names, "#o": "owner", "#u": "updated"},
                "ExpressionAttributeValues": {
                    **values,
                    ":me": {"S": self.worker_id},
                    ":now": {"N": str(int(time.time() * 1000))},
                },
            },
        )
        return reply is not None

    async def _conditional(self, operation: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Call with retries on throttling; ``None`` when the condition fails."""
        attempt = 0
        while True:
            try:
                return await self.api.call(operation, body)
            except DynamoDBError as error:
                if error.error_type == "ConditionalCheckFailedException":
                    return None
                if not error.retryable or attempt >= 8:
                    raise
                attempt += 1
                await backoff(attempt, base=0.02, cap=1.0)


@dataclass
class ConsumerStats:
    """Counters of one :class:`StreamConsumer`."""

    records: int = 0
    batches: int = 0
    polls: int = 0
    empty_polls: int = 0
    checkpoints: int = 0
    leases_taken: int = 0
    leases_lost: int = 0
    shards_finished: int = 0
    expired_iterators: int = 0
    #: Pauses after an empty poll that a :meth:`StreamConsumer.poke` cut short.
    poked_polls: int = 0
    trimmed: int = 0
    errors: int = 0
    #: Stamps that landed on items changed by a writer that bypassed pysync.
    stamps: int = 0
    #: Stamps whose condition failed: the item changed again (or went) before it.
    stamps_moot: int = 0
    #: Stamps given up for a non-retryable error (logged; the item stays unstamped).
    stamps_failed: int = 0


class StreamConsumer:
    """Consume the data table's stream into the :class:`Changelog`; many replicas may run it.

    ``poll_interval`` is the pause after an empty GetRecords (AWS allows about
    5 GetRecords per second per shard; DynamoDB Local is happy with 10 ms).
    :meth:`poke` (a write just landed) ends that pause early, at most once per
    pause: see its docstring.
    ``lease_duration`` is how long a silent owner keeps its lease;
    ``discover_interval`` how often shards are listed (also after a shard ends).
    ``max_leases`` caps the shards one worker reads (default: an even share
    of the shards among the workers it sees heartbeating).
    ``stamp`` turns the stamping of bypass writes on (the default) or off.
    """

    def __init__(
        self,
        api: DynamoDBAPI,
        table: str,
        changelog: Changelog,
        *,
        lease_table: str | None = None,
        worker_id: str | None = None,
        poll_interval: float = 0.25,
        lease_duration: float = 10.0,
        discover_interval: float = 60.0,
        max_records: int = 1000,
        max_leases: int | None = None,
        partition_key: str = "pk",
        sort_key: str = "sk",
        stamp: bool = True,
        stamp_concurrency: int = 16,
    ) -> None:
        self.api = api
        self.table = table
        self.changelog = changelog
        self.worker_id = worker_id or default_worker_id()
        self.leases = LeaseTable(api, lease_table or f"{table}_streams", self.worker_id)
        self.poll_interval = poll_interval
        self.lease_duration = lease_duration
        self.discover_interval = discover_interval
        self.max_records = max_records
        self.max_leases = max_leases
        self.partition_key = partition_key
        self.sort_key = sort_key
        self.stamp = stamp
        self.stats = ConsumerStats()
        self._stamp_limit = asyncio.Semaphore(stamp_concurrency)
        self.stream_arn: str | None = None
        self._shards: set[str] = set()
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._seen: dict[str, tuple[str | None, int, float]] = {}
        self._retry_at: dict[str, tuple[int, float]] = {}
        self._discovered_at = -math.inf
        self._wake = asyncio.Event()
        #: Per shard read, set by :meth:`poke`: a reader pausing after an empty poll
        #: reads again now.
        self._pokes: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def poke(self) -> None:
        """A write to the table just landed: poll the stream now instead of after the pause.

        Call it (from the consumer's event loop) after a write's reply, as a proxy
        that also runs the consumer can for the writes it forwards: the record is
        then in the stream (DynamoDB Local: within about a millisecond), and the
        next GetRecords would otherwise wait for the rest of ``poll_interval``
        (half of it on average). Pokes during a GetRecords count for the pause
        after it; many pokes in one pause make one early read. A poke-woken read
        that finds nothing (the record was not visible yet) is followed by a full
        pause that pokes do not cut short, so pokes add at most one GetRecords per
        ``poll_interval`` to an idle shard's polls.
        """
        for event in self._pokes.values():
            event.set()

    @property
    def owned(self) -> frozenset[str]:
        """Shards this worker is reading now."""
        return frozenset(self._readers)

    async def start(self) -> None:
        """Run :meth:`run` in a background task."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"pysync-consumer-{self.table}")

    async def run(self) -> None:
        """Discover shards, balance leases and read shards until :meth:`stop`."""
        failures = 0
        while not self._stopping:
            try:
                if time.monotonic() - self._discovered_at >= self.discover_interval:
                    await self._discover()
                await self._balance()
                failures = 0
            except DynamoDBError as error:
                failures += 1
                self.stats.errors += 1
                log = logger.warning if error.retryable else logger.error
                hint = ""
                if error.error_type == "ResourceNotFoundException":
                    hint = f" (do {self.table}, its stream and {self.leases.table} exist? "
                    hint += "create_tables creates them)"
                log("stream consumer for %s: %s%s", self.table, error, hint)
                await backoff(failures, base=0.1, cap=10.0)
                continue
            except Exception:
                failures += 1
                self.stats.errors += 1
                logger.exception("stream consumer for %s failed", self.table)
                await backoff(failures, base=0.1, cap=10.0)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.lease_duration / 3)

    async def stop(self) -> None:
        """Stop reading and release this worker's leases, so another replica takes over at once."""
        self._stopping = True
        owned = set(self._readers)
        await self._cancel_all()
        if self.stream_arn is None:
            return
        try:  # also a lease taken just before the stop, without a reader yet
            leases = await self.leases.list(self.stream_arn)
            owned |= {s for s, lease in leases.items() if lease.owner == self.worker_id}
        except DynamoDBError as error:
            logger.warning("could not list leases to release them: %s", error)
        for shard in sorted(owned):
            try:
                await self.leases.release(self.stream_arn, shard)
            except DynamoDBError as error:
                logger.warning("could not release lease of %s: %s", shard, error)

    async def abort(self) -> None:
        """Stop at once without releasing leases or checkpointing, like a crashed process."""
        self._stopping = True
        await self._cancel_all()

    async def _cancel_all(self) -> None:
        tasks = [t for t in (self._task, *self._readers.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._readers.clear()
        self._task = None

    # --- shards and leases -------------------------------------------------------

    async def _discover(self) -> None:
        table = await self.api.call("DescribeTable", {"TableName": self.table})
        arn = table["Table"].get("LatestStreamArn")
        if not arn or not table["Table"].get("StreamSpecification", {}).get("StreamEnabled"):
            raise RuntimeError(f"table {self.table} has no stream: run create_tables")
        if self.stream_arn is not None and arn != self.stream_arn:
            logger.error(
                "the stream of %s changed (%s -> %s): records still unread in the old stream "
                "are not in the changelog",
                self.table,
                self.stream_arn,
                arn,
            )
            for task in self._readers.values():
                task.cancel()
            self._readers.clear()
        self.stream_arn = arn
        shards: list[dict[str, Any]] = []
        request: dict[str, Any] = {"StreamArn": arn}
        while True:
            description = (await self.api.streams("DescribeStream", request))["StreamDescription"]
            shards.extend(description.get("Shards", []))
            last = description.get("LastEvaluatedShardId")
            if not last:
                break
            request["ExclusiveStartShardId"] = last
        self._shards = {shard["ShardId"] for shard in shards}
        known = await self.leases.list(arn)
        for shard in shards:
            if shard["ShardId"] not in known:
                await self.leases.create(arn, shard["ShardId"], shard.get("ParentShardId"))
        self._discovered_at = time.monotonic()

    def _expired(self, lease: Lease, now: float) -> bool:
        """True if another owner's lease has not been heartbeaten for ``lease_duration``."""
        owner, counter, since = self._seen.get(lease.shard, (None, -1, now))
        if (owner, counter) != (lease.owner, lease.counter):
            self._seen[lease.shard] = (lease.owner, lease.counter, now)
            return False
        return now - since >= self.lease_duration

    def _parent_done(self, lease: Lease, leases: dict[str, Lease]) -> bool:
        parent = lease.parent
        if parent is None or parent not in self._shards:
            return True  # no parent, or it left the stream (trimmed after 24 h)
        return parent in leases and leases[parent].finished

    async def _balance(self) -> None:
        arn = self.stream_arn
        assert arn is not None
        leases = await self.leases.list(arn)
        now = time.monotonic()
        self.changelog.finished_shards.update(s for s, lease in leases.items() if lease.finished)
        # Keep or drop what this worker reads.
        for shard, task in list(self._readers.items()):
            lease = leases.get(shard)
            if task.done() or (lease is not None and lease.finished):
                self._readers.pop(shard)  # its reader is ending (or has ended) by itself
                continue
            if (
                lease is None
                or lease.owner != self.worker_id
                or not await self.leases.renew(arn, shard)
            ):
                if task.done():
                    self._readers.pop(shard, None)
                    continue
                logger.warning("lost the lease of %s to %s", shard, lease and lease.owner)
                self.stats.leases_lost += 1
                task.cancel()
                self._readers.pop(shard)
        # Fair share among the workers seen heartbeating.
        open_leases = [lease for lease in leases.values() if not lease.finished]
        workers = {self.worker_id}
        for lease in open_leases:
            if lease.owner and lease.owner != self.worker_id and not self._expired(lease, now):
                workers.add(lease.owner)
        share = math.ceil(len(open_leases) / len(workers)) if open_leases else 0
        room = min(share, self.max_leases or share) - len(self._readers)
        for lease in sorted(open_leases, key=lambda item: item.shard):
            if room <= 0:
                break
            if lease.shard in self._readers or not self._parent_done(lease, leases):
                continue
            retry = self._retry_at.get(lease.shard)
            if retry and retry[1] > now:
                continue
            free = lease.owner is None or lease.owner == self.worker_id
            if not free and not self._expired(lease, now):
                continue
            taken = await self.leases.take(arn, lease)
            if taken is None:
                continue
            if lease.owner and lease.owner != self.worker_id:
                logger.warning(
                    "took over the expired lease of %s from %s", lease.shard, lease.owner
                )
            self.stats.leases_taken += 1
            self._readers[lease.shard] = asyncio.create_task(
                self._read_guarded(arn, taken), name=f"pysync-shard-{lease.shard}"
            )
            room -= 1

    # --- reading a shard -----------------------------------------------------------

    async def _read_guarded(self, arn: str, lease: Lease) -> None:
        try:
            await self._read(arn, lease)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats.errors += 1
            failures = self._retry_at.get(lease.shard, (0, 0.0))[0] + 1
            delay = min(30.0, 0.1 * 2**failures)
            self._retry_at[lease.shard] = (failures, time.monotonic() + delay)
            logger.exception("reading %s failed; retrying in %.1f s", lease.shard, delay)
        finally:
            if self._readers.get(lease.shard) is asyncio.current_task():
                self._readers.pop(lease.shard)
                self._pokes.pop(lease.shard, None)
            self._wake.set()

    async def _iterator(self, arn: str, shard: str, position: str | None) -> str:
        request: dict[str, Any] = {"StreamArn": arn, "ShardId": shard}
        if position is None:
            request["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            request.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=position)
        attempt = 0
        while True:
            try:
                reply = await self.api.streams("GetShardIterator", request)
                return str(reply["ShardIterator"])
            except DynamoDBError as error:
                if error.error_type == "TrimmedDataAccessException" and position is not None:
                    self._trimmed(shard, position)
                    request = {
                        "StreamArn": arn,
                        "ShardId": shard,
                        "ShardIteratorType": "TRIM_HORIZON",
                    }
                    position = None
                    continue
                if not error.retryable:
                    raise
                attempt += 1
                await backoff(attempt, base=0.05, cap=5.0)

    def _trimmed(self, shard: str, position: str | None) -> None:
        self.stats.trimmed += 1
        if position is None:
            # No checkpoint: nothing was read from this shard yet, so nothing read is
            # missing (DynamoDB Local answers so on a fresh stream's first records).
            logger.info("%s: trimmed before the first read; reading from the oldest record", shard)
            return
        logger.error(
            "CHANGES LOST: records of %s after %s were trimmed from the stream before the "
            "consumer read them (down longer than the stream's 24 h retention?). The changelog "
            "stays gap-free, so clients cannot detect this: they keep data that misses those "
            "changes until a base sync. Continuing from the oldest record still available.",
            shard,
            position,
        )

    async def _read(self, arn: str, lease: Lease) -> None:
        shard = lease.shard
        position = lease.checkpoint
        iterator = await self._iterator(arn, shard, position)
        failures = 0
        poke = self._pokes[shard] = asyncio.Event()
        poked = False  # this read was started early by a poke
        while True:
            # A poke from now on is about a write this read may not see: it cuts the
            # next pause short.
            poke.clear()
            try:
                reply = await self.api.streams(
                    "GetRecords", {"ShardIterator": iterator, "Limit": self.max_records}
                )
            except DynamoDBError as error:
                if error.error_type == "ExpiredIteratorException":
                    self.stats.expired_iterators += 1
                    iterator = await self._iterator(arn, shard, position)
                    continue
                if error.error_type == "TrimmedDataAccessException":
                    self._trimmed(shard, position)
                    position = None
                    iterator = await self._iterator(arn, shard, None)
                    continue
                if error.error_type == "ResourceNotFoundException":
                    logger.error("shard %s is gone from the stream; marking it finished", shard)
                    await self._finish(arn, shard)
                    return
                if not error.retryable:
                    raise
                failures += 1
                await backoff(failures, base=0.05, cap=5.0)
                continue
            failures = 0
            self.stats.polls += 1
            records = reply.get("Records") or []
            if records:
                # Appended and stamped before the checkpoint: a restart re-reads the
                # batch, and neither the append nor a stamp happens twice.
                await self._process(shard, records)
                position = str(records[-1]["dynamodb"]["SequenceNumber"])
                if not await self.leases.checkpoint(arn, shard, position):
                    logger.warning("lease of %s lost at checkpoint; stopping", shard)
                    self.stats.leases_lost += 1
                    return
                self.stats.checkpoints += 1
                self._retry_at.pop(shard, None)
            next_iterator = reply.get("NextShardIterator")
            if not next_iterator:
                await self._finish(arn, shard)
                return
            iterator = next_iterator
            if records:
                poked = False
            else:
                self.stats.empty_polls += 1
                # After an empty read that a poke started, a full pause: pokes never
                # make an idle shard's polls more than twice as frequent.
                poked = await self._pause(None if poked else poke)

    async def _pause(self, poke: asyncio.Event | None) -> bool:
        """Sleep ``poll_interval``, or until ``poke`` is set; True if it was."""
        if poke is None:
            await asyncio.sleep(self.poll_interval)
            return False
        try:
            await asyncio.wait_for(poke.wait(), self.poll_interval)
        except TimeoutError:
            return False
        self.stats.poked_polls += 1
        return True

    async def _finish(self, arn: str, shard: str) -> None:
        if await self.leases.checkpoint(arn, shard, SHARD_END):
            self.stats.shards_finished += 1
            self.changelog.finished_shards.add(shard)
            logger.info("shard %s finished", shard)
        self._discovered_at = -math.inf  # look for its children now

    async def _process(self, shard: str, records: list[dict[str, Any]]) -> None:
        changes: list[Change] = []
        for record in records:
            change = parse_record(
                record, shard, partition_key=self.partition_key, sort_key=self.sort_key
            )
            if change is not None:
                changes.append(change)
        attempt = 0
        while True:
            try:
                await self.changelog.append_all(changes)
                break
            except DynamoDBError as error:
                # Never checkpoint past a record that is not in the changelog: retry
                # (forever, loudly) until it is, or until the lease is taken away.
                attempt += 1
                self.stats.errors += 1
                log = logger.warning if error.retryable else logger.error
                log(
                    "appending %d records of %s failed (try %d): %s",
                    len(changes),
                    shard,
                    attempt,
                    error,
                )
                await backoff(attempt, base=0.05, cap=10.0)
        self.stats.records += len(records)
        self.stats.batches += 1
        if self.stamp:
            await self._stamp_all(shard, records)

    # --- stamping bypass writes -----------------------------------------------------

    async def _stamp_all(self, shard: str, records: list[dict[str, Any]]) -> None:
        """Stamp the items of ``records`` changed without a new ``_m`` (after their append).

        Only a key's last record in the batch can still describe the item, so
        only that one is stamped (an earlier one's condition would fail, or
        land the same stamp on the same ``_v``/``_m``). Different items are
        stamped concurrently.
        """
        last: dict[str, Stamp | None] = {}
        for record in records:
            keys = (record.get("dynamodb") or {}).get("Keys")
            where = json.dumps(keys, sort_keys=True)
            last.pop(where, None)  # keep the dictionary in the order of the last records
            last[where] = stamp_of(
                record, shard, partition_key=self.partition_key, sort_key=self.sort_key
            )
        stamps = [stamp for stamp in last.values() if stamp is not None]
        if not stamps:
            return
        results = await asyncio.gather(
            *(self._stamp_one(stamp) for stamp in stamps), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _stamp_one(self, stamp: Stamp) -> None:
        """One stamp: retried with backoff on throttling and 5xx (forever, like the append);
        a failed condition is normal; other errors are logged and skipped, never blocking
        the shard."""
        request = stamp.request(self.table, self.partition_key)
        attempt = 0
        async with self._stamp_limit:
            while True:
                try:
                    await self.api.call("UpdateItem", request)
                except DynamoDBError as error:
                    if error.error_type == "ConditionalCheckFailedException":
                        self.stats.stamps_moot += 1  # changed again (or deleted) since
                        return
                    attempt += 1
                    self.stats.errors += 1
                    if not error.retryable:
                        self.stats.stamps_failed += 1
                        logger.error(
                            "could not stamp %s in %s with %s (bypass write left unstamped; "
                            "does the consumer's role allow UpdateItem on the data table?): %s",
                            stamp.key,
                            self.table,
                            stamp.mid,
                            error,
                        )
                        return
                    (logger.warning if attempt >= 3 else logger.info)(
                        "stamping %s failed (try %d), retrying: %s", stamp.key, attempt, error
                    )
                    await backoff(attempt, base=0.05, cap=10.0)
                    continue
                self.stats.stamps += 1
                logger.info(
                    "stamped %s in %s with %s (a write bypassed pysync without a new _m)",
                    stamp.key,
                    self.table,
                    stamp.mid,
                )
                return
