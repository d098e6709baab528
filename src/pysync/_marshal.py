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
    ((kind, value),) = attr.items()
    if kind == "S":
        return value
    if kind == "N":
        return _number(value)
    if kind == "BOOL":
        return bool(value)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: from_attr(v) for k, v in value.items()}
    if kind == "L":
        return [from_attr(v) for v in value]
    if kind == "B":
        return base64.b64decode(value)
    if kind in ("SS", "BS"):
        return [from_attr({kind[0]: v}) for v in value]
    if kind == "NS":
        return [_number(v) for v in value]
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        number = float(text)
        return int(number) if number.is_integer() and "e" not in text.lower() else number


def to_item(values: dict[str, Any]) -> dict[str, AttributeValue]:
    """A DynamoDB item from a dict of values."""
    return {k: to_attr(v) for k, v in values.items()}


def from_item(item: dict[str, AttributeValue]) -> dict[str, Any]:
    """A dict of values from a DynamoDB item."""
    return {k: from_attr(v) for k, v in item.items()}
