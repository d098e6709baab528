"""Strict numbers: every number the proxy reads from a request or forwards in one.

Python is generous with numbers where the proxy must not be: ``str.isdigit()``
is true for ``"²"`` (which ``int()`` refuses) and for ``"١٢"`` (which ``int()``
reads as 12), and ``json`` turns ``1e400`` into ``inf``, which ``json.dumps``
writes back as ``Infinity``. DynamoDB (Java's ``BigDecimal``) reads ``"١٢"`` in
an ``N`` value as 12 as well. So the proxy accepts only what the DynamoDB API
itself defines, in ASCII, and refuses anything else with a 400
``ValidationException``:

- decimal counters it reads (``Content-Length``, ``after``, ``Last-Event-ID``):
  ASCII digits only, at most 18 of them (:func:`ascii_digits`);
- JSON numbers in a request body: integers only (the DynamoDB API has no
  fractional parameter), within 64 bits (:func:`json_int`, :func:`json_float`);
  ``Limit`` is then checked by the policy (:func:`positive_int`);
- ``N`` and ``NS`` attribute values anywhere in a body: DynamoDB's number
  syntax in ASCII, at most 38 significant digits, magnitude from 1E-130 to
  below 1E+126 (:func:`check_attribute_numbers`), as DynamoDB requires.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from ._errors import ValidationError

#: Longest decimal counter read from a header or a query parameter (below 2**63).
MAX_COUNTER_DIGITS = 18
#: Java's ``Integer.MAX_VALUE``: the largest ``Limit`` DynamoDB takes.
MAX_LIMIT = 2**31 - 1

_INT64 = 2**63
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: Longer ``N`` strings are refused outright (DynamoDB's own limits fit in far fewer).
_MAX_NUMBER_CHARS = 1000
_MAX_PRECISION = 38
_MIN_EXPONENT, _MAX_EXPONENT = -130, 125


def ascii_digits(text: str) -> bool:
    """True if ``text`` is 1 to 18 ASCII digits (a non-negative integer below 10**18)."""
    return 0 < len(text) <= MAX_COUNTER_DIGITS and text.isascii() and text.isdigit()


def json_int(text: str) -> int:
    """``parse_int`` hook: a JSON integer within 64 bits (json's grammar makes it ASCII)."""
    if len(text) > 20:
        raise ValidationError("a number in the request is out of range")
    value = int(text)
    if not -_INT64 <= value < _INT64:
        raise ValidationError("a number in the request is out of range")
    return value


def json_float(text: str) -> Any:
    """``parse_float`` hook: always refuses (``1.5``, ``1e2``, ``1e400`` ...).

    No parameter of the DynamoDB API the proxy allows is fractional, and a float
    would not survive the re-serialization unchanged (``1e400`` becomes
    ``Infinity``, ``1e-400`` becomes ``0.0``).
    """
    raise ValidationError("numbers in a DynamoDB request must be integers (no fraction, exponent)")


def positive_int(value: Any, where: str, maximum: int = MAX_LIMIT) -> int:
    """``value`` if it is a JSON integer from 1 to ``maximum`` (``true`` is not one)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValidationError(f"{where} must be an integer from 1 to {maximum}")
    return value


def check_number(text: Any, where: str) -> None:
    """Refuse an ``N`` value that is not a DynamoDB number written in ASCII."""
    if (
        not isinstance(text, str)
        or len(text) > _MAX_NUMBER_CHARS
        or not text.isascii()
        or not _NUMBER.fullmatch(text)
    ):
        raise ValidationError(f"{where} is not a number (ASCII digits, '.', 'e' and a sign)")
    try:
        number = Decimal(text)
    except InvalidOperation:  # an exponent beyond what Decimal holds
        raise ValidationError(f"{where} is out of DynamoDB's number range") from None
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite: the pattern has no NaN or Infinity
    significant = "".join(map(str, digits)).strip("0")
    if not significant:
        return  # zero, in any of its spellings
    if len(significant) > _MAX_PRECISION:
        raise ValidationError(f"{where} has more than {_MAX_PRECISION} significant digits")
    if not _MIN_EXPONENT <= number.adjusted() <= _MAX_EXPONENT:
        raise ValidationError(f"{where} is out of DynamoDB's number range (1E-130 to 9.9E+125)")


def check_attribute_numbers(document: dict[str, Any]) -> None:
    """Check every ``{"N": ...}`` and ``{"NS": [...]}`` attribute value in a request body.

    Attribute values are recognized by shape wherever they are (items, keys,
    ``ExpressionAttributeValues``, maps, lists): a one-key object ``N`` whose value
    is a string or ``NS`` whose value is a list. The maps of names to values
    that hold them always have objects as values, so no name is mistaken for a
    type. Iterative, so deep documents cost no recursion.
    """
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict):
            if len(value) == 1:
                ((kind, inner),) = value.items()
                if kind == "N" and isinstance(inner, str):
                    check_number(inner, f"{where}.N" if where else "N")
                    continue
                if kind == "NS" and isinstance(inner, list):
                    for i, member in enumerate(inner):
                        check_number(member, f"{where}.NS[{i}]")
                    continue
            for name, member in value.items():
                stack.append((member, f"{where}.{name}" if where else name))
        elif isinstance(value, list):
            stack.extend((member, f"{where}[{i}]") for i, member in enumerate(value))
