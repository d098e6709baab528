"""The expression tokenizer/parser: unit tests and hypothesis fuzzing."""

from __future__ import annotations

import contextlib
import copy
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pysync.server import Policy, ProxyError
from pysync.server._errors import ValidationError
from pysync.server._expr import (
    MAX_EXPRESSION_LENGTH,
    Between,
    BoolOp,
    Call,
    Compare,
    In,
    Not,
    Path,
    Value,
    parse_condition,
    parse_update,
    tokenize,
)

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
POLICY = Policy.for_table("t_data")
SCOPES = frozenset({"u#alice", "s#team"})


def test_tokens() -> None:
    kinds = [(t.kind, t.text) for t in tokenize("set #a.b[10] = :v, c <> d")]
    assert kinds == [
        ("keyword", "SET"),
        ("alias", "#a"),
        ("op", "."),
        ("name", "b"),
        ("op", "["),
        ("number", "10"),
        ("op", "]"),
        ("op", "="),
        ("value", ":v"),
        ("op", ","),
        ("name", "c"),
        ("op", "<>"),
        ("name", "d"),
        ("end", ""),
    ]


@pytest.mark.parametrize(
    "text", ["a = :v;", "a ≠ :v", "#", ":", "a = :v\x00", "a = 'x'", 'a = "x"', "a == $"]
)
def test_unknown_characters_are_validation_errors(text: str) -> None:
    with pytest.raises(ValidationError):
        tokenize(text)


def test_expression_length_is_bounded() -> None:
    with pytest.raises(ValidationError, match="longer"):
        tokenize("a" * (MAX_EXPRESSION_LENGTH + 1))


def test_nesting_is_bounded() -> None:
    with pytest.raises(ValidationError, match="deeply"):
        parse_condition("(" * 100 + "a = :v" + ")" * 100)
    with pytest.raises(ValidationError, match="deeply"):
        parse_condition("NOT " * 100 + "a = :v")


def test_condition_tree() -> None:
    tree = parse_condition("pk = :p AND (sk BETWEEN :a AND :b OR begins_with(sk, :c))")
    assert tree == BoolOp(
        "AND",
        Compare("=", Path(("pk",)), Value(":p")),
        BoolOp(
            "OR",
            Between(Path(("sk",)), Value(":a"), Value(":b")),
            Call("begins_with", (Path(("sk",)), Value(":c"))),
        ),
    )
    assert parse_condition("NOT a IN (:x, :y)") == Not(In(Path(("a",)), (Value(":x"), Value(":y"))))


def test_and_binds_tighter_than_or() -> None:
    tree = parse_condition("a = :a OR b = :b AND c = :c")
    assert isinstance(tree, BoolOp)
    assert tree.op == "OR"


def test_update_clauses() -> None:
    clauses = parse_update(
        "SET a = :v, #b.c[2] = a + :one, d = if_not_exists(d, :z) REMOVE e, f.g "
        "ADD n :one DELETE s :set"
    )
    assert [(c.action, c.path.elements) for c in clauses] == [
        ("SET", ("a",)),
        ("SET", ("#b", "c", 2)),
        ("SET", ("d",)),
        ("REMOVE", ("e",)),
        ("REMOVE", ("f", "g")),
        ("ADD", ("n",)),
        ("DELETE", ("s",)),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SET",
        "SET a",
        "SET a = ",
        "SET a = :v,",
        "SET a = :v SET b = :v",
        "REMOVE",
        "ADD a",
        "ADD a b",
        "DELETE a = :v",
        "SET [0] = :v",
        "SET a.[0] = :v",
        "SET a = :v REMOVE",
        "UPDATE a = :v",
        "SET a = :v AND b = :v",
        "SET a = f(:v",
    ],
)
def test_invalid_updates(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_update(text)


# --- fuzzing -----------------------------------------------------------------------

_PIECES = [
    " ", "pk", "sk", "_x", "#a", "#pk", ":v", ":p", "=", "<>", "<", "<=", ">", ">=", "(", ")",
    ",", ".", "[", "]", "0", "12", "+", "-", "AND", "or", "NOT", "BETWEEN", "IN", "SET",
    "remove", "ADD", "DELETE", "begins_with", "size", "if_not_exists", "list_append", "\t",
    "é", ";", "#", ":", "\\", "'",
]  # fmt: skip
expression_text = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(_PIECES), max_size=40).map("".join),
    st.lists(st.sampled_from(_PIECES), max_size=40).map(" ".join),
)


