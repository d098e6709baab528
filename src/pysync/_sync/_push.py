"""Upstream: drain the outbox in order as conditional writes.

Invariants:
* An entry is marked ``inflight`` before it is sent and stays so until its
  outcome is stored, so no later edit folds into a write that may have landed.
* Every write is conditioned on the exact state its edit started from (``_v``
  and ``_m``: a version number alone is reused after a delete for good), or on
  the item not existing for a new record. A failed condition whose current
  item carries this mutation's id (``_m``) means an earlier attempt succeeded
  and only its reply was lost: it is acknowledged, not applied twice.
* A write whose earlier attempt may have landed (its reply was lost, or a 5xx
  came back) is settled before it is sent again: its item carries its ``_m``,
  or the changelog holds an entry with it (the write landed, and was written
  over since), or the changelog has caught up with the item and holds none
  (it did not land). Until the changelog decides, the entry waits. An item
  deleted for good has no state to catch up with: a probe tombstone gives it one.
* Any other failed condition is a conflict: it is merged, recorded in
  ``_conflicts`` with both sides, stored locally, and pushed again conditioned
  on the server's version. Nothing is overwritten blindly.
* A permanent refusal moves the entry to ``rejected``; the others go on.

By default every change is one plain conditional write (``PutItem`` or
``UpdateItem``: one write capacity unit per KB); the writes started together
travel in batches of up to ``batch`` per HTTP request (the proxy sends each to
DynamoDB as its own request: ``_batcher``), ``concurrency`` requests in flight.
``pack`` > 1 sends independent changes in ``TransactWriteItems`` packs instead
(fewer DynamoDB requests, twice the write capacity). Rounds overlap: the next round is read
and marked in flight, and the last one acknowledged, while requests are out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .._documents import Key, new_id
from .._errors import StoreError
from .._marshal import to_attr, to_item
from .._merge import Strategy, merge
from .._outbox import INFLIGHT, OUTBOX, PENDING, REJECTED, Entry, apply_patch, replay
from .._outbox_rows import Outbox
from .._outbox_rows import slices as outbox_slices
from .._remote import Remote, RemoteError
from .._schema import CONFLICTS, META, with_index_keys
from .._store import Transaction, Writes
from ._batcher import Batcher
from ._items import State, base_state_of, document_of, sort_key, state_of, tomb_key

if TYPE_CHECKING:
    from .._replica import Replica
    from ._pull import Puller

T = TypeVar("T")

TOMBSTONE_SECONDS = 7 * 24 * 3600
#: Pauses while the changelog has not caught up with a record whose write may have
#: landed (the consumer appends within milliseconds when it runs).
CHANGELOG_WAITS = (0.1, 0.4, 1.6, 6.4)


@dataclass
class PushReport:
    """What one push round did."""

    pushed: int = 0
    conflicts: int = 0
    rejected: int = 0
    #: Write capacity units DynamoDB reported for the writes that landed
    #: (``ReturnConsumedCapacity = TOTAL``): about 1 per change of up to 1 KB sent
    #: alone, 2 in a transaction. Refused writes (a failed condition) are billed
    #: too, but their error replies carry no figure.
    capacity_units: float = 0.0

    def add(self, other: PushReport) -> None:
        """Count ``other``'s changes, conflicts, rejections and capacity in this one."""
        self.pushed += other.pushed
        self.conflicts += other.conflicts
        self.rejected += other.rejected
        self.capacity_units += other.capacity_units


#: How an entry's write ended: the entry, the server's document and state after it.
Ack = tuple[Entry, "dict[str, Any] | None", State]
#: A request ready to send: operation, payload, and the version each entry creates.
Request = tuple[str, dict[str, Any], list[int | None]]


