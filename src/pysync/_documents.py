"""Documents as the app sees them, and the system fields pysync keeps beside them.

A stored record is the app's document plus system fields whose names start
with ``_`` (the app may not use such names): ``_v`` the server version the
record was last synced at (absent for a record never synced), ``_m`` the id of
the write that made that server state (together they name it), ``_seq`` the
changelog sequence it was last written from.
"""

from __future__ import annotations

import uuid
from typing import Any

from ._errors import ValidationError
from ._store import _codec
from ._store._keys import check_key

Document = dict[str, Any]
Key = str | int


def new_id() -> str:
    """A fresh random document id."""
    return uuid.uuid4().hex


def check_document(collection: str, doc: object, *, need_id: bool = True) -> Document:
    """Validate an app document; return it. Raise :class:`ValidationError` on bad input."""
    if not isinstance(doc, dict):
        raise ValidationError(f"{collection}: a document must be a dict, not {type(doc).__name__}")
    for name in doc:
        if not isinstance(name, str) or not name:
            raise ValidationError(f"{collection}: field names must be non-empty str, not {name!r}")
        if name.startswith("_"):
            raise ValidationError(
                f"{collection}: field {name!r} starts with '_', which is reserved for pysync"
            )
    if need_id:
        check_id(collection, doc.get("id"))
    _codec.encode(doc)  # raises ValidationError naming the unsupported value
    return doc


def check_id(collection: str, key: object) -> Key:
    """Validate a document id (a non-empty str or an int)."""
    if isinstance(key, bool) or not isinstance(key, (str, int)) or key == "":
        raise ValidationError(f"{collection}: id must be a non-empty str or an int, not {key!r}")
    try:
        check_key(key)
    except Exception:
        raise ValidationError(f"{collection}: id {key!r} is out of range") from None
    return key


def public(record: dict[str, Any]) -> Document:
    """The app's view of a stored record: without system fields."""
    return {k: v for k, v in record.items() if not k.startswith("_")}


def system(record: dict[str, Any]) -> dict[str, Any]:
    """The system fields of a stored record."""
    return {k: v for k, v in record.items() if k.startswith("_")}
