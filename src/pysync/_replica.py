"""A replica: the app's local database for one user, with its outbox and clock.

Every local write is ONE store transaction over the collection(s), the outbox
and the clock: the documents, their outbox entries and the clock commit
together or not at all. Writes are computed inside the transaction from what it
reads (request callbacks, no ``await``), so concurrent writers in several tabs
never lose an update.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from . import _hlc
from ._documents import Document, Key, check_document, check_id, new_id, public
from ._errors import DocumentExistsError, DocumentNotFoundError, TransactionTooLargeError
from ._live import Subscription, Watchers
from ._migrate import migrate
from ._outbox import OUTBOX, PENDING, REJECTED, Edit, Entry, apply_patch, fold, replay
from ._outbox_rows import Outbox, entries_of
from ._outbox_rows import counts as outbox_counts
from ._outbox_rows import public as public_entry
from ._platform import Channel, Platform, Unsubscribe
from ._schema import CONFLICTS, META, AppSchema, check_name, index_range, with_index_keys
from ._store import Database, KeyRange, Request, Transaction, Writes

SyncState = Literal["synced", "pending", "conflict", "rejected"]

#: The most documents one :meth:`Replica.transaction` may change: it is pushed as ONE
#: DynamoDB ``TransactWriteItems`` (an item per document), which takes at most 100.
MAX_TRANSACTION_DOCUMENTS = 100


@dataclass(frozen=True)
class Status:
    """What the app shows about its data: pending work, leadership, connectivity, sync.

    ``pending``/``rejected``/``conflicts`` count outbox entries and recorded
    conflicts; ``leader``/``online`` are this tab's. The sync fields (``syncing``,
    ``progress`` such as ``"pushing 3 of 10"``, ``last_synced`` in epoch
    milliseconds, ``realtime`` and ``last_error``) are set by the leader tab's
    :class:`~pysync.Sync` and shown by the other tabs too.
    """

    pending: int = 0
    rejected: int = 0
    conflicts: int = 0
    leader: bool = False
    online: bool = True
    last_error: str | None = None
    syncing: bool = False
    progress: str | None = None
    last_synced: int | None = None
    realtime: bool = False


#: The status fields the leader tab's sync sets and the other tabs mirror.
_SYNC_FIELDS = ("last_error", "syncing", "progress", "last_synced", "realtime")


@dataclass(frozen=True)
class _Write:
    collection: str
    key: Key
    edit: Edit
    must_not_exist: bool = False


async def connect(
    app: str, user: str, schema: AppSchema, *, platform: Platform | None = None
) -> Replica:
    """Open the local replica of ``app`` for ``user`` (creating or migrating it).

    In a page this uses IndexedDB; pass ``platform`` (see ``pysync.testing``) to
    run elsewhere. ``app`` (1 to 64 letters, digits, ``_``, ``.``, ``-``, starting
    with a letter or digit) names the local database and, by default, the
    namespace of the app's items in DynamoDB (see :class:`pysync.Sync`).
    """
    check_name(app, "app name")
    if platform is None:
        from ._browser import BrowserPlatform

        platform = BrowserPlatform()
    store = await platform.open_store(schema.store_schema(_database_name(app, user)))
    try:
        client_id = await _client_id(store)
        await migrate(store, schema)
    except BaseException:
        store.close()
        raise
    replica = Replica(app, user, schema, store, platform, client_id)
    await replica._start()
    return replica


def _database_name(app: str, user: str) -> str:
    """The IndexedDB database of one app and user."""
    return f"pysync:{app}:{user}"


async def _client_id(store: Database) -> str:
    """This device's client id, created on first use (once, even with racing tabs)."""

    chosen: list[str] = []

    def body(tx: Transaction) -> None:
        def ensure(found: dict[str, Any] | None) -> None:
            if found is None:
                found = {"key": "client", "id": new_id()[:16]}
                tx.put(META, found)
            chosen.append(found["id"])

        tx.get(META, "client").then(ensure)

    await store.run(META, "readwrite", body)
    return chosen[0]


