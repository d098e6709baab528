"""The IndexedDB backend: the only module of pysync's store that touches ``js``.

Requests are made synchronously from the transaction body and from request
callbacks, never across an ``await`` (which would let the browser commit the
transaction early); only the transaction's end is awaited. The requests of each
such step cross to JavaScript in one call (``_idb_helpers.js`` ``run``), mostly
as one JSON text, and the results of its reads come back in one call to one
Python sink per database, so a transaction creates no JavaScript proxy of its own.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

from .._errors import (
    DatabaseClosedError,
    SchemaError,
    StoreError,
    TransactionAbortedError,
    TransactionInactiveError,
    store_error,
)
from . import _codec
from ._base import Database, Mode, Record, Request, Transaction
from ._schema import KeyPath, KeyRange, Schema, StoreSchema


@functools.cache
def shipped_js(package: str, name: str) -> Any:
    """The value of the JavaScript file ``name`` of ``package``, evaluated once per page."""
    from pyodide.code import run_js

    return run_js(resources.files(package).joinpath(name).read_text())


def _js() -> Any:
    """The helper object (``_idb_helpers.js``)."""
    return shipped_js(__package__, "_idb_helpers.js")


def _to_js(value: Any) -> Any:
    import js
    from pyodide.ffi import to_js

    return to_js(value, dict_converter=js.Object.fromEntries, create_pyproxies=False)


def _error_from_js(error: Any) -> StoreError:
    """A pysync error for a DOMException (or any JS error) ``error``."""
    if error is None:
        return TransactionAbortedError("the transaction was aborted")
    return store_error(str(error.name), str(error.message))


class _Translated:
    """``with _translated:`` re-raises exceptions thrown synchronously by IndexedDB as
    pysync errors (a class, not a generator: it is entered on every request step)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        if error is None:
            return
        from pyodide.ffi import JsException

        if not isinstance(error, JsException):
            return
        js_error = getattr(error, "js_error", None)
        name = getattr(js_error, "name", None) or getattr(error, "name", "UnknownError")
        message = getattr(js_error, "message", None) or str(error)
        raise store_error(str(name), str(message)) from None


_translated = _Translated()

# JSON for _idb_helpers.js: exact or refused (NaN, infinities), compact. One encoder,
# not one per json.dumps call.
_JSON = json.JSONEncoder(allow_nan=False, check_circular=False, separators=(",", ":"))


def _payload(ops: list[list[Any]], records: list[Record]) -> tuple[Any, bool]:
    """``ops`` for ``_idb_helpers.js`` ``run``: one JSON text when JSON is exact, else ``to_js``.

    One JSON text parsed by ``JSON.parse`` costs about half of ``to_js`` with
    ``Object.fromEntries`` per dict (10,000 records: 22 vs 50 ms), and a step's
    requests cross to JavaScript in one call. JSON is exact unless a record holds
    bytes or an int beyond 2**53 (its sidecar says so), or a record or key holds
    bytes or NaN/Infinity (``json.dumps`` raises): those steps take ``_to_js``.
    ``records`` are the records of the step's puts.
    """
    if not any(
        _codec.SIDECAR in r and ("n" in r[_codec.SIDECAR] or "b" in r[_codec.SIDECAR])
        for r in records
    ):
        try:
            text = _JSON.encode(ops)
        except (TypeError, ValueError):
            pass
        else:
            return text, True
    return _to_js(ops), False


def _range(range: KeyRange | None) -> list[Any] | None:
    """A key range as ``_idb_helpers.js`` ``range`` takes it."""
    if range is None:
        return None
    return [
        range.lower if range.has_lower else None,
        range.upper if range.has_upper else None,
        range.lower_open,
        range.upper_open,
        range.has_lower,
        range.has_upper,
    ]


def _records(value: list[Any]) -> list[Record]:
    return [_codec.decode(record) for record in value]


