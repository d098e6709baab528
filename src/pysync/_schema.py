"""The app's schema: collections, their indexes, the version and its migrations."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import SchemaError
from ._outbox_rows import idb_version
from ._outbox_rows import store_schema as outbox_store
from ._store import Index, KeyRange, Schema, StoreSchema
from ._store._schema import extract_key

META = "_meta"
CONFLICTS = "_conflicts"

Migration = Callable[[str, dict[str, Any]], dict[str, Any]]
"""``migrate(collection, document) -> document``: one upgrade step for stored data."""

#: An app name or sync namespace: it starts every sort key of the app's items
#: (``<namespace>/<collection>#<id>``), so it may not hold ``/`` or ``#``.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: Characters a collection name may not hold: they delimit the sort key.
_KEY_DELIMITERS = ("/", "#")


def check_name(name: object, what: str) -> str:
    """``name`` if it is a valid app name or namespace, else a ValueError naming ``what``."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise ValueError(
            f"{what} must be 1 to 64 characters of letters, digits, '_', '.' and '-',"
            f" starting with a letter or digit: {name!r}"
        )
    return name


@dataclass(frozen=True)
class CollectionSpec:
    """A collection of documents keyed by their ``id`` field, with optional indexes."""

    indexes: tuple[Index, ...] = ()


@dataclass(frozen=True)
class AppSchema:
    """The collections of an app at one ``version``.

    ``migrations[v]`` upgrades every stored document (and every pending outbox
    entry) from version ``v - 1`` to ``v``; steps run in order, all in one
    transaction, when a replica opens with a higher version than it stored.
    """

    version: int
    collections: Mapping[str, CollectionSpec]
    migrations: Mapping[int, Migration] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.collections:
            if not name or name.startswith("_"):
                raise SchemaError(f"collection names may not be empty or start with '_': {name!r}")
            if any(c in name for c in _KEY_DELIMITERS):
                raise SchemaError(
                    f"collection names may not contain '/' or '#' (they delimit the"
                    f" DynamoDB sort key <namespace>/<collection>#<id>): {name!r}"
                )
        for version in self.migrations:
            if not 1 < version <= self.version:
                raise SchemaError(f"migration for version {version} is outside 2..{self.version}")

    def store_schema(self, name: str) -> Schema:
        """The IndexedDB schema: one store per collection, plus pysync's own.

        A collection's indexes cover the ``_ix`` field that :func:`with_index_keys`
        fills, not the document fields themselves, so that booleans (which are not
        IndexedDB keys) can be indexed too.
        """
        stores = [
            StoreSchema(
                collection,
                "id",
                tuple(
                    Index(i.name, f"{INDEX_FIELD}.{i.name}", i.unique, i.multi_entry)
                    for i in spec.indexes
                ),
            )
            for collection, spec in self.collections.items()
        ]
        stores += [
            outbox_store(),
            StoreSchema(META, "key"),
            StoreSchema(CONFLICTS, "cid", (Index("by_record", ("collection", "id")),)),
        ]
        return Schema(name, idb_version(self.version), tuple(stores))


INDEX_FIELD = "_ix"


def index_value(value: Any) -> Any:
    """``value`` as an index key: booleans become 0 and 1, inside lists too."""
    if value is True or value is False:
        return int(value)
    if isinstance(value, (list, tuple)):
        return [index_value(v) for v in value]
    return value


def index_range(range: KeyRange | None) -> KeyRange | None:
    """A key range over index keys for a range over document values."""
    if range is None:
        return None
    return KeyRange(
        index_value(range.lower),
        index_value(range.upper),
        range.lower_open,
        range.upper_open,
        range.has_lower,
        range.has_upper,
    )


def with_index_keys(spec: CollectionSpec, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with its ``_ix`` field recomputed from its document fields."""
    return set_index_keys(spec, dict(record))


def set_index_keys(spec: CollectionSpec, record: dict[str, Any]) -> dict[str, Any]:
    """Recompute the ``_ix`` field of ``record`` in place (a dict its caller just made,
    which saves a copy per record in a base sync); return ``record``."""
    keys = {}
    for index in spec.indexes:
        path = index.key_path
        # A field name, the usual key path, is one lookup (what extract_key makes of it).
        if type(path) is str and "." not in path:
            value = record.get(path)
        else:
            value = extract_key(record, path)
        if value is not None:
            keys[index.name] = index_value(value)
    record.pop(INDEX_FIELD, None)
    if keys:
        record[INDEX_FIELD] = keys
    return record
