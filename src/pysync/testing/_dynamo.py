"""An in-memory DynamoDB speaking the JSON-protocol subset pysync uses, for fast tests.

:class:`MemoryDynamo` is a :class:`~pysync.Remote`: ``await db.call(operation,
payload)`` answers like DynamoDB Local (same response shapes, same error
bodies) for

* ``GetItem``, ``PutItem``, ``UpdateItem``, ``DeleteItem``;
* ``Query`` with ``pk = :p`` and optionally one sort-key comparison
  (``=``, ``<``, ``<=``, ``>``, ``>=``), ``ExclusiveStartKey``, ``Limit``,
  ``ScanIndexForward`` and 1 MB pages (``LastEvaluatedKey``);
* ``TransactWriteItems`` with ``Put``, ``Update``, ``Delete`` and
  ``ConditionCheck``, ``CancellationReasons`` (with ``Item`` under
  ``ReturnValuesOnConditionCheckFailure = ALL_OLD``) and ``ClientRequestToken``
  idempotency (a token is remembered for ten minutes after a success);
* condition expressions built from ``attribute_exists``,
  ``attribute_not_exists``, comparisons (``=``, ``<>``, ``<``, ``<=``, ``>``,
  ``>=``), ``AND``, ``OR``, ``NOT`` and parentheses; update expressions with
  ``SET path = operand`` and ``ADD path :number``.

Expressions are tokenized and parsed, never pattern-matched: anything outside
that subset (other functions, nested paths, ``REMOVE``, projections, filters,
other operations...) is refused with a ``ValidationException`` whose message
starts with ``MemoryDynamo does not support``, so a test never passes on a
guess. Reserved words are not checked (DynamoDB refuses some bare names).

It also plays the stream consumer: every write that changes an item of a data
table appends an entry to ``<table>_changes`` in the changelog's format (head
item ``sk = 0`` with ``head``; entries ``sk = seq`` with ``key``, ``op``,
``item``, ``_v``, ``_m``, ``old_v``, ``ts``, ``sseq``), at once, or with
``lagging=True`` only when :meth:`MemoryDynamo.deliver` is called. Like the real
consumer, with ``stamping=True`` it stamps an item a write changed without a new
``_m`` (a writer that bypasses pysync): right after appending that write's
entry, a conditional ``UpdateItem`` sets ``_m = "stamp:<event id>"`` and adds 1
to ``_v``, if the item still holds exactly that write's ``_v`` and ``_m``. The
stamp is a write like any other (in :attr:`MemoryDynamo.applied`, with its own
changelog entry, held back too when lagging).

Faults, per database or per :meth:`MemoryDynamo.connection`, each for the next
calls that match it (by operation, or any ``when(operation, payload)``):
:meth:`~_Faults.fail_next` (refuse calls before applying them),
:meth:`~_Faults.lose_replies` (apply, then report a network error),
:meth:`~_Faults.before_next` (run a coroutine just before a call is applied, to
interleave other work); :meth:`~_Faults.armed` lists those not used up yet.
Changelog expiry: :meth:`MemoryDynamo.drop_changes` and TTL sweeps
(:meth:`MemoryDynamo.expire`). Time is a number that moves only through
:meth:`MemoryDynamo.advance`; nothing depends on the real clock.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Context, Decimal, InvalidOperation
from typing import Any, Literal, cast

from .._remote import RemoteError, call_each

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]
Hook = Callable[[str, dict[str, Any]], Awaitable[None]]

__all__ = ["AppliedWrite", "MemoryConnection", "MemoryDynamo", "StreamRecord"]

_AWS = "com.amazonaws.dynamodb.v20120810#"
_CORAL = "com.amazon.coral.validate#"
_CONDITION_FAILED = "The conditional request failed"
#: DynamoDB's item size limit.
MAX_ITEM_BYTES = 400 * 1024
#: How long a ``ClientRequestToken`` is remembered after a successful transaction.
TOKEN_SECONDS = 600.0
_NUMBERS = Context(prec=38)
#: Prefix of the ``_m`` the stream consumer stamps on a bypass write (as the real consumer).
STAMP_PREFIX = "stamp:"
_TYPES = frozenset({"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"})
_RETURN_VALUES = {
    "PutItem": ("NONE", "ALL_OLD"),
    "DeleteItem": ("NONE", "ALL_OLD"),
    "UpdateItem": ("NONE", "ALL_OLD", "ALL_NEW"),
}


# -- errors ---------------------------------------------------------------------------


def _error(code: str, message: str, status: int = 400, **extra: Any) -> RemoteError:
    prefix = _CORAL if code == "ValidationException" else _AWS
    return RemoteError(
        code, message, status, {"__type": prefix + code, "Message": message, **extra}
    )


def _invalid(message: str) -> RemoteError:
    return _error("ValidationException", message)


def _unsupported(what: str) -> RemoteError:
    return _invalid(f"MemoryDynamo does not support {what}")


# -- attribute values -----------------------------------------------------------------


def _number(text: object) -> Decimal:
    if not isinstance(text, str):
        raise _invalid("A value provided cannot be converted into a number")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _invalid("A value provided cannot be converted into a number") from None
    if not value.is_finite():
        raise _invalid("A value provided cannot be converted into a number")
    return value


def _canonical(value: Decimal) -> str:
    """DynamoDB's form of a stored top-level number: no exponent, no trailing zeros."""
    if value == 0:
        return "0"
    return format(value.normalize(_NUMBERS), "f")


def _check_value(value: object, top: bool) -> AttributeValue:
    """A validated copy of one attribute value (top-level numbers canonical, sets sorted)."""
    if not isinstance(value, dict) or len(value) != 1:
        raise _invalid(
            "Supplied AttributeValue has more than one datatypes set, "
            "must contain exactly one of the supported datatypes"
        )
    ((kind, inner),) = value.items()
    if kind not in _TYPES:
        raise _invalid(f"Supplied AttributeValue has an unknown datatype: {kind}")
    if kind == "S" and isinstance(inner, str):
        return {"S": inner}
    if kind == "N":
        number = _number(inner)
        return {"N": _canonical(number) if top else inner}
    if kind == "B" and isinstance(inner, str):
        try:
            base64.b64decode(inner, validate=True)
        except binascii.Error:
            raise _invalid("Invalid Base64 value for B") from None
        return {"B": inner}
    if kind == "BOOL" and isinstance(inner, bool):
        return {"BOOL": inner}
    if kind == "NULL" and inner is True:
        return {"NULL": True}
    if kind == "M" and isinstance(inner, dict):
        return {"M": {str(k): _check_value(v, False) for k, v in inner.items()}}
    if kind == "L" and isinstance(inner, list):
        return {"L": [_check_value(v, False) for v in inner]}
    if kind in ("SS", "NS", "BS") and isinstance(inner, list):
        if not inner:
            raise _invalid(f"One or more parameter values were invalid: An {kind} may not be empty")
        if kind == "NS":
            members = sorted(_number(n) for n in inner)
            if len(set(members)) != len(members):
                raise _invalid("Input collection contains duplicates")
            return {"NS": [_canonical(n) for n in members]}
        if not all(isinstance(v, str) for v in inner):
            raise _invalid(f"Invalid {kind} value")
        if len(set(inner)) != len(inner):
            raise _invalid(
                f"One or more parameter values were invalid: Input collection {inner} contains"
                " duplicates"
            )
        return {kind: sorted(inner)}
    raise _invalid(f"Invalid {kind} attribute value")