@FUZZ
@given(expression_text)
def test_parsers_never_crash(text: str) -> None:
    for parse in (parse_condition, parse_update):
        with contextlib.suppress(ValidationError):
            parse(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["S", "N", "pk", "sk", "_x", "Key", "x"]), children, max_size=4
        )
    ),
    max_leaves=12,
)
_PARAMS = [
    "TableName", "Key", "Item", "UpdateExpression", "KeyConditionExpression",
    "ExpressionAttributeNames", "ExpressionAttributeValues", "RequestItems", "TransactItems",
    "ExclusiveStartKey", "IndexName", "Keys", "PutRequest", "DeleteRequest", "Put", "Get",
]  # fmt: skip
_SCALARS = st.one_of(
    st.sampled_from(["t_data", "t_data_changes", "u#alice", "u#bob", "pk", "sk"]),
    expression_text,
)
documents = st.recursive(
    st.dictionaries(st.sampled_from(_PARAMS), _SCALARS | json_values, max_size=5),
    lambda children: st.dictionaries(
        st.sampled_from([*_PARAMS, "#a", ":v", "pk", "sk", "S", "N", "t_data"]),
        children | st.lists(children, max_size=3) | _SCALARS | json_values,
        max_size=4,
    ),
    max_leaves=20,
)


OPERATIONS = [
    "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "BatchGetItem",
    "BatchWriteItem", "TransactGetItems", "TransactWriteItems", "Scan",
]  # fmt: skip


def _status(operation: str, document: dict[str, Any]) -> int:
    try:
        access = POLICY.check(operation, document, SCOPES)
    except ProxyError as error:
        return error.status
    assert access.scopes <= SCOPES
    return 200


@FUZZ
@given(st.sampled_from(OPERATIONS), documents)
def test_policy_only_allows_or_denies_cleanly(operation: str, document: dict[str, Any]) -> None:
    assert _status(operation, document) in (200, 400, 403)


