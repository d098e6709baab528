"""Policy unit tests for what the corpus does not cover: allowed shapes and custom rules."""

from __future__ import annotations

from typing import Any

import pytest

from pysync.server import PROTOCOL_FIELDS, Policy, ProxyError, TableRule

SCOPES = frozenset({"u#alice", "s#team"})
POLICY = Policy.for_table("app")


def key(pk: str = "u#alice", sk: str = "todo#1") -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def test_default_policy_tables() -> None:
    rules = {rule.name: rule for rule in POLICY.tables}
    assert set(rules) == {"app", "app_changes"}
    assert rules["app_changes"].operations == {"GetItem", "Query"}
    assert len(rules["app"].operations) == 9


def test_access_reports_tables_and_scopes() -> None:
    access = POLICY.check(
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Put": {"TableName": "app", "Item": {**key(), "_v": {"N": "1"}}}},
                {"Delete": {"TableName": "app", "Key": key("s#team")}},
            ],
            "ClientRequestToken": "t1",
        },
        SCOPES,
    )
    assert access.operation == "TransactWriteItems"
    assert access.tables == {"app"}
    assert access.scopes == {"u#alice", "s#team"}


def test_all_protocol_fields_are_writable() -> None:
    item = {**key(), **{name: {"S": "x"} for name in PROTOCOL_FIELDS}}
    POLICY.check("PutItem", {"TableName": "app", "Item": item}, SCOPES)
    names = {f"#f{i}": name for i, name in enumerate(sorted(PROTOCOL_FIELDS))}
    expression = "SET " + ", ".join(f"{alias} = :v" for alias in names)
    POLICY.check(
        "UpdateItem",
        {
            "TableName": "app",
            "Key": key(),
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":v": {"S": "x"}},
        },
        SCOPES,
    )


def test_reading_system_fields_is_fine() -> None:
    POLICY.check(
        "UpdateItem",
        {
            "TableName": "app",
            "Key": key(),
            "UpdateExpression": "SET title = _secret",
            "ConditionExpression": "attribute_not_exists(_secret)",
        },
        SCOPES,
    )


def test_local_index_with_its_sort_key() -> None:
    policy = Policy((TableRule("app", frozenset({"Query"}), local_indexes={"byTitle": "title"}),))
    body = {
        "TableName": "app",
        "IndexName": "byTitle",
        "KeyConditionExpression": "pk = :p AND begins_with(title, :t)",
        "ExpressionAttributeValues": {":p": {"S": "u#alice"}, ":t": {"S": "a"}},
    }
    assert policy.check("Query", body, SCOPES).scopes == {"u#alice"}
    body["KeyConditionExpression"] = "pk = :p AND sk > :t"  # the table's sort key, not the index's
    with pytest.raises(ProxyError) as denied:
        policy.check("Query", body, SCOPES)
    assert denied.value.status == 403


def test_custom_system_fields_and_key_names() -> None:
    policy = Policy(
        (TableRule("docs", frozenset({"PutItem"}), partition_key="owner", sort_key="id"),),
        writable_system_fields=frozenset({"$v"}),
        system_prefix="$",
    )
    item = {"owner": {"S": "u#alice"}, "id": {"S": "1"}, "$v": {"N": "1"}, "_x": {"S": "ok"}}
    policy.check("PutItem", {"TableName": "docs", "Item": item}, SCOPES)
    item["$secret"] = {"S": "x"}
    with pytest.raises(ProxyError, match="reserved"):
        policy.check("PutItem", {"TableName": "docs", "Item": item}, SCOPES)


def test_denial_messages_name_the_problem() -> None:
    with pytest.raises(ProxyError, match=r"TransactItems\[1\]\.Delete\.Key\.pk"):
        POLICY.check(
            "TransactWriteItems",
            {
                "TransactItems": [
                    {
                        "ConditionCheck": {
                            "TableName": "app",
                            "Key": key(),
                            "ConditionExpression": "x",
                        }
                    },
                    {"Delete": {"TableName": "app", "Key": key("u#bob")}},
                ]
            },
            SCOPES,
        )


@pytest.mark.parametrize("pack_size", [1, 50])
async def test_the_push_requests_pass_the_default_policy(pack_size: int) -> None:
    # What pysync's push sends, plain writes or packs (with ReturnConsumedCapacity=TOTAL,
    # ReturnValuesOnConditionCheckFailure=ALL_OLD, exact-state conditions), is allowed.
    import pysync
    from pysync import AppSchema, CollectionSpec, Sync
    from pysync.testing import MemoryBrowser, MemoryDynamo

    schema = AppSchema(1, {"todos": CollectionSpec()})
    replica = await pysync.connect("app", "alice", schema, platform=MemoryBrowser().tab())
    remote = MemoryDynamo().connection()
    sync = Sync(replica, remote, pack_size=pack_size)
    try:
        todos = replica["todos"]
        for i in range(3):
            await todos.put({"id": f"t{i}", "title": "x"})
        async with replica.transaction() as tx:
            tx.put("todos", {"id": "g1"})
            tx.put("todos", {"id": "g2"})
        await sync.push()
        await todos.patch("t0", {"title": "y"})
        await todos.increment("t1", "n", 2)
        await todos.put({"id": "t2", "title": "z"})
        await todos.delete("g1")
        await sync.push()
    finally:
        replica.close()
    policy = Policy.for_table("pysync")
    sent = [(op, body) for op, body in remote.calls if op not in ("GetItem", "Query")]
    expected = {"TransactWriteItems"} | ({"PutItem", "UpdateItem"} if pack_size == 1 else set())
    assert {op for op, _ in sent} == expected
    for operation, body in sent:
        assert body["ReturnConsumedCapacity"] == "TOTAL"
        policy.check(operation, body, frozenset({"u#alice"}))
