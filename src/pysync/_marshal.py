"""Python values to DynamoDB's JSON attribute values and back.

Numbers travel as decimal strings; an integral float such as ``3.0`` comes back
as the int ``3`` (DynamoDB keeps no distinction between them).
"""

from __future__ import annotations

import base64
import math
from typing import Any

from ._errors import ValidationError

AttributeValue = dict[str, Any]


def to_attr(value: Any) -> AttributeValue:
    """The DynamoDB attribute value of ``value``."""
    if value is None:
        return {"NULL": True}
    if value is True or value is False:
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"DynamoDB cannot store the number {value!r}")
        return {"N": repr(value)}
    if isinstance(value, (bytes, bytearray)):
        return {"B": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {"M": {k: to_attr(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"L": [to_attr(v) for v in value]}
    raise ValidationError(f"cannot send a {type(value).__name__} to DynamoDB")


def from_attr(attr: AttributeValue) -> Any:
    """The Python value of a DynamoDB attribute value."""
    (kind,) = attr  # exactly one type
    value = attr[kind]
    return value if kind == "S" else _number(value) if kind == "N" else _other(kind, value)


def _other(kind: str, value: Any) -> Any:
    """The Python value of an attribute value of ``kind`` other than ``S`` and ``N``."""
    if kind == "BOOL":
        return bool(value)
    if kind == "NULL":
        return None
    if kind == "M":
        return from_item(value)
    if kind == "L":
        return _from_list(value)
    if kind == "B":
        return base64.b64decode(value)
    if kind in ("SS", "BS"):
        return [from_attr({kind[0]: v}) for v in value]
    if kind == "NS":
        return [_number(v) for v in value]
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def _from_list(attrs: list[AttributeValue]) -> list[Any]:
    out = []  # from_attr inlined, as in from_item
    for attr in attrs:
        (kind,) = attr
        value = attr[kind]
        out.append(value if kind == "S" else _number(value) if kind == "N" else _other(kind, value))
    return out


def _number(text: str) -> int | float:
    # int() refuses any text with a point or an exponent: a float's text goes straight
    # to float(), without the cost of int()'s ValueError (what is not a str goes to
    # int() as it always did).
    if type(text) is not str or not ("." in text or "e" in text or "E" in text):
        try:
            return int(text)
        except ValueError:
            pass
    number = float(text)
    return int(number) if number.is_integer() and "e" not in text.lower() else number


def to_item(values: dict[str, Any]) -> dict[str, AttributeValue]:
    """A DynamoDB item from a dict of values."""
    return {k: to_attr(v) for k, v in values.items()}


def from_item(item: dict[str, AttributeValue]) -> dict[str, Any]:
    """A dict of values from a DynamoDB item."""
    # from_attr inlined: a base sync converts every attribute of every item, mostly
    # strings and numbers, and a call for each cost a third of the conversion.
    out = {}
    for name, attr in item.items():
        (kind,) = attr
        value = attr[kind]
        out[name] = value if kind == "S" else _number(value) if kind == "N" else _other(kind, value)
    return out
