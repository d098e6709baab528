"""Schema migrations of stored data, including the changes still in the outbox.

Runs right after the IndexedDB upgrade has created new stores and indexes. It
also moves the outbox of a database written by an older pysync to the current
storage layout (``_outbox_rows``), in the same transaction.

Unlike stores that wipe local data on a schema change, pysync upgrades every
stored document AND every pending outbox entry, in one transaction with the
new data version: either the whole upgrade lands or nothing changes.
"""

from __future__ import annotations

from typing import Any

from ._documents import check_document
from ._errors import MigrationError
from ._outbox import OUTBOX, Entry, apply_patch
from ._outbox_rows import LAYOUT, Outbox
from ._schema import META, AppSchema, Migration, with_index_keys
from ._store import Database, Request, Transaction


async def migrate(store: Database, schema: AppSchema) -> None:
    """Bring stored data up to ``schema.version`` and the outbox up to its storage
    layout (no-op when already there)."""
    collections = list(schema.collections)

    def body(tx: Transaction) -> None:
        def read(found: list[dict[str, Any] | None]) -> None:
            stored, layout = found
            if stored is None:  # a new database starts at the current version and layout
                tx.put(META, {"key": "schema", "version": schema.version})
                tx.put(META, {"key": "layout", "outbox": LAYOUT})
                return
            upgrade = stored["version"] < schema.version
            if not upgrade and layout is not None and layout["outbox"] == LAYOUT:
                return  # only an upgrade reads the data: every open would otherwise read it all
            records = {name: tx.query(name) for name in collections} if upgrade else {}
            outbox = Outbox(tx)
            outbox.read_all().then(
                lambda entries: _upgrade(tx, schema, stored, records, outbox, entries)
            )

        tx.get_many(META, ["schema", "layout"]).then(read)

    await store.run([*collections, OUTBOX, META], "readwrite", body)


def _upgrade(
    tx: Transaction,
    schema: AppSchema,
    stored: dict[str, Any],
    records: dict[str, Request[list[dict[str, Any]]]],
    outbox: Outbox,
    entries: list[Entry],
) -> None:
    steps = [
        (v, schema.migrations[v])
        for v in range(stored["version"] + 1, schema.version + 1)
        if v in schema.migrations
    ]
    # Every record is rewritten, even without steps: a new index needs its keys.
    for collection, request in records.items():
        for record in request.result:
            system = {k: v for k, v in record.items() if k.startswith("_")}
            doc = {k: v for k, v in record.items() if not k.startswith("_")}
            upgraded = {**_run(steps, collection, doc), **system}
            tx.put(collection, with_index_keys(schema.collections[collection], upgraded))
    # Every entry is rewritten too: an older layout's rows lack what the indexes read.
    for entry in entries:
        outbox.put(_upgrade_entry(steps, entry) if steps else entry)
    outbox.issue()
    tx.put(META, {"key": "schema", "version": schema.version})
    tx.put(META, {"key": "layout", "outbox": LAYOUT})


def _run(
    steps: list[tuple[int, Migration]], collection: str, doc: dict[str, Any]
) -> dict[str, Any]:
    for version, step in steps:
        try:
            out = step(collection, dict(doc))
            check_document(collection, out)
        except Exception as error:
            raise MigrationError(
                f"migration to version {version} failed on {collection} {doc.get('id')!r}: "
                f"{error!r}; nothing was changed"
            ) from error
        if out["id"] != doc["id"]:
            raise MigrationError(f"migration to version {version} changed the id of {doc['id']!r}")
        doc = out
    return doc


def _upgrade_entry(steps: list[tuple[int, Migration]], entry: Entry) -> Entry:
    """An outbox entry whose documents are upgraded; a patch keeps only what it changes."""
    collection = entry["collection"]
    out = dict(entry)
    base = entry["base"]
    if base is not None:
        out["base"] = _run(steps, collection, base)
    if entry["op"] == "put":
        out["value"] = _run(steps, collection, entry["value"])
    elif entry["op"] == "patch":
        before = out["base"] or {}
        after = _run(steps, collection, apply_patch(base or {"id": entry["id"]}, entry["set"], {}))
        out["set"] = {k: v for k, v in after.items() if k != "id" and before.get(k) != v}
    return out
