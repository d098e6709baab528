"""Downstream: apply the scope's changelog in order, or rebuild from a base sync.

Invariants:
* The changelog order is the truth: entries apply in ``seq`` order, and the
  cursor advances in the same store transaction as the records it covers.
* A record remembers the ``seq`` it was last written from (``_seq``) and ignores
  anything at or below it.
* A record with a pending outbox entry is never overwritten: its push will meet
  the server's version as a conflict and merge it.
* A first ``seq`` above ``cursor + 1`` means the entries in between expired: the
  replica does a base sync (a paginated read of the whole scope, then catch-up).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._documents import Key
from .._marshal import to_attr
from .._outbox import OUTBOX, Entry
from .._schema import META, with_index_keys
from .._store import Transaction
from ._items import document_of, parse_sort_key

if TYPE_CHECKING:
    from .._remote import Remote
    from .._replica import Replica

PAGE = 500


@dataclass
class _Change:
    collection: str
    key: Key
    seq: int
    doc: dict[str, Any] | None  # None: delete
    version: int | None
    hlc: str = ""


def _image_change(collection: str, key: Key, seq: int, image: dict[str, Any]) -> _Change:
    """The change that makes a record equal to a DynamoDB item image (a tombstone deletes)."""
    doc, system = document_of(image)
    version = system.get("_v")
    return _Change(
        collection,
        key,
        seq,
        doc,
        None if version is None else int(version),
        str(system.get("_hlc") or ""),
    )


@dataclass
class PullReport:
    """What one pull did."""

    applied: int = 0
    skipped_pending: int = 0
    base_sync: bool = False
    pages: int = 0


class Puller:
    """Pulls one scope of one table into a replica."""

    def __init__(self, replica: Replica, remote: Remote, table: str, scope: str) -> None:
        self.replica = replica
        self.remote = remote
        self.table = table
        self.changes_table = f"{table}_changes"
        self.scope = scope
        self.cursor_key = f"cursor:{scope}"

    async def cursor(self) -> int | None:
        """The last applied changelog seq, or ``None`` before the first sync."""
        found = await self.replica.store.get(META, self.cursor_key)
        return None if found is None else int(found["seq"])

    async def pull(self, progress: Callable[[int], None] | None = None) -> PullReport:
        """Catch up with the changelog (with a base sync first if needed)."""
        report = PullReport()
        cursor = await self.cursor()
        if cursor is None:
            cursor = await self.base_sync(report, progress)
        start: dict[str, Any] | None = None
        while True:
            request: dict[str, Any] = {
                "TableName": self.changes_table,
                "KeyConditionExpression": "pk = :p AND sk > :c",
                "ExpressionAttributeValues": {":p": to_attr(self.scope), ":c": to_attr(cursor)},
                "ConsistentRead": True,
                "Limit": PAGE,
            }
            if start:
                request["ExclusiveStartKey"] = start
            page = await self.remote.call("Query", request)
            items = page.get("Items", [])
            if items and int(items[0]["sk"]["N"]) > cursor + 1:
                # The entries in between expired: rebuild from the data table.
                cursor = await self.base_sync(report, progress)
                start = None
                continue
            changes = [await self._change(item) for item in items]
            if changes:
                report.pages += 1
                if progress:
                    progress(report.pages)
                await self.apply(changes, report, cursor=changes[-1].seq)
                cursor = changes[-1].seq
            start = page.get("LastEvaluatedKey")
            if not start:
                return report
            await asyncio.sleep(0)  # let the page breathe between pages

    async def apply_entries(self, items: list[dict[str, Any]]) -> PullReport:
        """Apply changelog entries received out of band (realtime), in seq order."""
        report = PullReport()
        changes = [await self._change(item) for item in items]
        if changes:
            await self.apply(changes, report, cursor=changes[-1].seq)
        return report

    async def _change(self, item: dict[str, Any]) -> _Change:
        seq = int(item["sk"]["N"])
        collection, key = parse_sort_key(item["key"]["S"])
        if item.get("op", {}).get("S") == "put" and "item" not in item:
            # "trunc": the new image was too large for the entry; read the item itself
            # (it may be newer than this entry: later entries apply on top).
            got = await self.remote.call(
                "GetItem",
                {
                    "TableName": self.table,
                    "Key": {"pk": to_attr(self.scope), "sk": item["key"]},
                    "ConsistentRead": True,
                },
            )
            item = {**item, "item": {"M": got["Item"]}} if "Item" in got else item
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
    ) -> None:
        """Apply changes (in seq order) and set the cursor, in one transaction.

        ``force`` (base sync) applies regardless of the records' ``_seq``;
        ``cursor=None`` leaves the cursor alone.
        """
        known = [c for c in changes if c.collection in self.replica.schema.collections]
        collections = sorted({c.collection for c in known})
        schema = self.replica.schema

        skipped: list[int] = []

        def set_cursor(tx: Transaction) -> None:
            if cursor is not None:
                # A change skipped for a pending record is read again by the next pull:
                # the pending edit may vanish without a push (cancelled, discarded).
                stop = min([cursor, *(seq - 1 for seq in skipped)])
                tx.put(META, {"key": self.cursor_key, "seq": stop})

        def body(tx: Transaction) -> None:
            targets = list(dict.fromkeys((c.collection, c.key) for c in known))
            found = {t: tx.get(t[0], t[1]) for t in targets}
            pending = tx.lookup(OUTBOX, "by_record", targets) if targets else None

            def ready(entries: list[list[Entry]]) -> None:
                waiting = {t for t, group in zip(targets, entries, strict=True) if group}
                current = {t: r.result for t, r in found.items()}
                for change in known:
                    target = (change.collection, change.key)
                    record = current[target]
                    if target in waiting:
                        report.skipped_pending += 1
                        skipped.append(change.seq)
                        continue
                    if not force and record is not None and record.get("_seq", -1) >= change.seq:
                        continue
                    if change.doc is None:
                        tx.delete(change.collection, change.key)
                        current[target] = None
                    else:
                        spec = schema.collections[change.collection]
                        new = with_index_keys(
                            spec, {**change.doc, "_v": change.version, "_seq": change.seq}
                        )
                        tx.put(change.collection, new)
                        current[target] = new
                    report.applied += 1
                set_cursor(tx)

            if pending is None:
                set_cursor(tx)
            else:
                pending.then(ready)

        await self.replica.store.run([*collections, OUTBOX, META], "readwrite", body)
        self.replica._watchers.changed(collections)
        latest = max((c.hlc for c in known), default="")
        if latest:
            await self.replica.observe(latest)

    async def base_sync(
        self, report: PullReport, progress: Callable[[int], None] | None = None
    ) -> int:
        """Rebuild the scope from the data table; returns the cursor it ends at."""
        report.base_sync = True
        head_item = await self.remote.call(
            "GetItem",
            {
                "TableName": self.changes_table,
                "Key": {"pk": to_attr(self.scope), "sk": to_attr(0)},
                "ConsistentRead": True,
            },
        )
        head = int(head_item.get("Item", {}).get("head", {}).get("N", 0))
        seen: set[tuple[str, Key]] = set()
        start: dict[str, Any] | None = None
        while True:
            request: dict[str, Any] = {
                "TableName": self.table,
                "KeyConditionExpression": "pk = :p",
                "ExpressionAttributeValues": {":p": to_attr(self.scope)},
                "ConsistentRead": True,
            }
            if start:
                request["ExclusiveStartKey"] = start
            page = await self.remote.call("Query", request)
            changes = []
            for item in page.get("Items", []):
                collection, key = parse_sort_key(item["sk"]["S"])
                seen.add((collection, key))
                changes.append(_image_change(collection, key, head, item))
            report.pages += 1
            if progress:
                progress(report.pages)
            start = page.get("LastEvaluatedKey")
            if changes:
                # A snapshot page replaces local state; the cursor moves only at the end.
                await self.apply(changes, report, cursor=None, force=True)
            if not start:
                break
            await asyncio.sleep(0)  # yield to the page between 1 MB pages
        await self._drop_unseen(seen, head, report)
        return head

    async def _drop_unseen(self, seen: set[tuple[str, Key]], head: int, report: PullReport) -> None:
        """Delete local records the server no longer has (unless edits are pending)."""
        doomed: list[_Change] = []
        for collection in self.replica.schema.collections:
            for record in await self.replica.store.query(collection):
                if (collection, record["id"]) not in seen:
                    doomed.append(_Change(collection, record["id"], head, None, None))
        await self.apply(doomed, report, cursor=head, force=True)
