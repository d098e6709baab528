"""A base sync's pages made into records in JavaScript, in the page.

A base sync stores every item of the scope. Decoding each page's JSON in Python,
converting its items and encoding the records again for IndexedDB cost the page
about 40 us per item, more than the browser's own work for it. In the page the
Query's response stays in JavaScript instead (``HttpRemote.call_js``),
``_images.js`` makes the records there, and ``IndexedDBTransaction.put_js`` stores
them: Python sees only the sort keys, the tombstones and the largest ``_hlc``.

``_images.js`` stores exactly what the Python path stores; an item it does not
convert exactly (bytes, a number that is not a plain decimal, an odd field) sends
its whole page down the Python path, which remains the reference (and the only
path off the page: in CPython, or over another store).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .._remote import PageRemote, Remote
from .._schema import AppSchema
from .._store import Database, IndexedDBDatabase, Schema, Transaction
from .._store._indexeddb import IndexedDBTransaction, shipped_js


def _js() -> Any:
    """The converter object (``_images.js``)."""
    return shipped_js(__package__, "_images.js")


def in_page(remote: Remote, store: Database) -> PageRemote | None:
    """``remote`` if pages can go from it to ``store`` without entering Python."""
    if isinstance(remote, PageRemote) and remote.in_page and isinstance(store, IndexedDBDatabase):
        return remote
    return None


def put(tx: Transaction, collection: str, records: Any, positions: list[int]) -> None:
    """Put the records of ``positions`` of a converted page in ``collection``."""
    if not isinstance(tx, IndexedDBTransaction):
        raise TypeError("records made in JavaScript go to IndexedDB only")
    tx.put_js(collection, records, positions)


def specs(schema: AppSchema, stores: Schema) -> str:
    """What ``_images.js`` needs of the collections: their stores' key path and the
    document paths of their indexes."""
    key_paths = {store.name: store.key_path for store in stores.stores}
    return json.dumps(
        {
            name: [key_paths[name], [[index.name, index.key_path] for index in spec.indexes]]
            for name, spec in schema.collections.items()
        }
    )


@dataclass
class Page:
    """A page of items converted in JavaScript."""

    records: Any  # a JsProxy: item i's record, undefined for a tombstone or unknown collection
    sort_keys: list[str]  # item i's ``sk``
    gone: set[int]  # the positions of the tombstones
    hlc: str  # the largest ``_hlc`` of the page's items, ``""`` if none
    start: dict[str, Any] | None  # ``LastEvaluatedKey``


def convert(page: Any, prefix: str, collections: str, seq: int) -> Page | dict[str, Any]:
    """The records of a Query response ``page`` (a JsProxy); or the response as a
    Python dict when an item needs the Python path."""
    converted = _js().convert(page, prefix, collections, seq)
    if converted is None:
        import js

        document: dict[str, Any] = json.loads(js.JSON.stringify(page))
        return document
    meta = json.loads(converted.meta)
    start = getattr(page, "LastEvaluatedKey", None)
    return Page(
        converted.records,
        meta["sk"],
        set(meta["gone"]),
        meta["hlc"],
        None if start is None else start.to_py(),
    )
