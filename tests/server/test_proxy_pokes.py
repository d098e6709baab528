"""A proxy that runs the stream consumer reads a write it forwarded at once, not after
the consumer's poll pause (StreamConsumer.poke after every accepted write)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from pysync.server import DynamoDBLocal, create_tables

from .conftest import N, S, changelog, claims, hs256, proxy_post, wait_until

LONG_PAUSE = 5.0  # the consumer's poll interval: no write here may wait for it


async def test_writes_through_the_proxy_reach_the_changelog_without_waiting_for_the_poll(
    ddb: Any, dynamodb: DynamoDBLocal, make_proxy: Callable[..., str], http: Any
) -> None:
    table = f"poke_{uuid.uuid4().hex[:10]}"
    create_tables(ddb, table)
    url = make_proxy(table=table, consumer=True, stream_poll_interval=LONG_PAUSE)
    user = f"poke-{uuid.uuid4().hex[:8]}"
    token = "Bearer " + hs256(claims(user))
    scope = f"u#{user}"

    # The first poll after the start reads the shard; then every write is one the
    # consumer would otherwise only see LONG_PAUSE later.
    def item(sk: str) -> dict[str, Any]:  # with the system fields pysync writes: no stamp
        return {"pk": S(scope), "sk": S(sk), "_v": N(1), "_m": S(uuid.uuid4().hex)}

    writes = [
        ("PutItem", {"TableName": table, "Item": item("a/t#1")}),
        (
            "UpdateItem",
            {
                "TableName": table,
                "Key": {"pk": S(scope), "sk": S("a/t#1")},
                "UpdateExpression": "SET n = :n, #m = :m ADD #v :one",
                "ExpressionAttributeNames": {"#m": "_m", "#v": "_v"},
                "ExpressionAttributeValues": {
                    ":n": N(2),
                    ":m": S(uuid.uuid4().hex),
                    ":one": N(1),
                },
            },
        ),
        ("DeleteItem", {"TableName": table, "Key": {"pk": S(scope), "sk": S("a/t#1")}}),
        (
            "TransactWriteItems",
            {
                "TransactItems": [
                    {"Put": {"TableName": table, "Item": item(f"a/t#{i}")}} for i in (2, 3)
                ]
            },
        ),
    ]
    expected = 0
    for operation, payload in writes:
        answered = proxy_post(http, url, operation, payload, token)
        assert answered.status_code == 200, answered.text
        replied = time.monotonic()
        expected += len(payload.get("TransactItems", [None]))
        await wait_until(lambda n=expected: len(changelog(ddb, table, scope)) == n, limit=15)
        # Without the poke this takes up to LONG_PAUSE (half of it on average, for
        # each of the four writes); with it, a GetRecords and an append.
        assert time.monotonic() - replied < 1.5, operation
    assert [e["op"]["S"] for e in changelog(ddb, table, scope)] == [
        "put",
        "put",
        "delete",
        "put",
        "put",
    ]
