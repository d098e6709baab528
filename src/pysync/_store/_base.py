"""What every storage backend shares: requests, transactions and shortcuts.

Rules of a transaction, the same on every backend (and those of IndexedDB):

* The body is a plain synchronous function. Its requests are queued in the order
  they are made; each returns a :class:`Request` whose ``then`` callbacks run as
  soon as its result is known, while the transaction is still open, so a callback
  may issue further requests (read, then write what was read).
* Either every write of the transaction commits, or none does: an exception in
  the body or in a callback, or a failed request, aborts the whole transaction
  and :meth:`Database.run` raises it.
* Invalid keys and records are refused at once with :class:`DataError` /
  :class:`ValidationError`; a write in a read-only transaction with
  :class:`ReadOnlyError`; constraint and quota failures surface when the
  transaction ends.
* An ``async`` body is refused (:class:`TransactionInactiveError`): in a browser
  an ``await`` would commit the transaction half way.
"""

from __future__ import annotations

import contextlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, Generic, Literal, TypeVar

from .._errors import (
    DataError,
    NotFoundError,
    ReadOnlyError,
    StoreError,
    TransactionInactiveError,
)
from . import _codec
from ._keys import check_key, sort_key
from ._schema import KeyRange, Schema, StoreSchema, primary_key

T = TypeVar("T")
U = TypeVar("U")
Mode = Literal["readonly", "readwrite"]
Record = dict[str, Any]

_ASYNC_BODY = (
    "a transaction body must be a synchronous function: an await inside an IndexedDB "
    "transaction lets the browser commit it half way. Do the awaited work before or "
    "after the transaction, and chain dependent requests with Request.then()."
)


class Request(Generic[T]):
    """The pending result of one request in a transaction."""

    __slots__ = ("_callbacks", "_done", "_result")

    def __init__(self) -> None:
        self._done = False
        self._result: Any = None
        self._callbacks: list[Callable[[T], object]] = []

    def then(self, callback: Callable[[T], object]) -> Request[T]:
        """Call ``callback(result)`` inside the transaction once the result is known."""
        if self._done:
            callback(self._result)
        else:
            self._callbacks.append(callback)
        return self

    def map(self, convert: Callable[[T], U]) -> Request[U]:
        """A request for ``convert(result)``."""
        mapped: Request[U] = Request()
        self.then(lambda value: mapped.resolve(convert(value)))
        return mapped

    @property
    def done(self) -> bool:
        """Whether the result is known."""
        return self._done

    @property
    def result(self) -> T:
        """The result; read it in a ``then`` callback or after the transaction ended."""
        if not self._done:
            raise StoreError("the request has not completed yet", "InvalidStateError")
        return self._result  # type: ignore[no-any-return]

    def resolve(self, value: T) -> None:
        """Deliver the result (backends only) and run the callbacks."""
        self._done = True
        self._result = value
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(value)


