"""Local storage: a small transactional layer with an IndexedDB and an in-memory backend."""

from ._base import Database, Mode, Record, Request, Transaction
from ._indexeddb import IndexedDBDatabase, delete_indexeddb, open_indexeddb
from ._memory import MemoryDatabase, MemoryStorage
from ._schema import Index, KeyRange, Schema, StoreSchema
from ._writes import Writes

__all__ = [
    "Database",
    "Index",
    "IndexedDBDatabase",
    "KeyRange",
    "MemoryDatabase",
    "MemoryStorage",
    "Mode",
    "Record",
    "Request",
    "Schema",
    "StoreSchema",
    "Transaction",
    "Writes",
    "delete_indexeddb",
    "open_indexeddb",
]
