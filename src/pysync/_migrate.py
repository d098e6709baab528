"""Schema migrations of stored data, including the changes still in the outbox.

Runs right after the IndexedDB upgrade has created new stores and indexes.

Unlike stores that wipe local data on a schema change, pysync upgrades every
stored document AND every pending outbox entry, in one transaction with the
new data version: either the whole upgrade lands or nothing changes.
"""

from __future__ import annotations

from typing import Any

from ._documents import check_document
from ._errors import MigrationError
from ._outbox import OUTBOX, Entry, apply_patch
from ._schema import META, AppSchema, Migration, with_index_keys
from ._store import Database, Request, Transaction


async def migrate(store: Database, schema: AppSchema) -> None:
    """Bring stored data up to ``schema.version`` (no-op when already there)."""
    collections = list(schema.collections)

    def body(tx: Transaction) -> None:
        def read(stored: dict[str, Any] | None) -> None:
            if stored is None:  # a new database starts at the current version
                tx.put(META, {"key": "schema", "version": schema.version})
            elif stored["version"] < schema.version:
                # Only an upgrade reads the data: every open would otherwise read it all.
                records = {name: tx.query(name) for name in collections}
                entries = tx.query(OUTBOX)
                entries.then(lambda _: _upgrade(tx, schema, stored, records, entries))

        tx.get(META, "schema").then(read)

    await store.run([*collections, OUTBOX, META], "readwrite", body)


def _upgrade(
    tx: Transaction,
    schema: AppSchema,
    stored: dict[str, Any],
    records: dict[str, Request[list[dict[str, Any]]]],
    entries: Request[list[Entry]],
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
    if steps:
        for entry in entries.result:
            tx.put(OUTBOX, _upgrade_entry(steps, entry))
    tx.put(META, {"key": "schema", "version": schema.version})


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
