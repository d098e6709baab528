"""Test support for pysync and for apps built on it.

* :mod:`pysync.testing.store_contract`: the behaviour every storage backend
  guarantees, as runnable checks (run against IndexedDB in Chromium and against
  the in-memory backend in CPython).
* :class:`MemoryBrowser`: simulated tabs (shared storage, broadcast channels,
  Web Locks, connectivity, event sources and a fake clock) to run replicas in CPython.
* :class:`MemoryDynamo`: an in-memory DynamoDB (the request subset pysync sends) with
  a simulated changelog and fault injection, to run the sync engine in CPython.
"""

from ._dynamo import MemoryConnection, MemoryDynamo
from ._factories import StoreFactory, indexeddb_factory, memory_factory
from ._platform import MemoryBrowser, MemoryEventSource, MemoryTab

__all__ = [
    "MemoryBrowser",
    "MemoryConnection",
    "MemoryDynamo",
    "MemoryEventSource",
    "MemoryTab",
    "StoreFactory",
    "indexeddb_factory",
    "memory_factory",
]
