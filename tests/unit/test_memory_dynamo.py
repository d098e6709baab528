"""MemoryDynamo on its own: conditions, updates, queries, transactions, changelog, faults.

tests/server/test_memory_dynamo_parity.py proves the same answers against DynamoDB Local.
"""

from __future__ import annotations

from typing import Any

import pytest

import pysync
from pysync import AppSchema, CollectionSpec, RemoteError, Sync
from pysync.testing import MemoryBrowser, MemoryDynamo

T = "pysync"
C = "pysync_changes"
SCOPE = "u#me"


def key(sk: str, scope: str = SCOPE) -> dict[str, Any]:
    return {"pk": {"S": scope}, "sk": {"S": sk}}


def put(db: MemoryDynamo, sk: str, **fields: Any) -> dict[str, Any]:
    return db.handle("PutItem", {"TableName": T, "Item": {**key(sk), **fields}})


def get(db: MemoryDynamo, sk: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = db.handle("GetItem", {"TableName": T, "Key": key(sk)}).get("Item")
    return item


def fails(db: MemoryDynamo, operation: str, payload: dict[str, Any]) -> RemoteError:
    with pytest.raises(RemoteError) as raised:
        db.handle(operation, payload)
    return raised.value


def N(value: int | str) -> dict[str, str]:
    return {"N": str(value)}


def S(value: str) -> dict[str, str]:
    return {"S": value}


# -- items and conditions -------------------------------------------------------------------


def test_items_round_trip_with_dynamodb_number_and_set_forms() -> None:
    db = MemoryDynamo()
    put(db, "a", n=N("1.50"), e=N("1e2"), z=N("-0"), ss={"SS": ["b", "a"]}, m={"M": {"x": N("02")}})
    assert get(db, "a") == {
        **key("a"),
        "n": N("1.5"),
        "e": N("100"),
        "z": N("0"),
        "ss": {"SS": ["a", "b"]},
        "m": {"M": {"x": N("02")}},  # as DynamoDB Local: nested numbers are kept as sent
    }
    assert get(db, "missing") is None
    for bad in ({"N": "abc"}, {"S": "a", "N": "1"}, {"SS": []}, {"SS": ["a", "a"]}, {"X": 1}):
        assert fails(db, "PutItem", {"TableName": T, "Item": {**key("b"), "f": bad}}).code == (
            "ValidationException"
        )
    assert get(db, "b") is None


def test_keys_and_tables_are_checked() -> None:
    db = MemoryDynamo()
    assert fails(db, "GetItem", {"TableName": "nope", "Key": key("a")}).code == (
        "ResourceNotFoundException"
    )
    for bad_key in ({"pk": S("u#x")}, {"pk": S("u#x"), "sk": N(1)}, {**key("a"), "x": S("1")}):
        error = fails(db, "GetItem", {"TableName": T, "Key": bad_key})
        assert error.code == "ValidationException"
        assert error.status == 400
    assert fails(db, "PutItem", {"TableName": T, "Item": {"pk": S("u#x"), "sk": S("")}}).code == (
        "ValidationException"
    )
    assert (
        "maximum allowed size"
        in fails(
            db, "PutItem", {"TableName": T, "Item": {**key("big"), "x": S("x" * 420_000)}}
        ).message
    )


def test_a_failed_condition_returns_the_item_only_when_asked() -> None:
    db = MemoryDynamo()
    put(db, "a", _v=N(1))
    request = {
        "TableName": T,
        "Item": {**key("a"), "_v": N(2)},
        "ConditionExpression": "attribute_not_exists(pk)",
    }
    error = fails(db, "PutItem", request)
    assert (error.code, error.status, error.message) == (
        "ConditionalCheckFailedException",
        400,
        "The conditional request failed",
    )
    assert "Item" not in error.body
    error = fails(db, "PutItem", {**request, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"})
    assert error.body["Item"] == {**key("a"), "_v": N(1)}
    assert error.body["__type"].endswith("#ConditionalCheckFailedException")
    assert get(db, "a") == {**key("a"), "_v": N(1)}


@pytest.mark.parametrize(
    ("condition", "values", "holds"),
    [
        ("#v = :a", {":a": N(1)}, True),
        ("#v = :a", {":a": N("1.0")}, True),
        ("#v = :a", {":a": S("1")}, False),
        ("#v <> :a", {":a": S("1")}, True),
        ("#m <> :a", {":a": S("x")}, True),  # a missing attribute differs from everything
        ("#m = :a", {":a": S("x")}, False),
        ("#v < :a AND #v >= :b", {":a": N(2), ":b": N(1)}, True),
        ("#v < :a", {":a": S("9")}, False),  # different types never compare
        ("attribute_exists(pk) AND attribute_not_exists(#m)", None, True),
        ("NOT attribute_exists(#v) OR (#v > :a AND #v <= :b)", {":a": N(0), ":b": N(1)}, True),
        ("NOT (attribute_exists(#v) or #v > :a)", {":a": N(0)}, False),
        ("attribute_not_exists(#v) OR #v = :a AND #v = :b", {":a": N(1), ":b": N(2)}, False),
    ],
)
def test_conditions(condition: str, values: dict[str, Any] | None, holds: bool) -> None:
    db = MemoryDynamo()
    put(db, "a", _v=N(1))
    names = {k: v for k, v in {"#v": "_v", "#m": "_m"}.items() if k in condition}
    request: dict[str, Any] = {
        "TableName": T,
        "Key": key("a"),
        "ConditionExpression": condition,
        "ExpressionAttributeNames": names,
    }
    if values:
        request["ExpressionAttributeValues"] = values
    if holds:
        db.handle("DeleteItem", request)
        assert get(db, "a") is None
    else:
        assert fails(db, "DeleteItem", request).code == "ConditionalCheckFailedException"


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"ConditionExpression": "_v = :a", "ExpressionAttributeValues": {":a": N(1)}}, "Syntax"),
        ({"ConditionExpression": "attribute_exists(pk) AND"}, 'token: "<EOF>", near: "AND"'),
        ({"ConditionExpression": "#x = :a", "ExpressionAttributeValues": {":a": N(1)}}, "#x"),
        ({"ConditionExpression": "attribute_exists(pk) = :a"}, "Syntax"),
        ({"ConditionExpression": "attribute_exists(pk)", "ExpressionAttributeValues": {}}, "empty"),
        (
            {
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeValues": {":a": N(1)},
            },
            "unused in expressions: keys: {:a}",
        ),
        ({"ExpressionAttributeNames": {"#a": "a"}}, "only be specified when using expressions"),
        (
            {
                "ConditionExpression": "begins_with(pk, :a)",
                "ExpressionAttributeValues": {":a": S("u")},
            },
            "MemoryDynamo does not support the function begins_with",
        ),
        (
            {"ConditionExpression": "size(pk) > :a", "ExpressionAttributeValues": {":a": N(1)}},
            "MemoryDynamo does not support",
        ),
        ({"ConditionExpression": "a.b = :a", "ExpressionAttributeValues": {":a": N(1)}}, "nested"),
        ({"ConditionExpression": "a IN (:a)", "ExpressionAttributeValues": {":a": N(1)}}, "IN"),
        ({"ConditionExpression": "attribute_exists(pk)", "Expected": {}}, "Expected"),
        ({"ReturnValues": "ALL_NEW"}, "Return values"),
    ],
)
def test_refused_requests(request_: dict[str, Any], message: str) -> None:
    db = MemoryDynamo()
    error = fails(db, "PutItem", {"TableName": T, "Item": key("a"), **request_})
    assert error.code == "ValidationException"
    assert error.body["__type"] == "com.amazon.coral.validate#ValidationException"
    assert message in error.message
    assert get(db, "a") is None


