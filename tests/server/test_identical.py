"""Allowed requests through the proxy get byte-identical replies to direct requests.

Each request goes once through the real proxy (uvicorn, HTTP) and once straight
to DynamoDB Local signed by botocore, from the same starting state: reads need
nothing more, writes reset the partition before each of the two sends and also
compare the resulting table contents.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from .conftest import CHANGES, Direct, proxy_post
from .hostile_corpus import OWN, TABLE, TEAM, N, S

PREFIX = "bi#"


def k(sk: str, pk: str = OWN) -> dict[str, Any]:
    return {"pk": S(pk), "sk": S(PREFIX + sk)}


SEED: list[dict[str, Any]] = [
    {
        **k("1"),
        "title": S("first"),
        "n": N(1),
        "tags": {"SS": ["a", "b"]},
        "obsolete": S("x"),
        "_v": N(3),
        "_hlc": S("0001:0000:c1"),
        "_c": S("c1"),
        "_m": S("m1"),
    },
    {**k("2"), "title": S("second"), "n": N(2), "_v": N(1), "list": {"L": [S("a")]}},
    {
        **k("3"),
        "title": S("third"),
        "n": N(3),
        "_v": N(7),
        "doc": {"M": {"x": N(1)}},
        "tags": {"SS": ["a", "c"]},
    },
    {**k("4"), "title": S("fourth"), "n": N(4), "_v": N(1), "_del": {"BOOL": True}},
    {**k("1", TEAM), "title": S("shared"), "_v": N(2)},
]

RCC = {"ReturnConsumedCapacity": "TOTAL"}
OWN_P = {":p": S(OWN)}

READS: list[tuple[str, str, dict[str, Any]]] = [
    ("get", "GetItem", {"TableName": TABLE, "Key": k("1"), "ConsistentRead": True, **RCC}),
    (
        "get-projection",
        "GetItem",
        {
            "TableName": TABLE,
            "Key": k("1"),
            "ProjectionExpression": "#t, tags, #v",
            "ExpressionAttributeNames": {"#t": "title", "#v": "_v"},
        },
    ),
    ("get-missing", "GetItem", {"TableName": TABLE, "Key": k("404")}),
    ("get-shared-scope", "GetItem", {"TableName": TABLE, "Key": k("1", TEAM)}),
    (
        "query-begins-with",
        "Query",
        {
            "TableName": TABLE,
            "KeyConditionExpression": "pk = :p AND begins_with(sk, :b)",
            "ExpressionAttributeValues": {**OWN_P, ":b": S(PREFIX)},
            "ConsistentRead": True,
            **RCC,
        },
    ),
    (
        "query-page-1",
        "Query",
        {
            "TableName": TABLE,
            "KeyConditionExpression": "pk = :p AND begins_with(sk, :b)",
            "ExpressionAttributeValues": {**OWN_P, ":b": S(PREFIX)},
            "Limit": 2,
        },
    ),
    (
        "query-page-2",
        "Query",
        {
            "TableName": TABLE,
            "KeyConditionExpression": "pk = :p AND begins_with(sk, :b)",
            "ExpressionAttributeValues": {**OWN_P, ":b": S(PREFIX)},
            "ExclusiveStartKey": k("2"),
            "Limit": 2,
        },
    ),
    (
        "query-reverse-filtered",
        "Query",
        {
            "TableName": TABLE,
            "KeyConditionExpression": "pk = :p AND sk > :b",
            "FilterExpression": "#n >= :two AND attribute_not_exists(#d)",
            "ExpressionAttributeNames": {"#n": "n", "#d": "_del"},
            "ExpressionAttributeValues": {**OWN_P, ":b": S(PREFIX), ":two": N(2)},
            "ScanIndexForward": False,
        },
    ),
    (
        "query-count",
        "Query",
        {
            "TableName": TABLE,
            "KeyConditionExpression": "(#pk = :p) AND (#sk BETWEEN :a AND :z)",
            "ExpressionAttributeNames": {"#pk": "pk", "#sk": "sk"},
            "ExpressionAttributeValues": {**OWN_P, ":a": S("bi#2"), ":z": S("bi#9")},
            "Select": "COUNT",
        },
    ),
    (
        "query-changelog-after-cursor",
        "Query",
        {
            "TableName": CHANGES,
            "KeyConditionExpression": "pk = :p AND sk > :c",
            "ExpressionAttributeValues": {**OWN_P, ":c": N(0)},
            "ConsistentRead": True,
            **RCC,
        },
    ),
    (
        "get-changelog-head",
        "GetItem",
        {"TableName": CHANGES, "Key": {"pk": S(OWN), "sk": N(0)}, "ConsistentRead": True},
    ),
    (
        "batch-get",
        "BatchGetItem",
        {
            "RequestItems": {
                TABLE: {
                    "Keys": [k("1"), k("404"), k("1", TEAM)],
                    "ProjectionExpression": "pk, sk, title",
                    "ConsistentRead": True,
                }
            },
            **RCC,
        },
    ),
    (
        "transact-get",
        "TransactGetItems",
        {
            "TransactItems": [
                {"Get": {"TableName": TABLE, "Key": k("2")}},
                {"Get": {"TableName": TABLE, "Key": k("1", TEAM)}},
            ],
            **RCC,
        },
    ),
    (
        "dynamodb-validation-error",
        "Query",
        {
            "TableName": TABLE,
            "KeyConditionExpression": "pk = :p",
            "FilterExpression": "title = = :p",
            "ExpressionAttributeValues": OWN_P,
        },
    ),
]

CONDITION_NEW = {"ConditionExpression": "attribute_not_exists(pk)"}
WRITES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "put-new",
        "PutItem",
        {
            "TableName": TABLE,
            "Item": {
                **k("9"),
                "title": S("new \u00e9t\u00e9 \U0001f600"),
                "_v": N(1),
                "_hlc": S("0002:0000:c1"),
                "_c": S("c1"),
                "_m": S("m9"),
            },
            **CONDITION_NEW,
            **RCC,
        },
    ),
    (
        "put-overwrite-all-old",
        "PutItem",
        {
            "TableName": TABLE,
            "Item": {**k("1"), "title": S("replaced"), "_v": N(4)},
            "ConditionExpression": "#v = :base",
            "ExpressionAttributeNames": {"#v": "_v"},
            "ExpressionAttributeValues": {":base": N(3)},
            "ReturnValues": "ALL_OLD",
        },
    ),
    (
        "put-condition-fails",
        "PutItem",
        {
            "TableName": TABLE,
            "Item": {**k("1"), "title": S("lost")},
            **CONDITION_NEW,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        },
    ),
    (
        "update-all-new",
        "UpdateItem",
        {
            "TableName": TABLE,
            "Key": k("1"),
            "UpdateExpression": "SET title = :t, #v = #v + :one, #h = :h ADD n :one "
            "REMOVE obsolete",
            "ConditionExpression": "#v = :base",
            "ExpressionAttributeNames": {"#v": "_v", "#h": "_hlc"},
            "ExpressionAttributeValues": {
                ":t": S("updated"),
                ":one": N(1),
                ":h": S("0003:0000:c1"),
                ":base": N(3),
            },
            "ReturnValues": "ALL_NEW",
            **RCC,
        },
    ),
    (
        "update-functions-updated-old",
        "UpdateItem",
        {
            "TableName": TABLE,
            "Key": k("2"),
            "UpdateExpression": "SET #l = list_append(#l, :more), since = if_not_exists(since, :n)",
            "ExpressionAttributeNames": {"#l": "list"},
            "ExpressionAttributeValues": {":more": {"L": [S("b")]}, ":n": N(5)},
            "ReturnValues": "UPDATED_OLD",
        },
    ),
    (
        "update-nested-and-set-delete",
        "UpdateItem",
        {
            "TableName": TABLE,
            "Key": k("3"),
            "UpdateExpression": "SET doc.x = :two, doc.y = :two DELETE tags :a",
            "ExpressionAttributeValues": {":two": N(2), ":a": {"SS": ["a"]}},
            "ReturnValues": "ALL_NEW",
        },
    ),
    (
        "update-condition-fails",
        "UpdateItem",
        {
            "TableName": TABLE,
            "Key": k("1"),
            "UpdateExpression": "SET title = :t",
            "ConditionExpression": "#v = :base",
            "ExpressionAttributeNames": {"#v": "_v"},
            "ExpressionAttributeValues": {":t": S("stale"), ":base": N(1)},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        },
    ),
    (
        "update-tombstone",
        "UpdateItem",
        {
            "TableName": TABLE,
            "Key": k("2"),
            "UpdateExpression": "SET #d = :yes, #t = :ttl, #v = #v + :one",
            "ExpressionAttributeNames": {"#d": "_del", "#t": "_ttl", "#v": "_v"},
            "ExpressionAttributeValues": {
                ":yes": {"BOOL": True},
                ":ttl": N(4102444800),
                ":one": N(1),
            },
            "ReturnValues": "ALL_NEW",
        },
    ),
    (
        "dynamodb-rejects-undefined-value",
        "UpdateItem",
        {"TableName": TABLE, "Key": k("1"), "UpdateExpression": "SET title = :missing"},
    ),
    (
        "delete-all-old",
        "DeleteItem",
        {"TableName": TABLE, "Key": k("2"), "ReturnValues": "ALL_OLD", **RCC},
    ),
    (
        "batch-write",
        "BatchWriteItem",
        {
            "RequestItems": {
                TABLE: [
                    {"PutRequest": {"Item": {**k("7"), "title": S("batch"), "_v": N(1)}}},
                    {"DeleteRequest": {"Key": k("3")}},
                    {"PutRequest": {"Item": {**k("7", TEAM), "title": S("team batch")}}},
                ]
            },
            **RCC,
        },
    ),
    (
        "transact-write",
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Put": {"TableName": TABLE, "Item": {**k("8"), "_v": N(1)}, **CONDITION_NEW}},
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": k("1"),
                        "UpdateExpression": "SET #v = #v + :one",
                        "ExpressionAttributeNames": {"#v": "_v"},
                        "ExpressionAttributeValues": {":one": N(1)},
                    }
                },
                {"Delete": {"TableName": TABLE, "Key": k("2")}},
                {
                    "ConditionCheck": {
                        "TableName": TABLE,
                        "Key": k("1", TEAM),
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
            ],
            **RCC,
        },
    ),
    (
        "transact-write-cancelled",
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Put": {"TableName": TABLE, "Item": {**k("8"), "_v": N(1)}}},
                {
                    "ConditionCheck": {
                        "TableName": TABLE,
                        "Key": k("3"),
                        "ConditionExpression": "#v = :base",
                        "ExpressionAttributeNames": {"#v": "_v"},
                        "ExpressionAttributeValues": {":base": N(1)},
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
            ]
        },
    ),
]

Snapshot = list[tuple[str, list[dict[str, Any]]]]


@pytest.fixture
def reset(seeded: Direct) -> Callable[[], None]:
    """Put the ``bi#`` items of u#alice and s#team back into their seeded state."""

    def run() -> None:
        for scope in (OWN, TEAM):
            page = seeded.call(
                "Query",
                {
                    "TableName": TABLE,
                    "KeyConditionExpression": "pk = :p AND begins_with(sk, :b)",
                    "ExpressionAttributeValues": {":p": S(scope), ":b": S(PREFIX)},
                    "ConsistentRead": True,
                    "ProjectionExpression": "pk, sk",
                },
            )
            for stale in page["Items"]:
                seeded.call("DeleteItem", {"TableName": TABLE, "Key": stale})
        seeded.put(TABLE, *SEED)

    return run


