"""Downstream: apply the scope's changelog in order, or rebuild from a base sync.

Invariants:
* The changelog order is the truth: entries apply in ``seq`` order, and the
  cursor advances in the same store transaction as the records it covers.
* A record remembers the ``seq`` it was last written from (``_seq``) and ignores
  anything at or below it.
* A record with a pending outbox entry is never overwritten: its push will meet
  the server's version as a conflict and merge it.
* A record is not set back to an older version (``_v``) than it holds: its
  own acknowledged write may be newer than the entries a pull is reading.
* A ``seq`` that does not follow the one before (the cursor, then each entry)
  means entries expired: the replica does a base sync (a paginated read of the
  namespace's items in the scope, then catch-up).
* Only the items of this replica's namespace (``<namespace>/`` in the sort key)
  are its own: entries of other namespaces (other apps sharing the table and
  scope) are never applied nor counted, but the cursor moves past them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._documents import Key
from .._marshal import to_attr
from .._outbox import OUTBOX, Entry
from .._outbox_rows import slices as outbox_slices
from .._schema import META, set_index_keys
from .._store import KeyRange, Request, Transaction, Writes
from . import _images
from ._items import (
    State,
    base_state_of,
    document_of,
    namespace_prefix,
    parse_sort_key,
    sort_key,
    state_of,
    tomb_key,
    tomb_prefix,
)

if TYPE_CHECKING:
    from .._remote import Remote
    from .._replica import Replica

PAGE = 500
#: Items per base-sync request: each request costs several ms of fixed overhead
#: through the proxy (measured: pages of 100 read 20,000 items at about 8,000/s,
#: pages of 500 at about 30,000/s; a bigger page is one longer task to decode). The next
#: page is fetched meanwhile.
BASE_PAGE = 500
#: Items converted per task, and changelog entries applied per store transaction (a
#: base sync applies a page per transaction): short tasks, a responsive page.
APPLY_CHUNK = 100
#: After this long (ms) from its first send, a write the changelog does not show
#: did not land: a running stream consumer appends within seconds.
QUIET_MS = 10 * 60 * 1000
#: Local records read per slice when looking for the ones a base sync did not see.
SCAN = 250


@dataclass(slots=True)
class _Change:
    collection: str
    key: Key
    seq: int
    doc: dict[str, Any] | None  # None: delete
    version: int | None
    hlc: str = ""
    mid: str | None = None
    image: int | None = None  # a put of the record made in JavaScript (_images): its position


def _image_change(collection: str, key: Key, seq: int, image: dict[str, Any]) -> _Change:
    """The change that makes a record equal to a DynamoDB item image (a tombstone deletes)."""
    doc, system = document_of(image)
    version, mid = state_of(system)
    return _Change(collection, key, seq, doc, version, str(system.get("_hlc") or ""), mid)


@dataclass
class PullReport:
    """What one pull did."""

    applied: int = 0
    skipped_pending: int = 0
    base_sync: bool = False
    pages: int = 0


class Puller:
    """Pulls one namespace of one scope of one table into a replica."""

    def __init__(
        self, replica: Replica, remote: Remote, table: str, scope: str, namespace: str
    ) -> None:
        self.replica = replica
        self.remote = remote
        self.table = table
        self.changes_table = f"{table}_changes"
        self.scope = scope
        self.namespace = namespace
        self.cursor_key = f"cursor:{scope}"
        self.stale_prefix = f"stale:{scope}:"
        self.tomb_prefix = tomb_prefix(scope)

    async def cursor(self) -> int | None:
        """The last applied changelog seq, or ``None`` before the first sync."""
        found = await self.replica.store.get(META, self.cursor_key)
        return None if found is None else int(found["seq"])

    async def pull(self, progress: Callable[[str], None] | None = None) -> PullReport:
        """Catch up with the changelog (with a base sync first if needed).

        ``progress`` hears what is going on: ``"pulling page 3"``, ``"base sync: page 2"``.
        """
        report = PullReport()
        cursor = await self.cursor()
        if cursor is None:
            cursor = await self.base_sync(report, progress)
        await self._refetch_stale(report, cursor)
        # Every entry up to the head read now exists unless it expired: the consumer
        # writes the head and its entries in one transaction.
        head = await self.head()
        while True:
            # Closed when a base sync breaks off the reading, not left to the collector.
            async with contextlib.aclosing(self._pages(cursor, forward=True)) as pages:
                async for items, more in pages:
                    seqs = [int(item["sk"]["N"]) for item in items]
                    last = seqs[-1] if seqs else cursor
                    if seqs != list(range(cursor + 1, last + 1)) or (not more and last < head):
                        # Entries expired (TTL deletes them in no particular order): rebuild
                        # from the data table, then catch up from its head.
                        cursor = head = await self.base_sync(report, progress)
                        break
                    if items:
                        report.pages += 1
                        if progress:
                            progress(f"pulling page {report.pages}")
                    # In slices, each with the cursor at its last entry: short tasks, a
                    # responsive page. Entries of other namespaces are not applied, but passed.
                    for i in range(0, len(items), APPLY_CHUNK):
                        chunk = items[i : i + APPLY_CHUNK]
                        changes = await self._changes(chunk)
                        cursor = int(chunk[-1]["sk"]["N"])
                        await self.apply(changes, report, cursor=cursor)
                    if not more:
                        return report
                    await asyncio.sleep(0)  # let the page breathe between pages

    def _stale_mark(self, target: tuple[str, Key]) -> dict[str, Any]:
        """The ``_meta`` record saying a pull skipped server changes of ``target``."""
        collection, key = target
        mark = f"{self.stale_prefix}{collection}:{key!r}"
        return {"key": mark, "collection": collection, "id": key}

    async def _refetch_stale(self, report: PullReport, cursor: int) -> None:
        """Read the records whose server changes were skipped for edits now gone."""
        marks = await self.replica.store.query(
            META, range=KeyRange.bound(self.stale_prefix, self.stale_prefix + "\uffff")
        )
        changes = []
        for mark in marks:
            collection, key = mark["collection"], mark["id"]
            item = await self.read(sort_key(self.namespace, collection, key))
            if item is None:
                changes.append(_Change(collection, key, cursor, None, None))
            else:
                changes.append(_image_change(collection, key, cursor, item))
        if changes:  # records still pending are skipped (and stay marked)
            await self.apply(changes, report, cursor=None, force=True, unmark=True)

    async def read(self, sort_key: str) -> dict[str, Any] | None:
        """The scope's data item ``sort_key`` (a consistent read), if it exists."""
        got = await self.remote.call(
            "GetItem",
            {
                "TableName": self.table,
                "Key": {"pk": to_attr(self.scope), "sk": to_attr(sort_key)},
                "ConsistentRead": True,
            },
        )
        item: dict[str, Any] | None = got.get("Item")
        return item

    async def apply_entries(self, items: list[dict[str, Any]]) -> PullReport:
        """Apply changelog entries received out of band (realtime), in seq order.

        The cursor moves to the last entry's seq, also past entries of other
        namespaces, which are not applied.
        """
        report = PullReport()
        if items:
            changes = await self._changes(items)
            await self.apply(changes, report, cursor=int(items[-1]["sk"]["N"]))
        return report

    async def landed(self, entry: Entry, item: dict[str, Any]) -> bool | None:
        """Whether the outbox ``entry``'s write was applied, by the changelog.

        ``item`` is the record's item on the server now (a consistent read made
        before this call; not carrying the entry's mutation id). True if an entry of
        the record after the write was first sent (``since``) carries its mutation
        id. False if none does up to the entry of the item's current state (the
        changelog holds a record's states in order, so an earlier write would be
        there), if that state was written at or before ``since``, or if it is still
        the state the edit was made on. ``None`` while the changelog lags behind.

        Entries that expired may have taken the answer with them: past a gap the
        scan still counts an entry with the mutation id, and reaching the current
        state still means False (the write meets the server's state as a recorded
        conflict; an increment alone can count twice). No head is read: a gap
        says nothing about entries still on their way (a lagging consumer). So a
        write the changelog shows neither way is waited for until ``QUIET_MS``
        after its first send (``sent``): the stream consumer must run.
        """
        mid, since = entry["mid"], int(entry.get("since", 0))
        target = sort_key(self.namespace, entry["collection"], entry["id"])
        state = state_of(document_of(item)[1])
        if state == base_state_of(entry):
            return False  # the item is still the state the edit was made on
        async with contextlib.aclosing(self._entries(since, forward=True)) as after:
            async for found in after:
                if found["key"]["S"] != target:
                    continue
                if _mutation(found) == mid:
                    return True
                if _state(found) == state:
                    return False  # caught up with the item: an earlier write would be here
        # The item's state may be older than the write's first send.
        async with contextlib.aclosing(self._entries(since + 1, forward=False)) as before:
            async for found in before:
                if found["key"]["S"] == target:
                    if _state(found) == state:
                        return False
                    break
        # A running consumer appends a write within seconds: long after the first send,
        # a write still missing from the changelog did not land.
        waited = self.replica.platform.now_ms() - int(entry.get("sent", 0))
        return False if waited > QUIET_MS else None

    async def _entries(self, seq: int, *, forward: bool) -> AsyncGenerator[dict[str, Any], None]:
        """Changelog entries after ``seq`` (``forward``) or before it, newest first."""
        async with contextlib.aclosing(self._pages(seq, forward=forward)) as pages:
            async for items, _ in pages:
                for item in items:
                    if item["sk"]["N"] != "0":  # not the head item
                        yield item

    async def _pages(
        self, seq: int, *, forward: bool
    ) -> AsyncGenerator[tuple[list[dict[str, Any]], bool], None]:
        """Pages of changelog items after ``seq`` (``forward``) or before it, and whether
        more follow."""
        start: dict[str, Any] | None = None
        while True:
            request: dict[str, Any] = {
                "TableName": self.changes_table,
                "KeyConditionExpression": f"pk = :p AND sk {'>' if forward else '<'} :c",
                "ExpressionAttributeValues": {":p": to_attr(self.scope), ":c": to_attr(seq)},
                "ConsistentRead": True,
                "ScanIndexForward": forward,
                "Limit": PAGE,
            }
            if start:
                request["ExclusiveStartKey"] = start
            page = await self.remote.call("Query", request)
            start = page.get("LastEvaluatedKey")
            yield page.get("Items", []), bool(start)
            if not start:
                return

    async def head(self) -> int:
        """The changelog's last seq."""
        got = await self.remote.call(
            "GetItem",
            {
                "TableName": self.changes_table,
                "Key": {"pk": to_attr(self.scope), "sk": to_attr(0)},
                "ConsistentRead": True,
            },
        )
        return int(got.get("Item", {}).get("head", {}).get("N", 0))

    async def _changes(self, items: list[dict[str, Any]]) -> list[_Change]:
        """The changes of changelog entries, leaving out those of other namespaces."""
        changes = []
        for item in items:
            change = await self._change(item)
            if change is not None:
                changes.append(change)
        return changes

    async def _change(self, item: dict[str, Any]) -> _Change | None:
        """The change of a changelog entry; ``None`` for another namespace's item."""
        seq = int(item["sk"]["N"])
        parsed = parse_sort_key(item["key"]["S"], self.namespace)
        if parsed is None:
            return None  # another app's item: never read, applied or counted
        collection, key = parsed
        if item.get("op", {}).get("S") == "put" and "item" not in item:
            # "trunc": the new image was too large for the entry; read the item itself
            # (it may be newer than this entry: later entries apply on top).
            image = await self.read(item["key"]["S"])
            item = item if image is None else {**item, "item": {"M": image}}
        if item.get("op", {}).get("S") == "put" and "item" in item:
            return _image_change(collection, key, seq, item["item"]["M"])
        return _Change(collection, key, seq, None, None)

    async def apply(
        self,
        changes: list[_Change],
        report: PullReport,
        *,
        cursor: int | None,
        force: bool = False,
        observe: bool = True,
        unmark: bool = False,
        images: Any = None,
    ) -> None:
        """Apply changes (in seq order) and set the cursor, in one transaction.

        ``force`` (base sync) applies regardless of the records' ``_seq`` and
        ``_v`` (and does not read them); ``cursor=None`` leaves the cursor alone;
        ``observe=False`` leaves the clock to the caller; ``unmark`` drops the
        stale marks of the records it applies. ``images``: the page's records made
        in JavaScript, which the changes with an ``image`` put.
        """
        specs = self.replica.schema.collections
        known = [c for c in changes if c.collection in specs]
        tomb_range = KeyRange.bound(self.tomb_prefix, self.tomb_prefix + "\uffff")
        collections = sorted({c.collection for c in known})

        def set_cursor(tx: Transaction) -> None:
            if cursor is not None:
                tx.put(META, {"key": self.cursor_key, "seq": cursor})
            if force and cursor is not None:
                # A base sync ends: the snapshot is the truth, the tombstones are moot.
                tx.query(META, range=tomb_range).then(
                    lambda found: tx.delete_many(META, [tomb["key"] for tomb in found])
                )

        def body(tx: Transaction) -> None:
            targets = list(dict.fromkeys((c.collection, c.key) for c in known))
            keys: dict[str, list[Key]] = {}
            for collection, key in targets:
                keys.setdefault(collection, []).append(key)
            found = None if force else {c: tx.get_many(c, k) for c, k in keys.items()}
            # Tombstones of this device's acknowledged deletes (their older entries must
            # not bring the documents back), read only when there are any.
            any_tombs = None if force else tx.count(META, range=tomb_range)
            tombs: Request[list[dict[str, Any] | None]] | None = None

            def ready(pending: list[list[Any]]) -> None:
                # Per target, the keys of the outbox rows holding its entries.
                waiting = {t for t, rows in zip(targets, pending, strict=True) if rows}
                current: dict[tuple[str, Key], dict[str, Any] | None] = {}
                for collection, records in (found or {}).items():
                    targets_of = ((collection, k) for k in keys[collection])
                    current.update(zip(targets_of, records.result, strict=True))
                deleted = {
                    target: tomb
                    for target, tomb in zip(targets, tombs.result if tombs else [], strict=False)
                    if tomb is not None
                }
                writes = Writes()  # a few put_many / delete_many, not a request per change
                staged: dict[str, list[int]] = {}
                for change in known:
                    target = (change.collection, change.key)
                    record = current.get(target)
                    if target in waiting:
                        report.skipped_pending += 1
                        # The pending edit may vanish without a push (a cancelled create,
                        # a discarded rejection): then the next pull reads the record.
                        tx.put(META, self._stale_mark(target))
                        continue
                    if not force and record is not None and _older(change, record):
                        continue
                    tomb = deleted.get(target)
                    if tomb is not None:
                        if record is None and _older(change, tomb):
                            continue
                        del deleted[target]
                        tx.delete(META, tomb["key"])
                    if change.image is not None:
                        staged.setdefault(change.collection, []).append(change.image)
                    elif change.doc is None:
                        writes.delete(change.collection, change.key)
                        current[target] = None
                    else:
                        system = {"_v": change.version, "_m": change.mid, "_seq": change.seq}
                        # A dict of its own: its index keys are set in place, not copied.
                        new = set_index_keys(specs[change.collection], {**change.doc, **system})
                        writes.put(change.collection, new)
                        current[target] = new
                    report.applied += 1
                    if unmark:
                        tx.delete(META, self._stale_mark(target)["key"])
                writes.issue(tx)
                for collection, positions in staged.items():
                    _images.put(tx, collection, images, positions)
                set_cursor(tx)

            def counted(pending: int) -> None:
                nonlocal tombs
                if any_tombs is not None and any_tombs.result:
                    tombs = tx.get_many(META, [tomb_key(self.scope, c, k) for c, k in targets])
                # Looking up each record's outbox entries only when there are any (their
                # keys: whether a record has any is all the pull asks).
                if pending:
                    tx.lookup_keys(OUTBOX, "by_record", targets).then(ready)
                elif tombs is not None:
                    tombs.then(lambda _: ready([[] for _ in targets]))
                else:
                    ready([[] for _ in targets])

            if targets:
                tx.count(OUTBOX).then(counted)
            else:
                set_cursor(tx)

        await self.replica.store.run([*collections, OUTBOX, META], "readwrite", body)
        self.replica._changed(collections)
        latest = max((c.hlc for c in known), default="") if observe else ""
        if latest:
            await self.replica.observe(latest)

    async def base_sync(
        self, report: PullReport, progress: Callable[[str], None] | None = None
    ) -> int:
        """Rebuild the namespace's part of the scope from the data table; returns the
        cursor it ends at."""
        report.base_sync = True
        head = await self.head()
        seen: set[tuple[str, Key]] = set()
        latest = ""
        # In the page, items go from the network to IndexedDB without entering Python.
        remote = _images.in_page(self.remote, self.replica.store)
        prefix = namespace_prefix(self.namespace)
        collections = _images.specs(self.replica.schema, self.replica.store.schema)

        def query(start: dict[str, Any] | None) -> asyncio.Future[Any]:
            request: dict[str, Any] = {
                "TableName": self.table,
                "KeyConditionExpression": "pk = :p AND begins_with(sk, :ns)",
                "ExpressionAttributeValues": {
                    ":p": to_attr(self.scope),
                    ":ns": to_attr(prefix),
                },
                "ConsistentRead": True,
                "Limit": BASE_PAGE,
            }
            if start:
                request["ExclusiveStartKey"] = start
            call = remote.call_js if remote else self.remote.call
            return asyncio.ensure_future(call("Query", request))

        following: asyncio.Future[Any] | None = query(None)
        try:
            while following is not None:
                answer = await following
                page = _images.convert(answer, prefix, collections, head) if remote else answer
                if isinstance(page, _images.Page):
                    start = page.start
                else:
                    start = page.get("LastEvaluatedKey")
                # The next page is on its way while this one is applied.
                following = query(start) if start else None
                # Receiving the page (decoding its JSON, or in the page converting it in
                # JavaScript) was one task: what follows is the next.
                await asyncio.sleep(0)
                report.pages += 1
                if progress:
                    progress(f"base sync: page {report.pages}")
                images = None
                if isinstance(page, _images.Page):
                    changes = self._staged_changes(page, head, seen)
                    latest = max(latest, page.hlc)
                    images = page.records
                else:
                    changes = await self._page_changes(page.get("Items", []), head, seen)
                    latest = max([latest, *(c.hlc for c in changes)])
                # One store transaction per page: a durable commit per 100 items cost
                # a fifth of the throughput. A snapshot replaces local state; the cursor
                # moves only at the end.
                await self.apply(
                    changes, report, cursor=None, force=True, observe=False, images=images
                )
        finally:
            if following is not None:
                following.cancel()
        if latest:
            await self.replica.observe(latest)
        await self._drop_unseen(seen, head, report)
        return head

    async def _page_changes(
        self, items: list[dict[str, Any]], seq: int, seen: set[tuple[str, Key]]
    ) -> list[_Change]:
        """The changes of a base sync page's items, converted in slices (short tasks)."""
        changes = []
        for i in range(0, len(items), APPLY_CHUNK):
            if i:
                await asyncio.sleep(0)
            for item in items[i : i + APPLY_CHUNK]:
                parsed = parse_sort_key(item["sk"]["S"], self.namespace)
                if parsed is None:  # under the prefix, but not a document's key
                    continue
                seen.add(parsed)
                changes.append(_image_change(*parsed, seq, item))
        return changes

    def _staged_changes(
        self, page: _images.Page, seq: int, seen: set[tuple[str, Key]]
    ) -> list[_Change]:
        """The changes of a base sync page converted in JavaScript."""
        changes = []
        for i, sk in enumerate(page.sort_keys):
            parsed = parse_sort_key(sk, self.namespace)
            if parsed is None:
                continue
            seen.add(parsed)
            image = None if i in page.gone else i
            changes.append(_Change(*parsed, seq, None, None, image=image))
        return changes

    async def _drop_unseen(self, seen: set[tuple[str, Key]], head: int, report: PullReport) -> None:
        """Delete local records the server no longer has (unless edits are pending:
        those are marked stale, and read again once their edits are gone)."""
        doomed: dict[tuple[str, Key], None] = {}
        for collection in self.replica.schema.collections:
            # Only the keys (decoding every record cost a tenth of a base sync), in
            # key-ordered slices: no long task over a big store.
            async for keys in self.replica.store.key_slices(collection, SCAN):
                doomed.update(dict.fromkeys((collection, key) for key in keys))
        # A record deleted here by a pending edit has no key to scan, but a discard of
        # that edit puts it back: its mark makes a later pull read the server's.
        async for entries in outbox_slices(self.replica.store, SCAN):
            doomed.update(dict.fromkeys((e["collection"], e["id"]) for e in entries))
        changes = [_Change(c, key, head, None, None) for c, key in doomed if (c, key) not in seen]
        await self.apply(changes, report, cursor=head, force=True)


def _mutation(entry: dict[str, Any]) -> str | None:
    """The mutation id of the write a changelog entry holds."""
    found = entry.get("_m") or entry.get("item", {}).get("M", {}).get("_m")
    return None if found is None else str(found["S"])


def _state(entry: dict[str, Any]) -> State | None:
    """The item state a changelog entry holds (``None`` for a delete)."""
    if entry.get("op", {}).get("S") != "put":
        return None
    version = entry.get("_v")
    return (None if version is None else int(version["N"]), _mutation(entry))


def _older(change: _Change, record: dict[str, Any]) -> bool:
    """Whether ``record`` already holds ``change`` or something newer."""
    if record.get("_seq", -1) >= change.seq:
        return True
    held = record.get("_v")
    return change.version is not None and held is not None and change.version < held