def _check_item(item: object, what: str = "Item") -> Item:
    if not isinstance(item, dict):
        raise _invalid(f"{what} must be a map of attribute values")
    return {str(name): _check_value(value, True) for name, value in item.items()}


def _comparable(value: AttributeValue) -> tuple[str, Any]:
    """A value that compares (``==``, ``<``) as DynamoDB compares attribute values."""
    ((kind, inner),) = value.items()
    if kind == "N":
        return ("N", Decimal(inner))
    if kind == "B":
        return ("B", base64.b64decode(inner))
    if kind == "M":
        return ("M", tuple(sorted((k, _comparable(v)) for k, v in inner.items())))
    if kind == "L":
        return ("L", tuple(_comparable(v) for v in inner))
    if kind == "NS":
        return ("NS", frozenset(Decimal(n) for n in inner))
    if kind in ("SS", "BS"):
        return (kind, frozenset(inner))
    return (kind, inner)


def _same(a: Item | None, b: Item | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.keys() == b.keys() and all(_comparable(a[k]) == _comparable(b[k]) for k in a)


def _value_size(value: AttributeValue) -> int:
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return len(inner.strip("-").replace(".", "")) // 2 + 2
    if kind == "B":
        return len(base64.b64decode(inner))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(v) for k, v in inner.items())
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in inner)
    if kind == "SS":
        return sum(len(s.encode()) for s in inner)
    if kind == "NS":
        return sum(len(n) // 2 + 2 for n in inner)
    return sum(len(base64.b64decode(b)) for b in inner)


def item_size(item: Item) -> int:
    """The size of an item as DynamoDB counts it (names plus values), approximately."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _copy(document: Any) -> Any:
    """A deep copy through JSON, as if it had crossed the network."""
    return json.loads(json.dumps(document))


# -- expressions ----------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<op><>|<=|>=|=|<|>|\(|\)|,|\.|\[|\]|\+|-)
    | (?P<name>\#[A-Za-z0-9_]+)
    | (?P<value>:[A-Za-z0-9_]+)
    | (?P<word>[A-Za-z][A-Za-z0-9_]*)
    | (?P<bad>\S)
    )""",
    re.VERBOSE,
)
_COMPARATORS = ("=", "<>", "<", "<=", ">", ">=")
_KEYWORDS = frozenset({"AND", "OR", "NOT", "BETWEEN", "IN", "SET", "ADD", "REMOVE", "DELETE"})
_FUNCTIONS = frozenset(
    {
        "attribute_exists",
        "attribute_not_exists",
        "attribute_type",
        "begins_with",
        "contains",
        "size",
        "if_not_exists",
        "list_append",
    }
)

Operand = Callable[[Item | None], AttributeValue | None]
Condition = Callable[[Item | None], bool]


_Kind = Literal["op", "name", "value", "word", "end"]


@dataclass(frozen=True)
class _Token:
    kind: _Kind
    text: str

    @property
    def keyword(self) -> str | None:
        upper = self.text.upper()
        return upper if self.kind == "word" and upper in _KEYWORDS else None


class _Placeholders:
    """The request's ``ExpressionAttributeNames``/``Values`` and which of them were used."""

    def __init__(self, request: dict[str, Any]) -> None:
        names = request.get("ExpressionAttributeNames")
        values = request.get("ExpressionAttributeValues")
        self.names: dict[str, str] = {}
        self.values: dict[str, AttributeValue] = {}
        if names is not None:
            if not isinstance(names, dict) or not names:
                raise _invalid("ExpressionAttributeNames must not be empty")
            self.names = {str(k): str(v) for k, v in names.items()}
        if values is not None:
            if not isinstance(values, dict) or not values:
                raise _invalid("ExpressionAttributeValues must not be empty")
            self.values = {str(k): _check_value(v, True) for k, v in values.items()}
        self.used_names: set[str] = set()
        self.used_values: set[str] = set()

    def check_all_used(self) -> None:
        for kind, given, used in (
            ("ExpressionAttributeNames", self.names, self.used_names),
            ("ExpressionAttributeValues", self.values, self.used_values),
        ):
            unused = sorted(set(given) - used)
            if unused:
                raise _invalid(
                    f"Value provided in {kind} unused in expressions: keys: {{{', '.join(unused)}}}"
                )


