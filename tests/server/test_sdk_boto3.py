"""boto3/botocore through the real proxy with a user's bearer token (pysync.sdk, DynamoDB Local).

The SDK sends DynamoDB's JSON protocol unsigned; the proxy authenticates the bearer
token, applies the same per-user policy as to pysync's own requests, signs and
forwards. Writes made this way reach a pysync replica through stream and changelog,
stamped by the consumer because they carry no ``_m``/``_v`` of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

import pysync
from pysync import AppSchema, CollectionSpec, HttpRemote, Sync
from pysync._sync._items import sort_key
from pysync.sdk import bearer, proxy_client
from pysync.server import StreamConsumer
from pysync.testing import MemoryBrowser

from .conftest import (
    FaultyAPI,
    N,
    S,
    StartConsumer,
    changelog,
    claims,
    consumers,
    hs256,
    wait_until,
)

SCHEMA = AppSchema(1, {"todos": CollectionSpec()})


@pytest.fixture
def table(make_tables: Callable[[str], str]) -> str:
    return make_tables("sdk")


@pytest.fixture
def endpoint(table: str, make_proxy: Callable[..., str]) -> str:
    return make_proxy(table=table) + "/dynamodb"


@pytest.fixture
async def start_consumer(api: FaultyAPI) -> AsyncIterator[StartConsumer]:
    async with consumers(api) as start:
        yield start


def key(scope: str, sk: str) -> dict[str, Any]:
    return {"pk": S(scope), "sk": S(sk)}


def test_put_get_query_transact_as_alice(endpoint: str, table: str) -> None:
    ddb = proxy_client(endpoint, hs256(claims("alice")))
    ddb.put_item(TableName=table, Item={**key("u#alice", "notes#1"), "title": S("milk")})
    got = ddb.get_item(TableName=table, Key=key("u#alice", "notes#1"), ConsistentRead=True)
    assert got["Item"] == {**key("u#alice", "notes#1"), "title": S("milk")}
    ddb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": table, "Item": {**key("u#alice", "notes#2"), "n": N(2)}}},
            {
                "Update": {
                    "TableName": table,
                    "Key": key("u#alice", "notes#1"),
                    "UpdateExpression": "SET done = :t",
                    "ExpressionAttributeValues": {":t": {"BOOL": True}},
                }
            },
        ]
    )
    page = ddb.query(
        TableName=table,
        KeyConditionExpression="pk = :p AND begins_with(sk, :ns)",
        ExpressionAttributeValues={":p": S("u#alice"), ":ns": S("notes#")},
        ConsistentRead=True,
    )
    assert [item["sk"]["S"] for item in page["Items"]] == ["notes#1", "notes#2"]
    assert page["Items"][0]["done"] == {"BOOL": True}
    ddb.close()


def test_boto3_client_and_resource_with_a_token_callable(endpoint: str, table: str) -> None:
    tokens = iter([hs256(claims("alice")), hs256(claims("alice"))])
    ddb = proxy_client(endpoint, lambda: next(tokens), session=boto3.Session())
    ddb.put_item(TableName=table, Item={**key("u#alice", "r#1"), "x": N(1)})
    with pytest.raises(StopIteration):  # the callable is asked before every request
        [ddb.get_item(TableName=table, Key=key("u#alice", "r#1")) for _ in range(2)]

    resource = boto3.resource(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="eu-west-1",
        config=Config(signature_version=UNSIGNED),
    )
    bearer(resource.meta.client, hs256(claims("alice")))
    items = resource.Table(table)
    items.put_item(Item={"pk": "u#alice", "sk": "r#2", "count": 3})
    assert items.get_item(Key={"pk": "u#alice", "sk": "r#2"})["Item"]["count"] == 3


@pytest.mark.parametrize(
    "call",
    [
        lambda ddb, t: ddb.put_item(TableName=t, Item={**key("u#bob", "x"), "a": N(1)}),
        lambda ddb, t: ddb.get_item(TableName=t, Key=key("u#bob", "x")),
        lambda ddb, t: ddb.query(
            TableName=t,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": S("u#bob")},
        ),
        lambda ddb, t: ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": t, "Item": {**key("u#alice", "ok"), "a": N(1)}}},
                {"Put": {"TableName": t, "Item": {**key("u#bob", "x"), "a": N(1)}}},
            ]
        ),
    ],
    ids=["put", "get", "query", "transact"],
)
def test_bobs_keys_are_refused_with_dynamodbs_error_shape(
    endpoint: str, table: str, call: Callable[[Any, str], Any]
) -> None:
    ddb = proxy_client(endpoint, hs256(claims("alice")))
    with pytest.raises(ClientError) as raised:
        call(ddb, table)
    error = raised.value.response
    assert error["Error"]["Code"] == "AccessDeniedException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
    ddb.close()


def test_a_bad_token_is_refused(endpoint: str, table: str) -> None:
    ddb = proxy_client(endpoint, "not-a-jwt")
    with pytest.raises(ClientError) as raised:
        ddb.get_item(TableName=table, Key=key("u#alice", "x"))
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 401
    ddb.close()


async def test_an_sdk_write_reaches_a_pysync_replica_stamped(
    endpoint: str, table: str, ddb: Any, start_consumer: StartConsumer
) -> None:
    consumer: StreamConsumer = await start_consumer(table)
    user = "alice"
    replica = await pysync.connect("app", user, SCHEMA, platform=MemoryBrowser().tab())
    remote = HttpRemote(endpoint, hs256(claims(user)))
    sync = Sync(replica, remote, table=table)
    await sync.pull()
    sdk = proxy_client(endpoint, hs256(claims(user)))
    sk = sort_key("app", "todos", "t1")
    # A plain SDK write, without pysync's system fields.
    sdk.put_item(
        TableName=table,
        Item={"pk": S("u#alice"), "sk": S(sk), "id": S("t1"), "title": S("from boto3")},
    )

    def stamped() -> dict[str, Any] | None:
        item = ddb.get_item(TableName=table, Key=key("u#alice", sk), ConsistentRead=True)
        got: dict[str, Any] = item["Item"]
        return got if got.get("_m", {}).get("S", "").startswith("stamp:") else None

    item = await wait_until(stamped)
    assert item["_v"] == N(1)  # ADD _v 1 on an item without _v

    def entries_of_key() -> list[dict[str, Any]]:
        return [e for e in changelog(ddb, table, "u#alice") if e["key"] == S(sk)]

    entries = await wait_until(lambda: len(entries_of_key()) >= 2 and entries_of_key())
    assert [e["op"]["S"] for e in entries] == ["put", "put"]  # the write, then its stamp
    assert entries[-1]["_m"] == item["_m"]
    assert consumer.stats.stamps >= 1

    async def pulled() -> Any:
        await sync.pull()
        return await replica["todos"].get("t1")

    assert await wait_until(pulled) == {"id": "t1", "title": "from boto3"}
    # A second SDK write that keeps the contract (new _m, ADD _v 1) is not stamped.
    sdk.update_item(
        TableName=table,
        Key=key("u#alice", sk),
        UpdateExpression="SET title = :t, #m = :m ADD #v :one",
        ExpressionAttributeNames={"#m": "_m", "#v": "_v"},
        ExpressionAttributeValues={":t": S("edited"), ":m": S("m-2"), ":one": N(1)},
    )

    async def edited() -> Any:
        await sync.pull()
        doc = await replica["todos"].get("t1")
        return doc if doc and doc["title"] == "edited" else None

    assert await wait_until(edited) == {"id": "t1", "title": "edited"}
    final = ddb.get_item(TableName=table, Key=key("u#alice", sk), ConsistentRead=True)["Item"]
    assert (final["_v"], final["_m"]) == (N(2), S("m-2"))
    sdk.close()
    await remote.close()
