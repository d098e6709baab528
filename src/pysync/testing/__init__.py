"""Test support for pysync and for apps built on it.

* :mod:`pysync.testing.store_contract`: the behaviour every storage backend
  guarantees, as runnable checks (run against IndexedDB in Chromium and against
  the in-memory backend in CPython).
* :class:`MemoryBrowser`: simulated tabs (shared storage, broadcast channels,
  Web Locks, connectivity, event sources and a fake clock) to run replicas in CPython.
* :class:`MemoryDynamo`: an in-memory DynamoDB (the request subset pysync sends) with
  a simulated changelog and fault injection, to run the sync engine in CPython.
"""

from typing import TYPE_CHECKING, Any

from ._factories import StoreFactory, indexeddb_factory, memory_factory
from ._platform import MemoryBrowser, MemoryEventSource, MemoryTab

if TYPE_CHECKING:
    from ._dynamo import MemoryConnection, MemoryDynamo


def __getattr__(name: str) -> Any:
    # The in-memory DynamoDB is imported on first use: it runs in CPython only, and the
    # page's wheel (scripts/build_dist.py) leaves it out.
    if name in ("MemoryConnection", "MemoryDynamo"):
        from . import _dynamo

        return getattr(_dynamo, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