class Transaction(ABC):
    """Requests over a fixed set of object stores that commit or abort together."""

    def __init__(self, schema: Schema, stores: Sequence[str], mode: Mode) -> None:
        self.schema = schema
        self.stores = tuple(stores)
        self.mode = mode
        self.active = True

    # -- reads -----------------------------------------------------------------

    def get(self, store: str, key: Any) -> Request[Record | None]:
        """The record with primary key ``key``, or ``None``."""
        return self.get_many(store, [key]).map(lambda records: records[0])

    def get_many(self, store: str, keys: Iterable[Any]) -> Request[list[Record | None]]:
        """The records with these primary keys, in the same order (``None`` if absent)."""
        self._check(store, write=False)
        return self._get_many(store, [check_key(k) for k in keys])

    def query(
        self,
        store: str,
        *,
        index: str | None = None,
        range: KeyRange | None = None,
        limit: int | None = None,
        offset: int = 0,
        reverse: bool = False,
    ) -> Request[list[Record]]:
        """Records in key order (of ``index`` if given) within ``range``.

        ``offset`` skips that many matches first; ``limit`` caps the result;
        ``reverse`` walks from the highest key down.
        """
        spec = self._check(store, write=False)
        if index is not None:
            spec.index(index)
        if limit is not None and (type(limit) is not int or limit < 0):
            raise DataError(f"limit must be a non-negative int or None, not {limit!r}")
        if type(offset) is not int or offset < 0:
            raise DataError(f"offset must be a non-negative int, not {offset!r}")
        return self._query(store, index, _check_range(range), limit, offset, reverse)

    def keys(
        self, store: str, *, range: KeyRange | None = None, limit: int | None = None
    ) -> Request[list[Any]]:
        """The primary keys of ``store`` within ``range``, in key order, at most ``limit``
        (the records themselves are not read: cheaper over a big store)."""
        self._check(store, write=False)
        if limit is not None and (type(limit) is not int or limit < 0):
            raise DataError(f"limit must be a non-negative int or None, not {limit!r}")
        return self._keys(store, _check_range(range), limit)

    def lookup(self, store: str, index: str, keys: Iterable[Any]) -> Request[list[list[Record]]]:
        """For each key, every record whose ``index`` key equals it (in index order)."""
        self._check(store, write=False).index(index)
        return self._lookup(store, index, [check_key(k) for k in keys])

    def lookup_keys(self, store: str, index: str, keys: Iterable[Any]) -> Request[list[list[Any]]]:
        """For each key, the primary keys of the records whose ``index`` key equals it (in
        index order). The records are not read: with a multi-entry index, one record may
        answer many keys, and is then read once (``get_many``), not once per key."""
        self._check(store, write=False).index(index)
        return self._lookup_keys(store, index, [check_key(k) for k in keys])

    def count(
        self, store: str, *, index: str | None = None, range: KeyRange | None = None
    ) -> Request[int]:
        """How many records (or index entries) fall within ``range``."""
        spec = self._check(store, write=False)
        if index is not None:
            spec.index(index)
        return self._count(store, index, _check_range(range))

    # -- writes ----------------------------------------------------------------

    def put(self, store: str, record: Record) -> None:
        """Insert or replace ``record`` (its key is at the store's key path)."""
        self.put_many(store, [record])

    def put_many(self, store: str, records: Iterable[Record]) -> None:
        """Insert or replace every record."""
        spec = self._check(store, write=True)
        encoded = []
        for record in records:
            check_key(primary_key(spec, record))
            encoded.append(_codec.encode(record))
        self._put_many(store, encoded)

    def delete(self, store: str, key: Any) -> None:
        """Delete the record with primary key ``key`` (nothing if absent)."""
        self.delete_many(store, [key])

    def delete_many(self, store: str, keys: Iterable[Any]) -> None:
        """Delete the records with these primary keys."""
        self._check(store, write=True)
        self._delete_many(store, [check_key(k) for k in keys])

    def clear(self, store: str) -> None:
        """Delete every record of ``store``."""
        self._check(store, write=True)
        self._clear(store)

    def abort(self) -> None:
        """Abort: nothing this transaction wrote is kept."""
        self._ensure_active()
        self._abort()

    # -- backend interface -----------------------------------------------------

    @abstractmethod
    def _get_many(self, store: str, keys: list[Any]) -> Request[list[Record | None]]: ...

    @abstractmethod
    def _query(
        self,
        store: str,
        index: str | None,
        range: KeyRange | None,
        limit: int | None,
        offset: int,
        reverse: bool,
    ) -> Request[list[Record]]: ...

    @abstractmethod
    def _keys(
        self, store: str, range: KeyRange | None, limit: int | None
    ) -> Request[list[Any]]: ...

    @abstractmethod
    def _lookup(self, store: str, index: str, keys: list[Any]) -> Request[list[list[Record]]]: ...

    @abstractmethod
    def _lookup_keys(self, store: str, index: str, keys: list[Any]) -> Request[list[list[Any]]]: ...

    @abstractmethod
    def _count(self, store: str, index: str | None, range: KeyRange | None) -> Request[int]: ...

    @abstractmethod
    def _put_many(self, store: str, records: list[Record]) -> None: ...

    @abstractmethod
    def _delete_many(self, store: str, keys: list[Any]) -> None: ...

    @abstractmethod
    def _clear(self, store: str) -> None: ...

    @abstractmethod
    def _abort(self) -> None: ...

    @abstractmethod
    async def _finish(self) -> None:
        """Wait until the transaction committed, or raise why it did not."""

    # -- checks ----------------------------------------------------------------

    def _ensure_active(self) -> None:
        if not self.active:
            raise TransactionInactiveError(
                "the transaction has already finished; make every request inside the "
                "transaction body or in a Request.then() callback"
            )

    def _check(self, store: str, write: bool) -> StoreSchema:
        self._ensure_active()
        if store not in self.stores:
            raise NotFoundError(f"store {store!r} is not in this transaction's scope {self.stores}")
        if write and self.mode != "readwrite":
            raise ReadOnlyError(f"cannot write to {store!r} in a read-only transaction")
        return self.schema.store(store)


