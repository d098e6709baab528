"""MemoryDynamo answers like DynamoDB Local: the same requests get the same responses.

Every request goes to both; the responses (or errors, with their bodies) must be
equal, up to what is not the fake's business: ``ConsumedCapacity`` (DynamoDB
Local adds it unasked), the order of set members, and in the changelog the
stream consumer's bookkeeping (``ts``, ``sseq``, ``_ttl``, the head's
``shards``). The client sees DynamoDB Local's answers, so the scenarios run as
they would for real.

* The request shapes pysync sends come from pysync itself: devices sync
  through a :class:`Tee` (conflicts, transactions, cancellations with ALL_OLD,
  lost replies, increments, tombstones, base syncs).
* Edge cases (validation errors, paging, idempotency tokens...) are sent raw.
* The fake's changelog is compared with what the real stream consumer writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import pysync
from pysync import AppSchema, CollectionSpec, RemoteError, Sync
from pysync.server import (
    Changelog,
    DynamoDBAPI,
    DynamoDBLocal,
    ProxyConfig,
    Signer,
    StreamConsumer,
    create_tables,
    dynamodb_client,
    local_session,
)
from pysync.testing import MemoryBrowser, MemoryDynamo

from .conftest import Direct

TABLE = "pysync_parity"
LOG_TABLE = "pysync_parity_log"
SCHEMA = AppSchema(1, {"todos": CollectionSpec()})
Outcome = tuple[Any, ...]


@pytest.fixture(scope="module")
def tables(dynamodb: DynamoDBLocal) -> None:
    client = dynamodb_client(ProxyConfig(dynamodb_endpoint=dynamodb.endpoint), local_session())
    try:
        for name in (TABLE, LOG_TABLE):
            create_tables(client, name)
    finally:
        client.close()


def local_call(direct: Direct, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
    """One request to DynamoDB Local, answered or raised as HttpRemote would."""
    response = direct.send(operation, payload)
    body: dict[str, Any] = response.json() if response.content else {}
    if response.status_code == 200:
        return body
    kind = str(body.get("__type", "")).rsplit("#", 1)[-1]
    message = str(body.get("message") or body.get("Message") or "")
    raise RemoteError(kind, message, response.status_code, body)


def normalized(document: Any, changelog: bool = False) -> Any:
    """``document`` without what the fake need not reproduce (see the module docstring)."""
    if isinstance(document, list):
        return [normalized(value, changelog) for value in document]
    if not isinstance(document, dict):
        return document
    if len(document) == 1 and next(iter(document)) in ("SS", "NS", "BS"):
        ((kind, members),) = document.items()
        return {kind: sorted(members)}
    skip = {"ConsumedCapacity"}
    if changelog and "pk" in document and "sk" in document:
        skip |= {"ts", "sseq", "_ttl", "shards"}
    return {k: normalized(v, changelog) for k, v in document.items() if k not in skip}


async def outcome(
    call: Any, operation: str, payload: dict[str, Any], changelog: bool = False
) -> tuple[Outcome, dict[str, Any] | RemoteError]:
    try:
        result = call(operation, payload)
        if asyncio.iscoroutine(result):
            result = await result
    except RemoteError as error:
        body = normalized(error.body, changelog)
        return ("error", error.code, error.status, body), error
    return ("ok", normalized(result, changelog)), result


def reads_changelog(payload: dict[str, Any]) -> bool:
    return str(payload.get("TableName", "")).endswith("_changes")


class Tee:
    """A Remote that sends every request to DynamoDB Local and to a MemoryDynamo.

    It fails the test at the first difference, and answers with DynamoDB Local's
    response. Requests to the changelog table (``changelog``) go to the fake
    alone (``"fake"``: nothing fills DynamoDB Local's), to both (``"compare"``),
    or to both once DynamoDB Local's head has caught up with the fake's
    (``"wait"``: a real stream consumer fills it).
    """

    def __init__(self, direct: Direct, fake: MemoryDynamo, changelog: str = "compare") -> None:
        self.direct = direct
        self.fake = fake
        self.changelog = changelog
        self.lose = 0
        self.compared: list[Outcome] = []

    def codes(self) -> set[str]:
        return {o[1] for o in self.compared if o[0] == "error"}

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        changelog = reads_changelog(payload)
        if changelog and self.changelog == "fake":
            return await self.fake.call(operation, payload)
        if changelog and self.changelog == "wait":
            await self._catch_up(payload)
        real, answer = await outcome(
            lambda o, p: local_call(self.direct, o, p), operation, payload, changelog
        )
        mine, _ = await outcome(self.fake.call, operation, payload, changelog)
        assert mine == real, (
            f"{operation} {payload}\nDynamoDB Local: {real}\nMemoryDynamo:   {mine}"
        )
        self.compared.append(real)
        if self.lose and operation != "Query":
            self.lose -= 1
            raise RemoteError("NetworkError", "reply lost on purpose", 0, {})
        if isinstance(answer, RemoteError):
            raise answer
        return answer

    async def _catch_up(self, payload: dict[str, Any]) -> None:
        scope = (
            payload["Key"]["pk"] if "Key" in payload else payload["ExpressionAttributeValues"][":p"]
        )
        table = payload["TableName"]
        want = self._head(self.fake.handle, table, scope)
        for _ in range(1000):
            if self._head(lambda o, p: local_call(self.direct, o, p), table, scope) >= want:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"the stream consumer did not reach head {want} of {scope}")

    @staticmethod
    def _head(call: Callable[[str, dict[str, Any]], dict[str, Any]], table: str, scope: Any) -> int:
        got = call(
            "GetItem",
            {"TableName": table, "Key": {"pk": scope, "sk": {"N": "0"}}, "ConsistentRead": True},
        )
        return int(got.get("Item", {}).get("head", {}).get("N", "0"))


async def no_sleep(_: float) -> None:
    return None


class Devices:
    """Devices of one fresh user, all syncing through one Tee."""

    def __init__(self, tee: Tee, table: str) -> None:
        self.tee = tee
        self.table = table
        self.user = f"parity-{uuid.uuid4().hex[:10]}"
        self.scope = f"u#{self.user}"
        self.clock = itertools.count(1)

    async def new(self, **options: Any) -> tuple[pysync.Replica, Sync]:
        browser = MemoryBrowser(now_ms=1_800_000_000_000 + next(self.clock) * 1000)
        replica = await pysync.connect("app", self.user, SCHEMA, platform=browser.tab())
        sync = Sync(replica, self.tee, table=self.table, sleep=no_sleep, **options)
        return replica, sync


def partition(call: Callable[[str, dict[str, Any]], Any], table: str, scope: str) -> Any:
    items: list[Any] = []
    request: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :p",
        "ExpressionAttributeValues": {":p": {"S": scope}},
        "ConsistentRead": True,
    }
    while True:
        page = call("Query", request)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


async def run_scenarios(devices: Devices) -> tuple[pysync.Replica, pysync.Replica]:
    """Everything pysync sends: creates, patches, increments, deletes, transactions,
    conflicts (single and transactional), lost replies and base syncs."""
    a, sa = await devices.new()
    b, sb = await devices.new(strategy="server")
    todos_a, todos_b = a["todos"], b["todos"]
    await todos_a.put({"id": "t1", "title": "milk", "n": 0, "tags": ["x", "y"]})
    await todos_a.put({"id": 7, "title": "int id", "price": 0.1})
    await sa.sync()
    await todos_a.patch("t1", {"title": "oat milk"})
    await todos_a.increment("t1", "n", 2)
    await sa.push()
    await todos_a.increment("t1", "n", 3)  # increment alone: no version condition
    await sa.push()
    await sb.sync()  # base sync
    # Same field on both sides: a failed condition with ALL_OLD.
    await todos_a.patch("t1", {"title": "A"})
    await todos_b.patch("t1", {"title": "B"})
    await sa.push()
    assert (await sb.push()).conflicts == 1
    # A transaction, then a conflicting one: cancellation reasons with ALL_OLD.
    async with a.transaction() as tx:
        tx.put("todos", {"id": "x", "n": 1})
        tx.patch("todos", "t1", {"title": "tx"})
        tx.increment("todos", 7, "likes", 1)
    await sa.push()
    async with b.transaction() as tx:
        tx.patch("todos", "t1", {"title": "B again"})
        tx.put("todos", {"id": "x", "n": 2})
    assert (await sb.push()).conflicts >= 1
    await sb.sync()
    await sa.sync()
    # Lost replies: a put, a patch and a transaction, each retried.
    await todos_a.put({"id": "lost", "v": 1})
    devices.tee.lose = 1
    assert (await sa.push()).pushed == 1
    await todos_a.patch("lost", {"v": 2})
    devices.tee.lose = 1
    assert (await sa.push()).pushed == 1
    async with a.transaction() as tx:
        tx.put("todos", {"id": "lost2", "v": 1})
        tx.patch("todos", "lost", {"v": 3})
    devices.tee.lose = 1
    assert (await sa.push()).pushed == 2
    # Deletes are tombstones; an increment of a deleted record fails its condition.
    await sb.sync()
    await todos_a.delete("x")
    await sa.push()
    await todos_b.increment("x", "n", 5)
    await sb.push()
    # A create that exists already (attribute_not_exists fails).
    await todos_b.put({"id": "both", "from": "b"})
    await todos_a.put({"id": "both", "from": "a"})
    await sb.push()
    await sa.push()
    for sync in (sa, sb, sa, sb):
        await sync.sync()
    return a, b


async def test_pysync_requests_get_the_same_answers(tables: None, direct: Direct) -> None:
    fake = MemoryDynamo(tables=(TABLE,))
    tee = Tee(direct, fake, changelog="fake")
    devices = Devices(tee, TABLE)
    a, b = await run_scenarios(devices)
    assert len(tee.compared) >= 20
    assert {"ConditionalCheckFailedException", "TransactionCanceledException"} <= tee.codes()
    operations = {operation for operation, _ in fake.calls}
    assert {"PutItem", "UpdateItem", "TransactWriteItems", "GetItem", "Query"} <= operations
    real = partition(lambda o, p: local_call(direct, o, p), TABLE, devices.scope)
    assert normalized(fake.items(TABLE, devices.scope)) == normalized(real)
    assert await a["todos"].query() == await b["todos"].query()
    a.close()
    b.close()


def key(scope: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": scope}, "sk": {"S": sk}}


def edge_requests(scope: str) -> list[tuple[str, dict[str, Any]]]:
    """Raw requests around the shapes pysync uses, including wrong ones."""
    t, changes = TABLE, f"{TABLE}_changes"
    log = f"{scope}-log"  # no data writes: the fake's own changelog stays out of it
    k = lambda sk: key(scope, sk)  # noqa: E731
    names_v = {"#v": "_v"}
    fail_old = {"ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
    return [
        ("GetItem", {"TableName": t, "Key": k("a"), "ConsistentRead": True}),
        (
            "PutItem",
            {
                "TableName": t,
                "Item": {**k("a"), "_v": {"N": "1.0"}, "f": {"N": "0.10"}, "g": {"N": "1e2"}},
                "ConditionExpression": "attribute_not_exists(pk)",
                **fail_old,
            },
        ),
        ("GetItem", {"TableName": t, "Key": k("a")}),
        # Condition failures, with and without ALL_OLD.
        (
            "PutItem",
            {
                "TableName": t,
                "Item": {**k("a"), "_v": {"N": "1"}},
                "ConditionExpression": "attribute_not_exists(pk)",
                **fail_old,
            },
        ),
        (
            "PutItem",
            {
                "TableName": t,
                "Item": {**k("a"), "_v": {"N": "1"}},
                "ConditionExpression": "attribute_not_exists(pk)",
            },
        ),
        (
            "PutItem",
            {
                "TableName": t,
                "Item": {**k("a"), "_v": {"N": "2"}, "s": {"S": "x"}},
                "ConditionExpression": "#v = :base",
                "ExpressionAttributeNames": names_v,
                "ExpressionAttributeValues": {":base": {"N": "1"}},
                **fail_old,
            },
        ),
        (
            "UpdateItem",
            {
                "TableName": t,
                "Key": k("a"),
                "UpdateExpression": "SET #s0 = :s0, #s1 = :s1 ADD #v :one, #a0 :a0",
                "ConditionExpression": "#v = :base AND attribute_not_exists(#del)",
                "ExpressionAttributeNames": {
                    **names_v,
                    "#s0": "s",
                    "#s1": "_m",
                    "#a0": "n",
                    "#del": "_del",
                },
                "ExpressionAttributeValues": {
                    ":s0": {"S": "y"},
                    ":s1": {"S": "m1"},
                    ":one": {"N": "1"},
                    ":a0": {"N": "0.1"},
                    ":base": {"N": "1"},
                },
                "ReturnValues": "ALL_NEW",
                **fail_old,
            },
        ),
        (
            "UpdateItem",
            {
                "TableName": t,
                "Key": k("a"),
                "UpdateExpression": "SET #s0 = :s0 ADD #v :one, #a0 :a0",
                "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(#del)",
                "ExpressionAttributeNames": {**names_v, "#s0": "_m", "#a0": "n", "#del": "_del"},
                "ExpressionAttributeValues": {
                    ":s0": {"S": "m2"},
                    ":one": {"N": "1"},
                    ":a0": {"N": "0.2"},
                },
                "ReturnValues": "ALL_NEW",
                **fail_old,
            },
        ),
        # The same update on a missing item fails; without a condition it creates one.
        (
            "UpdateItem",
            {
                "TableName": t,
                "Key": k("missing"),
                "UpdateExpression": "ADD #v :one",
                "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(#del)",
                "ExpressionAttributeNames": {**names_v, "#del": "_del"},
                "ExpressionAttributeValues": {":one": {"N": "1"}},
                **fail_old,
            },
        ),
        (
            "UpdateItem",
            {
                "TableName": t,
                "Key": k("upsert"),
                "UpdateExpression": "SET title = :t ADD #v :one",
                "ExpressionAttributeNames": names_v,
                "ExpressionAttributeValues": {":t": {"S": "new"}, ":one": {"N": "1"}},
                "ReturnValues": "ALL_OLD",
            },
        ),
        (
            "UpdateItem",
            {
                "TableName": t,
                "Key": k("upsert"),
                "UpdateExpression": "SET title = :t",
                "ExpressionAttributeValues": {":t": {"S": "again"}},
                "ReturnValues": "ALL_NEW",
            },
        ),
        # Conditions: <> on a missing attribute, NOT, OR, parentheses, mixed types.
        (
            "PutItem",
            {
                "TableName": t,
                "Item": {**k("c"), "_v": {"N": "1"}},
                "ConditionExpression": "#m <> :mid",
                "ExpressionAttributeNames": {"#m": "_m"},
                "ExpressionAttributeValues": {":mid": {"S": "m"}},
                "ReturnValues": "ALL_OLD",
            },
        ),
        (
            "PutItem",
            {
                "TableName": t,
                "Item": {**k("c"), "_v": {"N": "2"}},
                "ConditionExpression": "NOT (#v = :b) OR (attribute_not_exists(pk) AND #v < :b)",
                "ExpressionAttributeNames": names_v,
                "ExpressionAttributeValues": {":b": {"N": "1"}},
                **fail_old,
            },
        ),
        (
            "PutItem",
            {
                "TableName": t,
                "Item": {**k("c"), "_v": {"N": "3"}},
                "ConditionExpression": "#v >= :b and #v <= :b and #v > :z and #v <> :s",
                "ExpressionAttributeNames": names_v,
                "ExpressionAttributeValues": {
                    ":b": {"N": "2"},
                    ":z": {"N": "-1"},
                    ":s": {"S": "2"},
                },
                "ReturnValues": "ALL_OLD",
            },
        ),
        (
            "PutItem",
            {
                "TableName": t,
                "Item": {**k("c"), "_v": {"N": "4"}},
                "ConditionExpression": "#v < :s",
                "ExpressionAttributeNames": names_v,
                "ExpressionAttributeValues": {":s": {"S": "9"}},
                **fail_old,
            },
        ),
        # Deletes.
        (
            "DeleteItem",
            {
                "TableName": t,
                "Key": k("c"),
                "ConditionExpression": "attribute_not_exists(pk)",
                **fail_old,
            },
        ),
        ("DeleteItem", {"TableName": t, "Key": k("c"), "ReturnValues": "ALL_OLD"}),
        ("DeleteItem", {"TableName": t, "Key": k("c"), "ReturnValues": "ALL_OLD"}),
        (
            "DeleteItem",
            {"TableName": t, "Key": k("c"), "ConditionExpression": "attribute_exists(pk)"},
        ),
        # Transactions: success, cancellation with mixed reasons, idempotency tokens.
        (
            "TransactWriteItems",
            {
                "TransactItems": [
                    {
                        "Put": {
                            "TableName": t,
                            "Item": {**k(f"tx{i}"), "_v": {"N": "1"}},
                            "ConditionExpression": "attribute_not_exists(pk)",
                            **fail_old,
                        }
                    }
                    for i in range(3)
                ],
                "ClientRequestToken": f"{scope}-1"[-36:],
            },
        ),
        (
            "TransactWriteItems",
            {
                "TransactItems": [
                    {
                        "Put": {
                            "TableName": t,
                            "Item": {**k(f"tx{i}"), "_v": {"N": "1"}},
                            "ConditionExpression": "attribute_not_exists(pk)",
                            **fail_old,
                        }
                    }
                    for i in range(3)
                ],
                "ClientRequestToken": f"{scope}-1"[-36:],
            },
        ),
        (
            "TransactWriteItems",
            {
                "TransactItems": [{"Put": {"TableName": t, "Item": k("other")}}],
                "ClientRequestToken": f"{scope}-1"[-36:],
            },
        ),
        (
            "TransactWriteItems",
            {
                "TransactItems": [
                    {
                        "Update": {
                            "TableName": t,
                            "Key": k("tx0"),
                            "UpdateExpression": "SET f = :f ADD #v :one",
                            "ConditionExpression": "#v = :base",
                            "ExpressionAttributeNames": names_v,
                            "ExpressionAttributeValues": {
                                ":f": {"S": "x"},
                                ":one": {"N": "1"},
                                ":base": {"N": "7"},
                            },
                            **fail_old,
                        }
                    },
                    {
                        "Put": {
                            "TableName": t,
                            "Item": k("tx9"),
                            "ConditionExpression": "attribute_not_exists(pk)",
                            **fail_old,
                        }
                    },
                    {
                        "ConditionCheck": {
                            "TableName": t,
                            "Key": k("tx1"),
                            "ConditionExpression": "attribute_not_exists(pk)",
                            **fail_old,
                        }
                    },
                    {
                        "Delete": {
                            "TableName": t,
                            "Key": k("tx2"),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ],
                "ClientRequestToken": f"{scope}-2"[-36:],
            },
        ),
        # A token whose transaction was cancelled is free for another one.
        (
            "TransactWriteItems",
            {
                "TransactItems": [
                    {"Delete": {"TableName": t, "Key": k("tx2")}},
                    {
                        "ConditionCheck": {
                            "TableName": t,
                            "Key": k("tx1"),
                            "ConditionExpression": "attribute_exists(pk)",
                        }
                    },
                ],
                "ClientRequestToken": f"{scope}-2"[-36:],
            },
        ),
        # Queries: paging by Limit (a LastEvaluatedKey even at the very end), backwards.
        *[
            (
                "Query",
                {
                    "TableName": t,
                    "KeyConditionExpression": "pk = :p",
                    "ExpressionAttributeValues": {":p": {"S": scope}},
                    "ConsistentRead": True,
                    "Limit": limit,
                    **({"ExclusiveStartKey": k(start)} if start else {}),
                },
            )
            for limit, start in ((2, None), (2, "tx0"), (3, "tx0"), (100, None), (1, "upsert"))
        ],
        (
            "Query",
            {
                "TableName": t,
                "KeyConditionExpression": "pk = :p AND sk > :c",
                "ExpressionAttributeValues": {":p": {"S": scope}, ":c": {"S": "tx0"}},
                "ScanIndexForward": False,
            },
        ),
        # A base sync's Query: one namespace's items (begins_with on the sort key), paged.
        *[
            (
                "Query",
                {
                    "TableName": t,
                    "KeyConditionExpression": condition,
                    "ExpressionAttributeValues": {":p": {"S": scope}, ":ns": {"S": prefix}},
                    "ConsistentRead": True,
                    "ScanIndexForward": forward,
                    **({"Limit": limit} if limit else {}),
                    **({"ExclusiveStartKey": k(start)} if start else {}),
                },
            )
            for condition in ("pk = :p AND begins_with(sk, :ns)", "begins_with(sk,:ns) AND pk = :p")
            for prefix, forward, limit, start in (
                ("tx", True, 2, None),
                ("tx", True, 2, "tx0"),
                ("tx", False, None, None),
                ("tx", True, None, "a"),  # a start key outside the prefix
                ("nope", True, None, None),
            )
        ],
        # The changelog table: numbers as sort keys.
        *[
            (
                "PutItem",
                {
                    "TableName": changes,
                    "Item": {"pk": {"S": log}, "sk": {"N": str(seq)}, "key": {"S": f"k{seq}"}},
                },
            )
            for seq in (0, 1, 2, 10, 11)
        ],
        *[
            (
                "Query",
                {
                    "TableName": changes,
                    "KeyConditionExpression": "pk = :p AND sk > :c",
                    "ExpressionAttributeValues": {":p": {"S": log}, ":c": {"N": cursor}},
                    "ConsistentRead": True,
                    "Limit": 2,
                    **(
                        {"ExclusiveStartKey": {"pk": {"S": log}, "sk": {"N": start}}}
                        if start
                        else {}
                    ),
                },
            )
            for cursor, start in (("0", None), ("1", None), ("0", "2"), ("0", "11"), ("11", None))
        ],
        (
            "Query",
            {
                "TableName": changes,
                "KeyConditionExpression": "pk = :p AND sk >= :c",
                "ExpressionAttributeValues": {":p": {"S": log}, ":c": {"N": "2"}},
            },
        ),
        (
            "Query",
            {
                "TableName": changes,
                "KeyConditionExpression": "sk < :c AND pk = :p",
                "ExpressionAttributeValues": {":p": {"S": log}, ":c": {"N": "2"}},
            },
        ),
        (
            "GetItem",
            {"TableName": changes, "Key": {"pk": {"S": log}, "sk": {"N": "0"}}},
        ),
    ]


INVALID: list[tuple[str, dict[str, Any]]] = [
    ("GetItem", {"TableName": "pysync_nope", "Key": key("u#x", "a")}),
    ("GetItem", {"TableName": TABLE, "Key": {"pk": {"S": "u#x"}, "sk": {"N": "1"}}}),
    ("PutItem", {"TableName": TABLE, "Item": {"pk": {"S": "u#x"}, "sk": {"S": ""}}}),
    ("PutItem", {"TableName": TABLE, "Item": {"pk": {"S": "u#x"}}}),
    ("PutItem", {"TableName": TABLE, "Item": {**key("u#x", "a"), "n": {"N": "abc"}}}),
    ("PutItem", {"TableName": TABLE, "Item": {**key("u#x", "a"), "n": {"S": "a", "N": "1"}}}),
    ("PutItem", {"TableName": TABLE, "Item": {**key("u#x", "big"), "x": {"S": "x" * 420_000}}}),
    (
        "PutItem",
        {
            "TableName": TABLE,
            "Item": key("u#x", "a"),
            "ExpressionAttributeValues": {":d": {"S": "1"}},
        },
    ),
    (
        "PutItem",
        {
            "TableName": TABLE,
            "Item": key("u#x", "a"),
            "ConditionExpression": "attribute_not_exists(pk)",
            "ExpressionAttributeValues": {},
        },
    ),
    (
        "PutItem",
        {
            "TableName": TABLE,
            "Item": key("u#x", "a"),
            "ConditionExpression": "_v = :b",
            "ExpressionAttributeValues": {":b": {"N": "1"}},
        },
    ),
    (
        "PutItem",
        {
            "TableName": TABLE,
            "Item": key("u#x", "a"),
            "ConditionExpression": "attribute_exists(pk) AND",
        },
    ),
    (
        "PutItem",
        {"TableName": TABLE, "Item": key("u#x", "a"), "ConditionExpression": ":b = :b"},
    ),
    ("PutItem", {"TableName": TABLE, "Item": key("u#x", "a"), "ReturnValues": "ALL_NEW"}),
    (
        "UpdateItem",
        {
            "TableName": TABLE,
            "Key": key("u#x", "a"),
            "UpdateExpression": "SET #a = :a",
            "ExpressionAttributeNames": {"#a": "a", "#v": "_v"},
            "ExpressionAttributeValues": {":a": {"S": "A"}},
        },
    ),
    (
        "UpdateItem",
        {
            "TableName": TABLE,
            "Key": key("u#x", "a"),
            "UpdateExpression": "SET a = :a",
            "ExpressionAttributeValues": {":a": {"S": "A"}, ":unused": {"S": "x"}},
        },
    ),
    (
        "UpdateItem",
        {
            "TableName": TABLE,
            "Key": key("u#x", "a"),
            "UpdateExpression": "SET #zz = :d",
            "ExpressionAttributeValues": {":d": {"S": "1"}},
        },
    ),
    (
        "UpdateItem",
        {
            "TableName": TABLE,
            "Key": key("u#x", "a"),
            "UpdateExpression": "SET a = :zz",
            "ExpressionAttributeValues": {":d": {"S": "1"}},
        },
    ),
    (
        "UpdateItem",
        {
            "TableName": TABLE,
            "Key": key("u#x", "a"),
            "UpdateExpression": "SET #n = :d ADD #n :d",
            "ExpressionAttributeNames": {"#n": "n"},
            "ExpressionAttributeValues": {":d": {"N": "1"}},
        },
    ),
    (
        "UpdateItem",
        {
            "TableName": TABLE,
            "Key": key("u#x", "a"),
            "UpdateExpression": "SET #n = :d SET #a = :d",
            "ExpressionAttributeNames": {"#n": "n", "#a": "a"},
            "ExpressionAttributeValues": {":d": {"N": "1"}},
        },
    ),
    (
        "UpdateItem",
        {
            "TableName": TABLE,
            "Key": key("u#x", "a"),
            "UpdateExpression": "SET pk = :d",
            "ExpressionAttributeValues": {":d": {"S": "1"}},
        },
    ),
    (
        "Query",
        {
            "TableName": TABLE,
            "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": {"S": "u#x"}},
            "Limit": 0,
        },
    ),
    (
        "Query",
        {
            "TableName": f"{TABLE}_changes",
            "KeyConditionExpression": "pk = :p AND sk > :c",
            "ExpressionAttributeValues": {":p": {"S": "u#x"}, ":c": {"S": "3"}},
        },
    ),
    *[
        (
            "Query",
            {
                "TableName": table,
                "KeyConditionExpression": condition,
                "ExpressionAttributeValues": {":p": {"S": "u#x"}, ":ns": value},
            },
        )
        for table, condition, value in (
            (f"{TABLE}_changes", "pk = :p AND begins_with(sk, :ns)", {"N": "1"}),
            (f"{TABLE}_changes", "pk = :p AND begins_with(sk, :ns)", {"S": "1"}),
            (TABLE, "pk = :p AND begins_with(sk, :ns)", {"N": "1"}),
            (TABLE, "pk = :p AND begins_with(sk, :ns)", {"S": ""}),
            (TABLE, "begins_with(pk, :p) AND sk = :ns", {"S": "a"}),
            (TABLE, "pk = :p AND begins_with(sk, :ns) AND sk > :ns", {"S": "a"}),
            (TABLE, "pk = :p AND attribute_exists(sk) AND sk > :ns", {"S": "a"}),
            (TABLE, "pk = :p AND BEGINS_WITH(sk, :ns)", {"S": "a"}),
        )
    ],
    (
        "Query",
        {
            "TableName": f"{TABLE}_changes",
            "KeyConditionExpression": "pk = :p OR sk > :c",
            "ExpressionAttributeValues": {":p": {"S": "u#x"}, ":c": {"N": "3"}},
        },
    ),
    (
        "Query",
        {
            "TableName": f"{TABLE}_changes",
            "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": {"S": "u#x"}},
            "ExclusiveStartKey": {"pk": {"S": "u#other"}, "sk": {"N": "1"}},
        },
    ),
    ("TransactWriteItems", {"TransactItems": []}),
    (
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Put": {"TableName": TABLE, "Item": key("u#x", f"t{i}")}} for i in range(101)
            ]
        },
    ),
    (
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Put": {"TableName": TABLE, "Item": key("u#x", "t")}},
                {"Delete": {"TableName": TABLE, "Key": key("u#x", "t")}},
            ]
        },
    ),
    (
        "TransactWriteItems",
        {
            "TransactItems": [
                {
                    "Put": {"TableName": TABLE, "Item": key("u#x", "t")},
                    "Delete": {"TableName": TABLE, "Key": key("u#x", "t")},
                }
            ]
        },
    ),
    (
        "TransactWriteItems",
        {
            "TransactItems": [{"Put": {"TableName": TABLE, "Item": key("u#x", "t")}}],
            "ClientRequestToken": "x" * 37,
        },
    ),
    (
        "TransactWriteItems",
        {
            "TransactItems": [
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": key("u#x", "s"),
                        "UpdateExpression": "SET s = :s",
                        "ExpressionAttributeValues": {":s": {"S": "x"}},
                    }
                },
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": key("u#x", "s2"),
                        "UpdateExpression": "ADD s :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
            ]
        },
    ),
]


async def test_edge_requests_get_the_same_answers(tables: None, direct: Direct) -> None:
    tee = Tee(direct, MemoryDynamo(tables=(TABLE,)))
    scope = f"u#edge-{uuid.uuid4().hex[:10]}"
    for operation, payload in edge_requests(scope):
        with contextlib.suppress(RemoteError):
            await tee.call(operation, payload)
    codes = tee.codes()
    assert {
        "ConditionalCheckFailedException",
        "TransactionCanceledException",
        "IdempotentParameterMismatchException",
    } <= codes, codes


@pytest.mark.parametrize(
    ("operation", "payload"), INVALID, ids=[f"{o}-{i}" for i, (o, _) in enumerate(INVALID)]
)
async def test_invalid_requests_get_the_same_errors(
    tables: None, direct: Direct, operation: str, payload: dict[str, Any]
) -> None:
    tee = Tee(direct, MemoryDynamo(tables=(TABLE,)))
    if operation == "TransactWriteItems" and "ADD s" in str(payload):
        # An ADD to a string inside a transaction: the string must be there first.
        await tee.call(
            "PutItem", {"TableName": TABLE, "Item": {**key("u#x", "s2"), "s": {"S": "x"}}}
        )
    with pytest.raises(RemoteError) as raised:
        await tee.call(operation, payload)
    assert raised.value.status == 400


@pytest.fixture
async def consumer(tables: None, dynamodb: DynamoDBLocal) -> AsyncIterator[None]:
    """The real stream consumer, filling DynamoDB Local's ``<LOG_TABLE>_changes``."""
    api = DynamoDBAPI(Signer("us-east-1", session=local_session()), dynamodb.endpoint)
    worker = StreamConsumer(
        api,
        LOG_TABLE,
        Changelog(api, f"{LOG_TABLE}_changes"),
        poll_interval=0.01,
        lease_duration=1.0,
    )
    await worker.start()
    try:
        yield
    finally:
        await worker.stop()
        await api.aclose()


@pytest.mark.usefixtures("consumer")
async def test_the_changelog_is_the_one_the_stream_consumer_writes(direct: Direct) -> None:
    fake = MemoryDynamo(tables=(LOG_TABLE,))
    tee = Tee(direct, fake, changelog="wait")
    devices = Devices(tee, LOG_TABLE)
    a, b = await run_scenarios(devices)
    changes = f"{LOG_TABLE}_changes"
    await tee._catch_up({"TableName": changes, "Key": {"pk": {"S": devices.scope}}})
    real = partition(lambda o, p: local_call(direct, o, p), changes, devices.scope)
    mine = fake.items(changes, devices.scope)
    assert len(mine) > 10
    assert normalized(mine, changelog=True) == normalized(real, changelog=True)
    a.close()
    b.close()
