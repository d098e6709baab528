"""Ways to open databases of each backend, behind one small interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .._store import Database, MemoryStorage, Schema, delete_indexeddb, open_indexeddb


class StoreFactory(Protocol):
    """Opens and deletes databases of one backend."""

    async def open(self, schema: Schema) -> Database:
        """Open (create or upgrade) the database ``schema`` declares."""
        ...

    async def delete(self, name: str) -> None:
        """Delete a database and its data."""
        ...


@dataclass
class _Memory:
    storage: MemoryStorage = field(default_factory=MemoryStorage)

    async def open(self, schema: Schema) -> Database:
        return await self.storage.open(schema)

    async def delete(self, name: str) -> None:
        await self.storage.delete_database(name)


class _IndexedDB:
    async def open(self, schema: Schema) -> Database:
        return await open_indexeddb(schema)

    async def delete(self, name: str) -> None:
        await delete_indexeddb(name)


def memory_factory() -> StoreFactory:
    """A factory of in-memory databases (a fresh, empty storage)."""
    return _Memory()


def indexeddb_factory() -> StoreFactory:
    """A factory of the page's IndexedDB databases (needs Pyodide in a browser)."""
    return _IndexedDB()
