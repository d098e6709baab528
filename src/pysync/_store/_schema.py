"""Declarations of a local database: object stores, their key paths and indexes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._errors import DataError, SchemaError

KeyPath = str | tuple[str, ...]


@dataclass(frozen=True)
class Index:
    """A secondary index over ``key_path`` (a field name, dotted path, or a tuple of them)."""

    name: str
    key_path: KeyPath
    unique: bool = False
    multi_entry: bool = False

    def __post_init__(self) -> None:
        _check_key_path(self.key_path, f"index {self.name!r}")
        if self.multi_entry and isinstance(self.key_path, tuple):
            raise SchemaError(f"index {self.name!r}: multi_entry needs a single key path")


@dataclass(frozen=True)
class StoreSchema:
    """An object store holding dict records whose primary key is at ``key_path``."""

    name: str
    key_path: KeyPath = "id"
    indexes: tuple[Index, ...] = ()

    def __post_init__(self) -> None:
        _check_key_path(self.key_path, f"store {self.name!r}")
        names = [index.name for index in self.indexes]
        if len(set(names)) != len(names):
            raise SchemaError(f"store {self.name!r}: duplicate index names {names}")

    def index(self, name: str) -> Index:
        """The declared index called ``name``."""
        for index in self.indexes:
            if index.name == name:
                return index
        from .._errors import NotFoundError

        raise NotFoundError(f"store {self.name!r} has no index {name!r}")


@dataclass(frozen=True)
class Schema:
    """A database: its name, its version and its object stores.

    Bump ``version`` whenever ``stores`` change: opening then creates new stores and
    creates, replaces or removes indexes. Stores that are no longer declared are
    kept with their data (dropping user data is never implicit).
    """

    name: str
    version: int
    stores: tuple[StoreSchema, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.version, int) or self.version < 1:
            raise SchemaError(f"schema version must be a positive int, not {self.version!r}")
        names = [store.name for store in self.stores]
        if len(set(names)) != len(names):
            raise SchemaError(f"duplicate store names {names}")

    def store(self, name: str) -> StoreSchema:
        """The declared store called ``name``."""
        for store in self.stores:
            if store.name == name:
                return store
        from .._errors import NotFoundError

        raise NotFoundError(f"database {self.name!r} has no object store {name!r}")


@dataclass(frozen=True)
class KeyRange:
    """A range of keys, as IndexedDB's ``IDBKeyRange``; build it with the class methods."""

    lower: Any = None
    upper: Any = None
    lower_open: bool = False
    upper_open: bool = False
    has_lower: bool = False
    has_upper: bool = False

    @classmethod
    def only(cls, key: Any) -> KeyRange:
        """Exactly ``key``."""
        return cls(key, key, has_lower=True, has_upper=True)

    @classmethod
    def bound(
        cls, lower: Any, upper: Any, lower_open: bool = False, upper_open: bool = False
    ) -> KeyRange:
        """From ``lower`` to ``upper``, each end included unless marked open."""
        return cls(lower, upper, lower_open, upper_open, has_lower=True, has_upper=True)

    @classmethod
    def at_least(cls, lower: Any, open: bool = False) -> KeyRange:
        """``lower`` and above (above only, if ``open``)."""
        return cls(lower=lower, lower_open=open, has_lower=True)

    @classmethod
    def at_most(cls, upper: Any, open: bool = False) -> KeyRange:
        """``upper`` and below (below only, if ``open``)."""
        return cls(upper=upper, upper_open=open, has_upper=True)

    @classmethod
    def prefix(cls, prefix: str) -> KeyRange:
        """Every string key that starts with ``prefix``."""
        return cls.bound(prefix, prefix + "\uffff")


def _check_key_path(key_path: KeyPath, where: str) -> None:
    parts = key_path if isinstance(key_path, tuple) else (key_path,)
    if not parts or not all(isinstance(p, str) and p and not p.startswith(".") for p in parts):
        raise SchemaError(f"{where}: invalid key path {key_path!r}")


def extract_key(value: dict[str, Any], key_path: KeyPath) -> Any:
    """The key at ``key_path`` in ``value``, or ``None`` when a field is missing."""
    if isinstance(key_path, tuple):
        keys = [extract_key(value, part) for part in key_path]
        return None if any(k is None for k in keys) else tuple(keys)
    current: Any = value
    for part in key_path.split("."):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


def primary_key(store: StoreSchema, value: object) -> Any:
    """The primary key of ``value`` in ``store``; raise ``DataError`` if it has none."""
    if not isinstance(value, dict):
        raise DataError(f"store {store.name!r} holds dict records, not {type(value).__name__}")
    key = extract_key(value, store.key_path)
    if key is None:
        raise DataError(f"record has no key at {store.key_path!r} for store {store.name!r}")
    return key
