"""An in-memory backend with IndexedDB's semantics, for fast tests in CPython.

It keeps the encoded form of each record, as the browser would, so values go
through the same checks and come back as fresh copies. Like IndexedDB, a
transaction queues its requests and runs them in order after the body returns
(requests made in callbacks join the end of the queue); it works on a copy of
its stores and swaps it in on commit.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._errors import (
    ConstraintError,
    DatabaseClosedError,
    SchemaError,
    TransactionAbortedError,
    VersionError,
)
from . import _codec
from ._base import Database, Mode, Record, Request, Transaction
from ._keys import SortKey, check_key, index_keys, order_of
from ._schema import Index, KeyRange, Schema, StoreSchema, extract_key

# primary sort key -> (primary key, encoded record)
_Rows = dict[SortKey, tuple[Any, Record]]


@dataclass
class _Stored:
    version: int
    stores: dict[str, StoreSchema]
    rows: dict[str, _Rows] = field(default_factory=dict)


class MemoryStorage:
    """A set of named in-memory databases that outlive their connections."""

    def __init__(self) -> None:
        self._databases: dict[str, _Stored] = {}

    async def open(self, schema: Schema) -> MemoryDatabase:
        """Open (creating or upgrading) the database that ``schema`` declares."""
        stored = self._databases.get(schema.name)
        if stored is not None and schema.version < stored.version:
            raise VersionError(
                f"requested version {schema.version} is lower than the stored {stored.version}"
            )
        if stored is None or schema.version > stored.version:
            stored = _upgrade(stored, schema)
            self._databases[schema.name] = stored
        elif any(stored.stores.get(spec.name) != spec for spec in schema.stores):
            raise SchemaError(
                f"a store of {schema.name!r} differs from the declared schema at version "
                f"{schema.version}; bump the version to apply the change"
            )
        return MemoryDatabase(schema, stored)

    async def delete_database(self, name: str) -> None:
        """Delete a database and all its data."""
        self._databases.pop(name, None)


def _upgrade(old: _Stored | None, schema: Schema) -> _Stored:
    stores = dict(old.stores) if old else {}
    rows = dict(old.rows) if old else {}
    for spec in schema.stores:
        old_spec = stores.get(spec.name)
        if old_spec is not None and old_spec.key_path != spec.key_path:
            raise SchemaError(
                f"store {spec.name!r} exists with key path {old_spec.key_path!r}; a "
                "key path cannot change in place (declare a new store)"
            )
        rows.setdefault(spec.name, {})
        stores[spec.name] = spec
        for index in spec.indexes:
            if index.unique:
                _check_unique(spec, index, rows[spec.name])
    return _Stored(schema.version, stores, rows)


def _check_unique(spec: StoreSchema, index: Index, rows: _Rows) -> None:
    seen: dict[SortKey, Any] = {}
    for primary, record in rows.values():
        for key in index_keys(extract_key(record, index.key_path), index.multi_entry):
            order = order_of(key)
            if seen.setdefault(order, primary) != primary:
                raise ConstraintError(
                    f"unique index {index.name!r} of {spec.name!r} already holds key {key!r}"
                )


def _in_range(order: SortKey, range: KeyRange | None) -> bool:
    if range is None:
        return True
    if range.has_lower:
        low = order_of(range.lower)
        if order < low or (range.lower_open and order == low):
            return False
    if range.has_upper:
        high = order_of(range.upper)
        if order > high or (range.upper_open and order == high):
            return False
    return True


class MemoryTransaction(Transaction):
    """A transaction of :class:`MemoryDatabase`."""

    def __init__(self, db: MemoryDatabase, stores: Sequence[str], mode: Mode) -> None:
        super().__init__(db.schema, stores, mode)
        self._db = db
        self._rows = {name: dict(db.stored.rows[name]) for name in stores}
        self._error: BaseException | None = None
        self._queue: deque[Callable[[], None]] = deque()

    def _get_many(self, store: str, keys: list[Any]) -> Request[list[Record | None]]:
        request: Request[list[Record | None]] = Request()

        def run() -> None:
            rows = self._rows[store]
            found = [rows.get(order_of(key)) for key in keys]
            request.resolve([None if row is None else _read(row[1]) for row in found])

        self._queue.append(run)
        return request

    def _entries(self, store: str, index: str | None) -> Iterator[tuple[SortKey, Record]]:
        """(order, record) pairs in the order of the store or of ``index``."""
        for order, _, record in self._keyed_entries(store, index):
            yield order, record

    def _keyed_entries(
        self, store: str, index: str | None
    ) -> Iterator[tuple[SortKey, Any, Record]]:
        """(order, primary key, record) in the order of the store or of ``index``."""
        rows = self._rows[store]
        if index is None:
            for order in sorted(rows):
                yield order, *rows[order]
            return
        spec = self.schema.store(store).index(index)
        entries = []
        for primary_order, (primary, record) in rows.items():
            for key in index_keys(extract_key(record, spec.key_path), spec.multi_entry):
                entries.append((order_of(key), primary_order, primary, record))
        entries.sort(key=lambda entry: (entry[0], entry[1]))
        for order, _, primary, record in entries:
            yield order, primary, record

    def _query(
        self,
        store: str,
        index: str | None,
        range: KeyRange | None,
        limit: int | None,
        offset: int,
        reverse: bool,
    ) -> Request[list[Record]]:
        request: Request[list[Record]] = Request()

        def run() -> None:
            entries = self._entries(store, index)
            matches = [record for order, record in entries if _in_range(order, range)]
            if reverse:
                matches.reverse()
            end = None if limit is None else offset + limit
            request.resolve([_read(record) for record in matches[offset:end]])

        self._queue.append(run)
        return request

    def _keys(self, store: str, range: KeyRange | None, limit: int | None) -> Request[list[Any]]:
        request: Request[list[Any]] = Request()

        def run() -> None:
            rows = self._rows[store]
            # As IndexedDB gives them: arrays as tuples.
            keys = [check_key(rows[order][0]) for order in sorted(rows) if _in_range(order, range)]
            request.resolve(keys[:limit])

        self._queue.append(run)
        return request

    def _lookup(self, store: str, index: str, keys: list[Any]) -> Request[list[list[Record]]]:
        request: Request[list[list[Record]]] = Request()

        def run() -> None:
            by_key: dict[SortKey, list[Record]] = {}
            for order, record in self._entries(store, index):
                by_key.setdefault(order, []).append(record)
            request.resolve([[_read(r) for r in by_key.get(order_of(k), [])] for k in keys])

        self._queue.append(run)
        return request

    def _lookup_keys(self, store: str, index: str, keys: list[Any]) -> Request[list[list[Any]]]:
        request: Request[list[list[Any]]] = Request()

        def run() -> None:
            by_key: dict[SortKey, list[Any]] = {}
            for order, primary, _ in self._keyed_entries(store, index):
                by_key.setdefault(order, []).append(primary)
            request.resolve([list(by_key.get(order_of(k), [])) for k in keys])

        self._queue.append(run)
        return request

    def _count(self, store: str, index: str | None, range: KeyRange | None) -> Request[int]:
        request: Request[int] = Request()

        def run() -> None:
            entries = self._entries(store, index)
            request.resolve(sum(1 for order, _ in entries if _in_range(order, range)))

        self._queue.append(run)
        return request

    def _put_many(self, store: str, records: list[Record]) -> None:
        spec = self.schema.store(store)

        def run() -> None:
            rows = self._rows[store]
            for record in records:
                key = extract_key(record, spec.key_path)
                rows[order_of(key)] = (key, record)
            for index in spec.indexes:
                if index.unique:
                    _check_unique(spec, index, rows)

        self._queue.append(run)

    def _delete_many(self, store: str, keys: list[Any]) -> None:
        def run() -> None:
            rows = self._rows[store]
            for key in keys:
                rows.pop(order_of(key), None)

        self._queue.append(run)

    def _clear(self, store: str) -> None:
        self._queue.append(self._rows[store].clear)

    def _abort(self) -> None:
        self._error = self._error or TransactionAbortedError("the transaction was aborted")

    async def _finish(self) -> None:
        # Requests run in order; one that fails (or a callback that raises)
        # aborts the transaction and the rest never run.
        while self._queue and self._error is None:
            try:
                self._queue.popleft()()
            except BaseException as error:
                self._error = error
        self.active = False
        if self._error is not None:
            raise self._error
        if self.mode == "readwrite":
            if self._db.closed:
                raise DatabaseClosedError("the database connection is closed")
            self._db.stored.rows.update(self._rows)


def _read(record: Record) -> Record:
    return _codec.decode(copy.deepcopy(record))


class MemoryDatabase(Database):
    """An open in-memory database (see :class:`MemoryStorage`)."""

    def __init__(self, schema: Schema, stored: _Stored) -> None:
        super().__init__(schema)
        self.stored = stored
        self.closed = False

    def _begin(self, stores: Sequence[str], mode: Mode) -> Transaction:
        if self.closed:
            raise DatabaseClosedError("the database connection is closed")
        for name in stores:
            self.schema.store(name)
        return MemoryTransaction(self, stores, mode)

    def close(self) -> None:
        """Close the connection."""
        self.closed = True