class _Parser:
    """Recursive descent over one expression's tokens."""

    def __init__(self, text: object, what: str, placeholders: _Placeholders) -> None:
        if not isinstance(text, str) or not text.strip():
            raise _invalid(f"Invalid {what}: The expression can not be empty;")
        self.what = what
        self.placeholders = placeholders
        self.tokens: list[_Token] = []
        for match in _TOKEN.finditer(text):
            kind = match.lastgroup
            if kind is None:
                continue
            token = match.group(kind)
            if kind == "bad":
                near = text[match.start(kind) : match.start(kind) + 8].split()[0]
                raise self.error(f'Syntax error; token: "{token}", near: "{near}"')
            self.tokens.append(_Token(cast(_Kind, kind), token))
        self.pos = 0

    def error(self, message: str) -> RemoteError:
        return _invalid(f"Invalid {self.what}: {message}")

    def peek(self, offset: int = 0) -> _Token:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else _Token("end", "<EOF>")

    def take(self) -> _Token:
        token = self.peek()
        self.pos += 1
        return token

    def syntax(self, token: _Token) -> RemoteError:
        """A syntax error at ``token`` (the last one taken, or the next one)."""
        index = self.tokens.index(token) if token in self.tokens else len(self.tokens)
        before = self.tokens[index - 1].text if index > 0 else ""
        near = before if token.kind == "end" else f"{before} {token.text}".strip()
        return self.error(f'Syntax error; token: "{token.text}", near: "{near}"')

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text:
            raise self.syntax(token)

    def done(self) -> None:
        token = self.peek()
        if token.kind != "end":
            raise self.syntax(token)

    # -- operands ---------------------------------------------------------------------

    def path(self) -> str:
        """One top-level attribute name (nested paths are refused)."""
        token = self.take()
        if token.kind == "name":
            if token.text not in self.placeholders.names:
                raise self.error(
                    "An expression attribute name used in the document path is not defined;"
                    f" attribute name: {token.text}"
                )
            self.placeholders.used_names.add(token.text)
            name = self.placeholders.names[token.text]
        elif token.kind == "word" and token.keyword is None:
            name = token.text
        else:
            raise self.syntax(token)
        if self.peek().text in (".", "["):
            raise _unsupported("nested document paths")
        return name

    def value(self) -> AttributeValue:
        token = self.take()
        if token.kind != "value":
            raise self.syntax(token)
        if token.text not in self.placeholders.values:
            raise self.error(
                "An expression attribute value used in expression is not defined;"
                f" attribute value: {token.text}"
            )
        self.placeholders.used_values.add(token.text)
        return self.placeholders.values[token.text]

    def operand(self) -> Operand:
        token = self.peek()
        if token.kind == "value":
            value = self.value()
            return lambda _item: value
        if token.kind == "word" and token.text in _FUNCTIONS:
            raise _unsupported(f"the function {token.text} in {self.what}")
        name = self.path()
        if self.peek().text in ("+", "-"):
            raise _unsupported(f"arithmetic in {self.what}")
        return lambda item: None if item is None else item.get(name)

    # -- conditions ---------------------------------------------------------------------

    def condition(self) -> Condition:
        left = self.conjunction()
        while self.peek().keyword == "OR":
            self.take()
            right = self.conjunction()
            left = _either(left, right)
        return left

    def conjunction(self) -> Condition:
        left = self.negation()
        while self.peek().keyword == "AND":
            self.take()
            right = self.negation()
            left = _both(left, right)
        return left

    def negation(self) -> Condition:
        if self.peek().keyword == "NOT":
            self.take()
            inner = self.negation()
            return lambda item: not inner(item)
        return self.primary()

    def primary(self) -> Condition:
        token = self.peek()
        if token.text == "(":
            self.take()
            inner = self.condition()
            self.expect(")")
            return inner
        if token.kind == "word" and self.peek(1).text == "(":
            return self.function()
        left = self.operand()
        comparator = self.take()
        if comparator.keyword in ("BETWEEN", "IN"):
            raise _unsupported(f"{comparator.keyword} in {self.what}")
        if comparator.text not in _COMPARATORS:
            raise self.syntax(comparator)
        right = self.operand()
        return _comparison(comparator.text, left, right)

    def function(self) -> Condition:
        name = self.take().text
        if name not in ("attribute_exists", "attribute_not_exists"):
            if name in _FUNCTIONS:
                raise _unsupported(f"the function {name} in {self.what}")
            raise self.error(f"Invalid function name; function: {name}")
        self.expect("(")
        path = self.path()
        self.expect(")")
        if name == "attribute_exists":
            return lambda item: item is not None and path in item
        return lambda item: item is None or path not in item


def _either(left: Condition, right: Condition) -> Condition:
    return lambda item: left(item) or right(item)


def _both(left: Condition, right: Condition) -> Condition:
    return lambda item: left(item) and right(item)


def _comparison(comparator: str, left: Operand, right: Operand) -> Condition:
    def compare(item: Item | None) -> bool:
        a, b = left(item), right(item)
        if a is None or b is None:
            # A missing attribute equals nothing, and differs from everything.
            return comparator == "<>"
        ka, kb = _comparable(a), _comparable(b)
        if comparator == "=":
            return ka == kb
        if comparator == "<>":
            return ka != kb
        if ka[0] != kb[0] or ka[0] not in ("S", "N", "B"):
            return False
        if comparator == "<":
            return bool(ka[1] < kb[1])
        if comparator == "<=":
            return bool(ka[1] <= kb[1])
        if comparator == ">":
            return bool(ka[1] > kb[1])
        return bool(ka[1] >= kb[1])

    return compare


@dataclass
class _Update:
    """A parsed update expression: ``SET`` and ``ADD`` actions."""

    sets: list[tuple[str, Operand]] = field(default_factory=list)
    adds: list[tuple[str, AttributeValue]] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [name for name, _ in self.sets] + [name for name, _ in self.adds]


def _parse_update(text: object, placeholders: _Placeholders) -> _Update:
    parser = _Parser(text, "UpdateExpression", placeholders)
    update = _Update()
    seen: set[str] = set()
    while parser.peek().kind != "end":
        section = parser.take()
        keyword = section.keyword
        if keyword in ("REMOVE", "DELETE"):
            raise _unsupported(f"{keyword} in UpdateExpression")
        if keyword not in ("SET", "ADD"):
            raise parser.syntax(section)
        if keyword in seen:
            raise parser.error(
                f'The "{keyword}" section can only be used once in an update expression;'
            )
        seen.add(keyword)
        while True:
            name = parser.path()
            if keyword == "SET":
                parser.expect("=")
                update.sets.append((name, parser.operand()))
            else:
                value = parser.value()
                if "N" not in value:
                    raise _unsupported("ADD of anything but a number")
                update.adds.append((name, value))
            if parser.peek().text != ",":
                break
            parser.take()
        if parser.peek().kind != "end" and parser.peek().keyword not in _KEYWORDS:
            parser.done()
    paths = update.paths()
    for i, first in enumerate(paths):
        if first in paths[i + 1 :]:
            raise parser.error(
                "Two document paths overlap with each other; must remove or rewrite one of these"
                f" paths; path one: [{first}], path two: [{first}]"
            )
    return update


def _parse_condition(text: object, placeholders: _Placeholders, what: str) -> Condition:
    parser = _Parser(text, what, placeholders)
    condition = parser.condition()
    parser.done()
    return condition


# -- tables ---------------------------------------------------------------------------