VALID: list[tuple[str, dict[str, Any]]] = [
    ("GetItem", {"TableName": "t_data", "Key": {"pk": {"S": "u#alice"}, "sk": {"S": "a"}}}),
    (
        "UpdateItem",
        {
            "TableName": "t_data",
            "Key": {"pk": {"S": "u#alice"}, "sk": {"S": "a"}},
            "UpdateExpression": "SET #t = :v, #v = #v + :one REMOVE old",
            "ExpressionAttributeNames": {"#t": "title", "#v": "_v"},
            "ExpressionAttributeValues": {":v": {"S": "x"}, ":one": {"N": "1"}},
        },
    ),
    (
        "Query",
        {
            "TableName": "t_data_changes",
            "KeyConditionExpression": "#p = :p AND sk > :c",
            "ExpressionAttributeNames": {"#p": "pk"},
            "ExpressionAttributeValues": {":p": {"S": "s#team"}, ":c": {"N": "0"}},
            "ExclusiveStartKey": {"pk": {"S": "s#team"}, "sk": {"N": "3"}},
        },
    ),
    (
        "BatchWriteItem",
        {
            "RequestItems": {
                "t_data": [
                    {"PutRequest": {"Item": {"pk": {"S": "u#alice"}, "sk": {"S": "a"}}}},
                    {"DeleteRequest": {"Key": {"pk": {"S": "s#team"}, "sk": {"S": "b"}}}},
                ]
            }
        },
    ),
    (
        "TransactWriteItems",
        {
            "TransactItems": [
                {
                    "Put": {
                        "TableName": "t_data",
                        "Item": {"pk": {"S": "u#alice"}, "sk": {"S": "a"}},
                    }
                },
                {
                    "Update": {
                        "TableName": "t_data",
                        "Key": {"pk": {"S": "s#team"}, "sk": {"S": "b"}},
                        "UpdateExpression": "ADD n :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
            ]
        },
    ),
    (
        "BatchGetItem",
        {"RequestItems": {"t_data": {"Keys": [{"pk": {"S": "u#alice"}, "sk": {"S": "a"}}]}}},
    ),
    (
        "TransactGetItems",
        {
            "TransactItems": [
                {"Get": {"TableName": "t_data", "Key": {"pk": {"S": "u#alice"}, "sk": {"S": "a"}}}}
            ]
        },
    ),
]


@pytest.mark.parametrize(("operation", "document"), VALID, ids=[v[0] for v in VALID])
def test_valid_templates_are_allowed(operation: str, document: dict[str, Any]) -> None:
    assert _status(operation, document) == 200


@FUZZ
@given(st.sampled_from(VALID), st.data())
def test_mutated_valid_requests_are_allowed_or_denied_cleanly(
    template: tuple[str, dict[str, Any]], data: st.DataObject
) -> None:
    operation, document = template[0], copy.deepcopy(template[1])
    node: Any = document
    # Walk down a random path and replace what is there with anything.
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        choice = data.draw(st.sampled_from(keys))
        child = node[choice]
        if isinstance(child, (dict, list)) and data.draw(st.booleans()):
            node = child
            continue
        node[choice] = data.draw(_SCALARS | json_values | documents)
        break
    assert _status(operation, document) in (200, 400, 403)


# --- generated valid expressions round-trip ----------------------------------------------

_WORD = string.ascii_lowercase + string.digits + "_"
_KEYWORDS = {"AND", "OR", "NOT", "BETWEEN", "IN", "SET", "REMOVE", "ADD", "DELETE"}
names = st.builds(
    str.__add__, st.sampled_from(string.ascii_lowercase), st.text(_WORD, max_size=5)
).filter(lambda n: n.upper() not in _KEYWORDS)
aliases = st.text(_WORD, min_size=1, max_size=5).map("#".__add__)
paths = st.tuples(
    names | aliases,
    st.lists(names.map(".".__add__) | st.integers(0, 99).map("[{}]".format), max_size=3),
).map(lambda t: t[0] + "".join(t[1]))
placeholders = st.text(_WORD, min_size=1, max_size=4).map(":".__add__)
spaces = st.sampled_from(["", " ", "  ", "\n"])


@settings(FUZZ, max_examples=150)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["SET", "remove", "Add", "DELETE"]),
            st.lists(paths, min_size=1, max_size=3),
        ),
        min_size=1,
        max_size=4,
        unique_by=lambda clause: clause[0].upper(),
    ),
    placeholders,
    spaces,
)
def test_generated_updates_round_trip(
    clauses: list[tuple[str, list[str]]], value: str, gap: str
) -> None:
    parts = []
    expected = []
    for keyword, clause_paths in clauses:
        actions = []
        for path in clause_paths:
            if keyword == "SET":
                actions.append(f"{path}{gap}={gap}{value}")
            elif keyword == "remove":
                actions.append(path)
            else:
                actions.append(f"{path} {value}")
            expected.append((keyword.upper(), path))
        parts.append(f"{keyword} " + f"{gap},{gap}".join(actions))
    parsed = parse_update(" ".join(parts))
    rendered = [(c.action, _render(c.path)) for c in parsed]
    assert rendered == expected


def _render(path: Path) -> str:
    out = ""
    for element in path.elements:
        out += f"[{element}]" if isinstance(element, int) else ("." if out else "") + element
    return out


sort_conditions = st.sampled_from(
    ["{sk} = :s", "{sk} < :s", "{sk} <= :s", "{sk} > :s", "{sk} >= :s",
     "{sk} BETWEEN :s AND :t", "begins_with({sk}, :s)", "begins_with ( {sk} , :s )"]
)  # fmt: skip


@FUZZ
@given(
    st.sampled_from(["pk", "#p", "#pk_1"]),
    st.sampled_from(["sk", "#s"]),
    st.none() | sort_conditions,
    st.booleans(),
    st.booleans(),
    st.sampled_from(["AND", "and", "And"]),
)
def test_generated_key_conditions_are_allowed(
    pk: str, sk: str, sort: str | None, reverse: bool, parens: bool, conjunction: str
) -> None:
    parts = [f"{pk} = :p"]
    if sort:
        parts.append(sort.format(sk=sk))
    if reverse:
        parts.reverse()
    if parens:
        parts = [f"({p})" for p in parts]
    body = {
        "TableName": "t_data",
        "KeyConditionExpression": f" {conjunction} ".join(parts),
        "ExpressionAttributeNames": {"#p": "pk", "#pk_1": "pk", "#s": "sk"},
        "ExpressionAttributeValues": {":p": {"S": "s#team"}, ":s": {"S": "a"}, ":t": {"S": "b"}},
    }
    assert POLICY.check("Query", body, SCOPES).scopes == {"s#team"}
    body["ExpressionAttributeValues"][":p"] = {"S": "u#bob"}
    with pytest.raises(ProxyError) as denied:
        POLICY.check("Query", body, SCOPES)
    assert denied.value.status == 403