def test_unknown_operations_are_refused() -> None:
    error = fails(MemoryDynamo(), "Scan", {"TableName": T})
    assert error.code == "UnknownOperationException"


# -- updates ------------------------------------------------------------------------------


def update(db: MemoryDynamo, expression: str, **options: Any) -> dict[str, Any]:
    return db.handle(
        "UpdateItem", {"TableName": T, "Key": key("a"), "UpdateExpression": expression, **options}
    )


def test_update_sets_adds_and_returns_values() -> None:
    db = MemoryDynamo()
    out = update(
        db,
        "SET #t = :t ADD #v :one, #n :d",
        ExpressionAttributeNames={"#t": "title", "#v": "_v", "#n": "n"},
        ExpressionAttributeValues={":t": S("x"), ":one": N(1), ":d": N("0.1")},
        ReturnValues="ALL_NEW",
    )
    assert out == {"Attributes": {**key("a"), "title": S("x"), "_v": N(1), "n": N("0.1")}}
    out = update(
        db,
        "ADD n :d SET title = :t",
        ExpressionAttributeValues={":t": S("y"), ":d": N("0.2")},
        ReturnValues="ALL_OLD",
    )
    assert out["Attributes"]["title"] == S("x")
    update(db, "ADD n :d", ExpressionAttributeValues={":d": N("-0.3")})
    assert get(db, "a") == {**key("a"), "title": S("y"), "_v": N(1), "n": N("0.0")}
    assert update(db, "SET copy = title") == {}
    assert (get(db, "a") or {})["copy"] == S("y")


