"""The IndexedDB backend: the only module of pysync's store that touches ``js``.

Requests are issued synchronously from the transaction body and from request
callbacks, never across an ``await`` (which would let the browser commit the
transaction early); only the transaction's end is awaited. Batches and event
wiring live in ``_idb_helpers.js``; every request reports to one Python sink per
database, so a transaction creates no JavaScript proxy of its own.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any

from .._errors import (
    DatabaseClosedError,
    SchemaError,
    StoreError,
    TransactionAbortedError,
    store_error,
)
from . import _codec
from ._base import Database, Mode, Record, Request, Transaction
from ._schema import KeyPath, KeyRange, Schema

_helpers: Any = None


def _js() -> Any:
    """The helper object, created once per page."""
    global _helpers
    if _helpers is None:
        from pyodide.code import run_js

        _helpers = run_js(resources.files(__package__).joinpath("_idb_helpers.js").read_text())
    return _helpers


def _to_js(value: Any) -> Any:
    import js
    from pyodide.ffi import to_js

    return to_js(value, dict_converter=js.Object.fromEntries, create_pyproxies=False)


def _error_from_js(error: Any) -> StoreError:
    """A pysync error for a DOMException (or any JS error) ``error``."""
    if error is None:
        return TransactionAbortedError("the transaction was aborted")
    return store_error(str(error.name), str(error.message))


@contextmanager
def _translated() -> Iterator[None]:
    """Re-raise exceptions thrown synchronously by IndexedDB as pysync errors."""
    from pyodide.ffi import JsException

    try:
        yield
    except JsException as error:
        js_error = getattr(error, "js_error", None)
        name = getattr(js_error, "name", None) or getattr(error, "name", "UnknownError")
        message = getattr(js_error, "message", None) or str(error)
        raise store_error(str(name), str(message)) from None


def _records_to_js(records: list[Record]) -> Any:
    """Encoded records as JS objects, as ``_to_js`` makes them, but faster.

    One JSON text parsed by ``JSON.parse`` costs about half of ``to_js`` with
    ``Object.fromEntries`` per dict (10,000 records: 22 vs 50 ms). JSON is exact
    unless a record holds bytes or an int beyond 2**53 (its sidecar says so) or
    NaN/Infinity (``allow_nan=False`` raises): those batches take ``_to_js``.
    """
    if not any(
        _codec.SIDECAR in r and ("n" in r[_codec.SIDECAR] or "b" in r[_codec.SIDECAR])
        for r in records
    ):
        try:
            text = json.dumps(records, allow_nan=False, check_circular=False, separators=(",", ":"))
        except (TypeError, ValueError):
            pass
        else:
            return _js().parseRecords(text)
    return _to_js(records)


def _key(key: Any) -> Any:
    return _to_js(list(key)) if isinstance(key, tuple) else _to_js(key)


def _range(range: KeyRange | None) -> Any:
    if range is None:
        return None
    import js

    with _translated():
        if range.has_lower and range.has_upper:
            return js.IDBKeyRange.bound(
                _key(range.lower), _key(range.upper), range.lower_open, range.upper_open
            )
        if range.has_lower:
            return js.IDBKeyRange.lowerBound(_key(range.lower), range.lower_open)
        if range.has_upper:
            return js.IDBKeyRange.upperBound(_key(range.upper), range.upper_open)
    return None


def _records(value: Any) -> list[Record]:
    return [_codec.decode(record) for record in value.to_py()]


def _maybe_records(value: Any) -> list[Record | None]:
    # A missing record is JavaScript null, which to_py() keeps as JsNull.
    return [_codec.decode(r) if isinstance(r, dict) else None for r in value.to_py()]


def _key_path(key_path: KeyPath) -> Any:
    return _to_js(list(key_path)) if isinstance(key_path, tuple) else key_path


class IndexedDBTransaction(Transaction):
    """A transaction of :class:`IndexedDBDatabase`."""

    def __init__(self, db: IndexedDBDatabase, stores: Sequence[str], mode: Mode) -> None:
        super().__init__(db.schema, stores, mode)
        self._db = db
        self._id = next(db.ids)
        self._pending: dict[int, tuple[Request[Any], Callable[[Any], Any]]] = {}
        self._request_ids = itertools.count()
        self._done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._failure: BaseException | None = None
        with _translated():
            self._tx = _js().begin(db.connection, _to_js(list(stores)), mode, db.sink, self._id)
        db.transactions[self._id] = self

    # Called by the database sink, synchronously inside IndexedDB's events.
    def deliver(self, request_id: int, value: Any) -> None:
        if request_id == -1:
            self._end(None)
        elif request_id == -2:
            self._end(self._failure or _error_from_js(value))
        else:
            request, convert = self._pending.pop(request_id)
            try:
                request.resolve(convert(value))
            except BaseException as error:
                # A failing callback aborts the whole transaction; re-raised by run().
                self._failure = self._failure or error
                with _translated():
                    self._tx.abort()

    def _end(self, error: BaseException | None) -> None:
        self.active = False
        self._db.transactions.pop(self._id, None)
        if self._db.closed and not self._db.transactions:
            self._db.sink.destroy()
        if not self._done.done():
            if error is None:
                self._done.set_result(None)
            else:
                self._done.set_exception(error)

    def _request(self, convert: Callable[[Any], Any]) -> tuple[Request[Any], int]:
        request: Request[Any] = Request()
        request_id = next(self._request_ids)
        self._pending[request_id] = (request, convert)
        return request, request_id

    def _source(self, store: str, index: str | None) -> Any:
        return _js().source(self._tx, store, index)

    def _get_many(self, store: str, keys: list[Any]) -> Request[list[Record | None]]:
        request, request_id = self._request(_maybe_records)
        with _translated():
            _js().getMany(
                self._source(store, None),
                _to_js([_key(k) for k in keys]),
                self._db.sink,
                self._id,
                request_id,
            )
        return request

    def _query(
        self,
        store: str,
        index: str | None,
        range: KeyRange | None,
        limit: int | None,
        offset: int,
        reverse: bool,
    ) -> Request[list[Record]]:
        request, request_id = self._request(_records)
        with _translated():
            _js().query(
                self._source(store, index),
                _range(range),
                reverse,
                offset,
                limit,
                self._db.sink,
                self._id,
                request_id,
            )
        return request

    def _lookup(self, store: str, index: str, keys: list[Any]) -> Request[list[list[Record]]]:
        request, request_id = self._request(
            lambda value: [[_codec.decode(r) for r in group] for group in value.to_py()]
        )
        with _translated():
            _js().lookup(
                self._source(store, index),
                _to_js([_key(k) for k in keys]),
                self._db.sink,
                self._id,
                request_id,
            )
        return request

    def _count(self, store: str, index: str | None, range: KeyRange | None) -> Request[int]:
        request, request_id = self._request(int)
        with _translated():
            _js().count(
                self._source(store, index), _range(range), self._db.sink, self._id, request_id
            )
        return request

    def _put_many(self, store: str, records: list[Record]) -> None:
        with _translated():
            _js().putAll(self._tx.objectStore(store), _records_to_js(records))

    def _delete_many(self, store: str, keys: list[Any]) -> None:
        with _translated():
            _js().deleteAll(self._tx.objectStore(store), _to_js([_key(k) for k in keys]))

    def _clear(self, store: str) -> None:
        with _translated():
            self._tx.objectStore(store).clear()

    def _abort(self) -> None:
        with _translated():
            self._tx.abort()

    async def _finish(self) -> None:
        await self._done


class IndexedDBDatabase(Database):
    """An open IndexedDB database; create it with :func:`open_indexeddb`."""

    def __init__(self, schema: Schema, connection: Any) -> None:
        from pyodide.ffi import create_proxy

        super().__init__(schema)
        self.connection = connection
        self.ids = itertools.count()
        self.transactions: dict[int, IndexedDBTransaction] = {}
        self.closed = False
        self.sink = create_proxy(self._dispatch)
        # Another tab wants to upgrade the schema: step aside instead of blocking it.
        self._on_version_change = create_proxy(lambda _event: self.close())
        connection.onversionchange = self._on_version_change

    def _dispatch(self, tx_id: int, request_id: int, value: Any) -> None:
        tx = self.transactions.get(tx_id)
        if tx is not None:
            tx.deliver(request_id, value)

    def _begin(self, stores: Sequence[str], mode: Mode) -> Transaction:
        if self.closed:
            raise DatabaseClosedError(f"the connection to {self.name!r} is closed")
        return IndexedDBTransaction(self, stores, mode)

    def close(self) -> None:
        """Close the connection (pending transactions still finish)."""
        if self.closed:
            return
        self.closed = True
        self.connection.onversionchange = None
        self.connection.close()
        self._on_version_change.destroy()
        # The sink stays alive while transactions already begun still report.
        if not self.transactions:
            self.sink.destroy()


def _upgrade(schema: Schema, failures: list[StoreError]) -> Callable[[Any, Any, int], None]:
    """The versionchange step: make the stored stores and indexes match ``schema``."""

    def upgrade(db: Any, tx: Any, _old_version: int) -> None:
        try:
            names = {db.objectStoreNames.item(i) for i in range(db.objectStoreNames.length)}
            for spec in schema.stores:
                if spec.name in names:
                    store = tx.objectStore(spec.name)
                    if not _same_key_path(store.keyPath, spec.key_path):
                        raise SchemaError(
                            f"store {spec.name!r} exists with key path {store.keyPath!r}; a "
                            "key path cannot change in place (declare a new store)"
                        )
                else:
                    store = db.createObjectStore(
                        spec.name, _to_js({"keyPath": _key_path(spec.key_path)})
                    )
                declared = {index.name: index for index in spec.indexes}
                for i in reversed(range(store.indexNames.length)):
                    name = store.indexNames.item(i)
                    index = store.index(name)
                    wanted = declared.get(name)
                    if wanted is None or not (
                        _same_key_path(index.keyPath, wanted.key_path)
                        and bool(index.unique) == wanted.unique
                        and bool(index.multiEntry) == wanted.multi_entry
                    ):
                        store.deleteIndex(name)
                current = {store.indexNames.item(i) for i in range(store.indexNames.length)}
                for index_spec in spec.indexes:
                    if index_spec.name not in current:
                        store.createIndex(
                            index_spec.name,
                            _key_path(index_spec.key_path),
                            _to_js(
                                {"unique": index_spec.unique, "multiEntry": index_spec.multi_entry}
                            ),
                        )
        except BaseException as error:
            failures.append(error if isinstance(error, StoreError) else SchemaError(str(error)))
            tx.abort()

    return upgrade


def _same_key_path(stored: Any, declared: KeyPath) -> bool:
    if isinstance(declared, tuple):
        return hasattr(stored, "to_py") and tuple(stored.to_py()) == declared
    return isinstance(stored, str) and stored == declared


async def open_indexeddb(schema: Schema) -> IndexedDBDatabase:
    """Open the IndexedDB database that ``schema`` declares, creating or upgrading it.

    Raises :class:`VersionError` if the stored version is higher, and
    :class:`SchemaError` if the stored stores or indexes differ from the declared
    ones at the same version (bump the version to change them).
    """
    from pyodide.ffi import JsException, create_proxy

    failures: list[StoreError] = []
    upgrade = create_proxy(_upgrade(schema, failures))
    try:
        connection = await _js().open(schema.name, schema.version, upgrade)
    except JsException as error:
        if failures:
            raise failures[0] from None
        js_error = getattr(error, "js_error", None)
        raise _error_from_js(js_error) from None
    finally:
        upgrade.destroy()
    db = IndexedDBDatabase(schema, connection)
    try:
        _check_schema(db)
    except BaseException:
        db.close()
        raise
    return db


def _check_schema(db: IndexedDBDatabase) -> None:
    schema = db.schema
    names = [spec.name for spec in schema.stores]
    if not names:
        return
    with _translated():
        tx = db.connection.transaction(_to_js(names), "readonly")
        described = _js().describe(tx, _to_js(names)).to_py()
    for (name, key_path, indexes), spec in zip(described, schema.stores, strict=True):
        stored_key_path = tuple(key_path) if isinstance(key_path, list) else key_path
        stored = {
            (n, tuple(k) if isinstance(k, list) else k, bool(u), bool(m)) for n, k, u, m in indexes
        }
        declared = {(i.name, i.key_path, i.unique, i.multi_entry) for i in spec.indexes}
        if stored_key_path != spec.key_path or stored != declared:
            raise SchemaError(
                f"store {name!r} of {schema.name!r} differs from the declared schema at version "
                f"{schema.version}; bump the version to apply the change"
            )


async def delete_indexeddb(name: str) -> None:
    """Delete an IndexedDB database and all its data."""
    from pyodide.ffi import JsException

    try:
        await _js().deleteDatabase(name)
    except JsException as error:
        raise _error_from_js(getattr(error, "js_error", None)) from None
