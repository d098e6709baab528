"""How documents map to DynamoDB items and changelog entries.

Data item: ``pk`` = scope, ``sk`` = ``<namespace>/<collection>#<id>``, the
document's fields at the top level, and the system fields ``_v`` (version),
``_hlc``, ``_c`` (client), ``_m`` (mutation id), ``_del`` (tombstone), ``_ttl``.
The namespace (by default the app name given to ``connect``) keeps the apps that
share a table and a scope apart: each reads and writes only the items under its
own ``<namespace>/``. Neither a namespace nor a collection name holds ``/`` or
``#``, so the first ``/`` and the first ``#`` after it split a sort key. Int ids
are written ``n:<int>`` (and str ids that could be mistaken for a tag get
``s:``), so the id's type survives a delete that carries no item.
"""

from __future__ import annotations

from typing import Any

from .._documents import Key
from .._marshal import from_item

SYSTEM = ("pk", "sk", "_v", "_hlc", "_c", "_m", "_del", "_ttl")

#: A server state of an item: its version and the mutation id that wrote it. ``_v``
#: alone does not name a state (a key deleted for good starts again at 1, and a
#: writer that bypasses pysync may leave it alone); ``_m`` is unique per write.
State = tuple["int | None", "str | None"]


def namespace_prefix(namespace: str) -> str:
    """The start of the sort keys of every item of ``namespace``."""
    return f"{namespace}/"


def sort_key(namespace: str, collection: str, key: Key) -> str:
    """The ``sk`` of a document of ``collection`` in ``namespace``."""
    if isinstance(key, int):
        raw = f"n:{key}"
    elif key.startswith(("n:", "s:")):
        raw = f"s:{key}"
    else:
        raw = key
    return f"{namespace_prefix(namespace)}{collection}#{raw}"


def parse_sort_key(sk: str, namespace: str) -> tuple[str, Key] | None:
    """The collection and id of a ``sk``; ``None`` if it is not of ``namespace``
    (another app's item, or not one pysync wrote)."""
    prefix = namespace_prefix(namespace)
    if not sk.startswith(prefix):
        return None
    collection, found, raw = sk[len(prefix) :].partition("#")
    if not found:
        return None
    if raw.startswith("n:"):
        try:
            return collection, int(raw[2:])
        except ValueError:
            return None
    if raw.startswith("s:"):
        return collection, raw[2:]
    return collection, raw


def document_of(item: dict[str, Any] | None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The document of a DynamoDB item (``None`` for a tombstone) and its system fields."""
    if item is None:
        return None, {}
    values = from_item(item)
    system = {k: values.pop(k) for k in SYSTEM if k in values}
    return (None if system.get("_del") else values), system


def state_of(system: dict[str, Any]) -> State:
    """The (``_v``, ``_m``) of an item's system fields."""
    version = system.get("_v")
    return (None if version is None else int(version), system.get("_m"))


def base_state_of(entry: dict[str, Any]) -> State | None:
    """The server state an outbox entry was made on (``None``: no item, a create)."""
    if entry["base_v"] is None and entry["new"]:
        return None
    return (entry["base_v"], entry.get("base_m"))


def tomb_prefix(scope: str) -> str:
    """The start of the ``_meta`` keys of :func:`tomb_key` in ``scope``."""
    return f"tomb:{scope}:"


def tomb_key(scope: str, collection: str, key: Key) -> str:
    """The ``_meta`` key remembering the tombstone of a document this device deleted."""
    return f"{tomb_prefix(scope)}{collection}:{key!r}"