@pytest.mark.parametrize(
    ("expression", "values", "message"),
    [
        ("ADD title :one", {":one": N(1)}, "incorrect data type"),
        ("SET pk = :s", {":s": S("x")}, "part of the key"),
        ("SET n = :one ADD n :one", {":one": N(1)}, "overlap"),
        ("SET n = :one, n = :one", {":one": N(1)}, "overlap"),
        ("SET n = :one SET m = :one", {":one": N(1)}, "only be used once"),
        ("SET n = missing", None, "does not exist"),
        ("REMOVE title", None, "MemoryDynamo does not support REMOVE"),
        ("SET n = n + :one", {":one": N(1)}, "MemoryDynamo does not support arithmetic"),
        ("SET n = if_not_exists(n, :one)", {":one": N(1)}, "if_not_exists"),
        ("ADD tags :s", {":s": {"SS": ["x"]}}, "MemoryDynamo does not support ADD"),
        ("SET n :one", {":one": N(1)}, "Syntax"),
        ("SET", None, "Syntax"),
    ],
)
def test_refused_updates(expression: str, values: dict[str, Any] | None, message: str) -> None:
    db = MemoryDynamo()
    put(db, "a", title=S("t"))
    options = {"ExpressionAttributeValues": values} if values else {}
    error = fails(
        db,
        "UpdateItem",
        {"TableName": T, "Key": key("a"), "UpdateExpression": expression, **options},
    )
    assert error.code == "ValidationException"
    assert message in error.message
    assert get(db, "a") == {**key("a"), "title": S("t")}


# -- queries ------------------------------------------------------------------------------


def query(db: MemoryDynamo, table: str = T, **options: Any) -> dict[str, Any]:
    request = {
        "TableName": table,
        "KeyConditionExpression": "pk = :p",
        "ExpressionAttributeValues": {":p": S(SCOPE)},
        **options,
    }
    return db.handle("Query", request)


def test_query_pages_in_key_order() -> None:
    db = MemoryDynamo()
    for sk in ("c", "a", "b", "é", "B"):
        put(db, sk)
    put(db, "other", pk=S("u#other"))  # another partition
    page = query(db, Limit=2)
    assert [i["sk"]["S"] for i in page["Items"]] == ["B", "a"]
    assert page["LastEvaluatedKey"] == key("a")
    page = query(db, Limit=3, ExclusiveStartKey=page["LastEvaluatedKey"])
    assert [i["sk"]["S"] for i in page["Items"]] == ["b", "c", "é"]
    assert page["LastEvaluatedKey"] == key("é")  # a full page says so, even at the end
    assert query(db, ExclusiveStartKey=key("é")) == {"Items": [], "Count": 0, "ScannedCount": 0}
    back = query(db, ScanIndexForward=False)
    assert [i["sk"]["S"] for i in back["Items"]] == ["é", "c", "b", "a", "B"]
    assert "LastEvaluatedKey" not in back
    assert query(db, Limit=5)["Count"] == 5
    with pytest.raises(RemoteError, match="Limit"):
        query(db, Limit=0)


def test_query_pages_stop_at_the_page_size() -> None:
    db = MemoryDynamo(page_bytes=250)
    for i in range(6):
        put(db, f"k{i}", blob=S("x" * 100))
    pages, start = [], None
    while True:
        page = query(db, **({"ExclusiveStartKey": start} if start else {}))
        pages.append([i["sk"]["S"] for i in page["Items"]])
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    assert pages == [["k0", "k1", "k2"], ["k3", "k4", "k5"], []]