def assert_identical(through: httpx.Response, direct: httpx.Response) -> None:
    assert through.status_code == direct.status_code, through.text
    assert through.content == direct.content
    for header in ("content-type", "x-amz-crc32"):
        assert through.headers.get(header) == direct.headers.get(header)
    assert through.headers["x-amzn-requestid"]


@pytest.mark.parametrize(("name", "operation", "body"), READS, ids=[r[0] for r in READS])
def test_read_is_byte_identical(
    name: str,
    operation: str,
    body: dict[str, Any],
    reset: Callable[[], None],
    seeded: Direct,
    proxy: str,
    tokens: dict[str, str | None],
    http: httpx.Client,
) -> None:
    reset()
    through = proxy_post(http, proxy, operation, body, tokens["alice"])
    assert_identical(through, seeded.send(operation, body))
    assert (through.status_code == 200) is (name != "dynamodb-validation-error")


@pytest.mark.parametrize(("name", "operation", "body"), WRITES, ids=[w[0] for w in WRITES])
def test_write_is_byte_identical_and_has_the_same_effect(
    name: str,
    operation: str,
    body: dict[str, Any],
    reset: Callable[[], None],
    seeded: Direct,
    proxy: str,
    tokens: dict[str, str | None],
    http: httpx.Client,
) -> None:
    reset()
    before = seeded.snapshot()
    through = proxy_post(http, proxy, operation, body, tokens["alice"])
    after_proxy = seeded.snapshot()
    reset()
    direct = seeded.send(operation, body)
    assert_identical(through, direct)
    assert after_proxy == seeded.snapshot()
    changed = after_proxy != before
    assert changed is (through.status_code == 200), through.text


def test_rs256_token_works_like_hs256(
    seeded: Direct, proxy: str, tokens: dict[str, str | None], http: httpx.Client
) -> None:
    body = READS[0][2]
    through = proxy_post(http, proxy, "GetItem", body, tokens["alice_rs256"])
    assert_identical(through, seeded.send("GetItem", body))