#: Cancellation reasons that say nothing about the items themselves.
_TRANSIENT = frozenset(
    {"None", "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)


def _transient(error: RemoteError) -> bool:
    """Whether a cancelled transaction failed only for reasons a later attempt can pass."""
    reasons = error.body.get("CancellationReasons") or []
    codes = {str(reason.get("Code", "None")) for reason in reasons}
    return bool(codes) and codes <= _TRANSIENT and codes != {"None"}


async def _all(tasks: Iterable[Awaitable[None]]) -> None:
    """Run ``tasks`` concurrently to the end; then raise the first error, if any."""
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def _same_state(entry: Entry, names: dict[str, str], values: dict[str, Any]) -> str:
    """The condition that the item is still exactly the state ``entry`` was made on.

    Adds the placeholders it uses to ``names`` and ``values``.
    """
    names.update({"#v": "_v", "#bm": "_m"})
    if entry["base_v"] is None:  # an item a writer that bypasses pysync left without one
        version = "attribute_exists(pk) AND attribute_not_exists(#v)"
    else:
        values[":base"] = to_attr(entry["base_v"])
        version = "#v = :base"
    base_m = entry.get("base_m")  # None: a state written without one (or an older outbox)
    if base_m is None:
        return f"{version} AND attribute_not_exists(#bm)"
    values[":bm"] = to_attr(base_m)
    return f"{version} AND #bm = :bm"


def _by_n(entry: Entry) -> int:
    return int(entry["n"])


def _capacity(response: dict[str, Any]) -> float:
    """The write capacity units a write's reply reports (a list for transactions)."""
    consumed = response.get("ConsumedCapacity")
    if isinstance(consumed, dict):
        consumed = [consumed]
    if not isinstance(consumed, list):
        return 0.0
    return float(sum(float(c.get("CapacityUnits") or 0) for c in consumed if isinstance(c, dict)))


#: Parameters of a single write that a transaction takes once, for all its elements.
_TRANSACTION_LEVEL = frozenset({"ReturnValues", "ReturnConsumedCapacity"})

#: Rounds (each up to ``window`` changes) out at once: one in flight while the
#: next is read and marked, so requests never wait for IndexedDB.
ROUNDS_AHEAD = 2
#: Outbox entries read (and decoded) per store transaction when choosing what to send.
READ_SLICE = 100


class Pusher:
    """Pushes a replica's outbox to one scope of one table."""

    def __init__(
        self,
        replica: Replica,
        remote: Remote,
        table: str,
        scope: str,
        namespace: str,
        strategy: Callable[[str], Strategy],
        history: Puller,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_attempts: int = 8,
        window: int = 200,
        pack: int = 1,
        concurrency: int = 8,
        batch: int = 50,
    ) -> None:
        self.replica = replica
        self.remote = remote
        self.table = table
        self.scope = scope
        self.namespace = namespace
        self.strategy = strategy
        self.history = history
        self.sleep = sleep
        self.max_attempts = max_attempts
        self.window = window
        self.pack = pack
        self.concurrency = concurrency
        self.batch = batch
        self._remote = Batcher(remote, batch, concurrency)

    async def push(self, progress: Callable[[int, int], None] | None = None) -> PushReport:
        """Push every pushable entry; raises RemoteError when the network stays down."""
        report = PushReport()
        total = self.replica.status.pending
        since: int | None = None
        self._remote = Batcher(self.remote, self.batch, self.concurrency)  # of this event loop
        # Rounds sent and not yet acknowledged: their entries and their task.
        rounds: list[tuple[list[Entry], asyncio.Future[None]]] = []
        try:
            while True:
                batches = await self._next([e for entries, _ in rounds for e in entries])
                if not batches:
                    if not rounds:
                        return report
                    # What is left may wait for a record of a round still out.
                    await rounds.pop(0)[1]
                    continue
                if progress:
                    progress(report.pushed + 1, max(total, report.pushed + 1))
                # Entries read by _next may have changed since (an edit folded in, a create
                # cancelled): the batches are rebuilt from what the marking read back.
                if since is None:  # nothing sent from here on can land at or before it
                    since = await self._since()
                stored = await self._set_inflight([e for batch in batches for e in batch], since)
                batches = [[stored[e["n"]] for e in b if e["n"] in stored] for b in batches]
                batches = [batch for batch in batches if batch]
                sent = [entry for batch in batches for entry in batch]
                rounds.append((sent, asyncio.ensure_future(self._round(batches, report))))
                if len(rounds) >= ROUNDS_AHEAD:
                    await rounds.pop(0)[1]
        except asyncio.CancelledError:
            for _, task in rounds:
                task.cancel()
            raise
        except Exception:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                # Cancelled while a round ended in an error: the others go too.
                for _, out in rounds:
                    out.cancel()
            # A failed round (the network stays down): the others finish first.
            await asyncio.gather(*(out for _, out in rounds), return_exceptions=True)
            raise

    async def _round(self, batches: list[list[Entry]], report: PushReport) -> None:
        """Send a round's batches concurrently; store their acks in one local transaction."""
        acks: list[Ack] = []
        # Plain writes not in doubt leave together; only those that fail are followed
        # one by one (a task per write costs the page more than the write itself).
        plain: list[list[Entry]] = []
        others: list[list[Entry]] = []
        for batch in batches:
            (plain if len(batch) == 1 and not self._uncertain(batch) else others).append(batch)
        try:
            await _all(
                [
                    self._push_together(plain, report, acks),
                    *(self._push_batch(batch, report, acks) for batch in others),
                ]
            )
        except asyncio.CancelledError:
            # Cancelled (the tab closes, the app stops the push): what landed is stored if
            # the store still takes it, else it stays in flight and the next push settles
            # it. A closed store must not turn the cancellation into an error: the push
            # would then wait for its other rounds instead of ending.
            with contextlib.suppress(StoreError):
                await self._acked(acks)
            raise
        except BaseException:
            await self._acked(acks)
            raise
        await self._acked(acks)

    async def _next(self, out: Sequence[Entry] = ()) -> list[list[Entry]]:
        """The next entries to send together, oldest first, besides those ``out`` (the
        entries of rounds not yet acknowledged).

        Either one transaction group alone, or up to ``window`` single entries of
        different records: each alone (a plain conditional write), or with ``pack``
        > 1 in packs of up to ``pack`` entries, each pack one ``TransactWriteItems``.
        A second entry of a record already in the window, or in a round still out,
        waits for a later round, so each record's changes still land in order. The
        outbox is read oldest first, a slice at a time, until what was read decides
        (see :meth:`_pick`): a long outbox is not read once per round. The rows of the
        plain writes still out, most often the oldest, are passed unread.
        """
        records = {(entry["collection"], entry["id"]) for entry in out}
        # A transaction's row may hold rejected entries besides those out: it is read.
        plain = {entry["n"] for entry in out if "row" not in entry}
        batches: list[list[Entry]] = []
        entries: list[Entry] = []
        found_slices = outbox_slices(self.replica.store, READ_SLICE, plain)
        async with contextlib.aclosing(found_slices) as slices:
            async for found in slices:
                entries += found
                batches, decided = self._pick(entries, records)
                if decided:
                    break
        return batches

    def _pick(
        self, entries: list[Entry], out: set[tuple[str, Any]]
    ) -> tuple[list[list[Entry]], bool]:
        """The next batches from these oldest entries (``out``: the records of entries
        still out, among them or passed unread), and whether they suffice: the window
        is full, a record came twice, a group follows singles, or a group is stored
        whole in one row. Otherwise more entries may change the choice."""
        singles: list[Entry] = []
        records: set[tuple[str, Any]] = set()
        # A record's changes land in order: those behind a rejected one wait for the app
        # to retry or discard it, those behind one still out for its outcome (the other
        # records go on).
        blocked: set[tuple[str, Any]] = set(out)
        decided = False
        for entry in entries:
            record = (entry["collection"], entry["id"])
            if entry["state"] == REJECTED or record in blocked:
                blocked.add(record)
                continue
            group = entry["group"]
            if group is not None:
                members = [e for e in entries if e["group"] == group and e["state"] != REJECTED]
                if any((e["collection"], e["id"]) in blocked for e in members):
                    blocked.update((e["collection"], e["id"]) for e in members)
                    continue
                if singles:
                    decided = True
                    break
                # A transaction stored as one row has all its entries in it; those of
                # an older layout are rows of their own, which a later slice may hold.
                return [members], "row" in entry
            if record in records or len(singles) == self.window:
                decided = True
                break
            records.add(record)
            singles.append(entry)
        packs = [singles[i : i + self.pack] for i in range(0, len(singles), self.pack)]
        return packs, decided

    @staticmethod
    def _uncertain(batch: list[Entry]) -> bool:
        """Whether an earlier push may have landed some of ``batch``: an entry still in
        flight (also one rejected, then retried, while its outcome was unknown)."""
        return any(e["state"] == INFLIGHT or e.get("unsure") for e in batch)

    async def _push_together(
        self, batches: list[list[Entry]], report: PushReport, acks: list[Ack]
    ) -> None:
        """Send single entries, none in doubt, a batch of requests at a time; follow each
        that fails as :meth:`_push_batch` would after that first attempt. Each batch's
        outcomes are kept as it returns: a push cancelled meanwhile stores them."""
        size = self.batch
        await _all(
            self._push_part(batches[i : i + size], report, acks)
            for i in range(0, len(batches), size)
        )

    async def _push_part(
        self, batches: list[list[Entry]], report: PushReport, acks: list[Ack]
    ) -> None:
        requests = [self._request(batch) for batch in batches]
        results = await self._remote.call_all([(op, payload) for op, payload, _ in requests])
        failed = []
        for batch, request, result in zip(batches, requests, results, strict=True):
            if isinstance(result, RemoteError):
                failed.append(self._push_batch(batch, report, acks, False, (request, result)))
            else:
                acks.extend(await self._landed(batch, request, result, report))
                report.pushed += 1
        await _all(failed)

    async def _push_batch(
        self,
        batch: list[Entry],
        report: PushReport,
        acks: list[Ack],
        uncertain: bool | None = None,
        sent: tuple[Request, RemoteError] | None = None,
    ) -> None:
        """Send one batch (a transaction group, a pack of independent entries, or one
        entry) until it lands, conflicts, is refused, or the attempts run out.

        ``sent``: the batch's request and how its first attempt, made already, failed.
        """
        pack = len(batch) > 1 and batch[0]["group"] is None
        if uncertain is None:
            uncertain = self._uncertain(batch)
        if pack and uncertain:
            # Each may have landed alone or in another pack: they settle one by one.
            await self._one_by_one(batch, report, acks, uncertain=None)
            return
        # Built once: every attempt sends the same request.
        request, failed = sent or (self._request(batch), None)
        for attempt in range(self.max_attempts):
            try:
                if failed is not None:
                    raise failed  # the first attempt's outcome, decided below like any other
                landed = await self._settle(batch) if uncertain and not pack else None
                if landed is not None:
                    acks.extend(landed)
                    report.pushed += len(batch)
                    return
                acks.extend(await self._send(batch, request, report))
                report.pushed += len(batch)
                return
            except RemoteError as error:
                failed = None
                if error.status == 401:
                    # The token expired or is refused: no change is at fault. The round
                    # stops; the next one asks the token function for a fresh token.
                    raise
                if error.code == "TransactionCanceledException" and _transient(error):
                    error = RemoteError(
                        "TransactionConflict", error.message, 503, error.body
                    )  # another transaction held an item: try again after a pause
                if pack and not error.retryable:
                    # A conflict or a refusal of some of them: one by one tells which.
                    await self._one_by_one(batch, report, acks, uncertain=uncertain)
                    return
                if error.code == "ConditionalCheckFailedException":
                    await self._conflict(batch[0], error.body.get("Item"), report)
                    return
                if error.code == "TransactionCanceledException":
                    await self._cancelled(batch, error, report)
                    return
                if error.retryable:
                    # A network error or a 5xx may come after the write was applied.
                    uncertain = uncertain or error.status == 0 or error.status >= 500
                    if attempt + 1 == self.max_attempts:
                        raise
                    await self._pause(error, attempt)
                    continue
                await self._reject(batch, error, report, unsure=uncertain)
                return

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, again after a jittered pause while it fails for a passing reason."""
        for attempt in range(self.max_attempts):
            try:
                return await call()
            except RemoteError as error:
                if not error.retryable or attempt + 1 == self.max_attempts:
                    raise
                await self._pause(error, attempt)
        raise AssertionError("unreachable")

    async def _pause(self, error: RemoteError, attempt: int) -> None:
        self.replica._set_status(last_error=str(error))
        # Jittered exponential backoff: many clients must not retry in step.
        await self.sleep(random.uniform(0, min(30.0, 0.05 * 2**attempt)))

    async def _one_by_one(
        self, batch: list[Entry], report: PushReport, acks: list[Ack], *, uncertain: bool | None
    ) -> None:
        await _all(self._push_batch([entry], report, acks, uncertain) for entry in batch)

    async def _settle(self, batch: list[Entry]) -> list[Ack] | None:
        """The acks of a batch whose write landed before, or ``None`` if it did not.

        Raises a retryable RemoteError while the changelog cannot tell yet.
        """
        # A transaction lands whole: its first record tells for all.
        first = batch[0]
        item = await self._current(first)
        if item is None:
            # Deleted for good (or never written): no state the changelog could catch
            # up with. A probe tombstone makes one, ordered after the write if it landed.
            item = await self._probe(first)
        if document_of(item)[1].get("_m") != first["mid"]:
            found = await self.history.landed(first, item)
            for delay in CHANGELOG_WAITS:
                if found is not None:
                    break
                await self.sleep(delay)
                found = await self.history.landed(first, item)
            if found is None:
                raise RemoteError(
                    "ChangelogBehind",
                    "waiting for the changelog to tell whether an earlier attempt landed",
                    503,
                    {},
                )
            if not found:
                return None
        items = [item, *[await self._current(entry) for entry in batch[1:]]]
        acks: list[Ack] = []
        for entry, current in zip(batch, items, strict=True):
            doc, system = document_of(current)
            acks.append((entry, doc, state_of(system)))
        return acks

    async def _probe(self, entry: Entry) -> dict[str, Any]:
        """Write a tombstone where an entry's item is missing, and return it.

        Raises a retryable RemoteError if the item exists again: the settle starts over.
        """
        key = {"pk": self.scope, "sk": self._sort_key(entry)}
        probe = {
            **key,
            "_v": 1,
            "_m": f"probe:{entry['mid']}",
            "_c": self.replica.client_id,
            "_hlc": entry["hlc"],
            **self._tombstone(),
        }
        request = {
            "TableName": self.table,
            "Item": to_item(probe),
            "ConditionExpression": "attribute_not_exists(pk)",
        }
        try:
            await self._call("PutItem", request)
        except RemoteError as error:
            if error.code != "ConditionalCheckFailedException":
                raise
            raise RemoteError("ItemChanged", "the item was written again", 503, {}) from error
        return to_item(probe)

    def _sort_key(self, entry: Entry) -> str:
        """The ``sk`` of an entry's record."""
        return sort_key(self.namespace, entry["collection"], entry["id"])

    async def _current(self, entry: Entry) -> dict[str, Any] | None:
        """The server's item of an entry's record (``None`` if there is none)."""
        return await self.history.read(self._sort_key(entry))

    # -- requests ---------------------------------------------------------------------

    def _write(self, entry: Entry) -> tuple[str, dict[str, Any], int | None]:
        """The operation and request of one entry, and the version it creates (if known)."""
        key = {"pk": self.scope, "sk": self._sort_key(entry)}
        base_v = entry["base_v"]
        system = {"_hlc": entry["hlc"], "_c": self.replica.client_id, "_m": entry["mid"]}
        if entry["op"] == "patch" and base_v is not None:
            # Conditioned on the version when it sets fields; increments alone are not.
            made = base_v + 1 if entry["set"] else None
            return ("UpdateItem", self._update(entry, key, system), made)
        version = (base_v or 0) + 1
        if entry["op"] == "delete":
            values: dict[str, Any] = {**key, **self._tombstone()}
        else:
            # A put, or a patch whose base version is unknown: send the whole document.
            values = {**(self._written_doc(entry) or {}), **key}
        request: dict[str, Any] = {
            "TableName": self.table,
            "Item": to_item({**values, **system, "_v": version}),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            "ReturnConsumedCapacity": "TOTAL",
        }
        if base_v is None and entry["new"]:
            request["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            names: dict[str, str] = {}
            placeholders: dict[str, Any] = {}
            request["ConditionExpression"] = _same_state(entry, names, placeholders)
            request["ExpressionAttributeNames"] = names
            if placeholders:  # DynamoDB refuses an empty map
                request["ExpressionAttributeValues"] = placeholders
        return ("PutItem", request, version)

    def _update(self, entry: Entry, key: dict[str, str], system: dict[str, Any]) -> dict[str, Any]:
        names: dict[str, str] = {"#v": "_v"}
        values: dict[str, Any] = {}
        sets, adds = [], ["#v :one"]
        values[":one"] = to_attr(1)
        for i, (name, value) in enumerate({**entry["set"], **system}.items()):
            names[f"#s{i}"] = name
            values[f":s{i}"] = to_attr(value)
            sets.append(f"#s{i} = :s{i}")
        for i, (name, delta) in enumerate(entry["inc"].items()):
            names[f"#a{i}"] = name
            values[f":a{i}"] = to_attr(delta)
            adds.append(f"#a{i} :a{i}")
        names["#del"] = "_del"
        if entry["set"]:
            condition = f"{_same_state(entry, names, values)} AND attribute_not_exists(#del)"
        else:
            # Increments alone commute with any other write: no version check needed, but
            # not twice: a retry after a lost reply finds its own mutation id and stops.
            condition = (
                "attribute_exists(pk) AND attribute_not_exists(#del)"
                " AND (attribute_not_exists(#m) OR #m <> :mid)"
            )
            names["#m"] = "_m"
            values[":mid"] = to_attr(entry["mid"])
        return {
            "TableName": self.table,
            "Key": to_item(key),
            "UpdateExpression": f"SET {', '.join(sets)} ADD {', '.join(adds)}",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            "ReturnConsumedCapacity": "TOTAL",
        }

    def _request(self, batch: list[Entry]) -> Request:
        """The one request that sends ``batch``, and the version each entry creates."""
        writes = [self._write(entry) for entry in batch]
        if len(batch) == 1:
            operation, payload, version = writes[0]
            return operation, payload, [version]
        items = []
        for operation, payload, _ in writes:
            kind = "Update" if operation == "UpdateItem" else "Put"
            element = {k: v for k, v in payload.items() if k not in _TRANSACTION_LEVEL}
            items.append({kind: element})
        # The token follows the content: a retry of a transaction that landed is not
        # applied again, and a changed transaction is never taken for an earlier one.
        token = uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(items, sort_keys=True))
        return (
            "TransactWriteItems",
            {
                "TransactItems": items,
                "ClientRequestToken": str(token),
                "ReturnConsumedCapacity": "TOTAL",
            },
            [version for _, _, version in writes],
        )

    async def _call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        """``remote.call``, in a batch with the calls started at the same time."""
        return await self._remote.call(operation, payload)

    async def _send(self, batch: list[Entry], request: Request, report: PushReport) -> list[Ack]:
        """Send ``request``; the server document and version each entry produced."""
        operation, payload, _ = request
        return await self._landed(batch, request, await self._call(operation, payload), report)

    async def _landed(
        self, batch: list[Entry], request: Request, response: dict[str, Any], report: PushReport
    ) -> list[Ack]:
        """The acks of ``batch``, whose ``request`` was answered ``response``."""
        operation, _, versions = request
        report.capacity_units += _capacity(response)
        out: list[Ack] = []
        for entry, version in zip(batch, versions, strict=True):
            if operation == "UpdateItem":  # its reply holds the new item
                doc, system = document_of(response["Attributes"])
                out.append((entry, doc, state_of(system)))
            elif version is None:  # an increment in a transaction: read back its version
                doc, system = document_of(await self._current(entry))
                out.append((entry, doc, state_of(system)))
            else:
                out.append((entry, self._written_doc(entry), (version, entry["mid"])))
        return out

    @staticmethod
    def _written_doc(entry: Entry) -> dict[str, Any] | None:
        if entry["op"] == "delete":
            return None
        if entry["op"] == "patch":
            return apply_patch(entry["base"] or {"id": entry["id"]}, entry["set"], entry["inc"])
        return dict(entry["value"])

    # -- outcomes ---------------------------------------------------------------------

    async def _set_state(self, batch: list[Entry], state: str, **fields: Any) -> None:
        """Store ``state`` (and other ``fields``) on the batch's entries still in the outbox."""
        await self._update_entries(batch, lambda found: {**found, "state": state, **fields})

    async def _since(self) -> int:
        """A changelog seq that no write sent from now on can be at or before.

        While the realtime feed is connected (the server answers), the pull's cursor
        is one (it never passes the head) and costs no request: reading the head
        would put a round trip before every push, on the path of every change to the
        other devices. A cursor behind the head only makes a settle (rare: an outcome
        lost) read more of the changelog. Otherwise the head is read: it is also the
        check that the server answers before anything is marked in flight (a write
        sent to a server that is down has an unknown outcome and must be settled,
        which for a new record means a probe tombstone).
        """
        if self.replica.status.realtime:
            cursor = await self.history.cursor()
            if cursor is not None:
                return cursor
        return await self._retrying(self.history.head)

    async def _set_inflight(self, batch: list[Entry], since: int) -> dict[int, Entry]:
        """Mark entries in flight; return them as stored before (by ``n``; gone ones left out).

        ``since`` (see :meth:`_since`), from before the first attempt, is kept from that
        attempt: the write cannot appear in the changelog at or before it, which
        bounds where :meth:`_settle` looks.
        """
        stored: dict[int, Entry] = {}

        now = self.replica.platform.now_ms()

        def mark(found: Entry) -> Entry:
            found = {**found, "since": found.get("since", since), "sent": found.get("sent", now)}
            stored[found["n"]] = found
            return {**found, "state": INFLIGHT}

        await self._update_entries(batch, mark)
        return stored

    async def _update_entries(self, batch: list[Entry], change: Callable[[Entry], Entry]) -> None:
        """Rewrite the batch's entries still in the outbox (one read, one write request)."""

        def body(tx: Transaction) -> None:
            outbox = Outbox(tx)

            def rewrite(found: dict[int, Entry]) -> None:
                for entry in found.values():
                    outbox.put(change(entry))
                outbox.issue()

            outbox.read_entries(batch).then(rewrite)

        await self.replica.store.run(OUTBOX, "readwrite", body)

    async def _acked(self, acks: list[Ack]) -> None:
        """The writes landed: drop their entries, rebase the edits that follow them.

        The acks are of different records (a window holds one entry per record):
        their records and outbox entries are read, and written, in a few requests.
        """
        if not acks:
            return
        targets = [(entry["collection"], entry["id"]) for entry, _, _ in acks]
        keys: dict[str, list[Key]] = {}
        for collection, key in targets:
            keys.setdefault(collection, []).append(key)

        def body(tx: Transaction) -> None:
            found = {c: tx.get_many(c, k) for c, k in keys.items()}
            outbox = Outbox(tx)

            def done(pending: list[list[Entry]]) -> None:
                current = {
                    (c, k): record
                    for c, request in found.items()
                    for k, record in zip(keys[c], request.result, strict=True)
                }
                writes = Writes()
                for (entry, server_doc, state), entries in zip(acks, pending, strict=True):
                    target = (entry["collection"], entry["id"])
                    self._ack(outbox, writes, entry, server_doc, state, current[target], entries)
                outbox.issue(writes)
                writes.issue(tx)

            # An acknowledged plain write's own row is only deleted: not read again.
            own = {entry["n"] for entry, _, _ in acks if "row" not in entry}
            outbox.read_records(targets, skip=own).then(done)

        await self.replica.store.run([*keys, OUTBOX, META], "readwrite", body)

    def _ack(
        self,
        outbox: Outbox,
        writes: Writes,
        entry: Entry,
        server_doc: dict[str, Any] | None,
        state: State,
        current: dict[str, Any] | None,
        entries: list[Entry],
    ) -> None:
        """Drop one landed entry (its write left the item in ``state``, holding
        ``server_doc``); ``current`` is its record and ``entries`` its record's
        outbox entries."""
        collection, key = entry["collection"], entry["id"]
        version, mid = state
        base_v = entry["base_v"]
        # The write may sit under writes this replica has not seen: an increment alone
        # (no state condition: it may even have landed on a document deleted for good and
        # created again), or a write settled after its reply was lost and written over
        # since. Then ``state`` holds them and is not local edits' base.
        foreign = (
            version != (base_v or 0) + 1
            or mid != entry["mid"]
            or server_doc != self._written_doc(entry)
        )
        spec = self.replica.schema.collections[collection]
        outbox.delete(entry)
        rest = [e for e in entries if e["n"] != entry["n"]]
        for follower in rest:
            if follower["follows"] == entry["mid"]:
                if foreign:  # its push meets the unseen writes as a conflict
                    base_m = entry.get("base_m")
                    rebased = {"base": self._written_doc(entry), "base_v": base_v, "base_m": base_m}
                else:
                    rebased = {"base": server_doc, "base_v": version, "base_m": mid}
                outbox.put({**follower, **rebased, "follows": None, "new": False})
        if not rest:  # nothing else pending: the record is what the server has
            if server_doc is None:
                writes.delete(collection, key)
                if version is not None:  # older entries of the record must not revive it
                    writes.put(META, self._tomb(collection, key, state))
            else:
                seq = {"_seq": current["_seq"]} if current and "_seq" in current else {}
                record = {**server_doc, "_v": version, "_m": mid, **seq}
                writes.put(collection, with_index_keys(spec, record))
        elif current is not None and not foreign:
            writes.put(collection, {**current, "_v": version, "_m": mid})

    def _tomb(self, collection: str, key: Key, state: State) -> dict[str, Any]:
        """The ``_meta`` record of a tombstone this device knows (see the pull)."""
        version, mid = state
        return {"key": tomb_key(self.scope, collection, key), "_v": version, "_m": mid}

    def _tombstone(self) -> dict[str, Any]:
        """The fields a tombstone item has besides its key and state."""
        return {"_del": True, "_ttl": self.replica.platform.now_ms() // 1000 + TOMBSTONE_SECONDS}

    async def _conflict(self, entry: Entry, old: dict[str, Any] | None, report: PushReport) -> None:
        remote_doc, system = document_of(old)
        if system.get("_m") == entry["mid"]:
            # Our own earlier attempt landed; only its reply was lost.
            await self._acked([(entry, remote_doc, state_of(system))])
            report.pushed += 1
            return
        await self._resolve(entry, remote_doc, system, report)

    async def _resolve(
        self,
        entry: Entry,
        remote_doc: dict[str, Any] | None,
        system: dict[str, Any],
        report: PushReport,
    ) -> None:
        """Merge with the server's version, record the conflict, and queue the result.

        The documents decide the result (three-way). The conflict is recorded when the
        server's state is not the one the edit was made on (for a create: the
        tombstone this device last saw, if any): not when this device only meets
        its own tombstone, or its knowledge of the record was merely out of date
        while nothing moved on the server.
        """
        collection, key = entry["collection"], entry["id"]
        strategy = self.strategy(collection)
        remote_v, remote_m = state_of(system)
        remote_hlc = str(system.get("_hlc") or "")
        spec = self.replica.schema.collections[collection]
        local = self._written_doc(entry)
        try:
            merged = merge(entry["base"], local, remote_doc, strategy, entry["hlc"] > remote_hlc)
        except Exception as error:  # the app's callback: this change waits, the others go on
            report.conflicts += 1
            failed = RemoteError("MergeFailed", repr(error), 400, {})
            await self._reject([entry], failed, report)
            return
        merged = None if merged is None else dict(merged)  # never the local side itself
        recorded = [False]

        def body(tx: Transaction) -> None:
            seen = tx.get(META, tomb_key(self.scope, collection, key))
            outbox = Outbox(tx)

            def resolve(found: list[list[Entry]]) -> None:
                apply_merge(found[0])
                outbox.issue()

            def apply_merge(entries: list[Entry]) -> None:
                base_state = base_state_of(entry) or state_of(seen.result or {})
                changed_remotely = (remote_v, remote_m) != base_state or remote_doc != entry["base"]
                recorded[0] = changed_remotely
                # The local side is this entry's own edit: the record also holds the edits
                # made while it was in flight, which their own entries push afterwards.
                followers = sorted((e for e in entries if e["n"] > entry["n"]), key=_by_n)
                deltas = {k: v for k, v in entry["inc"].items() if k not in entry["set"]}
                if merged is not None and remote_doc is not None:
                    # Increments commute: re-apply this device's deltas to the server's value.
                    for name, delta in deltas.items():
                        merged[name] = remote_doc.get(name, 0) + delta
                if changed_remotely:
                    tx.put(
                        CONFLICTS,
                        {
                            "cid": f"{entry['mid']}:{remote_v}:{remote_m}",
                            "collection": collection,
                            "id": key,
                            "base": entry["base"],
                            "local": local,
                            "remote": remote_doc,
                            "result": merged,
                            "strategy": strategy if isinstance(strategy, str) else "callback",
                            "hlc": entry["hlc"],
                            "remote_hlc": remote_hlc,
                        },
                    )
                server_known = {"_v": remote_v, "_m": remote_m} if remote_v is not None else {}
                shown = replay(merged, followers)
                if shown is None:
                    tx.delete(collection, key)
                else:
                    tx.put(collection, with_index_keys(spec, {**shown, **server_known}))
                # The edits made on top of this one were made on its local side, not on
                # the merged result: they meet the server as conflicts of their own
                # (their base: that local side; their condition: its stale state), so
                # neither is the merge undone by a later put nor an edit lost.
                for follower in followers:
                    if follower["follows"] == entry["mid"]:
                        stale = {"base_v": entry["base_v"], "base_m": entry.get("base_m")}
                        unfollowed = {"base": local, **stale, "follows": None, "new": False}
                        outbox.put({**follower, **unfollowed})
                if merged == remote_doc:
                    outbox.delete(entry)  # the server already has the result
                    if not followers and remote_doc is None and remote_v is not None:
                        tx.put(META, self._tomb(collection, key, (remote_v, remote_m)))
                    return
                # The merged result is a write of its own: a new mutation id (never the
                # same ``_m`` twice on the server, even when the first attempt's fate was
                # lost with an expired changelog), first sent from now on.
                rebased = {"base": remote_doc, "base_v": remote_v, "base_m": remote_m}
                first_send = ("since", "sent", "unsure")
                outbox.put(
                    {
                        **{k: v for k, v in entry.items() if k not in first_send},
                        **rebased,
                        "mid": new_id(),
                        "op": "delete" if merged is None else "put",
                        "value": merged,
                        "set": {},
                        # The merged value holds this device's deltas; they are kept so
                        # that another conflict re-applies them to that server's value.
                        "inc": {} if merged is None else deltas,
                        "merged": merged is not None,
                        "new": not system,  # no item at all (not even a tombstone)
                        "state": PENDING,
                    },
                )

            outbox.read_records([(collection, key)]).then(resolve)

        stores = [collection, OUTBOX, CONFLICTS, META]
        await self.replica.store.run(stores, "readwrite", body)
        report.conflicts += recorded[0]
        self.replica._changed([collection])

    async def _cancelled(self, batch: list[Entry], error: RemoteError, report: PushReport) -> None:
        reasons = error.body.get("CancellationReasons") or []
        failed = [
            (entry, reason)
            for entry, reason in zip(batch, reasons, strict=False)
            if reason.get("Code") == "ConditionalCheckFailed"
        ]
        if failed and all(document_of(r.get("Item"))[1].get("_m") == e["mid"] for e, r in failed):
            # This very transaction landed before (a retry after its ClientRequestToken
            # expired): all of it did, atomically.
            acks: list[Ack] = []
            for entry, reason in zip(batch, reasons, strict=False):
                landed = reason.get("Code") == "ConditionalCheckFailed"
                item = reason.get("Item") if landed else None
                if item is None:  # an increment, without a condition on the version
                    item = await self._current(entry)
                doc, system = document_of(item)
                acks.append((entry, doc, state_of(system)))
            await self._acked(acks)
            report.pushed += len(batch)
            return
        conflicted = False
        for entry, reason in zip(batch, reasons, strict=False):
            if reason.get("Code") == "ConditionalCheckFailed":
                remote_doc, system = document_of(reason.get("Item"))
                if system.get("_m") != entry["mid"]:
                    conflicted = True
                    await self._resolve(entry, remote_doc, system, report)
        if conflicted:
            await self._set_state(batch, PENDING)
        else:
            await self._reject(batch, error, report)

    async def _reject(
        self, batch: list[Entry], error: RemoteError, report: PushReport, *, unsure: bool = False
    ) -> None:
        """Move the batch to ``rejected``; ``unsure``: an earlier attempt may have landed,
        so a retry settles it first."""
        report.rejected += len(batch)
        at = self.replica.platform.now_ms()  # tells a refusal after a retry from the first
        error_fields = {"code": error.code, "message": error.message, "at": at}
        extra = {"unsure": True} if unsure else {}
        await self._set_state(batch, REJECTED, error=error_fields, **extra)
        await self.replica._refresh_counts()