def test_sort_key_conditions_on_numbers() -> None:
    db = MemoryDynamo()
    for seq in (0, 1, 2, 10, 11):
        db.handle("PutItem", {"TableName": C, "Item": {"pk": S(SCOPE), "sk": N(seq)}})

    def seqs(condition: str, bound: int) -> list[int]:
        page = db.handle(
            "Query",
            {
                "TableName": C,
                "KeyConditionExpression": f"pk = :p AND {condition}",
                "ExpressionAttributeValues": {":p": S(SCOPE), ":c": N(bound)},
            },
        )
        return [int(i["sk"]["N"]) for i in page["Items"]]

    assert seqs("sk > :c", 1) == [2, 10, 11]  # numerically, not as text
    assert seqs("sk >= :c", 10) == [10, 11]
    assert seqs("sk < :c", 2) == [0, 1]
    assert seqs("sk <= :c", 2) == [0, 1, 2]
    assert seqs("sk = :c", 10) == [10]
    request = {
        "TableName": C,
        "KeyConditionExpression": "pk = :p AND sk > :c",
        "ExpressionAttributeValues": {":p": S(SCOPE), ":c": S("1")},
    }
    assert "does not match schema type" in fails(db, "Query", request).message
    request = {**request, "KeyConditionExpression": "pk = :p OR sk > :c"}
    assert "OR" in fails(db, "Query", request).message
    request = {**request, "KeyConditionExpression": "sk BETWEEN :p AND :c"}
    assert "MemoryDynamo does not support" in fails(db, "Query", request).message


# -- transactions ---------------------------------------------------------------------------


def tx_put(sk: str, **extra: Any) -> dict[str, Any]:
    return {"Put": {"TableName": T, "Item": {**key(sk), "_v": N(1)}, **extra}}


NEW = {
    "ConditionExpression": "attribute_not_exists(pk)",
    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
}


