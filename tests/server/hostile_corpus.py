"""Hostile requests the proxy must refuse, as data.

Each :class:`Case` is one request sent by ``test_hostile.py`` through the running
proxy; it must come back with ``expect`` (HTTP status, DynamoDB error name) and
a direct scan of DynamoDB Local afterwards must show no change.

The attacker is alice (scopes ``u#alice`` and ``s#team``) unless ``token``
names another entry of the ``tokens`` fixture in ``conftest.py``. The victims
are ``u#bob`` and ``s#other``; their items (``todo#1``, ``todo#2``) and
changelog entries (``sk`` 0 to 2) exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TABLE = "pysync_test"
CHANGES = f"{TABLE}_changes"
AUDIENCE = "pysync-test"
ISSUER = "https://issuer.test"
ARN = f"arn:aws:dynamodb:us-east-1:000000000000:table/{TABLE}"

OWN, TEAM, VICTIM, OTHER_SPACE = "u#alice", "s#team", "u#bob", "s#other"

DENIED = (403, "AccessDeniedException")
INVALID = (400, "ValidationException")
MALFORMED = (400, "SerializationException")
UNKNOWN_OP = (400, "UnknownOperationException")
UNAUTHENTICATED = (401, "UnrecognizedClientException")
NO_TOKEN = (401, "MissingAuthenticationTokenException")
EXPIRED = (401, "ExpiredTokenException")
TOO_LARGE = (413, "ValidationException")
THROTTLED = (429, "ThrottlingException")


@dataclass(frozen=True)
class Case:
    """One hostile request and the refusal it must get."""

    id: str
    op: str | None
    body: Any
    expect: tuple[int, str]
    token: str = "alice"
    target: str | None = None  # raw X-Amz-Target, overrides ``op``
    headers: Mapping[str, str] = field(default_factory=dict)
    chunked: bool = False  # send without Content-Length
    proxy: str = "main"  # "limited": the proxy whose rate limit is already used up


def S(value: str) -> dict[str, str]:
    return {"S": value}


def N(value: int) -> dict[str, str]:
    return {"N": str(value)}


def key(pk: str, sk: str = "todo#1") -> dict[str, Any]:
    return {"pk": S(pk), "sk": S(sk)}


def seq_key(pk: str, seq: int = 1) -> dict[str, Any]:
    return {"pk": S(pk), "sk": N(seq)}


def item(pk: str, sk: str = "todo#9", **fields: Any) -> dict[str, Any]:
    return {"pk": S(pk), "sk": S(sk), "title": S("pwned"), **fields}


def get(k: dict[str, Any], table: str = TABLE) -> dict[str, Any]:
    return {"TableName": table, "Key": k}


def put(i: dict[str, Any], table: str = TABLE, **extra: Any) -> dict[str, Any]:
    return {"TableName": table, "Item": i, **extra}


def update(
    k: dict[str, Any],
    expression: str,
    values: dict[str, Any] | None = None,
    names: dict[str, str] | None = None,
    table: str = TABLE,
) -> dict[str, Any]:
    body: dict[str, Any] = {"TableName": table, "Key": k, "UpdateExpression": expression}
    if values is not None:
        body["ExpressionAttributeValues"] = values
    if names is not None:
        body["ExpressionAttributeNames"] = names
    return body


def query(
    expression: str | None,
    values: dict[str, Any] | None = None,
    names: dict[str, str] | None = None,
    table: str = TABLE,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"TableName": table, **extra}
    if expression is not None:
        body["KeyConditionExpression"] = expression
    if values is not None:
        body["ExpressionAttributeValues"] = values
    if names is not None:
        body["ExpressionAttributeNames"] = names
    return body


def transact_write(*elements: dict[str, Any]) -> dict[str, Any]:
    return {"TransactItems": list(elements)}


def t_put(i: dict[str, Any], table: str = TABLE) -> dict[str, Any]:
    return {"Put": {"TableName": table, "Item": i}}


def t_update(k: dict[str, Any], expression: str, **extra: Any) -> dict[str, Any]:
    return {"Update": {"TableName": TABLE, "Key": k, "UpdateExpression": expression, **extra}}


def t_delete(k: dict[str, Any], table: str = TABLE) -> dict[str, Any]:
    return {"Delete": {"TableName": table, "Key": k}}


def t_check(k: dict[str, Any]) -> dict[str, Any]:
    return {
        "ConditionCheck": {
            "TableName": TABLE,
            "Key": k,
            "ConditionExpression": "attribute_exists(pk)",
        }
    }


def t_get(k: dict[str, Any], table: str = TABLE) -> dict[str, Any]:
    return {"Get": {"TableName": table, "Key": k}}


V = {":v": S("x")}
OWN_V = {":p": S(OWN)}
BOTH = {":own": S(OWN), ":victim": S(VICTIM)}

# --- another scope's key, in every operation shape --------------------------------
OTHER_KEYS = [
    Case("get-victim", "GetItem", get(key(VICTIM)), DENIED),
    Case("get-other-space", "GetItem", get(key(OTHER_SPACE)), DENIED),
    Case("get-changelog-victim", "GetItem", get(seq_key(VICTIM), CHANGES), DENIED),
    Case("get-changelog-victim-head", "GetItem", get(seq_key(VICTIM, 0), CHANGES), DENIED),
    Case("put-victim", "PutItem", put(item(VICTIM)), DENIED),
    Case("put-victim-overwrite", "PutItem", put(item(VICTIM, "todo#1")), DENIED),
    Case("put-other-space", "PutItem", put(item(OTHER_SPACE)), DENIED),
    Case("update-victim", "UpdateItem", update(key(VICTIM), "SET title = :v", V), DENIED),
    Case("update-victim-no-expression", "UpdateItem", get(key(VICTIM, "todo#9")), DENIED),
    Case("delete-victim", "DeleteItem", get(key(VICTIM)), DENIED),
    Case("delete-other-space", "DeleteItem", get(key(OTHER_SPACE)), DENIED),
    Case("query-victim", "Query", query("pk = :p", {":p": S(VICTIM)}), DENIED),
    Case(
        "query-victim-alias",
        "Query",
        query("#p = :p", {":p": S(VICTIM)}, {"#p": "pk"}),
        DENIED,
    ),
    Case(
        "query-changelog-victim",
        "Query",
        query("pk = :p AND sk > :c", {":p": S(VICTIM), ":c": N(0)}, table=CHANGES),
        DENIED,
    ),
    Case(
        "batch-get-victim",
        "BatchGetItem",
        {"RequestItems": {TABLE: {"Keys": [key(VICTIM)]}}},
        DENIED,
    ),
    Case(
        "batch-get-own-then-victim",
        "BatchGetItem",
        {"RequestItems": {TABLE: {"Keys": [key(OWN), key(TEAM), key(VICTIM, "todo#2")]}}},
        DENIED,
    ),
    Case(
        "batch-get-changelog",
        "BatchGetItem",
        {"RequestItems": {CHANGES: {"Keys": [seq_key(OWN)]}}},
        DENIED,
    ),
    Case(
        "batch-get-second-table-victim",
        "BatchGetItem",
        {
            "RequestItems": {
                TABLE: {"Keys": [key(OWN)]},
                CHANGES: {"Keys": [seq_key(VICTIM)]},
            }
        },
        DENIED,
    ),
    Case(
        "batch-write-put-victim",
        "BatchWriteItem",
        {"RequestItems": {TABLE: [{"PutRequest": {"Item": item(VICTIM)}}]}},
        DENIED,
    ),
    Case(
        "batch-write-delete-victim",
        "BatchWriteItem",
        {"RequestItems": {TABLE: [{"DeleteRequest": {"Key": key(VICTIM)}}]}},
        DENIED,
    ),
    Case(
        "batch-write-own-put-then-victim-delete",
        "BatchWriteItem",
        {
            "RequestItems": {
                TABLE: [
                    {"PutRequest": {"Item": item(OWN)}},
                    {"DeleteRequest": {"Key": key(VICTIM)}},
                ]
            }
        },
        DENIED,
    ),
    Case(
        "batch-write-changelog",
        "BatchWriteItem",
        {"RequestItems": {CHANGES: [{"DeleteRequest": {"Key": seq_key(OWN)}}]}},
        DENIED,
    ),
    Case("transact-put-victim", "TransactWriteItems", transact_write(t_put(item(VICTIM))), DENIED),
    Case(
        "transact-update-victim",
        "TransactWriteItems",
        transact_write(t_update(key(VICTIM), "SET title = :v", ExpressionAttributeValues=V)),
        DENIED,
    ),
    Case(
        "transact-delete-victim",
        "TransactWriteItems",
        transact_write(t_delete(key(VICTIM))),
        DENIED,
    ),
    Case(
        "transact-condition-check-victim",
        "TransactWriteItems",
        transact_write(t_put(item(OWN)), t_check(key(VICTIM))),
        DENIED,
    ),
    Case(
        "transact-victim-last-of-four",
        "TransactWriteItems",
        transact_write(
            t_put(item(OWN)), t_put(item(TEAM)), t_check(key(OWN)), t_delete(key(VICTIM))
        ),
        DENIED,
    ),
    Case(
        "transact-put-changelog",
        "TransactWriteItems",
        transact_write(t_put({"pk": S(OWN), "sk": N(99)}, CHANGES)),
        DENIED,
    ),
    Case(
        "transact-delete-changelog-own",
        "TransactWriteItems",
        transact_write(t_delete(seq_key(OWN), CHANGES)),
        DENIED,
    ),
    Case(
        "transact-get-victim", "TransactGetItems", {"TransactItems": [t_get(key(VICTIM))]}, DENIED
    ),
    Case(
        "transact-get-own-then-victim",
        "TransactGetItems",
        {"TransactItems": [t_get(key(OWN)), t_get(key(OTHER_SPACE))]},
        DENIED,
    ),
    Case(
        "transact-get-changelog",
        "TransactGetItems",
        {"TransactItems": [t_get(seq_key(OWN), CHANGES)]},
        DENIED,
    ),
    Case("pk-as-number", "GetItem", get({"pk": N(1), "sk": S("todo#1")}), DENIED),
    Case("pk-as-binary", "GetItem", get({"pk": {"B": "dSNib2I="}, "sk": S("todo#1")}), DENIED),
    Case("pk-as-string-set", "GetItem", get({"pk": {"SS": [OWN]}, "sk": S("todo#1")}), DENIED),
    Case(
        "pk-two-types",
        "GetItem",
        get({"pk": {"S": OWN, "N": "1"}, "sk": S("todo#1")}),
        DENIED,
    ),
    Case("pk-as-map", "GetItem", get({"pk": {"M": {"S": S(OWN)}}, "sk": S("todo#1")}), DENIED),
    Case("pk-null", "GetItem", get({"pk": {"NULL": True}, "sk": S("todo#1")}), DENIED),
    Case("pk-bare-string", "GetItem", get({"pk": OWN, "sk": S("todo#1")}), DENIED),
    Case("pk-trailing-space", "GetItem", get(key(OWN + " ")), DENIED),
    Case("pk-upper-case", "GetItem", get(key(OWN.upper())), DENIED),
    Case("pk-prefix-only", "GetItem", get(key("u#")), DENIED),
    Case("pk-empty", "GetItem", get(key("")), DENIED),
    Case("pk-victim-with-suffix", "GetItem", get(key("u#alice#bob")), DENIED),
    Case("pk-missing-in-key", "GetItem", get({"sk": S("todo#1")}), INVALID),
    Case("key-extra-attribute", "GetItem", get({**key(OWN), "title": S("x")}), INVALID),
    Case("put-item-without-pk", "PutItem", put({"sk": S("todo#9")}), DENIED),
    Case("put-item-without-sk", "PutItem", put({"pk": S(OWN)}), INVALID),
    Case(
        "wildcard-scopes-ignored",
        "GetItem",
        get(key("*")),
        DENIED,
        token="wildcard_scopes",
    ),
    Case("wildcard-token-bare-prefix", "GetItem", get(key("u#")), DENIED, token="wildcard_scopes"),
    Case(
        "wildcard-token-root-scope",
        "GetItem",
        get(key("x#root")),
        DENIED,
        token="wildcard_scopes",
    ),
]

# --- key conditions -----------------------------------------------------------------
KEY_CONDITIONS = [
    Case("kc-or", "Query", query("pk = :own OR pk = :victim", BOTH), DENIED),
    Case("kc-parenthesized-or", "Query", query("(pk = :own) OR (pk = :victim)", BOTH), DENIED),
    Case("kc-and-two-pks", "Query", query("pk = :own AND pk = :victim", BOTH), DENIED),
    Case(
        "kc-or-after-sort", "Query", query("pk = :own AND sk > :own OR pk = :victim", BOTH), DENIED
    ),
    Case("kc-not", "Query", query("NOT pk <> :own", BOTH), DENIED),
    Case("kc-not-equal", "Query", query("pk <> :own", BOTH), DENIED),
    Case("kc-begins-with-pk", "Query", query("begins_with(pk, :u)", {":u": S("u#")}), DENIED),
    Case(
        "kc-begins-with-pk-alias",
        "Query",
        query("begins_with(#k, :u)", {":u": S("u#")}, {"#k": "pk"}),
        DENIED,
    ),
    Case("kc-in", "Query", query("pk IN (:own, :victim)", BOTH), DENIED),
    Case("kc-in-single-own", "Query", query("pk IN (:own)", {":own": S(OWN)}), DENIED),
    Case(
        "kc-between",
        "Query",
        query("pk BETWEEN :a AND :b", {":a": S("u#a"), ":b": S("u#c")}),
        DENIED,
    ),
    Case("kc-greater", "Query", query("pk > :own", BOTH), DENIED),
    Case("kc-sort-only", "Query", query("sk = :s", {":s": S("todo#1")}), DENIED),
    Case(
        "kc-pk-on-sort-side",
        "Query",
        query("sk = :s AND pk > :own", {":s": S("todo#1"), ":own": S(OWN)}),
        DENIED,
    ),
    Case(
        "kc-pk-begins-with-sort-side",
        "Query",
        query("pk = :own AND begins_with(pk, :u)", {":own": S(OWN), ":u": S("u#")}),
        DENIED,
    ),
    Case(
        "kc-two-sort-conditions",
        "Query",
        query("pk = :p AND sk > :a AND sk < :b", {**OWN_V, ":a": S("a"), ":b": S("z")}),
        DENIED,
    ),
    Case(
        "kc-non-key-attribute",
        "Query",
        query("pk = :p AND title = :t", {**OWN_V, ":t": S("x")}),
        DENIED,
    ),
    Case("kc-reversed-operands", "Query", query(":p = pk", OWN_V), DENIED),
    Case("kc-path-equals-path", "Query", query("pk = sk"), DENIED),
    Case("kc-nested-pk-path", "Query", query("pk.x = :p", OWN_V), DENIED),
    Case("kc-size-function", "Query", query("size(pk) > :n", {":n": N(1)}), DENIED),
    Case(
        "kc-alias-to-other-attribute",
        "Query",
        query("#p = :p", {":p": S(OWN)}, {"#p": "owner"}),
        DENIED,
    ),
    Case(
        "kc-alias-with-space",
        "Query",
        query("#p = :p", {":p": S(VICTIM)}, {"#p": "pk "}),
        DENIED,
    ),
    Case("kc-missing", "Query", query(None, OWN_V), DENIED),
    Case("kc-missing-changelog", "Query", query(None, table=CHANGES), DENIED),
    Case("kc-not-a-string", "Query", {"TableName": TABLE, "KeyConditionExpression": 7}, INVALID),
    Case("kc-empty", "Query", query("", OWN_V), INVALID),
    Case("kc-undefined-alias", "Query", query("#p = :p", OWN_V), INVALID),
    Case("kc-undefined-value", "Query", query("pk = :nope", OWN_V), INVALID),
    Case("kc-unbalanced", "Query", query("(pk = :p", OWN_V), INVALID),
    Case("kc-injection", "Query", query("pk = :p; DROP TABLE x", OWN_V), INVALID),
    Case("kc-unicode-lookalike", "Query", query("pk \uff1d :p", OWN_V), INVALID),
    Case("kc-value-not-string-scope", "Query", query("pk = :p", {":p": N(1)}), DENIED),
    Case(
        "kc-legacy-key-conditions",
        "Query",
        {
            "TableName": TABLE,
            "KeyConditions": {
                "pk": {"ComparisonOperator": "EQ", "AttributeValueList": [S(VICTIM)]}
            },
        },
        DENIED,
    ),
    Case(
        "kc-legacy-plus-expression",
        "Query",
        {
            **query("pk = :p", OWN_V),
            "KeyConditions": {
                "pk": {"ComparisonOperator": "EQ", "AttributeValueList": [S(VICTIM)]}
            },
        },
        DENIED,
    ),
    Case(
        "query-legacy-query-filter",
        "Query",
        {**query("pk = :p", OWN_V), "QueryFilter": {}},
        DENIED,
    ),
    Case(
        "query-conditional-operator",
        "Query",
        {**query("pk = :p", OWN_V), "ConditionalOperator": "OR"},
        DENIED,
    ),
    Case(
        "query-attributes-to-get",
        "Query",
        {**query("pk = :p", OWN_V), "AttributesToGet": ["title"]},
        DENIED,
    ),
    Case(
        "query-exclusive-start-victim",
        "Query",
        query("pk = :p", OWN_V, ExclusiveStartKey=key(VICTIM)),
        DENIED,
    ),
    Case(
        "query-exclusive-start-other-own-scope",
        "Query",
        query("pk = :p", OWN_V, ExclusiveStartKey=key(TEAM)),
        DENIED,
    ),
    Case(
        "query-exclusive-start-without-pk",
        "Query",
        query("pk = :p", OWN_V, ExclusiveStartKey={"sk": S("todo#1")}),
        DENIED,
    ),
    Case("query-index", "Query", query("pk = :p", OWN_V, IndexName="gsi1"), DENIED),
    Case(
        "query-index-changelog",
        "Query",
        query("pk = :p", OWN_V, table=CHANGES, IndexName="byTime"),
        DENIED,
    ),
    Case("query-index-not-string", "Query", query("pk = :p", OWN_V, IndexName=["gsi1"]), INVALID),
    Case("query-segment-param", "Query", query("pk = :p", OWN_V, Segment=0), DENIED),
]

# --- tables, legacy parameters and request shapes ---------------------------------
TABLES_AND_SHAPES = [
    Case("other-table", "GetItem", get(key(OWN), "other_table"), DENIED),
    Case("other-table-query", "Query", query("pk = :p", OWN_V, table="secrets"), DENIED),
    Case("table-upper-case", "GetItem", get(key(OWN), TABLE.upper()), DENIED),
    Case("table-trailing-space", "GetItem", get(key(OWN), TABLE + " "), DENIED),
    Case("table-arn-get", "GetItem", get(key(OWN), ARN), DENIED),
    Case("table-arn-put", "PutItem", put(item(OWN), ARN), DENIED),
    Case(
        "table-arn-changelog-query",
        "Query",
        query("pk = :p", OWN_V, table=ARN + "_changes"),
        DENIED,
    ),
    Case("table-arn-index", "Query", query("pk = :p", OWN_V, table=ARN + "/index/gsi1"), DENIED),
    Case(
        "table-arn-batch-get", "BatchGetItem", {"RequestItems": {ARN: {"Keys": [key(OWN)]}}}, DENIED
    ),
    Case(
        "table-arn-transact-get",
        "TransactGetItems",
        {"TransactItems": [t_get(key(OWN), ARN)]},
        DENIED,
    ),
    Case("changelog-put", "PutItem", put({"pk": S(OWN), "sk": N(99)}, CHANGES), DENIED),
    Case(
        "changelog-update",
        "UpdateItem",
        update(seq_key(OWN, 0), "SET head = :n", {":n": N(0)}, table=CHANGES),
        DENIED,
    ),
    Case("changelog-delete", "DeleteItem", get(seq_key(OWN), CHANGES), DENIED),
    Case("table-missing", "GetItem", {"Key": key(OWN)}, INVALID),
    Case("table-not-string", "GetItem", {"TableName": [TABLE], "Key": key(OWN)}, INVALID),
    Case("get-attributes-to-get", "GetItem", {**get(key(OWN)), "AttributesToGet": ["a"]}, DENIED),
    Case(
        "put-expected",
        "PutItem",
        put(item(OWN), Expected={"title": {"Exists": False}}),
        DENIED,
    ),
    Case(
        "put-conditional-operator",
        "PutItem",
        put(item(OWN), ConditionalOperator="OR"),
        DENIED,
    ),
    Case(
        "update-attribute-updates",
        "UpdateItem",
        {
            **get(key(OWN)),
            "AttributeUpdates": {"_secret": {"Action": "PUT", "Value": S("x")}},
        },
        DENIED,
    ),
    Case(
        "update-expected",
        "UpdateItem",
        {**update(key(OWN), "SET title = :v", V), "Expected": {"_v": {"Exists": True}}},
        DENIED,
    ),
    Case("delete-expected", "DeleteItem", {**get(key(OWN)), "Expected": {}}, DENIED),
    Case("unknown-parameter", "GetItem", {**get(key(OWN)), "Bogus": 1}, DENIED),
    Case("get-parameter-of-put", "GetItem", {**get(key(OWN)), "Item": item(VICTIM)}, DENIED),
    Case(
        "transact-two-actions-in-one",
        "TransactWriteItems",
        {"TransactItems": [{**t_put(item(OWN)), **t_delete(key(VICTIM))}]},
        INVALID,
    ),
    Case(
        "transact-unknown-action",
        "TransactWriteItems",
        {"TransactItems": [{"Scan": {"TableName": TABLE}}]},
        INVALID,
    ),
    Case(
        "transact-legacy-in-element",
        "TransactWriteItems",
        transact_write({"Put": {"TableName": TABLE, "Item": item(OWN), "Expected": {}}}),
        DENIED,
    ),
    Case("transact-empty", "TransactWriteItems", {"TransactItems": []}, INVALID),
    Case("transact-not-list", "TransactWriteItems", {"TransactItems": {"Put": {}}}, INVALID),
    Case(
        "transact-get-with-put",
        "TransactGetItems",
        {"TransactItems": [t_put(item(OWN))]},
        INVALID,
    ),
    Case(
        "batch-write-put-and-delete-in-one",
        "BatchWriteItem",
        {
            "RequestItems": {
                TABLE: [{"PutRequest": {"Item": item(OWN)}, "DeleteRequest": {"Key": key(VICTIM)}}]
            }
        },
        INVALID,
    ),
    Case(
        "batch-write-condition-smuggled",
        "BatchWriteItem",
        {"RequestItems": {TABLE: [{"PutRequest": {"Item": item(OWN), "Expected": {}}}]}},
        DENIED,
    ),
    Case(
        "batch-get-attributes-to-get",
        "BatchGetItem",
        {"RequestItems": {TABLE: {"Keys": [key(OWN)], "AttributesToGet": ["title"]}}},
        DENIED,
    ),
    Case("batch-get-empty", "BatchGetItem", {"RequestItems": {}}, INVALID),
    Case("batch-get-keys-empty", "BatchGetItem", {"RequestItems": {TABLE: {"Keys": []}}}, INVALID),
    Case("key-not-object", "GetItem", {"TableName": TABLE, "Key": "u#alice"}, INVALID),
    Case("item-is-list", "PutItem", {"TableName": TABLE, "Item": [item(OWN)]}, INVALID),
    Case(
        "values-not-object",
        "UpdateItem",
        {**update(key(OWN), "SET title = :v"), "ExpressionAttributeValues": [":v"]},
        INVALID,
    ),
    Case(
        "names-value-not-string",
        "UpdateItem",
        update(key(OWN), "SET #t = :v", V, {"#t": 5}),
        INVALID,
    ),
]

# --- reserved (system) attributes ----------------------------------------------------
RESERVED = [
    Case("item-reserved", "PutItem", put(item(OWN, _secret=S("x"))), DENIED),
    Case("item-underscore-only", "PutItem", put({**item(OWN), "_": S("x")}), DENIED),
    Case("item-upper-case-system", "PutItem", put(item(OWN, _V=N(1))), DENIED),
    Case("item-system-lookalike", "PutItem", put(item(OWN, _vv=N(1))), DENIED),
    Case(
        "item-overwrite-own-reserved", "PutItem", put(item(OWN, "todo#1", _owner=S(VICTIM))), DENIED
    ),
    Case(
        "batch-put-reserved",
        "BatchWriteItem",
        {"RequestItems": {TABLE: [{"PutRequest": {"Item": item(OWN, _admin=S("1"))}}]}},
        DENIED,
    ),
    Case(
        "transact-put-reserved",
        "TransactWriteItems",
        transact_write(t_put(item(OWN, _role=S("admin")))),
        DENIED,
    ),
    Case("set-reserved", "UpdateItem", update(key(OWN), "SET _secret = :v", V), DENIED),
    Case(
        "set-reserved-alias",
        "UpdateItem",
        update(key(OWN), "SET #s = :v", V, {"#s": "_secret"}),
        DENIED,
    ),
    Case("remove-reserved", "UpdateItem", update(key(OWN), "REMOVE _owner"), DENIED),
    Case(
        "remove-reserved-alias",
        "UpdateItem",
        update(key(OWN), "REMOVE #o", names={"#o": "_owner"}),
        DENIED,
    ),
    Case("add-reserved", "UpdateItem", update(key(OWN), "ADD _count :n", {":n": N(1)}), DENIED),
    Case(
        "delete-reserved",
        "UpdateItem",
        update(key(OWN), "DELETE _tags :t", {":t": {"SS": ["a"]}}),
        DENIED,
    ),
    Case("set-reserved-nested", "UpdateItem", update(key(OWN), "SET _secret.a = :v", V), DENIED),
    Case(
        "set-reserved-nested-alias",
        "UpdateItem",
        update(key(OWN), "SET #a.#b = :v", V, {"#a": "_secret", "#b": "x"}),
        DENIED,
    ),
    Case("set-reserved-list-index", "UpdateItem", update(key(OWN), "SET _list[0] = :v", V), DENIED),
    Case(
        "set-second-action-reserved",
        "UpdateItem",
        update(key(OWN), "SET title = :v, _secret = :v", V),
        DENIED,
    ),
    Case(
        "remove-in-second-clause",
        "UpdateItem",
        update(key(OWN), "SET title = :v REMOVE _owner", V),
        DENIED,
    ),
    Case("lower-case-keywords", "UpdateItem", update(key(OWN), "set _secret = :v", V), DENIED),
    Case(
        "set-reserved-if-not-exists",
        "UpdateItem",
        update(key(OWN), "SET _secret = if_not_exists(_secret, :v)", V),
        DENIED,
    ),
    Case("set-pk", "UpdateItem", update(key(OWN), "SET pk = :v", {":v": S(VICTIM)}), DENIED),
    Case(
        "set-pk-alias",
        "UpdateItem",
        update(key(OWN), "SET #k = :v", {":v": S(VICTIM)}, {"#k": "pk"}),
        DENIED,
    ),
    Case("set-sk", "UpdateItem", update(key(OWN), "SET sk = :v", V), DENIED),
    Case("remove-pk", "UpdateItem", update(key(OWN), "REMOVE pk"), DENIED),
    Case(
        "transact-update-reserved",
        "TransactWriteItems",
        transact_write(t_update(key(OWN), "SET _secret = :v", ExpressionAttributeValues=V)),
        DENIED,
    ),
    Case(
        "transact-update-remove-alias",
        "TransactWriteItems",
        transact_write(t_update(key(OWN), "REMOVE #x", ExpressionAttributeNames={"#x": "_owner"})),
        DENIED,
    ),
    Case(
        "repeated-set-clause", "UpdateItem", update(key(OWN), "SET a = :v SET b = :v", V), INVALID
    ),
    Case("update-syntax-error", "UpdateItem", update(key(OWN), "SET = :v", V), INVALID),
    Case("update-empty", "UpdateItem", update(key(OWN), "", V), INVALID),
    Case(
        "update-not-string", "UpdateItem", {**get(key(OWN)), "UpdateExpression": ["SET"]}, INVALID
    ),
    Case("update-undefined-alias", "UpdateItem", update(key(OWN), "SET #x = :v", V), INVALID),
    Case(
        "update-names-key-without-hash",
        "UpdateItem",
        update(key(OWN), "SET title = :v", V, {"x": "_secret"}),
        INVALID,
    ),
    Case("update-unicode", "UpdateItem", update(key(OWN), "SET _s\u00e9cret = :v", V), INVALID),
    Case(
        "update-comment-trick",
        "UpdateItem",
        update(key(OWN), "SET a = :v -- , _x = :v", V),
        INVALID,
    ),
]

# --- operations that are never allowed ---------------------------------------------------
OPERATIONS = [
    Case("scan", "Scan", {"TableName": TABLE}, DENIED),
    Case("scan-changelog", "Scan", {"TableName": CHANGES}, DENIED),
    Case("scan-segment", "Scan", {"TableName": TABLE, "Segment": 0, "TotalSegments": 2}, DENIED),
    Case("partiql-select", "ExecuteStatement", {"Statement": f'SELECT * FROM "{TABLE}"'}, DENIED),
    Case(
        "partiql-update",
        "ExecuteStatement",
        {"Statement": f"UPDATE \"{TABLE}\" SET title='x' WHERE pk='u#bob' AND sk='todo#1'"},
        DENIED,
    ),
    Case(
        "partiql-batch",
        "BatchExecuteStatement",
        {"Statements": [{"Statement": f"DELETE FROM \"{TABLE}\" WHERE pk='u#bob'"}]},
        DENIED,
    ),
    Case(
        "partiql-transaction",
        "ExecuteTransaction",
        {"TransactStatements": [{"Statement": f'SELECT * FROM "{TABLE}"'}]},
        DENIED,
    ),
    Case(
        "create-table",
        "CreateTable",
        {
            "TableName": "evil",
            "KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "k", "AttributeType": "S"}],
            "BillingMode": "PAY_PER_REQUEST",
        },
        DENIED,
    ),
    Case("delete-table", "DeleteTable", {"TableName": TABLE}, DENIED),
    Case("delete-changelog-table", "DeleteTable", {"TableName": CHANGES}, DENIED),
    Case(
        "update-table",
        "UpdateTable",
        {"TableName": TABLE, "StreamSpecification": {"StreamEnabled": False}},
        DENIED,
    ),
    Case("describe-table", "DescribeTable", {"TableName": TABLE}, DENIED),
    Case("list-tables", "ListTables", {}, DENIED),
    Case(
        "update-ttl",
        "UpdateTimeToLive",
        {
            "TableName": TABLE,
            "TimeToLiveSpecification": {"Enabled": True, "AttributeName": "title"},
        },
        DENIED,
    ),
    Case("describe-ttl", "DescribeTimeToLive", {"TableName": TABLE}, DENIED),
    Case("create-backup", "CreateBackup", {"TableName": TABLE, "BackupName": "b"}, DENIED),
    Case(
        "export-table",
        "ExportTableToPointInTime",
        {"TableArn": ARN, "S3Bucket": "evil"},
        DENIED,
    ),
    Case(
        "put-resource-policy",
        "PutResourcePolicy",
        {"ResourceArn": ARN, "Policy": "{}"},
        DENIED,
    ),
    Case("tag-resource", "TagResource", {"ResourceArn": ARN, "Tags": []}, DENIED),
    Case("describe-limits", "DescribeLimits", {}, DENIED),
    Case("describe-endpoints", "DescribeEndpoints", {}, DENIED),
    Case(
        "update-continuous-backups",
        "UpdateContinuousBackups",
        {"TableName": TABLE, "PointInTimeRecoverySpecification": {}},
        DENIED,
    ),
    Case(
        "streams-describe-stream",
        None,
        {"StreamArn": ARN + "/stream/x"},
        DENIED,
        target="DynamoDBStreams_20120810.DescribeStream",
    ),
    Case(
        "streams-get-records",
        None,
        {"ShardIterator": "x"},
        DENIED,
        target="DynamoDBStreams_20120810.GetRecords",
    ),
    Case(
        "describe-stream-as-dynamodb",
        None,
        {},
        UNKNOWN_OP,
        target="DynamoDB_20120810.DescribeStream",
    ),
    Case("unknown-operation", None, {}, UNKNOWN_OP, target="DynamoDB_20120810.FooBar"),
    Case("missing-target", None, get(key(OWN)), UNKNOWN_OP),
    Case("old-api-version", None, get(key(OWN)), UNKNOWN_OP, target="DynamoDB_20111205.GetItem"),
    Case("target-lower-case", None, get(key(OWN)), UNKNOWN_OP, target="dynamodb_20120810.GetItem"),
    Case("target-suffix", None, get(key(OWN)), UNKNOWN_OP, target="DynamoDB_20120810.GetItem.x"),
    Case("target-empty-operation", None, get(key(OWN)), UNKNOWN_OP, target="DynamoDB_20120810."),
    Case("target-operation-only", None, get(key(OWN)), UNKNOWN_OP, target="GetItem"),
]

# --- tokens ---------------------------------------------------------------------------------
_AUTH_CASES = {
    "missing": NO_TOKEN,
    "empty_bearer": UNAUTHENTICATED,
    "basic": UNAUTHENTICATED,
    "aws_sigv4": UNAUTHENTICATED,
    "token_without_scheme": UNAUTHENTICATED,
    "two_parts": UNAUTHENTICATED,
    "garbage": UNAUTHENTICATED,
    "not_json_header": UNAUTHENTICATED,
    "forged_secret": UNAUTHENTICATED,
    "tampered_payload": UNAUTHENTICATED,
    "expired": EXPIRED,
    "not_yet_valid": UNAUTHENTICATED,
    "wrong_audience": UNAUTHENTICATED,
    "missing_audience": UNAUTHENTICATED,
    "wrong_issuer": UNAUTHENTICATED,
    "missing_issuer": UNAUTHENTICATED,
    "missing_exp": UNAUTHENTICATED,
    "missing_sub": UNAUTHENTICATED,
    "empty_sub": UNAUTHENTICATED,
    "numeric_sub": UNAUTHENTICATED,
    "scopes_not_list": UNAUTHENTICATED,
    "scopes_not_strings": UNAUTHENTICATED,
    "alg_none": UNAUTHENTICATED,
    "alg_None": UNAUTHENTICATED,
    "alg_none_with_sig": UNAUTHENTICATED,
    "hs256_with_public_pem": UNAUTHENTICATED,
    "hs256_with_jwks_json": UNAUTHENTICATED,
    "hs512_real_secret": UNAUTHENTICATED,
    "hs384_real_secret": UNAUTHENTICATED,
    "rs256_other_key_same_kid": UNAUTHENTICATED,
    "rs256_unknown_kid": UNAUTHENTICATED,
    "rs256_no_kid": UNAUTHENTICATED,
    "rs256_embedded_jwk": UNAUTHENTICATED,
    "rs256_jku": UNAUTHENTICATED,
    "rs256_expired": EXPIRED,
    "rs256_wrong_audience": UNAUTHENTICATED,
    "es256": UNAUTHENTICATED,
}
# Every bad token tries a write to alice's own partition: it would succeed with a good token.
TOKENS = [
    Case(f"token-{name}", "PutItem", put(item(OWN)), expect, token=name)
    for name, expect in _AUTH_CASES.items()
]

# --- bodies, headers, size and rate --------------------------------------------------------
_OWN_PUT = b'{"TableName":"pysync_test","Item":{"pk":{"S":"u#alice"},"sk":{"S":"todo#9"}}}'
BODIES = [
    Case("body-truncated-json", "PutItem", _OWN_PUT[:-1], MALFORMED),
    Case("body-empty", "PutItem", b"", MALFORMED),
    Case("body-array", "PutItem", b"[]", MALFORMED),
    Case("body-string", "PutItem", b'"PutItem"', MALFORMED),
    Case("body-null", "PutItem", b"null", MALFORMED),
    Case("body-number", "PutItem", b"1", MALFORMED),
    Case("body-invalid-utf8", "PutItem", _OWN_PUT.replace(b"todo#9", b"todo\xff"), MALFORMED),
    Case("body-utf16", "PutItem", _OWN_PUT.decode().encode("utf-16"), MALFORMED),
    Case("body-bom", "PutItem", b"\xef\xbb\xbf" + _OWN_PUT, MALFORMED),
    Case("body-nan", "Query", b'{"TableName":"pysync_test","Limit":NaN}', MALFORMED),
    Case("body-infinity", "Query", b'{"TableName":"pysync_test","Limit":-Infinity}', MALFORMED),
    Case("body-trailing-garbage", "PutItem", _OWN_PUT + b"x", MALFORMED),
    Case("body-two-documents", "PutItem", _OWN_PUT + _OWN_PUT, MALFORMED),
    Case(
        "duplicate-table-name",
        "GetItem",
        b'{"TableName":"pysync_test","TableName":"other","Key":'
        b'{"pk":{"S":"u#alice"},"sk":{"S":"todo#1"}}}',
        MALFORMED,
    ),
    Case(
        "duplicate-pk-in-key",
        "DeleteItem",
        b'{"TableName":"pysync_test","Key":{"pk":{"S":"u#alice"},"pk":{"S":"u#bob"},'
        b'"sk":{"S":"todo#1"}}}',
        MALFORMED,
    ),
    Case(
        "duplicate-type-in-pk",
        "DeleteItem",
        b'{"TableName":"pysync_test","Key":{"pk":{"S":"u#alice","S":"u#bob"},"sk":{"S":"todo#1"}}}',
        MALFORMED,
    ),
    Case(
        "duplicate-value-placeholder",
        "Query",
        b'{"TableName":"pysync_test","KeyConditionExpression":"pk = :p",'
        b'"ExpressionAttributeValues":{":p":{"S":"u#alice"},":p":{"S":"u#bob"}}}',
        MALFORMED,
    ),
    Case(
        "duplicate-alias",
        "UpdateItem",
        b'{"TableName":"pysync_test","Key":{"pk":{"S":"u#alice"},"sk":{"S":"todo#1"}},'
        b'"UpdateExpression":"SET #a = :v","ExpressionAttributeValues":{":v":{"S":"x"}},'
        b'"ExpressionAttributeNames":{"#a":"title","#a":"_secret"}}',
        MALFORMED,
    ),
    Case("deep-nesting", "PutItem", b"[" * 100_000 + b"]" * 100_000, TOO_LARGE),
    Case("deep-nesting-within-limit", "PutItem", b"[" * 30_000 + b"]" * 30_000, MALFORMED),
    Case(
        "lone-surrogate",
        "PutItem",
        b'{"TableName":"pysync_test","Item":{"pk":{"S":"u#alice"},"sk":{"S":"\\ud800"}}}',
        MALFORMED,
    ),
    Case(
        "escaped-key-is-still-checked",
        "GetItem",
        b'{"TableName":"pysync_test","Key":{"p\\u006b":{"S":"u#bob"},"sk":{"S":"todo#1"}}}',
        DENIED,
    ),
    Case(
        "escaped-reserved-attribute",
        "PutItem",
        b'{"TableName":"pysync_test","Item":{"pk":{"S":"u#alice"},"sk":{"S":"todo#9"},'
        b'"\\u005fsecret":{"S":"x"}}}',
        DENIED,
    ),
    Case(
        "content-type-json",
        "PutItem",
        _OWN_PUT,
        MALFORMED,
        headers={"Content-Type": "application/json"},
    ),
    Case(
        "content-type-text", "PutItem", _OWN_PUT, MALFORMED, headers={"Content-Type": "text/plain"}
    ),
    Case(
        "content-type-form",
        "PutItem",
        _OWN_PUT,
        MALFORMED,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    Case(
        "content-type-json-1.1",
        "PutItem",
        _OWN_PUT,
        MALFORMED,
        headers={"Content-Type": "application/x-amz-json-1.1"},
    ),
    Case("content-type-empty", "PutItem", _OWN_PUT, MALFORMED, headers={"Content-Type": ""}),
    Case(
        "oversized-body",
        "PutItem",
        put(item(OWN, blob=S("x" * 70_000))),
        TOO_LARGE,
    ),
    Case(
        "oversized-body-chunked",
        "PutItem",
        put(item(OWN, blob=S("x" * 70_000))),
        TOO_LARGE,
        chunked=True,
    ),
    Case("rate-limited-put", "PutItem", put(item(OWN)), THROTTLED, proxy="limited"),
    Case(
        "rate-limited-transact",
        "TransactWriteItems",
        transact_write(t_put(item(OWN)), t_delete(key(OWN, "todo#1"))),
        THROTTLED,
        proxy="limited",
    ),
]

# --- numbers: ASCII, finite, in range, everywhere the proxy reads or forwards one ---------
_OWN_QUERY = (
    b'{"TableName":"pysync_test","KeyConditionExpression":"pk = :p",'
    b'"ExpressionAttributeValues":{":p":{"S":"u#alice"}},"Limit":%s}'
)


def _own_put_with(value: dict[str, Any]) -> dict[str, Any]:
    return put(item(OWN, n=value))


def _own_transaction(token: Any) -> dict[str, Any]:
    return {**transact_write(t_put(item(OWN))), "ClientRequestToken": token}


NUMBERS = [
    # JSON numbers: Query's Limit is the only numeric parameter the proxy allows.
    Case("limit-1e400-becomes-infinity", "Query", _OWN_QUERY % b"1e400", INVALID),
    Case("limit-minus-1e400", "Query", _OWN_QUERY % b"-1e400", INVALID),
    Case("limit-fraction", "Query", _OWN_QUERY % b"1.5", INVALID),
    Case("limit-exponent", "Query", _OWN_QUERY % b"1e2", INVALID),
    Case("limit-integral-float", "Query", _OWN_QUERY % b"10.0", INVALID),
    Case("limit-underflow-to-zero", "Query", _OWN_QUERY % b"1e-400", INVALID),
    Case("limit-zero", "Query", _OWN_QUERY % b"0", INVALID),
    Case("limit-negative", "Query", _OWN_QUERY % b"-1", INVALID),
    Case("limit-beyond-java-int", "Query", _OWN_QUERY % b"2147483648", INVALID),
    Case("limit-beyond-64-bits", "Query", _OWN_QUERY % (b"1" + b"0" * 30), INVALID),
    Case("limit-4000-digits", "Query", _OWN_QUERY % (b"9" * 4000), INVALID),
    Case("limit-true", "Query", _OWN_QUERY % b"true", INVALID),
    Case("limit-string", "Query", _OWN_QUERY % b'"10"', INVALID),
    Case("limit-null", "Query", _OWN_QUERY % b"null", INVALID),
    Case(
        "number-beyond-64-bits-elsewhere",
        "GetItem",
        b'{"TableName":"pysync_test","Key":{"pk":{"S":"u#alice"},"sk":{"S":"todo#1"}},'
        b'"ConsistentRead":123456789012345678901234567890}',
        INVALID,
    ),
    Case(
        "float-elsewhere",
        "GetItem",
        b'{"TableName":"pysync_test","Key":{"pk":{"S":"u#alice"},"sk":{"S":"todo#1"}},'
        b'"ConsistentRead":1e400}',
        INVALID,
    ),
    # N values: DynamoDB (Java BigDecimal) reads Unicode digits; the proxy takes ASCII only.
    Case("n-arabic-indic-digits", "PutItem", _own_put_with({"N": "\u0661\u0662"}), INVALID),
    Case("n-fullwidth-digit", "PutItem", _own_put_with({"N": "\uff11"}), INVALID),
    Case("n-superscript-two", "PutItem", _own_put_with({"N": "\u00b2"}), INVALID),
    Case("n-devanagari-exponent", "PutItem", _own_put_with({"N": "1e\u0967"}), INVALID),
    Case("n-infinity", "PutItem", _own_put_with({"N": "Infinity"}), INVALID),
    Case("n-nan", "PutItem", _own_put_with({"N": "NaN"}), INVALID),
    Case("n-hex", "PutItem", _own_put_with({"N": "0x10"}), INVALID),
    Case("n-underscores", "PutItem", _own_put_with({"N": "1_000"}), INVALID),
    Case("n-space", "PutItem", _own_put_with({"N": " 1"}), INVALID),
    Case("n-empty", "PutItem", _own_put_with({"N": ""}), INVALID),
    Case("n-overflow", "PutItem", _own_put_with({"N": "1E126"}), INVALID),
    Case("n-underflow", "PutItem", _own_put_with({"N": "1E-131"}), INVALID),
    Case("n-huge-exponent", "PutItem", _own_put_with({"N": "1e" + "9" * 30}), INVALID),
    Case("n-39-digits", "PutItem", _own_put_with({"N": "1" * 39}), INVALID),
    Case("n-too-long", "PutItem", _own_put_with({"N": "0" * 2000 + "1"}), INVALID),
    Case("ns-one-unicode-member", "PutItem", _own_put_with({"NS": ["1", "\u0663"]}), INVALID),
    Case(
        "n-nested-in-map-and-list",
        "PutItem",
        _own_put_with({"M": {"a": {"L": [S("x"), {"N": "\u0663"}]}}}),
        INVALID,
    ),
    Case(
        "n-in-update-value",
        "UpdateItem",
        update(key(OWN), "SET n = :n", {":n": {"N": "\u0663"}}),
        INVALID,
    ),
    Case(
        "n-in-key-condition-value",
        "Query",
        query("pk = :p AND sk > :c", {":p": S(OWN), ":c": {"N": "\u0661"}}, table=CHANGES),
        INVALID,
    ),
    Case(
        "n-in-changelog-key",
        "GetItem",
        get(seq_key(OWN) | {"sk": {"N": "\u0661"}}, CHANGES),
        INVALID,
    ),
    Case(
        "n-in-batch-put",
        "BatchWriteItem",
        {"RequestItems": {TABLE: [{"PutRequest": {"Item": item(OWN, n={"N": "\u0663"})}}]}},
        INVALID,
    ),
    Case(
        "n-in-transaction-put",
        "TransactWriteItems",
        transact_write(t_put(item(OWN, n={"N": "\u0663"}))),
        INVALID,
    ),
    # ClientRequestToken: the proxy replaces it, within DynamoDB's own bounds.
    Case("request-token-37-chars", "TransactWriteItems", _own_transaction("x" * 37), INVALID),
    Case("request-token-empty", "TransactWriteItems", _own_transaction(""), INVALID),
    Case("request-token-number", "TransactWriteItems", _own_transaction(5), INVALID),
    Case("request-token-list", "TransactWriteItems", _own_transaction(["t"]), INVALID),
    # Token claims: exp must be a finite JSON number (PyJWT alone takes "9999999999").
    Case("token-exp_as_string", "PutItem", put(item(OWN)), UNAUTHENTICATED, token="exp_as_string"),
    Case("token-exp_too_large", "PutItem", put(item(OWN)), UNAUTHENTICATED, token="exp_too_large"),
]

CORPUS: list[Case] = [
    *OTHER_KEYS,
    *KEY_CONDITIONS,
    *TABLES_AND_SHAPES,
    *RESERVED,
    *OPERATIONS,
    *TOKENS,
    *BODIES,
    *NUMBERS,
]