def _maybe_records(value: list[Any]) -> list[Record | None]:
    # A missing record is undefined (None); JavaScript null would be JsNull.
    return [_codec.decode(r) if isinstance(r, dict) else None for r in value]


def _primary_keys(value: list[Any]) -> list[Any]:
    return [_key(key) for key in value]


def _key(value: Any) -> Any:
    """A primary key as Python holds it: arrays as tuples, binary keys as bytes."""
    if isinstance(value, list):
        return tuple(_key(part) for part in value)
    if isinstance(value, (memoryview, bytearray)):
        return bytes(value)
    return value


def _groups(value: list[list[Any]]) -> list[list[Record]]:
    return [[_codec.decode(r) for r in group] for group in value]


def _key_groups(value: list[list[Any]]) -> list[list[Any]]:
    return [[_key(key) for key in group] for group in value]


def _key_path(key_path: KeyPath) -> Any:
    return _to_js(list(key_path)) if isinstance(key_path, tuple) else key_path


# Transaction ids, unique in the page: the JavaScript helper keeps every running
# transaction by its id.
_tx_ids = itertools.count()

_Read = tuple[Request[Any], Callable[[Any], Any]]


class IndexedDBTransaction(Transaction):
    """A transaction of :class:`IndexedDBDatabase`.

    Requests are queued and sent to JavaScript in one call per synchronous step: at
    the end of the body and after each batch of callbacks (a step's requests are
    all made before the browser's event loop turns, so IndexedDB sees them in the
    same order and the same transaction as if each had been sent at once). The
    browser transaction begins with the first step. The results of a step's reads
    come back together in one call, once the last one is known; their callbacks
    run then, in request order, and their requests form the next step.
    """

    def __init__(self, db: IndexedDBDatabase, stores: Sequence[str], mode: Mode) -> None:
        super().__init__(db.schema, stores, mode)
        self._db = db
        self._id = next(_tx_ids)
        self._begun = False
        # Whether requests may be made: in the body and in callbacks, as in IndexedDB.
        self._open = True
        self._ops: list[list[Any]] = [["begin", list(stores), mode]]
        self._records: list[Record] = []
        # JavaScript arrays of records the step's "put_js" ops refer to by position.
        self._values: list[Any] = []
        self._reads: list[_Read] = []
        self._batches: dict[int, list[_Read]] = {}
        self._batch_ids = itertools.count()
        self._done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._failure: BaseException | None = None
        self._aborting = False
        db.transactions[self._id] = self

    # Called by the database sink, synchronously inside IndexedDB's events.
    def deliver(self, batch: int, value: Any) -> None:
        if batch == -1:
            self._end(None)
        elif batch == -2:
            self._end(self._failure or _error_from_js(value))
        else:
            reads = self._batches.pop(batch)
            values = value.to_py()
            self._open = True
            try:
                for (request, convert), result in zip(reads, values, strict=True):
                    request.resolve(convert(result))
                    if self._aborting:
                        return
            except BaseException as error:
                # A failing callback aborts the whole transaction; re-raised by run().
                self._failure = self._failure or error
                self._abort()
                return
            finally:
                self._open = False
            self._flush()

    def _end(self, error: BaseException | None) -> None:
        self.active = False
        self._open = False
        self._db.transactions.pop(self._id, None)
        if self._db.closed and not self._db.transactions:
            self._db.sink.destroy()
        if not self._done.done():
            if error is None:
                self._done.set_result(None)
            else:
                self._done.set_exception(error)

    def _flush(self) -> None:
        """Send the queued requests to JavaScript (see the class docstring)."""
        if not self._ops:
            return
        ops, self._ops = self._ops, []
        records, self._records = self._records, []
        values, self._values = self._values, []
        reads, self._reads = self._reads, []
        batch = None
        if reads:
            batch = next(self._batch_ids)
            self._batches[batch] = reads
        payload, text = _payload(ops, records)
        try:
            with _translated:
                self._db.run_step(
                    None if self._begun else self._db.connection,
                    self._id,
                    payload,
                    text,
                    self._db.sink,
                    batch,
                    _to_js(values) if values else None,
                )
        except StoreError as error:
            # The helper aborted the transaction if it began (its abort event ends
            # it); if it could not even begin it, nothing will report: end it here.
            self._failure = self._failure or error
            self._aborting = True
            if not self._begun and not _js().txs.has(self._id):
                self._end(self._failure)
            return
        self._begun = True

    def _check(self, store: str, write: bool) -> StoreSchema:
        spec = super()._check(store, write)
        if not self._open or self._aborting:
            raise TransactionInactiveError(
                "the transaction is not active here: make its requests in the transaction "
                "body or in a Request.then() callback"
            )
        return spec

    def _read(self, op: list[Any], convert: Callable[[Any], Any]) -> Request[Any]:
        request: Request[Any] = Request()
        self._ops.append(op)
        self._reads.append((request, convert))
        return request

    def _get_many(self, store: str, keys: list[Any]) -> Request[list[Record | None]]:
        return self._read(["get", store, keys], _maybe_records)

    def _query(
        self,
        store: str,
        index: str | None,
        range: KeyRange | None,
        limit: int | None,
        offset: int,
        reverse: bool,
    ) -> Request[list[Record]]:
        return self._read(["query", store, index, _range(range), reverse, offset, limit], _records)

    def _keys(self, store: str, range: KeyRange | None, limit: int | None) -> Request[list[Any]]:
        return self._read(["keys", store, _range(range), limit], _primary_keys)

    def _lookup(self, store: str, index: str, keys: list[Any]) -> Request[list[list[Record]]]:
        return self._read(["lookup", store, index, keys, False], _groups)

    def _lookup_keys(self, store: str, index: str, keys: list[Any]) -> Request[list[list[Any]]]:
        return self._read(["lookup", store, index, keys, True], _key_groups)

    def _count(self, store: str, index: str | None, range: KeyRange | None) -> Request[int]:
        return self._read(["count", store, index, _range(range)], int)

    def _put_many(self, store: str, records: list[Record]) -> None:
        self._ops.append(["put", store, records])
        self._records += records

    def put_js(self, store: str, records: Any, positions: list[int]) -> None:
        """Insert or replace ``records[i]`` for each ``i`` of ``positions``.

        ``records`` is a JavaScript array (a ``JsProxy``) of records exactly as
        :meth:`put_many` would send them: keys checked, values encoded, ``None`` as
        ``undefined``. The caller makes them so (``pysync._sync._images``); they never
        enter Python.
        """
        self._check(store, write=True)
        self._values.append(records)
        self._ops.append(["put_js", store, len(self._values) - 1, positions])

    def _delete_many(self, store: str, keys: list[Any]) -> None:
        self._ops.append(["delete", store, keys])

    def _clear(self, store: str) -> None:
        self._ops.append(["clear", store])

    def _abort(self) -> None:
        self._aborting = True
        self._ops, self._records, self._values, self._reads = [], [], [], []
        if self._begun:
            with _translated:
                _js().abort(self._id)
        else:
            # Nothing reached the browser: there is nothing to undo.
            self._end(self._failure or TransactionAbortedError("the transaction was aborted"))

    async def _finish(self) -> None:
        if not self._aborting and self._open:
            self._open = False
            self._flush()
        await self._done


class IndexedDBDatabase(Database):
    """An open IndexedDB database; create it with :func:`open_indexeddb`."""

    def __init__(self, schema: Schema, connection: Any) -> None:
        from pyodide.ffi import create_proxy

        super().__init__(schema)
        self.connection = connection
        self.transactions: dict[int, IndexedDBTransaction] = {}
        self.closed = False
        self.sink = create_proxy(self._dispatch)
        # The helper's `run`, looked up once: it is called on every request step.
        self.run_step = _js().run
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
    with _translated:
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
