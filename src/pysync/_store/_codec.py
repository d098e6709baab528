"""Exact round-trips of Python values through the browser's structured clone.

JavaScript has one number type, so ``3.0`` comes back from IndexedDB as ``3``,
ints beyond 2**53 come back as ``JsBigInt`` and bytes as a ``memoryview``. The
encoder checks every value and notes the paths of such values in a small
sidecar field of the stored record; the decoder uses it to restore the exact
Python types. Records without such values carry no sidecar and cost one dict
lookup to decode.

Supported: ``str``, ``int`` (any size), ``float``, ``bool``, ``None``, ``bytes``,
``dict`` with ``str`` keys, and ``list`` (tuples are stored as lists).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from .._errors import ValidationError
from ._keys import MAX_SAFE_INT

SIDECAR = "__pysync_types__"
Path = list[str | int]
# A path while walking: a tuple, made into a Path only where a mark needs it.
Step = tuple[str | int, ...]


def encode(record: dict[str, Any]) -> dict[str, Any]:
    """A checked deep copy of ``record`` with the sidecar added where needed."""
    if not isinstance(record, dict):
        raise ValidationError(f"a record must be a dict, not {type(record).__name__}")
    if SIDECAR in record:
        raise ValidationError(f"{SIDECAR!r} is a reserved field name")
    marks: dict[str, list[Path]] = {}
    copy = _encode_dict(record, (), marks)
    if marks:
        copy[SIDECAR] = marks
    return copy


# The walk builds a path only for containers and marked values, not for every
# field: records are mostly plain scalars, and Pyodide pays for each list.
def _encode_dict(value: dict[Any, Any], path: Step, marks: dict[str, list[Path]]) -> dict[str, Any]:
    for key in value:
        if type(key) is not str:
            raise ValidationError(f"field names must be str, not {key!r} at {_show(path)}")
    return _encode_items(dict(value), value.items(), path, marks)


_Out = TypeVar("_Out", dict[str, Any], list[Any])


def _encode_items(
    out: _Out, items: Iterable[tuple[Any, Any]], path: Step, marks: dict[str, list[Path]]
) -> _Out:
    """``out`` (a shallow copy of the dict or list of ``items``: field name or list
    position, value) with the values that are not plain scalars encoded. Copying the
    container in one call costs less than setting each field."""
    for key, item in items:
        kind = type(item)
        # The usual scalars inline: a call per field costs more than the check.
        if not (
            kind is str
            or kind is bool
            or item is None
            or (kind is int and -MAX_SAFE_INT <= item <= MAX_SAFE_INT)
            or (kind is float and not item.is_integer())
        ):
            out[key] = _encode_value(item, (*path, key), marks)
    return out


def _encode_value(value: Any, path: Step, marks: dict[str, list[Path]]) -> Any:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            marks.setdefault("n", []).append(list(path))
        return value
    if kind is float:
        if value.is_integer():
            marks.setdefault("f", []).append(list(path))
        return value
    if kind is dict:
        return _encode_dict(value, path, marks)
    if kind is list or kind is tuple:
        return _encode_items(list(value), enumerate(value), path, marks)
    if kind is bytes or kind is bytearray:
        marks.setdefault("b", []).append(list(path))
        return bytes(value)
    raise ValidationError(
        f"unsupported value of type {kind.__name__} at {_show(path)}: use str, int, float, "
        "bool, None, bytes, dict or list"
    )


_RESTORE = {"f": float, "n": int, "b": bytes}


def decode(record: dict[str, Any]) -> dict[str, Any]:
    """Restore the exact Python types of a record read back from storage (in place)."""
    marks = record.pop(SIDECAR, None)
    if marks:
        for kind, paths in marks.items():
            restore = _RESTORE[kind]
            for path in paths:
                parent: Any = record
                for step in path[:-1]:
                    parent = parent[step]
                parent[path[-1]] = restore(parent[path[-1]])
    return record


def _show(path: Path | Step) -> str:
    return "".join(f"[{p!r}]" for p in path) or "the top level"
