"""The changelog: a gap-free, strictly increasing sequence of changes per scope.

Table ``<data table>_changes`` (``pk`` S, ``sk`` N), written only by the stream
consumer (see docs/changelog.md for the full format):

- head item per scope: ``pk = <scope>``, ``sk = 0``, ``head`` (N) = last allocated
  seq, ``sseq`` (S) = stream sequence number of the last appended record,
  ``shards`` (M) = per stream shard, the sequence number of the last record of
  that shard appended to this scope (the exactly-once check);
- entry: ``pk = <scope>``, ``sk = <seq>``, ``key``, ``op`` (``put``/``delete``),
  ``item`` (new image, puts), ``_v``, ``old_v`` (deletes), ``ts``, ``sseq``, ``_ttl``.

An append is ONE ``TransactWriteItems`` per scope batch: update the head with the
condition ``head = :n`` (``attribute_not_exists(head)`` the first time), setting
``head = :n + k``, plus the k entry puts. A cancelled transaction returns the
current head (``ReturnValuesOnConditionCheckFailure = ALL_OLD``); the appender
drops the records that head already covers and retries with jittered backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ._dynamo import DynamoDBAPI, DynamoDBError, backoff

logger = logging.getLogger("pysync.changelog")

#: Entries per transaction: DynamoDB allows 100 items, one is the head.
MAX_BATCH = 99
#: Estimated bytes per transaction (DynamoDB's limit is 4 MB).
MAX_TRANSACTION_BYTES = 3_500_000
#: Largest entry written with its ``item``; above, the entry is marked ``trunc``.
MAX_ENTRY_BYTES = 400 * 1024 - 1024
#: Default retention of changelog entries (seconds).
DEFAULT_RETENTION = 7 * 24 * 3600.0

_MAX_CACHED_HEADS = 100_000

#: Called after each successful append with the scope and the new entries (DynamoDB JSON).
AppendListener = Callable[[str, list[dict[str, Any]]], None]

_RETRY_REASONS = frozenset(
    {
        "TransactionConflict",
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
        "RequestLimitExceeded",
        "InternalServerError",
    }
)


@dataclass(frozen=True, slots=True)
class Change:
    """One data-table change read from the stream, ready to become a changelog entry.

    ``item`` is the new image (``None`` for a delete), ``version`` its ``_v``
    and ``old_version`` the ``_v`` of the old image, both as DynamoDB number
    strings. ``sseq`` is the stream sequence number and ``shard`` the shard
    it was read from.
    """

    scope: str
    key: str
    op: Literal["put", "delete"]
    item: dict[str, Any] | None
    version: str | None
    old_version: str | None
    ts: int
    sseq: str
    shard: str


def parse_record(
    record: dict[str, Any], shard: str, *, partition_key: str = "pk", sort_key: str = "sk"
) -> Change | None:
    """The :class:`Change` of a DynamoDB Streams record (raw JSON), or ``None`` if unusable.

    A record without ``NewImage`` is a delete whatever its ``eventName``
    (``REMOVE``, or the unnamed kind of a TTL delete); a tombstone (``_del``)
    written by a client is a put of its item.
    """
    data = record.get("dynamodb") or {}
    keys = data.get("Keys") or {}
    scope = (keys.get(partition_key) or {}).get("S")
    key = (keys.get(sort_key) or {}).get("S")
    sseq = data.get("SequenceNumber")
    if not isinstance(scope, str) or not isinstance(key, str) or not isinstance(sseq, str):
        logger.warning(
            "skipping stream record %s: key is not (%s S, %s S)",
            record.get("eventID"),
            partition_key,
            sort_key,
        )
        return None
    created = data.get("ApproximateCreationDateTime")
    ts = int(float(created) * 1000) if isinstance(created, int | float) else int(time.time() * 1000)
    new = data.get("NewImage")
    old = data.get("OldImage") or {}
    if new is None:
        return Change(scope, key, "delete", None, None, _number(old.get("_v")), ts, sseq, shard)
    return Change(scope, key, "put", new, _number(new.get("_v")), None, ts, sseq, shard)


#: Prefix of the ``_m`` the stream consumer stamps on an item changed by a writer that bypasses
#: pysync without setting a new ``_m``: ``stamp:<the stream record's eventID>``.
STAMP_PREFIX = "stamp:"


@dataclass(frozen=True, slots=True)
class Stamp:
    """The write that marks a bypass write as a new state: a fresh ``_m`` and ``ADD _v 1``.

    ``key`` is the data item's key (DynamoDB JSON), ``mid`` the new ``_m``,
    ``m`` and ``v`` the ``_m`` and ``_v`` of the stream record's new image
    (``None``: absent). The update is conditioned on the item still holding
    exactly those, so it lands at most once, never on top of a later write
    that changed them, and not on an item deleted meanwhile.
    """

    key: dict[str, Any]
    mid: str
    m: dict[str, Any] | None
    v: dict[str, Any] | None

    def request(self, table: str, partition_key: str = "pk") -> dict[str, Any]:
        """The conditional ``UpdateItem`` request on ``table``."""
        values: dict[str, Any] = {":stamp": {"S": self.mid}, ":one": {"N": "1"}}
        conditions = ["attribute_exists(#k)"]
        if self.m is None:
            conditions.append("attribute_not_exists(#m)")
        else:
            conditions.append("#m = :m")
            values[":m"] = self.m
        if self.v is None:
            conditions.append("attribute_not_exists(#v)")
        else:
            conditions.append("#v = :v")
            values[":v"] = self.v
        return {
            "TableName": table,
            "Key": self.key,
            "UpdateExpression": "SET #m = :stamp ADD #v :one",
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": {"#k": partition_key, "#m": "_m", "#v": "_v"},
            "ExpressionAttributeValues": values,
        }


def stamp_of(
    record: dict[str, Any], shard: str, *, partition_key: str = "pk", sort_key: str = "sk"
) -> Stamp | None:
    """The :class:`Stamp` a stream record calls for, or ``None``.

    A record calls for one when it has a ``NewImage`` (an insert or a
    modification) whose ``_m`` is missing or equal to the ``OldImage``'s: a
    writer that bypasses pysync and breaks its contract (a new unique ``_m``,
    ``ADD _v 1``). Never for deletes (no ``NewImage``: ``REMOVE``, TTL),
    tombstones (``_del``), images whose ``_v`` is not a number (``ADD`` would
    fail), or keys that are not (``pk`` S, ``sk`` S). The stamp's ``_m`` is
    ``stamp:<eventID>`` (the shard and sequence number if the record has no
    ``eventID``): a record read twice stamps with the same value, and the
    stamp's own record has a changed ``_m``, so it is never stamped in turn.
    """
    data = record.get("dynamodb") or {}
    new = data.get("NewImage")
    if not isinstance(new, dict):
        return None
    keys = data.get("Keys") or {}
    if not isinstance((keys.get(partition_key) or {}).get("S"), str) or not isinstance(
        (keys.get(sort_key) or {}).get("S"), str
    ):
        return None
    deleted = new.get("_del")
    if deleted is not None and deleted not in ({"BOOL": False}, {"NULL": True}):
        return None
    m = new.get("_m")
    old = data.get("OldImage") or {}
    if m is not None and m != old.get("_m"):
        return None  # a new _m: the writer kept the contract
    v = new.get("_v")
    if v is not None and not isinstance(v.get("N") if isinstance(v, dict) else None, str):
        logger.warning("not stamping %s: its _v is not a number (%s)", record.get("eventID"), v)
        return None
    event = record.get("eventID")
    if not isinstance(event, str) or not event:
        event = f"{shard}:{data.get('SequenceNumber')}"
    key = {partition_key: keys[partition_key], sort_key: keys[sort_key]}
    return Stamp(key, STAMP_PREFIX + event, m, v)


def _number(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("N"), str):
        return str(value["N"])
    return None


def attribute_size(value: dict[str, Any]) -> int:
    """Approximate stored size of one DynamoDB JSON attribute value, rounded up."""
    (kind, inner), *_ = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return len(inner) // 2 + 2
    if kind == "B":
        return len(inner) * 3 // 4 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in inner)
    if kind == "NS":
        return sum(len(n) // 2 + 2 for n in inner)
    if kind == "BS":
        return sum(len(b) * 3 // 4 + 1 for b in inner)
    if kind == "L":
        return 3 + sum(1 + attribute_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + attribute_size(v) for k, v in inner.items())
    return len(str(inner))


def item_size(item: dict[str, Any]) -> int:
    """Approximate stored size of an item (names plus values), as DynamoDB counts it."""
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


@dataclass
class Head:
    """What a scope's head item says: last seq, and per shard the last appended sequence number.

    ``exists`` is false until the first append (the head item has no ``head``).
    """

    seq: int = 0
    shards: dict[str, str] = field(default_factory=dict)
    exists: bool = False

    @classmethod
    def from_item(cls, item: dict[str, Any] | None) -> Head:
        """Parse a head item (``None``, or an item without ``head``: no head yet)."""
        if not item or "head" not in item:
            return cls()
        shards = {k: v["S"] for k, v in item.get("shards", {}).get("M", {}).items()}
        return cls(int(item["head"]["N"]), shards, True)

    def covers(self, change: Change) -> bool:
        """True if ``change`` was already appended (same shard, sequence number not above)."""
        last = self.shards.get(change.shard)
        return last is not None and int(change.sseq) <= int(last)


@dataclass
class ChangelogStats:
    """Counters of one :class:`Changelog` (for tests, logs and benchmarks)."""

    entries: int = 0
    transactions: int = 0
    conflicts: int = 0
    retries: int = 0
    duplicates: int = 0
    truncated: int = 0
    max_attempts: int = 0


class Changelog:
    """Appends stream changes to ``<data table>_changes``: gap-free per scope, exactly once.

    ``retention`` (seconds) sets each entry's ``_ttl``; ``None`` or 0 keeps
    entries forever. ``listener`` is called after every successful append (in
    the appending task) with the scope and its new entries. ``finished_shards``
    names closed, fully processed shards: their sequence numbers are dropped
    from head items the next time those scopes are appended to.
    """

    def __init__(
        self,
        api: DynamoDBAPI,
        table: str,
        *,
        retention: float | None = DEFAULT_RETENTION,
        listener: AppendListener | None = None,
        max_batch: int = MAX_BATCH,
        max_bytes: int = MAX_TRANSACTION_BYTES,
        concurrency: int = 16,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch must be between 1 and {MAX_BATCH}")
        self.api = api
        self.table = table
        self.retention = retention or None
        self.listeners: list[AppendListener] = [listener] if listener else []
        self.max_batch = max_batch
        self.max_bytes = max_bytes
        self.finished_shards: set[str] = set()
        self.stats = ChangelogStats()
        self._clock = clock
        self._heads: dict[str, Head] = {}
        self._unknown: set[str] = set()
        self._limit = asyncio.Semaphore(concurrency)

    async def read_head(self, scope: str) -> Head:
        """The scope's head, read with a consistent GetItem."""
        reply = await self.api.call(
            "GetItem",
            {
                "TableName": self.table,
                "Key": {"pk": {"S": scope}, "sk": {"N": "0"}},
                "ConsistentRead": True,
            },
        )
        return Head.from_item(reply.get("Item"))

    async def append_all(self, changes: Iterable[Change]) -> dict[str, list[dict[str, Any]]]:
        """Append changes of any scopes: in order within a scope, scopes concurrently.

        Returns the new entries per scope. Raises the first non-retryable error
        after every scope has finished (the others are appended; a retry of the
        same changes appends only what is missing).
        """
        by_scope: dict[str, list[Change]] = {}
        for change in changes:
            by_scope.setdefault(change.scope, []).append(change)
        scopes = list(by_scope)
        results = await asyncio.gather(
            *(self._append_limited(scope, by_scope[scope]) for scope in scopes),
            return_exceptions=True,
        )
        written: dict[str, list[dict[str, Any]]] = {}
        errors: list[BaseException] = []
        for scope, result in zip(scopes, results, strict=True):
            if isinstance(result, BaseException):
                errors.append(result)
            else:
                written[scope] = result
        if errors:
            raise errors[0]
        return written

    async def _append_limited(self, scope: str, changes: list[Change]) -> list[dict[str, Any]]:
        async with self._limit:
            return await self.append(scope, changes)

    async def append(self, scope: str, changes: Sequence[Change]) -> list[dict[str, Any]]:
        """Append ``changes`` (all of ``scope``, in stream order); return the new entries.

        Changes the head already covers (appended before a crash, or by another
        consumer) are skipped. Conflicts, throttling and transaction conflicts
        are retried with jittered backoff; other errors are raised.
        """
        written: list[dict[str, Any]] = []
        pending = list(changes)
        attempt = 0
        while True:
            if scope in self._unknown:
                self._remember(scope, await self.read_head(scope))
                self._unknown.discard(scope)
            head = self._heads.get(scope) or Head()
            fresh = [change for change in pending if not head.covers(change)]
            self.stats.duplicates += len(pending) - len(fresh)
            pending = fresh
            if not pending:
                return written
            batch, entries = self._batch(scope, head, pending)
            try:
                await self.api.call(
                    "TransactWriteItems", self._transaction(scope, head, batch, entries)
                )
            except DynamoDBError as error:
                attempt += 1
                self.stats.max_attempts = max(self.stats.max_attempts, attempt + 1)
                if not self._retry(scope, error):
                    raise
                # A stale cached head is normal (first try, or another appender): retry
                # at once with the head from the cancellation; back off on contention.
                if attempt > 1 or error.error_type != "TransactionCanceledException":
                    self.stats.retries += 1
                    await backoff(attempt - 1, base=0.002, cap=0.25)
                continue
            attempt = 0
            shards = {s: v for s, v in head.shards.items() if s not in self.finished_shards}
            for change in batch:
                shards[change.shard] = change.sseq
            self._remember(scope, Head(head.seq + len(batch), shards, True))
            pending = pending[len(batch) :]
            self.stats.transactions += 1
            self.stats.entries += len(batch)
            written.extend(entries)
            for listener in self.listeners:
                try:
                    listener(scope, entries)
                except Exception:
                    logger.exception("changelog listener failed")

    def _remember(self, scope: str, head: Head) -> None:
        heads = self._heads
        heads.pop(scope, None)
        heads[scope] = head
        if len(heads) > _MAX_CACHED_HEADS:  # forget the least recently appended half
            for old in list(heads)[: len(heads) // 2]:
                del heads[old]

    def _retry(self, scope: str, error: DynamoDBError) -> bool:
        """Update the cached head from a cancellation; whether the append should retry."""
        if error.error_type == "TransactionCanceledException":
            reasons = error.body.get("CancellationReasons") or []
            head_reason = reasons[0] if reasons else {}
            if head_reason.get("Code") == "ConditionalCheckFailed":
                self.stats.conflicts += 1
                if "Item" in head_reason:
                    self._remember(scope, Head.from_item(head_reason["Item"]))
                else:  # no ALL_OLD image: read the head before the next try
                    self._heads.pop(scope, None)
                    self._unknown.add(scope)
                return True
            codes = {reason.get("Code") for reason in reasons} - {"None", None}
            if codes and codes <= _RETRY_REASONS:
                return True
            logger.error("changelog append for %s cancelled: %s", scope, reasons)
            return False
        return error.retryable

    def _batch(
        self, scope: str, head: Head, pending: list[Change]
    ) -> tuple[list[Change], list[dict[str, Any]]]:
        expires = str(int(self._clock() + self.retention)) if self.retention is not None else None
        batch: list[Change] = []
        entries: list[dict[str, Any]] = []
        size = 200 + 50 * len(head.shards)
        for change in pending[: self.max_batch]:
            entry = self._entry(scope, head.seq + len(batch) + 1, change, expires)
            entry_size = item_size(entry)
            if batch and size + entry_size > self.max_bytes:
                break
            batch.append(change)
            entries.append(entry)
            size += entry_size
        return batch, entries

    def _entry(self, scope: str, seq: int, change: Change, expires: str | None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "pk": {"S": scope},
            "sk": {"N": str(seq)},
            "key": {"S": change.key},
            "op": {"S": change.op},
            "ts": {"N": str(change.ts)},
            "sseq": {"S": change.sseq},
        }
        if change.item is not None:
            entry["item"] = {"M": change.item}
            if "S" in change.item.get("_m", {}):
                # Kept even when the image is dropped (trunc): a client whose write's
                # reply was lost looks for its mutation id here.
                entry["_m"] = change.item["_m"]
        if change.version is not None:
            entry["_v"] = {"N": change.version}
        if change.old_version is not None:
            entry["old_v"] = {"N": change.old_version}
        if expires is not None:
            entry["_ttl"] = {"N": expires}
        if "item" in entry and item_size(entry) > MAX_ENTRY_BYTES:
            # The new image plus the entry's fields would exceed DynamoDB's 400 KB:
            # the client reads the item itself (GetItem on the data table).
            del entry["item"]
            entry["trunc"] = {"BOOL": True}
            self.stats.truncated += 1
            logger.warning("changelog entry %s/%s: item too large, written as trunc", scope, seq)
        return entry

    def _transaction(
        self, scope: str, head: Head, batch: list[Change], entries: list[dict[str, Any]]
    ) -> dict[str, Any]:
        shards = {s: v for s, v in head.shards.items() if s not in self.finished_shards}
        for change in batch:
            shards[change.shard] = change.sseq
        values: dict[str, Any] = {
            ":h": {"N": str(head.seq + len(batch))},
            ":s": {"S": batch[-1].sseq},
            ":m": {"M": {shard: {"S": sseq} for shard, sseq in shards.items()}},
        }
        if head.exists:
            condition = "#h = :n"
            values[":n"] = {"N": str(head.seq)}
        else:
            condition = "attribute_not_exists(#h)"
        update = {
            "Update": {
                "TableName": self.table,
                "Key": {"pk": {"S": scope}, "sk": {"N": "0"}},
                "UpdateExpression": "SET #h = :h, #s = :s, #m = :m",
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#h": "head", "#s": "sseq", "#m": "shards"},
                "ExpressionAttributeValues": values,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
        puts = [{"Put": {"TableName": self.table, "Item": entry}} for entry in entries]
        return {"TransactItems": [update, *puts]}