class Replica:
    """The local database of one app and user; open it with :func:`connect`."""

    def __init__(
        self,
        app: str,
        user: str,
        schema: AppSchema,
        store: Database,
        platform: Platform,
        client_id: str,
    ) -> None:
        self.app = app
        self.user = user
        self.name = _database_name(app, user)
        self.schema = schema
        self.store = store
        self.platform = platform
        self.client_id = client_id
        self._clock = _hlc.ZERO
        self._status = Status(online=platform.online())
        self._status_listeners: list[Callable[[Status], object]] = []
        self._watchers = Watchers()
        self._channel: Channel | None = None
        self._stops: list[Unsubscribe] = []
        self._collections = {name: Collection(self, name) for name in schema.collections}
        self.closed = False

    async def _start(self) -> None:
        self._channel = self.platform.channel(f"{self.name}:changes", self._on_message)
        self._stops.append(self.platform.on_online_change(self._on_online))
        self._stops.append(self.platform.request_leadership(f"{self.name}:leader", self._on_leader))
        await self._refresh_counts()

    # -- collections and status ------------------------------------------------------

    def collection(self, name: str) -> Collection:
        """The collection called ``name``."""
        try:
            return self._collections[name]
        except KeyError:
            raise KeyError(f"no collection {name!r} in the schema") from None

    def __getitem__(self, name: str) -> Collection:
        return self.collection(name)

    @property
    def status(self) -> Status:
        """The current status."""
        return self._status

    @property
    def is_leader(self) -> bool:
        """Whether this tab is the one that syncs for this database."""
        return self._status.leader

    def on_status(self, callback: Callable[[Status], object]) -> Unsubscribe:
        """Call ``callback(status)`` on every change of the status; returns an unsubscribe."""
        self._status_listeners.append(callback)
        return lambda: self._status_listeners.remove(callback)

    def _set_status(self, **changes: Any) -> None:
        new = replace(self._status, **changes)
        if new != self._status:
            old, self._status = self._status, new
            synced = _sync_fields(new)
            if new.leader and self._channel is not None and synced != _sync_fields(old):
                self._channel.post({"type": "status", **synced})
            for listener in list(self._status_listeners):
                listener(new)

    def _on_leader(self) -> None:
        # The sync fields mirrored from the old leader are not this tab's: a sync it
        # was running died with it. This tab's Sync sets its own realtime state.
        self._set_status(leader=True, syncing=False, progress=None, realtime=False)
        if self._channel is not None:  # the followers learn who reports the sync now
            self._channel.post({"type": "status", **_sync_fields(self._status)})

    def _on_online(self, online: bool) -> None:
        self._set_status(online=online)

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "changed":
            self._watchers.changed(message["collections"])
            self._spawn(self._refresh_counts())
        elif kind == "status" and not self._status.leader:
            self._set_status(**{k: message[k] for k in _SYNC_FIELDS if k in message})
            self._spawn(self._refresh_counts())  # a sync changes the outbox and conflicts

    def _changed(self, collections: list[str]) -> None:
        """Re-run the live queries on ``collections``, here and in the other tabs."""
        self._watchers.changed(collections)
        if self._channel is not None:
            self._channel.post({"type": "changed", "collections": collections})

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        task.add_done_callback(self._report)

    def _report(self, task: asyncio.Future[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._set_status(last_error=repr(task.exception()))

    async def _refresh_counts(self) -> None:
        if not self.closed:

            def body(tx: Transaction) -> tuple[Request[int], Request[int], Request[int]]:
                return (*outbox_counts(tx), tx.count(CONFLICTS))

            total, rejected, conflicts = await self.store.run([OUTBOX, CONFLICTS], "readonly", body)
            self._set_status(
                pending=total.result - rejected.result,
                rejected=rejected.result,
                conflicts=conflicts.result,
            )

    def close(self) -> None:
        """Stop watching, give up leadership and close the local database."""
        if self.closed:
            return
        self.closed = True
        self._watchers.cancel_all()
        for stop in self._stops:
            stop()
        if self._channel is not None:
            self._channel.close()
        self.store.close()

    # -- writing ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Batch]:
        """Collect writes to several documents and commit them as one atomic change.

        ``async with replica.transaction() as tx: tx.put("todos", {...}); tx.delete(...)``.
        The writes are applied when the block exits without an exception, locally in
        one IndexedDB transaction, and pushed to the server as one transaction. Raises
        :class:`TransactionTooLargeError`, writing nothing, if they change more than 100
        documents: DynamoDB could not apply more in one transaction.
        """
        batch = Batch(self)
        yield batch
        await self._write(batch.writes, group=new_id() if len(batch.writes) > 1 else None)

    async def _write(self, writes: list[_Write], group: str | None = None) -> list[Document | None]:
        """Apply ``writes`` in one transaction; the documents after each write."""
        if not writes:
            return []
        results: list[Document | None] = []
        collections = sorted({w.collection for w in writes})
        applied = _Applier(self, writes, group, results)
        await self.store.run([*collections, OUTBOX, META], "readwrite", applied.body)
        self._clock = max(self._clock, applied.clock)
        self._changed(collections)
        # The outbox's counts move by what this transaction changed: counting them in
        # it would cost two more requests per write. Transactions apply in order, so a
        # count read by another transaction (a refresh) before or after this one
        # composes with the change.
        status = self._status
        self._set_status(
            pending=status.pending + applied.total - applied.rejected,
            rejected=status.rejected + applied.rejected,
        )
        return results

    async def observe(self, remote: str) -> None:
        """Advance the clock past a timestamp seen on the server, so later local edits
        order after the changes they were made on top of."""
        seen = _hlc.Timestamp.parse(remote)

        def body(tx: Transaction) -> None:
            def bump(clock: dict[str, Any] | None) -> None:
                clock = clock or {"key": "clock", "hlc": str(_hlc.ZERO), "n": 0}
                last = max(_hlc.Timestamp.parse(clock["hlc"]), self._clock)
                if seen > last:
                    now = self.platform.now_ms()
                    self._clock = _hlc.receive(last, seen, now, self.client_id)
                    tx.put(META, {**clock, "hlc": str(self._clock)})

            tx.get(META, "clock").then(bump)

        await self.store.run(META, "readwrite", body)

    # -- outbox inspection ------------------------------------------------------------

    async def outbox(self) -> list[Entry]:
        """The outbox entries, oldest first (pending, in flight and rejected)."""
        return [public_entry(e) for e in entries_of(await self.store.query(OUTBOX))]

    async def retry(self, mid: str) -> None:
        """Queue a rejected change (by its mutation id) to be pushed again.

        A change of a ``transaction()`` is retried with the rest of it: it lands whole.
        """
        await self._change_entry(
            mid, lambda outbox, entry, _: outbox.put({**entry, "state": PENDING}), queued_ok=True
        )

    async def discard(self, mid: str) -> None:
        """Drop a rejected change and put the document back as the server has it, with
        the document's later changes (still queued) on top.

        A change of a ``transaction()`` is discarded with the rest of it.
        """

        def drop(outbox: Outbox, entry: Entry, entries: list[Entry]) -> None:
            tx = outbox.tx
            outbox.delete(entry)
            collection, key = entry["collection"], entry["id"]
            later = sorted(
                (
                    e
                    for e in entries
                    if (e["collection"], e["id"]) == (collection, key) and e["n"] > entry["n"]
                ),
                key=lambda e: int(e["n"]),
            )
            for follower in later:
                if follower["follows"] == entry["mid"]:
                    # It goes on top of what the discarded change was made on.
                    inherited = {k: entry.get(k) for k in ("base", "base_v", "base_m", "new")}
                    outbox.put({**follower, **inherited, "follows": entry["follows"]})
            shown = replay(entry["base"], later)
            if shown is None:
                tx.delete(collection, key)
            else:
                spec = self.schema.collections[collection]
                server = {"_v": entry["base_v"], "_m": entry.get("base_m")}
                tx.put(collection, with_index_keys(spec, {**shown, **server}))

        await self._change_entry(mid, drop)

    async def conflicts(self) -> list[dict[str, Any]]:
        """The recorded conflicts, newest first.

        Each is a dict: ``cid``, ``collection``, ``id``, and the documents ``base``
        (what this device's edit started from), ``local`` (its edit), ``remote``
        (the server's version it met; ``None``: deleted there) and ``result`` (what
        was kept and pushed; ``None``: deleted), the ``strategy`` that decided, and
        the clocks ``hlc`` (local) and ``remote_hlc``. They stay until dismissed.
        """
        found = await self.store.query(CONFLICTS)
        return sorted(found, key=lambda c: str(c.get("hlc") or ""), reverse=True)

    async def dismiss_conflict(self, cid: str | None = None) -> None:
        """Forget the recorded conflict ``cid`` (all of them when ``None``)."""

        def body(tx: Transaction) -> None:
            if cid is None:
                tx.clear(CONFLICTS)
            else:
                tx.delete(CONFLICTS, cid)

        await self.store.run(CONFLICTS, "readwrite", body)
        await self._refresh_counts()
        self._changed([])

    async def _change_entry(
        self,
        mid: str,
        change: Callable[[Outbox, Entry, list[Entry]], None],
        *,
        queued_ok: bool = False,
    ) -> None:
        """Apply ``change`` to the rejected change ``mid`` and the rest of its transaction
        (it also gets every outbox entry).

        ``queued_ok``: a change already pending again (retried with its transaction)
        is no error.
        """
        collections = list(self.schema.collections)

        def body(tx: Transaction) -> None:
            outbox = Outbox(tx)

            def found(entries: list[Entry]) -> None:
                matches = [e for e in entries if e["mid"] == mid]
                if not matches or (matches[0]["state"] != REJECTED and not queued_ok):
                    raise KeyError(f"no rejected change {mid!r}")
                group = matches[0]["group"]
                for entry in entries:
                    if entry["state"] == REJECTED and (
                        entry["mid"] == mid or (group is not None and entry["group"] == group)
                    ):
                        change(outbox, entry, entries)
                outbox.issue()

            outbox.read_all().then(found)

        await self.store.run([*collections, OUTBOX], "readwrite", body)
        self._changed(collections)
        await self._refresh_counts()

    async def sync_state(self, collection: str, key: Key) -> SyncState:
        """Whether a document is ``rejected`` (a change of it was refused), ``pending``
        (changes not yet acknowledged), ``conflict`` (synced, with a recorded conflict
        not yet dismissed: see :meth:`conflicts`) or ``synced``."""
        only = KeyRange.only((collection, key))

        def body(tx: Transaction) -> tuple[Request[list[list[Entry]]], Request[list[Entry]]]:
            return Outbox(tx).read_records([(collection, key)]), tx.query(
                CONFLICTS, index="by_record", range=only
            )

        found, conflicts = await self.store.run([OUTBOX, CONFLICTS], "readonly", body)
        (entries,) = found.result
        if any(e["state"] == REJECTED for e in entries):
            return "rejected"
        if entries:
            return "pending"
        return "conflict" if conflicts.result else "synced"


def _sync_fields(status: Status) -> dict[str, Any]:
    return {k: getattr(status, k) for k in _SYNC_FIELDS}


class _Applier:
    """Computes and issues the writes of one local transaction, inside it."""

    def __init__(
        self,
        replica: Replica,
        writes: list[_Write],
        group: str | None,
        results: list[Document | None],
    ) -> None:
        self.replica = replica
        self.writes = writes
        self.group = group
        self.results = results
        self.clock = replica._clock
        # How the outbox's number of entries and of rejected ones change.
        self.total = 0
        self.rejected = 0

    def body(self, tx: Transaction) -> None:
        # Every read at once, whatever the size: the clock, the records (one batched
        # read per collection) and their outbox entries (a second step reads the
        # rows that hold them, each once, when several records are asked).
        clock = tx.get(META, "clock")
        targets = list(dict.fromkeys((w.collection, w.key) for w in self.writes))
        by_collection: dict[str, list[Key]] = {}
        for collection, key in targets:
            by_collection.setdefault(collection, []).append(key)
        found = {c: tx.get_many(c, keys) for c, keys in by_collection.items()}
        outbox = Outbox(tx)

        def ready(pending: list[list[Entry]]) -> None:
            records = {
                (c, key): record
                for c, keys in by_collection.items()
                for key, record in zip(keys, found[c].result, strict=True)
            }
            self.apply(outbox, clock.result, records, dict(zip(targets, pending, strict=True)))

        outbox.read_records(targets).then(ready)

    def apply(
        self,
        outbox: Outbox,
        clock: dict[str, Any] | None,
        records: dict[tuple[str, Key], Any],
        entries: dict[tuple[str, Key], list[Entry]],
    ) -> None:
        writes = Writes()
        clock = clock or {"key": "clock", "hlc": str(_hlc.ZERO), "n": 0}
        stamp = max(_hlc.Timestamp.parse(clock["hlc"]), self.clock)
        counter = int(clock["n"])
        now = self.replica.platform.now_ms()
        for write in self.writes:
            target = (write.collection, write.key)
            current = records[target]
            pending = entries[target]
            stamp = _hlc.tick(stamp, now, self.replica.client_id)
            new = self._new_record(write, current)
            if write.edit.op == "delete" and current is None:
                self.results.append(None)
                continue
            entry = self._entry(write, current, pending, str(stamp))
            if entry is None:
                # An edit that cancels the pending entry (delete of a record created here).
                cancelled = pending.pop()
                if self.group is None:
                    outbox.delete(cancelled)
                self._tally(cancelled, None)
            elif pending and entry["n"] == pending[-1]["n"]:
                if self.group is None:
                    outbox.put(entry)
                self._tally(pending[-1], entry)
                pending[-1] = entry
            else:
                counter += 1
                entry["n"] = counter
                if self.group is None:
                    outbox.put(entry)
                self._tally(None, entry)
                pending.append(entry)
            if new is None:
                writes.delete(write.collection, write.key)
            else:
                writes.put(write.collection, new)
            records[target] = new
            self.results.append(None if new is None else public(new))
        if self.group is not None:
            # Before any write is issued: the exception aborts the store transaction.
            # A transaction folds only into its own entries: they are all new, and
            # stored as one row.
            mine = self._transaction_entries(entries)
            if mine:
                outbox.add_transaction(mine)
        self.clock = stamp
        writes.put(META, {"key": "clock", "hlc": str(stamp), "n": counter})
        outbox.issue(writes)
        writes.issue(outbox.tx)

    def _tally(self, old: Entry | None, new: Entry | None) -> None:
        """Count the change of the outbox's counts by a write of ``new`` over ``old``."""
        self.total += (new is not None) - (old is not None)
        self.rejected += (new is not None and new["state"] == REJECTED) - (
            old is not None and old["state"] == REJECTED
        )

    def _transaction_entries(self, entries: dict[tuple[str, Key], list[Entry]]) -> list[Entry]:
        """The transaction's own entries, once its writes folded; raises if there are
        more than its push could send (see MAX_TRANSACTION_DOCUMENTS)."""
        # Count what the push sends: the group's entries once the writes folded (several
        # writes to a document make one entry; a cancelled one, none). A document's
        # entry of this transaction, if any, is its last.
        mine = [p[-1] for p in entries.values() if p and p[-1]["group"] == self.group]
        if len(mine) > MAX_TRANSACTION_DOCUMENTS:
            raise TransactionTooLargeError(len(mine), MAX_TRANSACTION_DOCUMENTS)
        return mine

    def _new_record(self, write: _Write, current: dict[str, Any] | None) -> dict[str, Any] | None:
        edit = write.edit
        if write.must_not_exist and current is not None:
            raise DocumentExistsError(
                f"{write.collection}: a document with id {write.key!r} exists"
            )
        if edit.op == "delete":
            return None
        spec = self.replica.schema.collections[write.collection]
        system = {k: v for k, v in (current or {}).items() if k.startswith("_")}
        if edit.op == "put":
            assert edit.value is not None
            return with_index_keys(spec, {**edit.value, **system})
        if current is None:
            raise DocumentNotFoundError(f"{write.collection}: no document with id {write.key!r}")
        return with_index_keys(spec, apply_patch(current, edit.set, edit.inc))

    def _entry(
        self, write: _Write, current: dict[str, Any] | None, pending: list[Entry], hlc: str
    ) -> Entry | None:
        last = pending[-1] if pending else None
        if (
            last is not None
            and last["state"] == PENDING
            and not last.get("unsure")  # it may have landed: a new edit goes on top of it
            and (self.group is None or last["group"] == self.group)
        ):
            return fold(last, write.edit, hlc)
        edit = write.edit
        return {
            "n": None,
            "mid": new_id(),
            "collection": write.collection,
            "id": write.key,
            "op": edit.op,
            "value": edit.value,
            "set": edit.set,
            "inc": edit.inc,
            # The common ancestor for a three-way merge: what the server has (or, when
            # an earlier change is still queued, what it will have once it lands). The
            # base state (``_v``, ``_m``) is the one the push's condition must find.
            "base": None if current is None else public(current),
            "base_v": None if current is None or pending else current.get("_v"),
            "base_m": None if current is None or pending else current.get("_m"),
            # Behind an earlier change of the record (in flight, of another transaction,
            # or rejected): rebased on the state that change creates once it lands.
            "follows": None if last is None else last["mid"],
            "new": current is None and not pending,
            "hlc": hlc,
            "group": self.group,
            "state": PENDING,
            "error": None,
        }


class Batch:
    """The writes of :meth:`Replica.transaction`, applied together on exit."""

    def __init__(self, replica: Replica) -> None:
        self._replica = replica
        self.writes: list[_Write] = []

    def put(self, collection: str, doc: Document) -> None:
        """Insert or replace ``doc``."""
        self.writes.append(self._replica.collection(collection)._put_write(doc))

    def patch(self, collection: str, key: Key, changes: Document) -> None:
        """Set some fields of an existing document."""
        self.writes.append(self._replica.collection(collection)._patch_write(key, changes, {}))

    def increment(self, collection: str, key: Key, field: str, by: int | float = 1) -> None:
        """Add ``by`` to a numeric field (merged with concurrent increments, never lost)."""
        coll = self._replica.collection(collection)
        self.writes.append(coll._patch_write(key, {}, {field: by}))

    def delete(self, collection: str, key: Key) -> None:
        """Delete a document."""
        check_id(collection, key)
        self.writes.append(_Write(collection, key, Edit("delete")))


class Collection:
    """The documents of one collection; get it with ``replica.collection(name)``."""

    def __init__(self, replica: Replica, name: str) -> None:
        self.replica = replica
        self.name = name

    # -- writes ---------------------------------------------------------------------

    def _put_write(self, doc: Document, must_not_exist: bool = False) -> _Write:
        doc = dict(check_document(self.name, doc))
        return _Write(self.name, doc["id"], Edit("put", value=doc), must_not_exist)

    def _patch_write(self, key: Key, sets: Document, incs: dict[str, int | float]) -> _Write:
        check_id(self.name, key)
        check_document(self.name, sets, need_id=False)
        if "id" in sets and sets["id"] != key:
            raise DocumentExistsError(f"{self.name}: a patch cannot change the id")
        for field_name, delta in incs.items():
            check_document(self.name, {field_name: delta}, need_id=False)
            if isinstance(delta, bool) or not isinstance(delta, (int, float)):
                raise TypeError(f"{self.name}: increment of {field_name!r} must be a number")
        return _Write(self.name, key, Edit("patch", set=dict(sets), inc=dict(incs)))

    async def put(self, doc: Document) -> Document:
        """Insert or replace ``doc`` (it must have an ``id``); returns the stored document."""
        (stored,) = await self.replica._write([self._put_write(doc)])
        assert stored is not None
        return stored

    async def add(self, doc: Document) -> Document:
        """Insert a new document, giving it a random ``id`` if it has none.

        Raises :class:`DocumentExistsError` if the id is taken.
        """
        if "id" not in doc:
            doc = {"id": new_id(), **doc}
        (stored,) = await self.replica._write([self._put_write(doc, must_not_exist=True)])
        assert stored is not None
        return stored

    async def patch(self, key: Key, changes: Document) -> Document:
        """Set the given fields of an existing document; returns the new document."""
        (stored,) = await self.replica._write([self._patch_write(key, changes, {})])
        assert stored is not None
        return stored

    async def increment(self, key: Key, field: str, by: int | float = 1) -> Document:
        """Add ``by`` to a numeric field; concurrent increments on other devices add up."""
        (stored,) = await self.replica._write([self._patch_write(key, {}, {field: by})])
        assert stored is not None
        return stored

    async def delete(self, key: Key) -> None:
        """Delete a document (nothing happens if it does not exist)."""
        check_id(self.name, key)
        await self.replica._write([_Write(self.name, key, Edit("delete"))])

    # -- reads ----------------------------------------------------------------------

    async def get(self, key: Key) -> Document | None:
        """The document with this id, or ``None``."""
        record = await self.replica.store.get(self.name, check_id(self.name, key))
        return None if record is None else public(record)

    async def get_many(self, keys: Iterable[Key]) -> list[Document | None]:
        """The documents with these ids, in order (``None`` where missing)."""
        keys = [check_id(self.name, k) for k in keys]
        records = await self.replica.store.get_many(self.name, keys)
        return [None if r is None else public(r) for r in records]

    async def query(
        self,
        *,
        index: str | None = None,
        equals: Any = None,
        range: KeyRange | None = None,
        where: Callable[[Document], bool] | None = None,
        limit: int | None = None,
        offset: int = 0,
        reverse: bool = False,
    ) -> list[Document]:
        """Documents in the order of ``index`` (or of ids).

        ``equals`` (a value, or a tuple for a compound index) or ``range`` restrict the
        index keys; ``where`` filters in Python; then ``offset`` and ``limit`` apply.
        """
        range = self._range(index, equals, range)
        if where is None:
            records = await self.replica.store.query(
                self.name, index=index, range=range, limit=limit, offset=offset, reverse=reverse
            )
            return [public(r) for r in records]
        records = await self.replica.store.query(
            self.name, index=index, range=range, reverse=reverse
        )
        docs = [doc for doc in map(public, records) if where(doc)]
        return docs[offset : None if limit is None else offset + limit]

    async def count(
        self, *, index: str | None = None, equals: Any = None, range: KeyRange | None = None
    ) -> int:
        """How many documents match (see :meth:`query`)."""
        range = self._range(index, equals, range)
        return await self.replica.store.count(self.name, index=index, range=range)

    def _range(self, index: str | None, equals: Any, range: KeyRange | None) -> KeyRange | None:
        if equals is not None:
            if range is not None:
                raise ValueError("give either equals or range, not both")
            range = KeyRange.only(equals)
        # Index keys are stored with booleans as 0/1 (see with_index_keys).
        return range if index is None else index_range(range)

    def watch(self, callback: Callable[[list[Document]], object], **query: Any) -> Subscription:
        """Call ``callback(documents)`` now and whenever the query's result changes.

        Changes made in this tab, in other tabs and (with sync) on the server all
        count. Call ``cancel()`` on the returned subscription to stop.
        """
        return self.replica._watchers.add(self.name, lambda: self.query(**query), callback)

    async def sync_state(self, key: Key) -> SyncState:
        """Whether this document is synced, pending, in conflict or rejected."""
        return await self.replica.sync_state(self.name, key)
