"""Declarative access policy, modelled on IAM fine-grained access control.

IAM can restrict a principal to items whose partition key is one of a list of
values (``dynamodb:LeadingKeys``) and to a set of actions and tables. The proxy
applies the same rule to each browser token: every key, item, transaction
element and key condition in a request must name a partition (``pk``) that is
one of the token's scopes, on a table and operation the policy allows.

The checker is an allow-list over the whole request: it knows every parameter
of the nine item operations and denies anything else, including DynamoDB's
legacy parameters (``KeyConditions``, ``Expected``, ``AttributeUpdates`` ...)
which could express conditions the checker does not parse.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import AccessDenied, ValidationError
from ._expr import (
    Between,
    BoolOp,
    Call,
    Compare,
    Condition,
    Operand,
    Path,
    Value,
    parse_condition,
    parse_update,
    resolve_name,
)
from ._numbers import positive_int

#: System fields a client may write (DESIGN.md "Data in DynamoDB").
PROTOCOL_FIELDS = frozenset({"_v", "_hlc", "_c", "_m", "_del", "_ttl"})

#: Operations a browser may use on the data table.
DATA_OPERATIONS = frozenset(
    {
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "BatchGetItem",
        "BatchWriteItem",
        "TransactGetItems",
        "TransactWriteItems",
    }
)

#: Operations a browser may use on the changelog table (read-only).
CHANGELOG_OPERATIONS = frozenset({"GetItem", "Query"})

_EAN = "ExpressionAttributeNames"
_EAV = "ExpressionAttributeValues"
_RETURN = frozenset(
    {
        "ReturnValues",
        "ReturnConsumedCapacity",
        "ReturnItemCollectionMetrics",
        "ReturnValuesOnConditionCheckFailure",
    }
)
_CONDITIONED = frozenset({"TableName", "ConditionExpression", _EAN, _EAV}) | _RETURN

_PARAMS: dict[str, frozenset[str]] = {
    "GetItem": frozenset(
        {"TableName", "Key", "ConsistentRead", "ProjectionExpression", _EAN}
        | {"ReturnConsumedCapacity"}
    ),
    "PutItem": _CONDITIONED | {"Item"},
    "UpdateItem": _CONDITIONED | {"Key", "UpdateExpression"},
    "DeleteItem": _CONDITIONED | {"Key"},
    "Query": frozenset(
        {
            "TableName",
            "IndexName",
            "KeyConditionExpression",
            "FilterExpression",
            "ProjectionExpression",
            _EAN,
            _EAV,
            "Select",
            "Limit",
            "ConsistentRead",
            "ScanIndexForward",
            "ExclusiveStartKey",
            "ReturnConsumedCapacity",
        }
    ),
    "BatchGetItem": frozenset({"RequestItems", "ReturnConsumedCapacity"}),
    "BatchWriteItem": frozenset(
        {"RequestItems", "ReturnConsumedCapacity", "ReturnItemCollectionMetrics"}
    ),
    "TransactGetItems": frozenset({"TransactItems", "ReturnConsumedCapacity"}),
    "TransactWriteItems": frozenset(
        {
            "TransactItems",
            "ReturnConsumedCapacity",
            "ReturnItemCollectionMetrics",
            "ClientRequestToken",
        }
    ),
}
_ELEMENT_CONDITIONED = frozenset(
    {"TableName", "ConditionExpression", _EAN, _EAV, "ReturnValuesOnConditionCheckFailure"}
)
_TRANSACT_WRITE_PARAMS: dict[str, frozenset[str]] = {
    "Put": _ELEMENT_CONDITIONED | {"Item"},
    "Update": _ELEMENT_CONDITIONED | {"Key", "UpdateExpression"},
    "Delete": _ELEMENT_CONDITIONED | {"Key"},
    "ConditionCheck": _ELEMENT_CONDITIONED | {"Key"},
}
_TRANSACT_GET_PARAMS = frozenset({"TableName", "Key", "ProjectionExpression", _EAN})
_BATCH_GET_PARAMS = frozenset({"Keys", "ConsistentRead", "ProjectionExpression", _EAN})

# Pre-expression parameters: they carry conditions and updates in a second
# syntax the checker would have to understand as well, so they are refused.
_LEGACY = frozenset(
    {
        "AttributesToGet",
        "AttributeUpdates",
        "ConditionalOperator",
        "Expected",
        "KeyConditions",
        "QueryFilter",
        "ScanFilter",
    }
)
_SORT_COMPARATORS = frozenset({"=", "<", "<=", ">", ">="})
#: DynamoDB's bounds on ``ClientRequestToken`` (the proxy's own tokens stay within them too).
MAX_REQUEST_TOKEN = 36


def user_request_token(subject: str, token: str) -> str:
    """The ``ClientRequestToken`` the proxy sends for ``token`` from the user ``subject``.

    All users share the proxy's AWS identity, and DynamoDB remembers a
    transaction's token for ten minutes per identity: passed on unchanged, one
    user's token could make another user's transaction fail with
    ``IdempotentParameterMismatchException`` (or pass as an earlier one). The
    proxy sends a hash of both instead: 36 hex digits (144 bits of SHA-256 over
    the length-prefixed subject and token), the same for the same user and
    token, so a client's retries still match each other.
    """
    data = f"pysync-client-request-token\0{len(subject)}:{subject}\0{token}".encode()
    return hashlib.sha256(data).hexdigest()[:MAX_REQUEST_TOKEN]


@dataclass(frozen=True)
class TableRule:
    """What a token may do on one table.

    ``local_indexes`` maps the local secondary indexes a client may query to
    their sort-key attribute; local indexes share the table's partition key,
    so the same scope check applies. Global indexes are never allowed: their
    partition key is another attribute, which would escape the scope pinning.
    """

    name: str
    operations: frozenset[str]
    partition_key: str = "pk"
    sort_key: str = "sk"
    local_indexes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Access:
    """What an allowed request touches; used for the access log."""

    operation: str
    tables: frozenset[str]
    scopes: frozenset[str]


@dataclass(frozen=True)
class Policy:
    """Allow-list of tables and operations plus the scope and system-field rules."""

    tables: tuple[TableRule, ...]
    writable_system_fields: frozenset[str] = PROTOCOL_FIELDS
    system_prefix: str = "_"

    @classmethod
    def for_table(cls, table: str) -> Policy:
        """The pysync policy: full item access to ``table``, read-only ``<table>_changes``."""
        return cls(
            (
                TableRule(table, DATA_OPERATIONS),
                TableRule(f"{table}_changes", CHANGELOG_OPERATIONS),
            )
        )

    def check(self, operation: str, request: Any, scopes: Iterable[str]) -> Access:
        """Return what the request touches, or raise ``AccessDenied``/``ValidationError``."""
        handler = _HANDLERS.get(operation)
        if handler is None:
            raise AccessDenied(f"operation {operation} is not allowed through the pysync proxy")
        checker = _Checker(self, frozenset(scopes))
        body = _obj(request, "request body")
        checker.params(body, _PARAMS[operation], operation)
        handler(checker, body)
        return Access(operation, frozenset(checker.tables), frozenset(checker.scopes_used))


# --- request checker ---------------------------------------------------------


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(f"{where} must be a JSON object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ValidationError(f"{where} must be a non-empty list")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{where} must be a string")
    return value


def _is_attribute(operand: Operand, names: Mapping[str, str], attribute: str) -> bool:
    return (
        isinstance(operand, Path)
        and len(operand.elements) == 1
        and resolve_name(operand.elements[0], names) == attribute
    )


def _conjuncts(condition: Condition) -> list[Condition]:
    if isinstance(condition, BoolOp) and condition.op == "AND":
        return _conjuncts(condition.left) + _conjuncts(condition.right)
    return [condition]


def _is_sort_condition(condition: Condition, names: Mapping[str, str], sort_key: str) -> bool:
    if isinstance(condition, Compare):
        return (
            condition.op in _SORT_COMPARATORS
            and _is_attribute(condition.left, names, sort_key)
            and isinstance(condition.right, Value)
        )
    if isinstance(condition, Between):
        return (
            _is_attribute(condition.operand, names, sort_key)
            and isinstance(condition.low, Value)
            and isinstance(condition.high, Value)
        )
    if isinstance(condition, Call):
        return (
            condition.name == "begins_with"
            and len(condition.args) == 2
            and _is_attribute(condition.args[0], names, sort_key)
            and isinstance(condition.args[1], Value)
        )
    return False


class _Checker:
    def __init__(self, policy: Policy, scopes: frozenset[str]) -> None:
        self.policy = policy
        self.rules = {rule.name: rule for rule in policy.tables}
        self.scopes = scopes
        self.tables: set[str] = set()
        self.scopes_used: set[str] = set()

    # building blocks

    def params(self, obj: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
        for name in obj:
            if name in _LEGACY:
                raise AccessDenied(f"legacy parameter {name} is not allowed; use expressions")
            if name not in allowed:
                raise AccessDenied(f"parameter {name} is not allowed in {where}")

    def table(self, name: Any, operation: str, where: str) -> TableRule:
        table = _str(name, where)
        if table.startswith("arn:"):
            raise AccessDenied("table ARNs are not accepted; name the table")
        rule = self.rules.get(table)
        if rule is None:
            raise AccessDenied(f"table {table!r} is not allowed")
        if operation not in rule.operations:
            raise AccessDenied(f"{operation} is not allowed on table {table!r}")
        self.tables.add(table)
        return rule

    def scope(self, attribute: Any, where: str) -> str:
        """The scope a partition-key attribute value names, if the token holds it."""
        if (
            isinstance(attribute, dict)
            and len(attribute) == 1
            and isinstance(attribute.get("S"), str)
            and attribute["S"] in self.scopes
        ):
            scope: str = attribute["S"]
            self.scopes_used.add(scope)
            return scope
        raise AccessDenied(f"{where} is not one of the token's scopes")

    def key(self, key: Any, rule: TableRule, where: str) -> str:
        key = _obj(key, where)
        if set(key) != {rule.partition_key, rule.sort_key}:
            raise ValidationError(
                f"{where} must have exactly the attributes {rule.partition_key} and {rule.sort_key}"
            )
        return self.scope(key[rule.partition_key], f"{where}.{rule.partition_key}")

    def item(self, item: Any, rule: TableRule, where: str) -> None:
        item = _obj(item, where)
        if rule.sort_key not in item:
            raise ValidationError(f"{where} has no {rule.sort_key}")
        self.scope(item.get(rule.partition_key), f"{where}.{rule.partition_key}")
        for name in item:
            self.writable(name, rule, where, is_item=True)

    def writable(self, name: str, rule: TableRule, where: str, *, is_item: bool) -> None:
        if not is_item and name in (rule.partition_key, rule.sort_key):
            raise AccessDenied(f"{where} may not change the key attribute {name!r}")
        policy = self.policy
        if name.startswith(policy.system_prefix) and name not in policy.writable_system_fields:
            raise AccessDenied(f"{where} may not write the reserved attribute {name!r}")

    def names(self, obj: Mapping[str, Any]) -> dict[str, str]:
        names = _obj(obj.get(_EAN, {}), _EAN)
        for alias, name in names.items():
            if not alias.startswith("#"):
                raise ValidationError(f"{_EAN} key {alias!r} must start with '#'")
            _str(name, f"{_EAN}[{alias!r}]")
        return names

    def values(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        values = _obj(obj.get(_EAV, {}), _EAV)
        for placeholder in values:
            if not placeholder.startswith(":"):
                raise ValidationError(f"{_EAV} key {placeholder!r} must start with ':'")
        return values

    def update(self, obj: Mapping[str, Any], rule: TableRule, where: str) -> None:
        expression = obj.get("UpdateExpression")
        if expression is None:
            return
        names = self.names(obj)
        for clause in parse_update(_str(expression, f"{where}.UpdateExpression")):
            top = clause.path.top(names)
            self.writable(top, rule, f"{where}.UpdateExpression {clause.action}", is_item=False)

    def key_condition(self, obj: Mapping[str, Any], rule: TableRule, sort_key: str) -> str:
        expression = obj.get("KeyConditionExpression")
        if expression is None:
            raise AccessDenied(f"Query must pin {rule.partition_key} with KeyConditionExpression")
        tree = parse_condition(_str(expression, "KeyConditionExpression"))
        names, values = self.names(obj), self.values(obj)
        pinned: list[str] = []
        sort_conditions = 0
        for condition in _conjuncts(tree):
            if (
                isinstance(condition, Compare)
                and condition.op == "="
                and _is_attribute(condition.left, names, rule.partition_key)
                and isinstance(condition.right, Value)
            ):
                placeholder = condition.right.name
                if placeholder not in values:
                    raise ValidationError(f"{_EAV} does not define {placeholder}")
                pinned.append(
                    self.scope(values[placeholder], f"KeyConditionExpression {placeholder}")
                )
            elif _is_sort_condition(condition, names, sort_key):
                sort_conditions += 1
            else:
                pinned.clear()
                break
        if len(pinned) != 1 or sort_conditions > 1:
            raise AccessDenied(
                f"KeyConditionExpression must be '{rule.partition_key} = :value', optionally "
                f"AND one condition on '{sort_key}'"
            )
        return pinned[0]


# --- operations --------------------------------------------------------------


def _get_item(c: _Checker, body: dict[str, Any]) -> None:
    rule = c.table(body.get("TableName"), "GetItem", "TableName")
    c.key(body.get("Key"), rule, "Key")
    c.names(body)


def _put_item(c: _Checker, body: dict[str, Any]) -> None:
    rule = c.table(body.get("TableName"), "PutItem", "TableName")
    c.item(body.get("Item"), rule, "Item")
    c.names(body)
    c.values(body)


def _update_item(c: _Checker, body: dict[str, Any]) -> None:
    rule = c.table(body.get("TableName"), "UpdateItem", "TableName")
    c.key(body.get("Key"), rule, "Key")
    c.values(body)
    c.update(body, rule, "UpdateItem")
    c.names(body)


def _delete_item(c: _Checker, body: dict[str, Any]) -> None:
    rule = c.table(body.get("TableName"), "DeleteItem", "TableName")
    c.key(body.get("Key"), rule, "Key")
    c.names(body)
    c.values(body)


def _query(c: _Checker, body: dict[str, Any]) -> None:
    rule = c.table(body.get("TableName"), "Query", "TableName")
    sort_key = rule.sort_key
    if "IndexName" in body:
        index = _str(body["IndexName"], "IndexName")
        if index not in rule.local_indexes:
            raise AccessDenied(f"index {index!r} is not allowed")
        sort_key = rule.local_indexes[index]
    scope = c.key_condition(body, rule, sort_key)
    if "Limit" in body:
        positive_int(body["Limit"], "Limit")
    if "ExclusiveStartKey" in body:
        start = _obj(body["ExclusiveStartKey"], "ExclusiveStartKey")
        where = f"ExclusiveStartKey.{rule.partition_key}"
        if c.scope(start.get(rule.partition_key), where) != scope:
            raise AccessDenied(f"{where} must be the queried scope")


def _batch_get_item(c: _Checker, body: dict[str, Any]) -> None:
    request_items = _obj(body.get("RequestItems"), "RequestItems")
    if not request_items:
        raise ValidationError("RequestItems must not be empty")
    for table, spec in request_items.items():
        where = f"RequestItems[{table!r}]"
        rule = c.table(table, "BatchGetItem", where)
        spec = _obj(spec, where)
        c.params(spec, _BATCH_GET_PARAMS, where)
        for i, key in enumerate(_list(spec.get("Keys"), f"{where}.Keys")):
            c.key(key, rule, f"{where}.Keys[{i}]")
        c.names(spec)


def _batch_write_item(c: _Checker, body: dict[str, Any]) -> None:
    request_items = _obj(body.get("RequestItems"), "RequestItems")
    if not request_items:
        raise ValidationError("RequestItems must not be empty")
    for table, requests in request_items.items():
        rule = c.table(table, "BatchWriteItem", f"RequestItems[{table!r}]")
        for i, request in enumerate(_list(requests, f"RequestItems[{table!r}]")):
            where = f"RequestItems[{table!r}][{i}]"
            request = _obj(request, where)
            if set(request) == {"PutRequest"}:
                put = _obj(request["PutRequest"], f"{where}.PutRequest")
                c.params(put, frozenset({"Item"}), f"{where}.PutRequest")
                c.item(put.get("Item"), rule, f"{where}.PutRequest.Item")
            elif set(request) == {"DeleteRequest"}:
                delete = _obj(request["DeleteRequest"], f"{where}.DeleteRequest")
                c.params(delete, frozenset({"Key"}), f"{where}.DeleteRequest")
                c.key(delete.get("Key"), rule, f"{where}.DeleteRequest.Key")
            else:
                raise ValidationError(f"{where} must hold exactly one PutRequest or DeleteRequest")


def _single(element: Any, where: str) -> tuple[str, dict[str, Any]]:
    element = _obj(element, where)
    if len(element) != 1:
        raise ValidationError(f"{where} must hold exactly one action")
    ((kind, spec),) = element.items()
    return kind, _obj(spec, f"{where}.{kind}")


def _transact_write_items(c: _Checker, body: dict[str, Any]) -> None:
    if "ClientRequestToken" in body:
        token = body["ClientRequestToken"]
        if not isinstance(token, str) or not 1 <= len(token) <= MAX_REQUEST_TOKEN:
            raise ValidationError(
                f"ClientRequestToken must be a string of 1 to {MAX_REQUEST_TOKEN} characters"
            )
    for i, element in enumerate(_list(body.get("TransactItems"), "TransactItems")):
        kind, spec = _single(element, f"TransactItems[{i}]")
        where = f"TransactItems[{i}].{kind}"
        allowed = _TRANSACT_WRITE_PARAMS.get(kind)
        if allowed is None:
            raise ValidationError(f"{where}: unknown transaction action")
        c.params(spec, allowed, where)
        rule = c.table(spec.get("TableName"), "TransactWriteItems", f"{where}.TableName")
        if kind == "Put":
            c.item(spec.get("Item"), rule, f"{where}.Item")
        else:
            c.key(spec.get("Key"), rule, f"{where}.Key")
        c.values(spec)
        c.update(spec, rule, where)
        c.names(spec)


def _transact_get_items(c: _Checker, body: dict[str, Any]) -> None:
    for i, element in enumerate(_list(body.get("TransactItems"), "TransactItems")):
        kind, spec = _single(element, f"TransactItems[{i}]")
        where = f"TransactItems[{i}].{kind}"
        if kind != "Get":
            raise ValidationError(f"{where}: TransactGetItems only takes Get")
        c.params(spec, _TRANSACT_GET_PARAMS, where)
        rule = c.table(spec.get("TableName"), "TransactGetItems", f"{where}.TableName")
        c.key(spec.get("Key"), rule, f"{where}.Key")
        c.names(spec)


_HANDLERS: dict[str, Callable[[_Checker, dict[str, Any]], None]] = {
    "GetItem": _get_item,
    "PutItem": _put_item,
    "UpdateItem": _update_item,
    "DeleteItem": _delete_item,
    "Query": _query,
    "BatchGetItem": _batch_get_item,
    "BatchWriteItem": _batch_write_item,
    "TransactGetItems": _transact_get_items,
    "TransactWriteItems": _transact_write_items,
}