@dataclass
class _Table:
    name: str
    sort_type: Literal["S", "N"]
    stream: bool
    partitions: dict[str, dict[Any, Item]] = field(default_factory=dict)

    def sort_value(self, value: AttributeValue) -> Any:
        return Decimal(value["N"]) if self.sort_type == "N" else value["S"]

    def key_of(self, key: object, what: str = "Key") -> tuple[str, Any, Item]:
        """The (pk, sort value, key item) of a ``Key`` argument."""
        if not isinstance(key, dict) or set(key) != {"pk", "sk"}:
            raise _invalid("The provided key element does not match the schema")
        return self._key(_check_item(key, what))

    def key_of_item(self, item: Item) -> tuple[str, Any, Item]:
        if "pk" not in item or "sk" not in item:
            raise _invalid("One of the required keys was not given a value")
        return self._key({"pk": item["pk"], "sk": item["sk"]})

    def _key(self, key: Item) -> tuple[str, Any, Item]:
        pk, sk = key["pk"], key["sk"]
        if "S" not in pk or self.sort_type not in sk:
            raise _invalid("One or more parameter values were invalid: Type mismatch for key")
        for name, value in (("pk", pk), ("sk", sk)):
            if value.get("S") == "":
                raise _invalid(
                    "One or more parameter values are not valid. The AttributeValue for a key"
                    f" attribute cannot contain an empty string value. Key: {name}"
                )
        return pk["S"], self.sort_value(sk), {"pk": pk, "sk": sk}

    def get(self, pk: str, sk: Any) -> Item | None:
        return self.partitions.get(pk, {}).get(sk)

    def set(self, pk: str, sk: Any, item: Item | None) -> None:
        partition = self.partitions.setdefault(pk, {})
        if item is None:
            partition.pop(sk, None)
            if not partition:
                del self.partitions[pk]
        else:
            partition[sk] = item


@dataclass(frozen=True)
class AppliedWrite:
    """One write the database applied (also writes that changed nothing)."""

    table: str
    pk: str
    sk: str | Decimal
    operation: str
    old: Item | None
    new: Item | None


@dataclass(frozen=True)
class StreamRecord:
    """A change of a data-table item, on its way to the changelog."""

    table: str
    scope: str
    key: str
    old: Item | None
    new: Item | None
    ts: int
    sseq: str
    #: The stream record's ``eventID`` (the stamp's ``_m`` is ``stamp:<event_id>``).
    event_id: str = ""


@dataclass
class _Write:
    """One write prepared inside a request: where, the item before and after."""

    table: _Table
    pk: str
    sk: Any
    operation: str
    old: Item | None
    new: Item | None


# -- faults ---------------------------------------------------------------------------


Match = Callable[[str, dict[str, Any]], bool]


@dataclass
class _Rule:
    kind: Literal["fail", "lose", "hook"]
    remaining: int
    operations: frozenset[str] | None
    when: Match | None
    error: RemoteError | None = None
    hook: Hook | None = None

    def matches(self, operation: str, payload: dict[str, Any]) -> bool:
        if self.operations is not None and operation not in self.operations:
            return False
        return self.when is None or self.when(operation, payload)


