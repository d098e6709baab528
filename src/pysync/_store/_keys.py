"""IndexedDB keys in Python: validation and the browser's sort order.

Valid keys are numbers (not NaN, ints below 2**53 - 1 in size), strings, bytes, and tuples
(or lists) of valid keys. The order follows IndexedDB: numbers < strings < binary
< arrays; strings compare by UTF-16 code units, as in the browser.
"""

from __future__ import annotations

import math
from typing import Any

from .._errors import DataError

# Pyodide turns ints from +-(2**53 - 1) on into BigInt, which is not a valid key.
MAX_SAFE_INT = 2**53 - 2
SortKey = tuple[Any, ...]


def check_key(key: Any) -> Any:
    """Return ``key`` normalised (lists become tuples); raise ``DataError`` if invalid."""
    kind = type(key)
    if kind is str or (kind is int and -MAX_SAFE_INT <= key <= MAX_SAFE_INT):
        return key  # the usual primary keys, without sort_key's UTF-16 encoding
    if sort_key(key) is None:
        raise DataError(f"{key!r} is not a valid key (use str, int, float, bytes or a tuple)")
    return tuple(check_key(k) for k in key) if isinstance(key, (tuple, list)) else key


def sort_key(key: Any) -> SortKey | None:
    """A Python value that sorts like ``key`` in IndexedDB, or ``None`` if not a key."""
    kind = type(key)
    if kind is str:
        return (2, key.encode("utf-16-be", "surrogatepass"))
    if kind is int:
        return (1, key) if -MAX_SAFE_INT <= key <= MAX_SAFE_INT else None
    if kind is float:
        return None if math.isnan(key) else (1, key)
    if kind is bytes:
        return (3, key)
    if kind is tuple or kind is list:
        parts = [sort_key(k) for k in key]
        return None if any(p is None for p in parts) else (4, tuple(parts))
    return None


def order_of(key: Any) -> SortKey:
    """The sort key of a key already checked with :func:`check_key`."""
    order = sort_key(key)
    if order is None:
        raise DataError(f"{key!r} is not a valid key")
    return order


def index_keys(value: Any, multi_entry: bool) -> list[Any]:
    """The index entries a field value produces (none when it is not a valid key)."""
    if multi_entry and isinstance(value, list):
        seen: dict[SortKey, Any] = {}
        for item in value:
            order = sort_key(item)
            if order is not None:
                seen.setdefault(order, item)
        return list(seen.values())
    return [] if value is None or sort_key(value) is None else [value]
