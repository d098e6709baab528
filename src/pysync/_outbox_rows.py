"""How outbox entries are stored: a row per change, one row for a whole transaction.

A row of the ``_outbox`` store is either one entry (a plain write's change: the entry
itself, key ``n``), or the entries of one multi-record ``transaction()``::

    {"n": 17 (its first entry's n), "entries": [{..., "n": 17, "row": 17}, {..., "n": 18,
     "row": 17}, ...]}

A transaction's entries are written together and change together (they are pushed,
acknowledged, rejected, retried and discarded as one), so storing them as one row
costs IndexedDB one value instead of one per document (the entry of a document is
about as costly to store as the document itself). Every row also lists what its
indexes need:

* ``records``: the ``[collection, id]`` of each entry, a multi-entry index
  (``by_record``): a record's entries are found with one index lookup whatever row
  holds them, and the index counts the outbox's entries;
* ``rejected``: the ``n`` of each rejected entry, absent when there are none (the
  sparse multi-entry index ``by_rejected``): the rejected are counted without
  indexing every pending entry's state.

Rows are read and written only through :class:`Outbox`, which gives out entries and
takes back changed ones: the rest of pysync works with entries alone.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Collection, Iterable
from typing import Any, Protocol

from ._documents import Key
from ._outbox import OUTBOX, REJECTED, Entry
from ._store import Database, Index, KeyRange, Request, StoreSchema, Transaction

Row = dict[str, Any]
Target = tuple[str, Key]

#: The storage layout of the outbox: 1 stored an entry per row, indexed by
#: ``(collection, id)`` and by state; 2 is this module's. Part of the IndexedDB version
#: (see :func:`idb_version`), so that opening an older database upgrades its indexes.
LAYOUT = 2
#: Room for layouts in the IndexedDB version: ``app version * LAYOUTS + LAYOUT``.
LAYOUTS = 1000

_ROW_FIELDS = ("records", "rejected")


def idb_version(app_version: int) -> int:
    """The IndexedDB version of a database of this app schema version and this layout."""
    return app_version * LAYOUTS + LAYOUT


def store_schema() -> StoreSchema:
    """The ``_outbox`` store and its indexes."""
    return StoreSchema(
        OUTBOX,
        "n",
        (
            Index("by_record", "records", multi_entry=True),
            Index("by_rejected", "rejected", multi_entry=True),
        ),
    )


def row_key(entry: Entry) -> int:
    """The key of the row holding ``entry``."""
    return int(entry["row"] if "row" in entry else entry["n"])


def entries_of(rows: Iterable[Row | None]) -> list[Entry]:
    """The entries of ``rows`` (absent rows skipped), in order."""
    out: list[Entry] = []
    for row in rows:
        if row is not None:
            if "entries" in row:
                out += row["entries"]
            else:
                out.append(row)
    return out


def public(entry: Entry) -> Entry:
    """``entry`` without the fields its row keeps for its indexes."""
    return {k: v for k, v in entry.items() if k not in _ROW_FIELDS}


def _indexed(row: Row) -> Row:
    """``row`` with the fields of its indexes computed from its entries."""
    entries = row.get("entries") or [row]
    out = {**row, "records": [[e["collection"], e["id"]] for e in entries]}
    rejected = [e["n"] for e in entries if e["state"] == REJECTED]
    if rejected:
        out["rejected"] = rejected
    else:
        out.pop("rejected", None)
    return out


class _Writer(Protocol):
    def put(self, store: str, record: dict[str, Any]) -> None: ...

    def delete(self, store: str, key: Any) -> None: ...


async def slices(
    store: Database, size: int, past: Collection[int] = ()
) -> AsyncGenerator[list[Entry], None]:
    """Every outbox entry, oldest first, about ``size`` at a time, each slice read in a
    transaction and a short task of its own (reading and decoding thousands at once
    is one long task).

    A row may hold a whole transaction's entries: a first slice of one row tells how
    wide the rows are. Entries may change between slices. The oldest rows whose keys
    are in ``past`` are passed without being read (only their keys are).
    """
    after: KeyRange | None = None
    if past:
        # At most len(past) keys are in it: one more tells where the others begin.
        probe = await store.run(OUTBOX, "readonly", lambda tx: tx.keys(OUTBOX, limit=len(past) + 1))
        first = next((key for key in probe.result if key not in past), None)
        if first is None:
            return
        after = KeyRange.at_least(first)
    want = 1
    while True:
        rows = await store.query(OUTBOX, range=after, limit=want)
        found = entries_of(rows)
        if found:
            yield found
        if len(rows) < want:
            return
        after = KeyRange.at_least(rows[-1]["n"], open=True)
        want = max(1, size * len(rows) // len(found))


def counts(tx: Transaction) -> tuple[Request[int], Request[int]]:
    """Requests for the number of outbox entries and of rejected ones."""
    return tx.count(OUTBOX, index="by_record"), tx.count(OUTBOX, index="by_rejected")


class Outbox:
    """The outbox as one store transaction reads and changes it, entry by entry.

    Entries of a transaction's row can be changed or deleted only after being read
    in the same store transaction (the row is rewritten whole). The changed rows are
    written once, by :meth:`issue`, which every writer calls last.
    """

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self._rows: dict[int, Row] = {}  # the transactions' rows read, as changed so far
        self._dirty: dict[int, Row | None] = {}  # rows to write (None: to delete)

    def _keep(self, rows: Iterable[Row | None]) -> list[Entry]:
        """Remember the transactions' rows among ``rows``; their entries."""
        present = [row for row in rows if row is not None]
        for row in present:
            if "entries" in row and row["n"] not in self._rows:
                self._rows[row["n"]] = {"n": row["n"], "entries": list(row["entries"])}
        return entries_of(present)

    def read_all(self) -> Request[list[Entry]]:
        """Every entry, oldest first."""
        return self.tx.query(OUTBOX).map(self._keep)

    def read_records(
        self, targets: list[Target], skip: Collection[int] = ()
    ) -> Request[list[list[Entry]]]:
        """For each ``(collection, id)``, its entries, oldest first, but those of the rows
        whose keys are in ``skip`` (plain rows the caller holds: they are not read)."""
        result: Request[list[list[Entry]]] = Request()

        def split(rows: list[Row]) -> None:
            by_record: dict[Target, list[Entry]] = {target: [] for target in targets}
            for entry in self._keep(r for r in rows if r["n"] not in skip):
                found = by_record.get((entry["collection"], entry["id"]))
                if found is not None:
                    found.append(entry)
            result.resolve([sorted(by_record[t], key=lambda e: int(e["n"])) for t in targets])

        if len(targets) == 1:  # one key: no row can come twice
            self.tx.lookup(OUTBOX, "by_record", targets).then(lambda found: split(found[0]))
        else:
            # A transaction's row matches each of its records: it is read once.
            def read(keys: list[list[Any]]) -> None:
                unique = list(dict.fromkeys(k for group in keys for k in group if k not in skip))
                if unique:
                    self.tx.get_many(OUTBOX, unique).then(
                        lambda rows: split([r for r in rows if r is not None])
                    )
                else:
                    split([])

            self.tx.lookup_keys(OUTBOX, "by_record", targets).then(read)
        return result

    def read_entries(self, entries: Iterable[Entry]) -> Request[dict[int, Entry]]:
        """The stored versions of ``entries`` (by ``n``; those gone are left out)."""
        entries = list(entries)
        wanted = {int(e["n"]) for e in entries}
        rows = list(dict.fromkeys(row_key(e) for e in entries))

        def pick(found: list[Row | None]) -> dict[int, Entry]:
            return {e["n"]: e for e in self._keep(found) if e["n"] in wanted}

        return self.tx.get_many(OUTBOX, rows).map(pick)

    def put(self, entry: Entry) -> None:
        """Store ``entry`` (new, or replacing the entry with its ``n``).

        An entry of a transaction's row goes back into that row, which must have been
        read in this transaction (or be gone: the row is made again, as a put of a
        deleted entry would make it again).
        """
        key = row_key(entry)
        if "row" not in entry:
            self._dirty[key] = entry
            return
        row = self._rows.setdefault(key, {"n": key, "entries": []})
        members = [e for e in row["entries"] if e["n"] != entry["n"]]
        row["entries"] = sorted([*members, entry], key=lambda e: int(e["n"]))
        self._dirty[key] = row

    def add_transaction(self, entries: list[Entry]) -> None:
        """Store the new entries of one transaction as one row."""
        key = min(int(e["n"]) for e in entries)
        members = [{**e, "row": key} for e in sorted(entries, key=lambda e: int(e["n"]))]
        self._rows[key] = row = {"n": key, "entries": members}
        self._dirty[key] = row

    def delete(self, entry: Entry) -> None:
        """Drop ``entry`` (nothing if it is gone). An entry of a transaction's row is
        dropped from that row, which must have been read in this transaction."""
        key = row_key(entry)
        row = self._rows.get(key)
        if row is None:
            if "row" not in entry:
                self._dirty[key] = None
            # else its row is gone (say, another tab's push acknowledged it): deleting
            # the row unread could drop entries it still holds.
            return
        row["entries"] = [e for e in row["entries"] if e["n"] != entry["n"]]
        self._dirty[key] = row if row["entries"] else None

    def issue(self, writes: _Writer | None = None) -> None:
        """Write the changed rows (through ``writes``, else in the transaction)."""
        out: _Writer = self.tx if writes is None else writes
        for key, row in self._dirty.items():
            if row is None:
                out.delete(OUTBOX, key)
            else:
                out.put(OUTBOX, _indexed(row))
        self._dirty = {}
