"""Test support for pysync and for apps built on it.

* :mod:`pysync.testing.store_contract`: the behaviour every storage backend
  guarantees, as runnable checks (run against IndexedDB in Chromium and against
  the in-memory backend in CPython).
"""

from ._factories import StoreFactory, indexeddb_factory, memory_factory

__all__ = ["StoreFactory", "indexeddb_factory", "memory_factory"]
