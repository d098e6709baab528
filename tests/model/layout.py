"""A device's local database rewritten as the pysync before outbox layout 2 stored it.

Layout 1 (every pysync before ``_outbox_rows``, commit dc4e477): the IndexedDB version
is the app's schema version itself (not ``version * 1000 + layout``); ``_outbox`` holds
one row per entry, keyed by its ``n``, whatever it belongs to (the entries of one
``transaction()`` are rows of their own, tied by their ``group``), indexed by
``by_record`` over ``("collection", "id")`` and ``by_state`` over ``state``; an entry
holds no ``row`` (nor the rows' ``records`` and ``rejected``); ``_meta`` has no
``{"key": "layout"}`` row. The collections, ``_meta``'s other rows and ``_conflicts``
were stored as today.

:func:`rewrite_as_layout_1` turns a closed database of today's layout into that (read
whole, deleted, created again at the app's version with layout 1's stores, written
back), so that opening it with today's pysync runs the upgrade of ``_migrate`` on
whatever outbox the program had made: pending, in flight, rejected, transactions,
left by a crash. It works on any platform with ``tab().open_store`` (the in-memory
browser, a Chromium page) and a way to delete a database.

Like :mod:`.chromium`, this is imported inside the page: standard library and pysync only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pysync._store import Index, Schema, StoreSchema, Transaction

OUTBOX = "_outbox"
META = "_meta"
#: The ``_outbox`` store of layout 1 (``AppSchema.store_schema`` before dc4e477).
OUTBOX_V1 = StoreSchema(
    OUTBOX, "n", (Index("by_record", ("collection", "id")), Index("by_state", "state"))
)
#: Fields a row of layout 2 holds that no entry of layout 1 had.
ROW_FIELDS = ("row", "records", "rejected")

Rows = dict[str, list[dict[str, Any]]]


def layout_1_schema(current: Schema, app_version: int) -> Schema:
    """The database ``current`` declares, as layout 1 declared it at ``app_version``."""
    stores = tuple(OUTBOX_V1 if s.name == OUTBOX else s for s in current.stores)
    return Schema(current.name, app_version, stores)


def old_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """An outbox entry as layout 1 stored it (a row of its own)."""
    return {k: v for k, v in entry.items() if k not in ROW_FIELDS}


def layout_1_rows(rows: Rows) -> Rows:
    """Every store's rows of a database of today's layout, as layout 1 stored them."""
    out = dict(rows)
    entries: list[dict[str, Any]] = []
    for row in rows.get(OUTBOX, []):
        entries += row.get("entries", [row])
    out[OUTBOX] = sorted((old_entry(e) for e in entries), key=lambda e: int(e["n"]))
    out[META] = [r for r in rows.get(META, []) if r.get("key") != "layout"]
    return out


async def read_all(tab: Any, schema: Schema) -> Rows:
    """Every row of every store of the database ``schema`` declares (opened and closed)."""
    db = await tab.open_store(schema)
    try:
        names = [s.name for s in schema.stores]

        def body(tx: Transaction) -> Any:
            return {name: tx.query(name) for name in names}

        found = await db.run(names, "readonly", body)
        return {name: list(request.result) for name, request in found.items()}
    finally:
        db.close()


async def rewrite_as_layout_1(
    tab: Any,
    delete: Callable[[str], Awaitable[None]],
    current: Schema,
    app_version: int,
) -> dict[str, Any]:
    """Rewrite the (closed) database ``current`` declares as layout 1 stored it.

    Returns what was found: ``rows`` (today's), ``old`` (layout 1's, as written) and
    ``transactions`` (rows of today's ``_outbox`` that held a transaction's entries).
    """
    rows = await read_all(tab, current)
    if not any(r.get("key") == "schema" for r in rows.get(META, [])):
        raise AssertionError(f"{current.name} has no schema version: not a pysync database")
    old = layout_1_rows(rows)
    await delete(current.name)
    schema = layout_1_schema(current, app_version)
    db = await tab.open_store(schema)
    try:
        if db.schema.version != app_version:
            raise AssertionError(f"{current.name} opened at {db.schema.version}, not {app_version}")

        def body(tx: Transaction) -> None:
            for name, records in old.items():
                tx.put_many(name, records)

        await db.run([s.name for s in schema.stores], "readwrite", body)
    finally:
        db.close()
    transactions = sum(1 for row in rows.get(OUTBOX, []) if "entries" in row)
    return {"rows": rows, "old": old, "transactions": transactions}