class _Faults:
    """Fault injection and a log of calls, shared by the database and its connections.

    Each fault applies to the next calls that match it: of ``operations`` (all
    by default) and for which ``when(operation, payload)`` is true (if given).
    """

    def __init__(self) -> None:
        self._rules: list[_Rule] = []
        #: Every call (operation, payload), in order, including refused ones.
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def fail_next(
        self,
        n: int = 1,
        error: RemoteError | None = None,
        *,
        operations: Iterable[str] | None = None,
        when: Match | None = None,
    ) -> None:
        """Refuse the next ``n`` matching calls before applying them.

        ``error`` defaults to a 500 ``InternalServerError``.
        """
        error = error or _error("InternalServerError", "injected failure", 500)
        self._rules.append(_Rule("fail", n, _operations(operations), when, error=error))

    def lose_replies(
        self, n: int = 1, *, operations: Iterable[str] | None = None, when: Match | None = None
    ) -> None:
        """Apply the next ``n`` matching calls, then raise a network error instead of replying."""
        self._rules.append(_Rule("lose", n, _operations(operations), when))

    def before_next(
        self, hook: Hook, *, operations: Iterable[str] | None = None, when: Match | None = None
    ) -> None:
        """Await ``hook(operation, payload)`` just before the next matching call is applied."""
        self._rules.append(_Rule("hook", 1, _operations(operations), when, hook=hook))

    def clear_faults(self) -> None:
        """Forget every injected fault and hook not yet used."""
        self._rules.clear()

    def armed(self) -> list[tuple[str, int]]:
        """The faults not used up yet: ``("fail" | "lose" | "hook", calls left)``, in order."""
        return [(rule.kind, rule.remaining) for rule in self._rules]

    def _take(self, kind: str, operation: str, payload: dict[str, Any]) -> _Rule | None:
        for rule in self._rules:
            if rule.kind == kind and rule.matches(operation, payload):
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._rules.remove(rule)
                return rule
        return None

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Answer one DynamoDB JSON-protocol call (see the module documentation)."""
        payload = _copy(payload)
        self.calls.append((operation, _copy(payload)))
        hook = self._take("hook", operation, payload)
        if hook is not None and hook.hook is not None:
            await hook.hook(operation, _copy(payload))
        failure = self._take("fail", operation, payload)
        if failure is not None and failure.error is not None:
            error = failure.error
            raise RemoteError(error.code, error.message, error.status, _copy(error.body))
        try:
            result = await self._inner(operation, payload)
        except RemoteError:
            if self._take("lose", operation, payload) is not None:
                raise _lost() from None
            raise
        if self._take("lose", operation, payload) is not None:
            raise _lost()
        return result

    async def call_many(
        self, calls: list[tuple[str, dict[str, Any]]]
    ) -> list[dict[str, Any] | RemoteError]:
        """Answer single-item calls together, each as :meth:`call` would (its own
        faults and outcome), as the pysync proxy answers a batch."""
        return await call_each(self.call, calls)

    async def _inner(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


def _operations(operations: Iterable[str] | None) -> frozenset[str] | None:
    return None if operations is None else frozenset(operations)


def _lost() -> RemoteError:
    return RemoteError("NetworkError", "the reply was lost (MemoryDynamo)", 0, {})


class MemoryConnection(_Faults):
    """One client's way to a :class:`MemoryDynamo`: the same data, its own faults and log."""

    def __init__(self, db: MemoryDynamo) -> None:
        super().__init__()
        self.db = db

    async def _inner(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.db.call(operation, payload)


# -- the database ---------------------------------------------------------------------


class MemoryDynamo(_Faults):
    """An in-memory DynamoDB with pysync's tables and a simulated stream consumer.

    ``tables`` are the data tables to create (each with ``<table>_changes``).
    ``lagging`` holds changes back until :meth:`deliver`; ``retention``
    (seconds) gives changelog entries a ``_ttl``; ``max_entry_bytes`` writes
    entries bigger than that without their ``item`` (``trunc``), as the real
    appender does above 400 KB; ``page_bytes`` is Query's page size.
    ``stamping`` makes the consumer stamp items changed without a new ``_m``
    (see the module documentation); off by default, as DynamoDB Local without a
    consumer (the parity tests) and the many tests that write bare items expect.
    """

    def __init__(
        self,
        tables: Iterable[str] = ("pysync",),
        *,
        lagging: bool = False,
        now: float = 1_800_000_000.0,
        retention: float | None = None,
        max_entry_bytes: int | None = None,
        page_bytes: int = 1024 * 1024,
        stamping: bool = False,
    ) -> None:
        super().__init__()
        self.lagging = lagging
        self.stamping = stamping
        self.now = now
        self.retention = retention
        self.max_entry_bytes = max_entry_bytes
        self.page_bytes = page_bytes
        self.tables: dict[str, _Table] = {}
        #: Every applied write, in order (the history for invariant checks).
        self.applied: list[AppliedWrite] = []
        #: Changes not yet in the changelog (``lagging``).
        self.pending: list[StreamRecord] = []
        #: Stamps the consumer still has to try: (table, key, new image, event id), in order.
        self._stamps: list[tuple[str, Item, Item, str]] = []
        self._stamping_now = False
        self._stream_seq = 0
        self._tokens: dict[str, tuple[float, str]] = {}
        #: Write capacity consumed by the request being answered, per table.
        self._units: dict[str, float] = {}
        for name in tables:
            self.create_table(name)

    # -- setup and time ------------------------------------------------------------------

    def create_table(self, name: str) -> None:
        """Create a data table (``sk`` S, streamed) and its changelog ``<name>_changes``."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]{3,255}", name):
            raise ValueError(f"invalid table name {name!r}")
        self.tables.setdefault(name, _Table(name, "S", True))
        changes = f"{name}_changes"
        self.tables.setdefault(changes, _Table(changes, "N", False))

    def connection(self) -> MemoryConnection:
        """A :class:`~pysync.Remote` to this database with its own faults and call log."""
        return MemoryConnection(self)

    def advance(self, seconds: float) -> None:
        """Move the database's clock (token windows, ``ts``, TTL)."""
        self.now += seconds

    def forget_tokens(self) -> None:
        """Forget every ``ClientRequestToken``, as after DynamoDB's ten-minute window."""
        self._tokens.clear()

    # -- the stream consumer ---------------------------------------------------------------

    def deliver(self, n: int | None = None) -> int:
        """Append the oldest ``n`` (default: all) held-back changes to the changelog.

        The stamps those changes call for (``stamping``) are tried after them;
        a stamp's own change is held back in turn, at the end of
        :attr:`pending`, and counts among the ``n`` once it is there:
        ``deliver()`` goes on until nothing is pending. Returns the number of
        changes appended.
        """
        delivered = 0
        while self.pending and (n is None or delivered < n):
            count = len(self.pending) if n is None else min(n - delivered, len(self.pending))
            batch = self.pending[:count]
            del self.pending[:count]
            for record in batch:
                self._append(record)
            delivered += count
            self._stamp_due()
        return delivered

    def drop_changes(self, scope: str, below: int, table: str = "pysync") -> int:
        """Delete the changelog entries of ``scope`` with ``seq < below`` (expiry)."""
        changes = self._table(f"{table}_changes")
        partition = changes.partitions.get(scope, {})
        doomed = [seq for seq in partition if 0 < seq < below]
        for seq in doomed:
            del partition[seq]
        return len(doomed)

    def expire(self) -> int:
        """A TTL sweep: delete every item whose ``_ttl`` is at or before :attr:`now`."""
        count = 0
        for table in list(self.tables.values()):
            for pk, partition in list(table.partitions.items()):
                for sk, item in list(partition.items()):
                    ttl = item.get("_ttl", {}).get("N")
                    if ttl is not None and Decimal(ttl) <= Decimal(repr(self.now)):
                        self._commit([_Write(table, pk, sk, "TTL", item, None)])
                        count += 1
        return count

    def _record(self, write: _Write) -> None:
        if not write.table.stream or _same(write.old, write.new):
            return  # DynamoDB Streams has no record of a write that changed nothing
        self._stream_seq += 1
        record = StreamRecord(
            write.table.name,
            write.pk,
            str(write.sk),
            _copy(write.old),
            _copy(write.new),
            int(self.now * 1000),
            f"{self._stream_seq:021d}",
            f"{self._stream_seq:032x}",
        )
        if self.lagging:
            self.pending.append(record)
        else:
            self._append(record)

    def _append(self, record: StreamRecord) -> None:
        changes = self._table(f"{record.table}_changes")
        head_item = changes.get(record.scope, Decimal(0)) or {}
        seq = int(head_item.get("head", {}).get("N", "0")) + 1
        entry: Item = {
            "pk": {"S": record.scope},
            "sk": {"N": str(seq)},
            "key": {"S": record.key},
            "op": {"S": "delete" if record.new is None else "put"},
            "ts": {"N": str(record.ts)},
            "sseq": {"S": record.sseq},
        }
        if record.new is not None:
            entry["item"] = {"M": _copy(record.new)}
            if "N" in record.new.get("_v", {}):
                entry["_v"] = {"N": record.new["_v"]["N"]}
            if "S" in record.new.get("_m", {}):
                entry["_m"] = {"S": record.new["_m"]["S"]}
        elif record.old is not None and "N" in record.old.get("_v", {}):
            entry["old_v"] = {"N": record.old["_v"]["N"]}
        if self.retention:
            entry["_ttl"] = {"N": str(int(self.now + self.retention))}
        if (
            "item" in entry
            and self.max_entry_bytes is not None
            and item_size(entry) > self.max_entry_bytes
        ):
            del entry["item"]
            entry["trunc"] = {"BOOL": True}
        changes.set(record.scope, Decimal(seq), entry)
        if self.stamping and record.new is not None and _bypassed(record.old, record.new):
            key = {"pk": {"S": record.scope}, "sk": {"S": record.key}}
            self._stamps.append((record.table, key, _copy(record.new), record.event_id))
        changes.set(
            record.scope,
            Decimal(0),
            {
                "pk": {"S": record.scope},
                "sk": {"N": "0"},
                "head": {"N": str(seq)},
                "sseq": {"S": record.sseq},
                "shards": {"M": {"shard-0": {"S": record.sseq}}},
            },
        )

    def _stamp_due(self) -> None:
        """Try the stamps of the changes appended so far, in order (not from inside a stamp)."""
        if self._stamping_now:
            return
        self._stamping_now = True
        try:
            while self._stamps:
                table, key, new, event_id = self._stamps.pop(0)
                values: dict[str, Any] = {
                    ":stamp": {"S": STAMP_PREFIX + event_id},
                    ":one": {"N": "1"},
                }
                conditions = ["attribute_exists(#k)"]
                for name, alias in (("_m", "m"), ("_v", "v")):
                    if name in new:
                        conditions.append(f"#{alias} = :{alias}")
                        values[f":{alias}"] = new[name]
                    else:
                        conditions.append(f"attribute_not_exists(#{alias})")
                request = {
                    "TableName": table,
                    "Key": key,
                    "UpdateExpression": "SET #m = :stamp ADD #v :one",
                    "ConditionExpression": " AND ".join(conditions),
                    "ExpressionAttributeNames": {"#k": "pk", "#m": "_m", "#v": "_v"},
                    "ExpressionAttributeValues": values,
                }
                with contextlib.suppress(RemoteError):
                    # A failed condition: the item changed again (or went). Any other
                    # error (an item too large to take the _m): the real consumer logs
                    # it and goes on, leaving the item unstamped.
                    self.handle("UpdateItem", request)
        finally:
            self._stamping_now = False

    # -- inspection ------------------------------------------------------------------------

    def items(self, table: str = "pysync", pk: str | None = None) -> list[Item]:
        """Copies of the items of ``table`` (of one partition), in key order."""
        found = self._table(table)
        scopes = [pk] if pk is not None else sorted(found.partitions)
        return [
            _copy(found.partitions[scope][sk])
            for scope in scopes
            if scope in found.partitions
            for sk in sorted(found.partitions[scope])
        ]

    def item(self, table: str, pk: str, sk: str | int) -> Item | None:
        """A copy of one item, or ``None``."""
        found = self._table(table)
        item = found.get(pk, Decimal(sk) if found.sort_type == "N" else sk)
        return None if item is None else _copy(item)

    def changes(self, scope: str, table: str = "pysync") -> list[Item]:
        """The changelog entries of ``scope`` (without the head item), in seq order."""
        return [e for e in self.items(f"{table}_changes", scope) if e["sk"]["N"] != "0"]

    # -- dispatch ----------------------------------------------------------------------------

    def _table(self, name: object) -> _Table:
        if not isinstance(name, str) or name not in self.tables:
            raise _error(
                "ResourceNotFoundException", "Cannot do operations on a non-existent table"
            )
        return self.tables[name]

    async def _inner(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self.handle(operation, payload)

    def handle(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Answer one call synchronously (no faults, no logging); raise RemoteError."""
        handler = _HANDLERS.get(operation)
        if handler is None:
            raise _error("UnknownOperationException", f"MemoryDynamo does not support {operation}")
        if not isinstance(payload, dict):
            raise _invalid("the request must be a JSON object")
        allowed = _ALLOWED[operation]
        for name in payload:
            if name not in allowed:
                raise _unsupported(f"{name} in {operation}")
        consumed = payload.get("ReturnConsumedCapacity", "NONE")
        if consumed not in ("NONE", "TOTAL") or (consumed == "TOTAL" and operation in _READS):
            raise _unsupported(f"ReturnConsumedCapacity {consumed} in {operation}")
        self._units = {}
        response: dict[str, Any] = _copy(handler(self, payload))
        if consumed == "TOTAL" and self._units:
            # Billed as DynamoDB documents it (DynamoDB Local reports 2.0 for any
            # transaction): 1 unit per started KB of the larger of the item before
            # and after, twice that in a transaction.
            reported = [
                {"TableName": name, "CapacityUnits": units} for name, units in self._units.items()
            ]
            single = operation != "TransactWriteItems"
            response["ConsumedCapacity"] = reported[0] if single else reported
        return response

    def _bill(self, write: _Write, factor: float) -> None:
        """Count the write capacity ``write`` consumes (see :meth:`handle`)."""
        size = max(item_size(write.old or {}), item_size(write.new or {}))
        units = factor * max(1, -(-size // 1024))
        self._units[write.table.name] = self._units.get(write.table.name, 0.0) + units

    def _commit(self, writes: list[_Write]) -> None:
        for write in writes:
            write.table.set(write.pk, write.sk, write.new)
            self.applied.append(
                AppliedWrite(
                    write.table.name,
                    write.pk,
                    write.sk,
                    write.operation,
                    _copy(write.old),
                    _copy(write.new),
                )
            )
            self._record(write)
        self._stamp_due()  # after the whole request, as the consumer after its records

    # -- single-item operations -----------------------------------------------------------

    def _get_item(self, request: dict[str, Any]) -> dict[str, Any]:
        table = self._table(request.get("TableName"))
        pk, sk, _ = table.key_of(request.get("Key"))
        item = table.get(pk, sk)
        return {} if item is None else {"Item": item}

    def _put_item(self, request: dict[str, Any]) -> dict[str, Any]:
        write, fail = self._prepare(request, "PutItem")
        return self._single(request, write, fail)

    def _update_item(self, request: dict[str, Any]) -> dict[str, Any]:
        write, fail = self._prepare(request, "UpdateItem")
        return self._single(request, write, fail)

    def _delete_item(self, request: dict[str, Any]) -> dict[str, Any]:
        write, fail = self._prepare(request, "DeleteItem")
        return self._single(request, write, fail)

    def _single(self, request: dict[str, Any], write: _Write, failed: bool) -> dict[str, Any]:
        if failed:
            extra: dict[str, Any] = {}
            if request.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and write.old:
                extra["Item"] = write.old
            raise _error("ConditionalCheckFailedException", _CONDITION_FAILED, **extra)
        self._commit([write])
        self._bill(write, 1.0)
        returned = request.get("ReturnValues", "NONE")
        if returned == "ALL_OLD" and write.old is not None:
            return {"Attributes": write.old}
        if returned == "ALL_NEW" and write.new is not None:
            return {"Attributes": write.new}
        return {}

    def _prepare(self, request: dict[str, Any], operation: str) -> tuple[_Write, bool]:
        """Validate one write request; the write and whether its condition fails."""
        table = self._table(request.get("TableName"))
        placeholders = _Placeholders(request)
        condition: Condition | None = None
        update: _Update | None = None
        expressions = []
        if operation == "UpdateItem":
            if "UpdateExpression" not in request:
                raise _unsupported("UpdateItem without an UpdateExpression")
            update = _parse_update(request["UpdateExpression"], placeholders)
            expressions.append("UpdateExpression")
        if "ConditionExpression" in request:
            condition = _parse_condition(
                request["ConditionExpression"], placeholders, "ConditionExpression"
            )
            expressions.append("ConditionExpression")
        elif operation == "ConditionCheck":
            raise _invalid("ConditionExpression is required for ConditionCheck")
        for kind in ("ExpressionAttributeNames", "ExpressionAttributeValues"):
            if kind in request and not expressions:
                raise _invalid(
                    f"{kind} can only be specified when using expressions:"
                    " ConditionExpression is null"
                )
        placeholders.check_all_used()
        for option, allowed in (
            ("ReturnValues", _RETURN_VALUES.get(operation, ("NONE",))),
            ("ReturnValuesOnConditionCheckFailure", ("NONE", "ALL_OLD")),
        ):
            if request.get(option, "NONE") not in allowed:
                raise _invalid("Return values set to invalid value")
        if operation == "PutItem":
            new = _check_item(request.get("Item"))
            pk, sk, _ = table.key_of_item(new)
        else:
            pk, sk, key = table.key_of(request.get("Key"))
        old = table.get(pk, sk)
        if operation == "PutItem":
            result: Item | None = new
        elif operation == "UpdateItem":
            assert update is not None
            result = _apply_update(update, old, key)
        elif operation == "DeleteItem":
            result = None
        else:  # ConditionCheck
            result = old
        if result is not None and item_size(result) > MAX_ITEM_BYTES:
            raise _invalid("Item size has exceeded the maximum allowed size")
        failed = condition is not None and not condition(old)
        return _Write(table, pk, sk, operation, old, result), failed

    # -- queries ----------------------------------------------------------------------------

    def _query(self, request: dict[str, Any]) -> dict[str, Any]:
        table = self._table(request.get("TableName"))
        placeholders = _Placeholders(request)
        if "KeyConditionExpression" not in request:
            raise _unsupported("Query without a KeyConditionExpression")
        scope, sort_test = _parse_key_condition(
            request["KeyConditionExpression"], placeholders, table
        )
        placeholders.check_all_used()
        limit = request.get("Limit")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise _invalid("Limit must be greater than or equal to 1")
        forward = request.get("ScanIndexForward", True)
        partition = table.partitions.get(scope, {})
        keys = sorted(k for k in partition if sort_test(k))
        if not forward:
            keys.reverse()
        start = request.get("ExclusiveStartKey")
        if start is not None:
            start_pk, start_sk, _ = table.key_of(start, "ExclusiveStartKey")
            if start_pk != scope or not sort_test(start_sk):
                raise _invalid("The provided starting key does not match the range key predicate")
            keys = [k for k in keys if (k > start_sk if forward else k < start_sk)]
        items: list[Item] = []
        size = 0
        stopped = False
        for k in keys:
            items.append(partition[k])
            size += item_size(partition[k])
            if (limit is not None and len(items) >= limit) or size >= self.page_bytes:
                # DynamoDB stops at a limit without looking further: a LastEvaluatedKey
                # even when nothing follows.
                stopped = True
                break
        response: dict[str, Any] = {"Items": items, "Count": len(items), "ScannedCount": len(items)}
        if stopped:
            last = items[-1]
            response["LastEvaluatedKey"] = {"pk": last["pk"], "sk": last["sk"]}
        return response

    # -- transactions -------------------------------------------------------------------------

    def _transact_write_items(self, request: dict[str, Any]) -> dict[str, Any]:
        elements = request.get("TransactItems")
        if not isinstance(elements, list) or not elements:
            raise _invalid(
                "Value [] at 'transactItems' failed to satisfy constraint: Member must have length"
                " greater than or equal to 1"
            )
        if len(elements) > 100:
            raise _invalid("Member must have length less than or equal to 100")
        token = request.get("ClientRequestToken")
        fingerprint = json.dumps(elements, sort_keys=True)
        if token is not None:
            if not isinstance(token, str) or not 1 <= len(token) <= 36:
                raise _invalid(
                    f"Value {token} at 'clientRequestToken' failed to satisfy constraint: Member"
                    " must have length less than or equal to 36"
                )
            known = self._tokens.get(token)
            if known is not None and self.now - known[0] < TOKEN_SECONDS:
                if known[1] != fingerprint:
                    raise _error("IdempotentParameterMismatchException", "")
                return {}  # the same transaction again: already applied
        writes: list[_Write] = []
        failures: list[tuple[bool, str, dict[str, Any]]] = []
        seen: set[tuple[str, str, Any]] = set()
        for element in elements:
            if not isinstance(element, dict) or len(element) != 1:
                raise _invalid("TransactItems can only contain one of Check, Put, Update or Delete")
            ((kind, body),) = element.items()
            operation = _TRANSACT_KINDS.get(kind)
            if operation is None or not isinstance(body, dict):
                raise _invalid("TransactItems can only contain one of Check, Put, Update or Delete")
            for name in body:
                if name not in _TRANSACT_ALLOWED[kind]:
                    raise _unsupported(f"{name} in a TransactWriteItems {kind}")
            write, failed = self._prepare(body, operation)
            where = (write.table.name, write.pk, write.sk)
            if where in seen:
                raise _invalid("Transaction request cannot include multiple operations on one item")
            seen.add(where)
            writes.append(write)
            message = _CONDITION_FAILED + ("." if kind == "ConditionCheck" else "")
            failures.append((failed, message, body))
        if any(failed for failed, _, _ in failures):
            reasons: list[dict[str, Any]] = []
            for write, (failed, message, body) in zip(writes, failures, strict=True):
                if not failed:
                    reasons.append({"Code": "None"})
                    continue
                reason: dict[str, Any] = {"Code": "ConditionalCheckFailed", "Message": message}
                if body.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and write.old:
                    reason["Item"] = write.old
                reasons.append(reason)
            codes = ", ".join(r["Code"] for r in reasons)
            raise _error(
                "TransactionCanceledException",
                "Transaction cancelled, please refer cancellation reasons for specific reasons"
                f" [{codes}]",
                CancellationReasons=reasons,
            )
        self._commit([w for w in writes if w.operation != "ConditionCheck"])
        for write in writes:
            self._bill(write, 2.0)
        if token is not None:
            self._tokens[token] = (self.now, fingerprint)
        return {}


def _bypassed(old: Item | None, new: Item) -> bool:
    """True if ``new`` (a written item) calls for a stamp, as the real consumer decides:
    its ``_m`` is missing or unchanged; not a tombstone; ``_v`` absent or a number."""
    deleted = new.get("_del")
    if deleted is not None and deleted not in ({"BOOL": False}, {"NULL": True}):
        return False
    if "_v" in new and "N" not in new["_v"]:
        return False
    m = new.get("_m")
    return m is None or m == (old or {}).get("_m")


def _apply_update(update: _Update, old: Item | None, key: Item) -> Item:
    for name in update.paths():
        if name in ("pk", "sk"):
            raise _invalid(
                f"One or more parameter values were invalid: Cannot update attribute {name}."
                " This attribute is part of the key"
            )
    new: Item = dict(old) if old is not None else dict(key)
    for name, operand in update.sets:
        value = operand(old)
        if value is None:
            raise _invalid(
                "The provided expression refers to an attribute that does not exist in the item"
            )
        new[name] = value
    for name, delta in update.adds:
        current = new.get(name)
        if current is None:
            new[name] = {"N": delta["N"]}
        elif "N" in current:
            total = _NUMBERS.add(Decimal(current["N"]), Decimal(delta["N"]))
            new[name] = {"N": format(total, "f")}
        else:
            raise _invalid("An operand in the update expression has an incorrect data type")
    return new


def _parse_key_condition(
    text: object, placeholders: _Placeholders, table: _Table
) -> tuple[str, Callable[[Any], bool]]:
    """The partition a key condition names, and the test of its sort-key part."""
    parser = _Parser(text, "KeyConditionExpression", placeholders)
    terms: dict[str, tuple[str, AttributeValue]] = {}
    while True:
        if parser.peek().kind == "word" and parser.peek(1).text == "(":
            function = parser.take().text
            if function not in _FUNCTIONS:
                raise parser.error(f"Invalid function name; function: {function}")
            if function != "begins_with":
                raise _invalid(f"Invalid operator used in KeyConditionExpression: {function}")
            parser.expect("(")
            name = parser.path()
            parser.expect(",")
            value = parser.value()
            parser.expect(")")
            comparator = "begins_with"
        else:
            name = parser.path()
            operator = parser.take()
            if operator.keyword == "BETWEEN":
                raise _unsupported("BETWEEN in KeyConditionExpression")
            if operator.text not in _COMPARATORS or operator.text == "<>":
                raise _invalid(
                    f"Invalid operator used in KeyConditionExpression: {operator.text.upper()}"
                )
            value = parser.value()
            comparator = operator.text
        if name not in ("pk", "sk"):
            raise _invalid("Query condition missed key schema element")
        if name in terms:
            raise _invalid("KeyConditionExpressions must only contain one condition per key")
        if comparator == "begins_with" and name == "pk":
            raise _invalid("Query key condition not supported")
        terms[name] = (comparator, value)
        following = parser.peek()
        if following.kind == "end":
            break
        if following.keyword != "AND":
            raise _invalid(
                f"Invalid operator used in KeyConditionExpression: {following.text.upper()}"
            )
        parser.take()
    if "pk" not in terms or terms["pk"][0] != "=":
        raise _invalid("Query condition missed key schema element: pk")
    scope_value = terms["pk"][1]
    if "S" not in scope_value:
        raise _invalid(
            "One or more parameter values were invalid: Condition parameter type does not match"
            " schema type"
        )
    if "sk" not in terms:
        return scope_value["S"], lambda _sk: True
    comparator, bound_value = terms["sk"]
    if comparator == "begins_with" and "S" not in bound_value:  # B too, which no table uses
        raise _invalid(
            "Invalid KeyConditionExpression: Incorrect operand type for operator or function;"
            f" operator or function: begins_with, operand type: {next(iter(bound_value))}"
        )
    if table.sort_type not in bound_value:
        raise _invalid(
            "One or more parameter values were invalid: Condition parameter type does not match"
            " schema type"
        )
    if bound_value == {"S": ""}:
        raise _invalid(
            "One or more parameter values are not valid. The AttributeValue for a key attribute"
            " cannot contain an empty string value. Key: sk"
        )
    bound = table.sort_value(bound_value)
    tests: dict[str, Callable[[Any], bool]] = {
        "begins_with": lambda sk: bool(sk.startswith(bound)),
        "=": lambda sk: bool(sk == bound),
        "<": lambda sk: bool(sk < bound),
        "<=": lambda sk: bool(sk <= bound),
        ">": lambda sk: bool(sk > bound),
        ">=": lambda sk: bool(sk >= bound),
    }
    return scope_value["S"], tests[comparator]


_HANDLERS: dict[str, Callable[[MemoryDynamo, dict[str, Any]], dict[str, Any]]] = {
    "GetItem": MemoryDynamo._get_item,
    "PutItem": MemoryDynamo._put_item,
    "UpdateItem": MemoryDynamo._update_item,
    "DeleteItem": MemoryDynamo._delete_item,
    "Query": MemoryDynamo._query,
    "TransactWriteItems": MemoryDynamo._transact_write_items,
}
_EXPRESSIONS = ("ExpressionAttributeNames", "ExpressionAttributeValues")
#: Operations whose (read) capacity the fake does not report.
_READS = frozenset({"GetItem", "Query"})
_WRITE = ("TableName", "ConditionExpression", *_EXPRESSIONS, "ReturnConsumedCapacity")
_ALLOWED: dict[str, frozenset[str]] = {
    "GetItem": frozenset({"TableName", "Key", "ConsistentRead", "ReturnConsumedCapacity"}),
    "PutItem": frozenset({*_WRITE, "Item", "ReturnValues", "ReturnValuesOnConditionCheckFailure"}),
    "UpdateItem": frozenset(
        {*_WRITE, "Key", "UpdateExpression", "ReturnValues", "ReturnValuesOnConditionCheckFailure"}
    ),
    "DeleteItem": frozenset(
        {*_WRITE, "Key", "ReturnValues", "ReturnValuesOnConditionCheckFailure"}
    ),
    "Query": frozenset(
        {
            "TableName",
            "KeyConditionExpression",
            *_EXPRESSIONS,
            "ConsistentRead",
            "Limit",
            "ExclusiveStartKey",
            "ScanIndexForward",
            "ReturnConsumedCapacity",
        }
    ),
    "TransactWriteItems": frozenset(
        {"TransactItems", "ClientRequestToken", "ReturnConsumedCapacity"}
    ),
}
_TRANSACT_KINDS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheck",
}
_ELEMENT = (
    "TableName",
    "ConditionExpression",
    *_EXPRESSIONS,
    "ReturnValuesOnConditionCheckFailure",
)
_TRANSACT_ALLOWED: dict[str, frozenset[str]] = {
    "Put": frozenset({*_ELEMENT, "Item"}),
    "Update": frozenset({*_ELEMENT, "Key", "UpdateExpression"}),
    "Delete": frozenset({*_ELEMENT, "Key"}),
    "ConditionCheck": frozenset({*_ELEMENT, "Key"}),
}