def test_a_transaction_is_all_or_nothing() -> None:
    db = MemoryDynamo()
    db.handle("TransactWriteItems", {"TransactItems": [tx_put("a", **NEW), tx_put("b", **NEW)]})
    assert get(db, "a") is not None
    assert get(db, "b") is not None
    items = [
        tx_put("c", **NEW),
        tx_put("a", **NEW),
        {
            "ConditionCheck": {
                "TableName": T,
                "Key": key("b"),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
        {"Delete": {"TableName": T, "Key": key("d")}},
    ]
    error = fails(db, "TransactWriteItems", {"TransactItems": items})
    assert error.code == "TransactionCanceledException"
    assert error.body["CancellationReasons"] == [
        {"Code": "None"},
        {
            "Code": "ConditionalCheckFailed",
            "Message": "The conditional request failed",
            "Item": {**key("a"), "_v": N(1)},
        },
        {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed."},
        {"Code": "None"},
    ]
    assert error.message.endswith("[None, ConditionalCheckFailed, ConditionalCheckFailed, None]")
    assert get(db, "c") is None  # nothing applied


def test_transaction_shape_errors() -> None:
    db = MemoryDynamo()
    for items in ([], [tx_put(f"k{i}") for i in range(101)], [tx_put("a"), tx_put("a")]):
        error = fails(db, "TransactWriteItems", {"TransactItems": items})
        assert error.code == "ValidationException"
    both = {**tx_put("a"), "Delete": {"TableName": T, "Key": key("a")}}
    assert fails(db, "TransactWriteItems", {"TransactItems": [both]}).code == (
        "ValidationException"
    )
    with_token = {"TransactItems": [tx_put("a")], "ClientRequestToken": "x" * 37}
    assert fails(db, "TransactWriteItems", with_token).code == "ValidationException"
    assert db.items() == []


def test_client_request_tokens_make_a_transaction_idempotent_for_ten_minutes() -> None:
    db = MemoryDynamo()
    once = {"TransactItems": [tx_put("a", **NEW)], "ClientRequestToken": "tok"}
    db.handle("TransactWriteItems", once)
    assert db.handle("TransactWriteItems", once) == {}  # the same: not applied again
    assert len(db.applied) == 1
    other = {"TransactItems": [tx_put("b")], "ClientRequestToken": "tok"}
    error = fails(db, "TransactWriteItems", other)
    assert error.code == "IdempotentParameterMismatchException"
    db.advance(601)
    assert fails(db, "TransactWriteItems", once).code == "TransactionCanceledException"
    db.handle("TransactWriteItems", other)  # the token is free again
    # A cancelled transaction does not take its token.
    failing = {"TransactItems": [tx_put("b", **NEW)], "ClientRequestToken": "t2"}
    assert fails(db, "TransactWriteItems", failing).code == "TransactionCanceledException"
    db.handle("TransactWriteItems", {"TransactItems": [tx_put("c")], "ClientRequestToken": "t2"})
    db.forget_tokens()
    assert fails(db, "TransactWriteItems", once).code == "TransactionCanceledException"


# -- the changelog --------------------------------------------------------------------------


def test_every_change_is_appended_to_the_changelog() -> None:
    db = MemoryDynamo()
    put(db, "todos#a", _v=N(1), title=S("x"))
    put(db, "todos#a", _v=N(1), title=S("x"))  # no change: DynamoDB Streams has no record
    names, values = {"#v": "_v"}, {":one": N(1)}
    update(db, "ADD #v :one", ExpressionAttributeNames=names, ExpressionAttributeValues=values)
    db.handle("DeleteItem", {"TableName": T, "Key": key("todos#a")})
    db.handle("DeleteItem", {"TableName": T, "Key": key("todos#a")})  # nothing to delete
    entries = db.changes(SCOPE)
    assert [(e["sk"], e["key"], e["op"]) for e in entries] == [
        (N(1), S("todos#a"), S("put")),
        (N(2), S("a"), S("put")),
        (N(3), S("todos#a"), S("delete")),
    ]
    assert entries[0]["item"] == {"M": {**key("todos#a"), "_v": N(1), "title": S("x")}}
    assert entries[0]["_v"] == N(1)
    assert entries[2]["old_v"] == N(1)
    assert "item" not in entries[2]
    assert all(set(e) >= {"ts", "sseq"} for e in entries)
    head = db.item(C, SCOPE, 0)
    assert head is not None
    assert head["head"] == N(3)
    assert [w.operation for w in db.applied] == [
        "PutItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "DeleteItem",
    ]


def test_a_lagging_changelog_delivers_on_demand_in_order() -> None:
    db = MemoryDynamo(lagging=True)
    for i in range(3):
        put(db, f"k{i}")
    assert db.changes(SCOPE) == []
    assert db.deliver(2) == 2
    assert [e["key"]["S"] for e in db.changes(SCOPE)] == ["k0", "k1"]
    assert db.deliver() == 1
    assert [e["sk"]["N"] for e in db.changes(SCOPE)] == ["1", "2", "3"]


def test_expiry_leaves_a_gap_and_ttl_sweeps() -> None:
    db = MemoryDynamo(retention=3600)
    for i in range(4):
        put(db, f"k{i}")
    assert db.drop_changes(SCOPE, below=3) == 2
    assert [e["sk"]["N"] for e in db.changes(SCOPE)] == ["3", "4"]
    put(db, "gone", _ttl=N(int(db.now) + 10))
    db.advance(10)
    assert db.expire() == 1  # the tombstone goes; the entries (ttl in an hour) stay
    assert get(db, "gone") is None
    assert db.changes(SCOPE)[-1]["op"] == S("delete")
    db.advance(3600)
    db.expire()
    assert db.changes(SCOPE) == []
    assert db.item(C, SCOPE, 0) is not None  # the head stays


def test_entries_too_large_are_written_without_their_item() -> None:
    db = MemoryDynamo(max_entry_bytes=500)
    put(db, "small", blob=S("x" * 10))
    put(db, "big", blob=S("x" * 1000))
    small, big = db.changes(SCOPE)
    assert "item" in small
    assert "trunc" not in small
    assert big["trunc"] == {"BOOL": True}
    assert "item" not in big


# -- faults ---------------------------------------------------------------------------------


async def test_fail_before_and_lose_after() -> None:
    db = MemoryDynamo()
    request = {"TableName": T, "Item": key("a")}
    db.fail_next(2, operations=["PutItem"])
    for _ in range(2):
        with pytest.raises(RemoteError) as raised:
            await db.call("PutItem", request)
        assert raised.value.status == 500
        assert raised.value.retryable
    assert await db.call("GetItem", {"TableName": T, "Key": key("a")}) == {}  # not applied
    db.lose_replies(1)
    with pytest.raises(RemoteError) as raised:
        await db.call("PutItem", request)
    assert (raised.value.code, raised.value.status) == ("NetworkError", 0)
    assert get(db, "a") == key("a")  # applied all the same
    throttled = RemoteError("ThrottlingException", "slow down", 400, {"__type": "x#Throttling"})
    db.fail_next(1, throttled, when=lambda _op, payload: payload.get("Key") == key("b"))
    assert await db.call("GetItem", {"TableName": T, "Key": key("a")}) != {}
    with pytest.raises(RemoteError) as raised:
        await db.call("GetItem", {"TableName": T, "Key": key("b")})
    assert raised.value.code == "ThrottlingException"
    assert db.armed() == []
    assert [op for op, _ in db.calls] == [
        "PutItem",
        "PutItem",
        "GetItem",
        "PutItem",
        "GetItem",
        "GetItem",
    ]


async def test_connections_have_their_own_faults_and_hooks() -> None:
    db = MemoryDynamo()
    one, two = db.connection(), db.connection()
    seen: list[str] = []

    async def hook(operation: str, payload: dict[str, Any]) -> None:
        seen.append(operation)
        assert get(db, "a") is None  # runs before the call is applied
        await two.call("PutItem", {"TableName": T, "Item": {**key("b"), "by": S("two")}})

    one.before_next(hook, operations=["PutItem"])
    one.lose_replies(1)
    assert one.armed() == [("hook", 1), ("lose", 1)]
    await two.call("GetItem", {"TableName": T, "Key": key("a")})  # two is not affected
    with pytest.raises(RemoteError):
        await one.call("PutItem", {"TableName": T, "Item": key("a")})
    assert seen == ["PutItem"]
    assert [i["sk"]["S"] for i in db.items()] == ["a", "b"]
    assert [op for op, _ in one.calls] == ["PutItem"]
    assert [op for op, _ in db.calls] == ["GetItem", "PutItem", "PutItem"]
    one.fail_next(5)
    one.clear_faults()
    assert one.armed() == []


async def test_replies_and_stored_items_do_not_share_state() -> None:
    db = MemoryDynamo()
    item = {**key("a"), "l": {"L": [S("x")]}}
    await db.call("PutItem", {"TableName": T, "Item": item})
    item["l"]["L"].append(S("sent later"))
    got = await db.call("GetItem", {"TableName": T, "Key": key("a")})
    got["Item"]["l"]["L"].append(S("changed by the caller"))
    assert get(db, "a") == {**key("a"), "l": {"L": [S("x")]}}


# -- with the sync engine -------------------------------------------------------------------


async def no_sleep(_: float) -> None:
    return None


async def test_two_devices_sync_with_a_paged_base_sync() -> None:
    schema = AppSchema(1, {"todos": CollectionSpec()})
    db = MemoryDynamo(page_bytes=400)
    replicas = [
        await pysync.connect("app", "me", schema, platform=MemoryBrowser().tab()) for _ in "ab"
    ]
    a, b = (Sync(r, db.connection(), sleep=no_sleep) for r in replicas)
    for i in range(10):
        await replicas[0]["todos"].put({"id": f"t{i}", "title": "x" * 50})
    await a.sync()
    report = await b.sync()
    assert report.pull.base_sync
    assert report.pull.pages > 2
    assert await replicas[1]["todos"].count() == 10
    await replicas[1]["todos"].patch("t3", {"done": True})
    await b.sync()
    await a.sync()
    assert await replicas[0]["todos"].get("t3") == {"id": "t3", "title": "x" * 50, "done": True}
    for replica in replicas:
        replica.close()


# -- stamping writes that bypass pysync ---------------------------------------------------


def stamps(db: MemoryDynamo) -> list[tuple[str, str, str]]:
    """(key, _v, _m) of the changelog entries that are stamps."""
    return [
        (e["key"]["S"], e["_v"]["N"], e["_m"]["S"])
        for e in db.changes(SCOPE)
        if e.get("_m", {}).get("S", "").startswith("stamp:")
    ]


def bypass(db: MemoryDynamo, sk: str, **fields: Any) -> None:
    """An update that changes fields and leaves ``_v`` and ``_m`` alone."""
    names = {f"#f{i}": name for i, name in enumerate(fields)}
    values = {f":f{i}": value for i, value in enumerate(fields.values())}
    expression = "SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields)))
    db.handle(
        "UpdateItem",
        {
            "TableName": T,
            "Key": key(sk),
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        },
    )


def test_stamping_is_off_unless_asked() -> None:
    db = MemoryDynamo()
    put(db, "a", _v=N(1))
    assert get(db, "a") == {**key("a"), "_v": N(1)}
    assert len(db.changes(SCOPE)) == 1


def test_a_bypass_write_is_stamped_after_its_entry() -> None:
    db = MemoryDynamo(stamping=True)
    put(db, "a", _v=N(3), _m=S("m1"), _hlc=S("h"), _c=S("c"), title=S("milk"))
    assert stamps(db) == []  # a new _m: kept the contract
    bypass(db, "a", title=S("oat milk"))
    item = get(db, "a")
    assert item == {
        **key("a"),
        "title": S("oat milk"),
        "_v": N(4),
        "_m": S("stamp:" + "%032x" % 2),  # noqa: UP031 - the second stream record
        "_hlc": S("h"),
        "_c": S("c"),
    }
    entries = db.changes(SCOPE)
    assert [(e["_v"]["N"], e["_m"]["S"]) for e in entries] == [
        ("3", "m1"),
        ("3", "m1"),  # the bypass write, as it was
        ("4", item["_m"]["S"]),  # then the stamp
    ]
    assert entries[-1]["item"]["M"] == item
    assert [w.operation for w in db.applied] == ["PutItem", "UpdateItem", "UpdateItem"]
    assert db.applied[-1].new == item  # the stamp is a write like any other


def test_a_put_without_system_fields_is_stamped_to_version_1() -> None:
    db = MemoryDynamo(stamping=True)
    put(db, "a", title=S("x"))
    item = get(db, "a")
    assert item is not None
    assert item["_v"] == N(1)
    assert item["_m"]["S"].startswith("stamp:")
    assert [e.get("_v") for e in db.changes(SCOPE)] == [None, N(1)]


def test_contract_writes_tombstones_and_deletes_are_not_stamped() -> None:
    db = MemoryDynamo(stamping=True)
    put(db, "a", _v=N(1), _m=S("m1"))
    update(
        db,
        "SET #m = :m ADD #v :one",
        ExpressionAttributeNames={"#m": "_m", "#v": "_v"},
        ExpressionAttributeValues={":m": S("m2"), ":one": N(1)},
    )
    bypass(db, "a", _del={"BOOL": True}, _ttl=N(int(db.now) + 5))  # a tombstone, same _m
    put(db, "b", _v=N(1), _m=S("m3"))
    db.handle("DeleteItem", {"TableName": T, "Key": key("b")})
    db.advance(5)
    assert db.expire() == 1
    put(db, "c", _v=S("not a number"))  # ADD would fail: left alone
    assert stamps(db) == []
    assert len(db.changes(SCOPE)) == 7


def test_a_transaction_is_stamped_after_all_its_entries() -> None:
    db = MemoryDynamo(stamping=True)
    db.handle("TransactWriteItems", {"TransactItems": [tx_put("a"), tx_put("b")]})
    assert [(e["key"]["S"], e["_v"]["N"]) for e in db.changes(SCOPE)] == [
        ("a", "1"),
        ("b", "1"),
        ("a", "2"),
        ("b", "2"),
    ]


def test_a_lagging_consumer_stamps_when_it_delivers() -> None:
    db = MemoryDynamo(stamping=True, lagging=True)
    put(db, "a", _v=N(1), _m=S("m1"))
    bypass(db, "a", title=S("bypass"))
    assert (get(db, "a") or {})["_m"] == S("m1")  # the window: no stamp yet
    assert db.deliver(1) == 1  # the put: nothing to stamp
    assert db.deliver(1) == 1  # the bypass write: stamped now, its record held back
    assert (get(db, "a") or {})["_v"] == N(2)
    assert len(db.pending) == 1
    assert db.deliver() == 1
    assert [e["_v"]["N"] for e in db.changes(SCOPE)] == ["1", "1", "2"]
    # deliver() goes on until nothing is pending, stamps' records included.
    put(db, "b", _v=N(1))
    assert db.deliver() == 2
    assert db.pending == []
    assert stamps(db)[-1][:2] == ("b", "2")


def test_a_write_in_the_window_overwrites_the_bypass_write_and_is_not_stamped() -> None:
    db = MemoryDynamo(stamping=True, lagging=True)
    put(db, "a", _v=N(1), _m=S("m1"), title=S("old"))
    bypass(db, "a", title=S("bypass"))
    # A device's write conditioned on the state it knew (_v 1, _m m1) still passes.
    db.handle(
        "PutItem",
        {
            "TableName": T,
            "Item": {**key("a"), "_v": N(2), "_m": S("m2"), "title": S("device")},
            "ConditionExpression": "#v = :v AND #m = :m",
            "ExpressionAttributeNames": {"#v": "_v", "#m": "_m"},
            "ExpressionAttributeValues": {":v": N(1), ":m": S("m1")},
        },
    )
    db.deliver()
    assert get(db, "a") == {**key("a"), "_v": N(2), "_m": S("m2"), "title": S("device")}
    assert stamps(db) == []  # the stamp's condition failed: a later write changed the item


def test_two_bypass_writes_in_a_row_are_stamped_once() -> None:
    db = MemoryDynamo(stamping=True, lagging=True)
    put(db, "a", _v=N(1), _m=S("m1"))
    bypass(db, "a", x=S("1"))
    bypass(db, "a", y=S("2"))
    db.deliver()
    item = get(db, "a")
    assert item is not None
    assert (item["x"], item["y"], item["_v"]) == (S("1"), S("2"), N(2))
    assert len(stamps(db)) == 1
    assert len(db.changes(SCOPE)) == 4


def test_a_stamp_counts_as_one_write_that_adds_one_to_the_version() -> None:
    """What tests/unit/test_sync_properties.py checks (property d): an item's ``_v`` is the
    number of writes applied to it, when every write adds one to it (the seeds put ``_v``
    1), and no ``_m`` is applied twice. A stamp is a write in :attr:`MemoryDynamo.applied`
    that adds one, with a ``_m`` of its own."""
    db = MemoryDynamo(stamping=True, lagging=True)
    put(db, "a", _v=N(1))  # a seed as in open_world: stamped (2 writes)
    db.deliver()
    names = {"#m": "_m", "#v": "_v"}
    update(  # a contract write (3)
        db,
        "SET #m = :m ADD #v :one",
        ExpressionAttributeNames=names,
        ExpressionAttributeValues={":m": S("m3"), ":one": N(1)},
    )
    update(  # adds to _v but keeps _m (4): stamped (5)
        db,
        "SET x = :x ADD #v :one",
        ExpressionAttributeNames={"#v": "_v"},
        ExpressionAttributeValues={":x": S("1"), ":one": N(1)},
    )
    db.deliver()
    writes = [w.new for w in db.applied if w.new is not None]
    assert [w.operation for w in db.applied] == ["PutItem", *["UpdateItem"] * 4]
    assert (get(db, "a") or {})["_v"] == N(len(writes)) == N(5)
    mids = [w["_m"]["S"] for w in writes if "_m" in w]
    # The bypass write kept m3 (property d would call that m3 applied twice); each stamp
    # has a _m of its own.
    assert mids == [mids[0], "m3", "m3", mids[3]]
    assert mids[0] != mids[3]
    assert all(m.startswith("stamp:") for m in (mids[0], mids[3]))


async def test_with_the_stamp_a_device_edit_on_the_old_state_is_a_conflict() -> None:
    schema = AppSchema(1, {"todos": CollectionSpec()})
    db = MemoryDynamo(stamping=True)
    replica = await pysync.connect("app", "me", schema, platform=MemoryBrowser().tab())
    sync = Sync(replica, db.connection(), sleep=no_sleep)
    await replica["todos"].put({"id": "t", "title": "milk"})
    await sync.sync()
    (item,) = db.items(pk="u#me")
    # Another writer (a Lambda, the console) changes the title, keeping _v and _m.
    db.handle(
        "UpdateItem",
        {
            "TableName": T,
            "Key": {"pk": item["pk"], "sk": item["sk"]},
            "UpdateExpression": "SET title = :t",
            "ExpressionAttributeValues": {":t": S("oat milk")},
        },
    )
    await replica["todos"].patch("t", {"done": True})
    report = await sync.sync()
    assert report.push.conflicts == 1  # not a silent overwrite
    (final,) = db.items(pk="u#me")
    assert (final["title"], final["done"]) == (S("oat milk"), {"BOOL": True})
    assert await replica["todos"].get("t") == {"id": "t", "title": "oat milk", "done": True}
    replica.close()


def test_a_stamp_that_cannot_land_leaves_the_item_and_the_write_alone() -> None:
    """An item too close to 400 KB to take the stamp's ``_m``: the real consumer logs the
    error and goes on; the client's write succeeded all the same."""
    db = MemoryDynamo(stamping=True)
    put(db, "big", blob=S("x" * (400 * 1024 - 40)))
    item = get(db, "big")
    assert item is not None
    assert "_m" not in item
    assert len(db.changes(SCOPE)) == 1
