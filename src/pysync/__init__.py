"""pysync: offline-first sync between IndexedDB in the browser and Amazon DynamoDB."""

from ._documents import Document
from ._errors import (
    BlockedError,
    ConstraintError,
    DatabaseClosedError,
    DataError,
    DocumentExistsError,
    DocumentNotFoundError,
    MigrationError,
    NotFoundError,
    PysyncError,
    QuotaExceededError,
    ReadOnlyError,
    SchemaError,
    StoreError,
    TransactionAbortedError,
    TransactionInactiveError,
    TransactionTooLargeError,
    ValidationError,
    VersionError,
)
from ._hlc import Timestamp
from ._jsapi import expose
from ._live import Subscription
from ._merge import Strategy
from ._remote import HttpRemote, Remote, RemoteError
from ._replica import Batch, Collection, Replica, Status, SyncState, connect
from ._schema import AppSchema, CollectionSpec, Migration
from ._store import (
    Database,
    Index,
    IndexedDBDatabase,
    KeyRange,
    MemoryDatabase,
    MemoryStorage,
    Record,
    Request,
    Schema,
    StoreSchema,
    Transaction,
    delete_indexeddb,
    open_indexeddb,
)
from ._sync import PullReport, PushReport, Sync, SyncReport

__version__ = "0.1.0"

__all__ = [
    "AppSchema",
    "Batch",
    "BlockedError",
    "Collection",
    "CollectionSpec",
    "ConstraintError",
    "DataError",
    "Database",
    "DatabaseClosedError",
    "Document",
    "DocumentExistsError",
    "DocumentNotFoundError",
    "HttpRemote",
    "Index",
    "IndexedDBDatabase",
    "KeyRange",
    "MemoryDatabase",
    "MemoryStorage",
    "Migration",
    "MigrationError",
    "NotFoundError",
    "PullReport",
    "PushReport",
    "PysyncError",
    "QuotaExceededError",
    "ReadOnlyError",
    "Record",
    "Remote",
    "RemoteError",
    "Replica",
    "Request",
    "Schema",
    "SchemaError",
    "Status",
    "StoreError",
    "StoreSchema",
    "Strategy",
    "Subscription",
    "Sync",
    "SyncReport",
    "SyncState",
    "Timestamp",
    "Transaction",
    "TransactionAbortedError",
    "TransactionInactiveError",
    "TransactionTooLargeError",
    "ValidationError",
    "VersionError",
    "__version__",
    "connect",
    "delete_indexeddb",
    "expose",
    "open_indexeddb",
]