def _check_range(range: KeyRange | None) -> KeyRange | None:
    if range is None:
        return None
    lower = check_key(range.lower) if range.has_lower else None
    upper = check_key(range.upper) if range.has_upper else None
    if range.has_lower and range.has_upper:
        low, high = sort_key(lower), sort_key(upper)
        assert low is not None
        assert high is not None
        if low > high or (low == high and (range.lower_open or range.upper_open)):
            raise DataError(f"empty or inverted key range {range!r}")
    return range


class Database(ABC):
    """An open local database; the shortcuts each run one whole transaction."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema

    @property
    def name(self) -> str:
        """The database name."""
        return self.schema.name

    @abstractmethod
    def _begin(self, stores: Sequence[str], mode: Mode) -> Transaction: ...

    @abstractmethod
    def close(self) -> None:
        """Close the connection; later requests raise :class:`DatabaseClosedError`."""

    async def run(
        self, stores: str | Sequence[str], mode: Mode, body: Callable[[Transaction], T]
    ) -> T:
        """Run ``body(tx)`` as one atomic transaction over ``stores`` and return its result.

        Requests the body returns hold their results once this returns.
        """
        scope = (stores,) if isinstance(stores, str) else tuple(stores)
        tx = self._begin(scope, mode)
        try:
            result = body(tx)
        except BaseException:
            if tx.active:
                tx.abort()
            await _settle(tx)
            raise
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            tx.abort()
            await _settle(tx)
            raise TransactionInactiveError(_ASYNC_BODY)
        await tx._finish()
        return result

    async def get(self, store: str, key: Any) -> Record | None:
        """The record with primary key ``key``, or ``None``."""
        return (await self.run(store, "readonly", lambda tx: tx.get(store, key))).result

    async def get_many(self, store: str, keys: Iterable[Any]) -> list[Record | None]:
        """The records with these keys, in order, ``None`` where absent."""
        keys = list(keys)
        return (await self.run(store, "readonly", lambda tx: tx.get_many(store, keys))).result

    async def put(self, store: str, record: Record) -> None:
        """Insert or replace one record."""
        await self.run(store, "readwrite", lambda tx: tx.put(store, record))

    async def put_many(self, store: str, records: Iterable[Record]) -> None:
        """Insert or replace many records in one transaction."""
        await self.run(store, "readwrite", lambda tx: tx.put_many(store, records))

    async def delete(self, store: str, key: Any) -> None:
        """Delete one record by primary key."""
        await self.run(store, "readwrite", lambda tx: tx.delete(store, key))

    async def delete_many(self, store: str, keys: Iterable[Any]) -> None:
        """Delete many records by primary key in one transaction."""
        await self.run(store, "readwrite", lambda tx: tx.delete_many(store, keys))

    async def clear(self, store: str) -> None:
        """Delete every record of a store."""
        await self.run(store, "readwrite", lambda tx: tx.clear(store))

    async def count(
        self, store: str, *, index: str | None = None, range: KeyRange | None = None
    ) -> int:
        """How many records fall within ``range``."""
        counted = await self.run(
            store, "readonly", lambda tx: tx.count(store, index=index, range=range)
        )
        return counted.result

    async def query(
        self,
        store: str,
        *,
        index: str | None = None,
        range: KeyRange | None = None,
        limit: int | None = None,
        offset: int = 0,
        reverse: bool = False,
    ) -> list[Record]:
        """Records in key order within ``range``; see :meth:`Transaction.query`."""
        found = await self.run(
            store,
            "readonly",
            lambda tx: tx.query(
                store, index=index, range=range, limit=limit, offset=offset, reverse=reverse
            ),
        )
        return found.result

    async def key_slices(self, store: str, size: int) -> AsyncIterator[list[Any]]:
        """The primary keys of ``store`` in key order, ``size`` at a time, each slice
        read in a transaction of its own (a short task over a big store; keys may
        change between slices). Only the keys are read."""
        after: KeyRange | None = None
        while True:

            def body(tx: Transaction, span: KeyRange | None = after) -> Request[list[Any]]:
                return tx.keys(store, range=span, limit=size)

            keys = (await self.run(store, "readonly", body)).result
            if keys:
                yield keys
            if len(keys) < size:
                return
            after = KeyRange.at_least(keys[-1], open=True)


async def _settle(tx: Transaction) -> None:
    """Wait for an aborted transaction to end, ignoring the abort it reports."""
    with contextlib.suppress(StoreError):
        await tx._finish()
