"""The proxy's batch of single-item calls (``Pysync_20261205.Batch``), over real HTTP.

Each call of a batch is checked, sent and answered as if it came alone: one
refused call never takes the others down, each write is a plain write (one
write unit) with its own condition, and each call costs a rate-limit token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pysync import HttpRemote, RemoteError
from pysync._remote import BATCH_TARGET

from .conftest import JSON_TYPE, Direct, dumps
from .hostile_corpus import OWN, TABLE, VICTIM, N, S, get, item, key, put


def post_batch(
    http: httpx.Client, url: str, body: Any, authorization: str | None
) -> httpx.Response:
    headers = {"Content-Type": JSON_TYPE, "X-Amz-Target": BATCH_TARGET}
    if authorization is not None:
        headers["Authorization"] = authorization
    content = body if isinstance(body, bytes) else dumps(body)
    return http.post(url + "/dynamodb", content=content, headers=headers)


def calls(*pairs: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"Calls": [{"Operation": op, "Request": request} for op, request in pairs]}


def new(sk: str, **extra: Any) -> dict[str, Any]:
    """A conditional create of ``sk`` in alice's scope, reporting its capacity."""
    return put(
        item(OWN, sk),
        ConditionExpression="attribute_not_exists(pk)",
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
        ReturnConsumedCapacity="TOTAL",
        **extra,
    )


def stored(direct: Direct, pk: str, sk: str) -> dict[str, Any] | None:
    found = direct.call("GetItem", {**get(key(pk, sk)), "ConsistentRead": True})
    return found.get("Item")


def test_each_call_is_answered_on_its_own_in_order(
    seeded: Direct, proxy: str, tokens: dict[str, str | None], http: httpx.Client
) -> None:
    """A refused call (foreign scope, failed condition) leaves the others landed."""
    seeded.put(TABLE, item(OWN, "batch#taken", title=S("first")))
    response = post_batch(
        http,
        proxy,
        calls(
            ("PutItem", new("batch#a")),
            ("PutItem", put(item(VICTIM, "batch#x"))),  # bob's scope
            ("PutItem", new("batch#taken")),  # exists: the condition fails
            ("GetItem", get(key(OWN, "batch#taken"))),
            (
                "UpdateItem",
                {
                    **get(key(OWN, "batch#taken")),
                    "UpdateExpression": "SET n = :n",
                    "ExpressionAttributeValues": {":n": N(7)},
                    "ReturnValues": "ALL_NEW",
                },
            ),
        ),
        tokens["alice"],
    )
    assert response.status_code == 200, response.text
    replies = response.json()["Responses"]
    assert [r["Status"] for r in replies] == [200, 403, 400, 200, 200]
    assert replies[0]["Body"]["ConsumedCapacity"]["CapacityUnits"] == 1.0  # a plain write
    assert replies[1]["Body"]["__type"].endswith("#AccessDeniedException")
    assert replies[2]["Body"]["__type"].endswith("#ConditionalCheckFailedException")
    assert replies[2]["Body"]["Item"]["title"] == S("first")  # ALL_OLD, as DynamoDB answers
    assert replies[3]["Body"]["Item"]["title"] == S("first")
    assert replies[4]["Body"]["Attributes"]["n"] == N(7)
    assert stored(seeded, OWN, "batch#a") is not None
    assert stored(seeded, VICTIM, "batch#x") is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (calls(), "1 to 100"),
        ({"Calls": [{"Operation": "PutItem", "Request": new("b#1")}] * 101}, "1 to 100"),
        ({"Calls": {"Operation": "PutItem"}}, "1 to 100"),
        (calls(("TransactWriteItems", {"TransactItems": []})), "Operation must be one of"),
        (calls(("Scan", {"TableName": TABLE})), "Operation must be one of"),
        ({"Calls": [{"Operation": "GetItem", "Request": []}]}, "must be a JSON object"),
        ({"Calls": [{"Operation": "GetItem"}]}, "Operation and Request"),
        ({**calls(("GetItem", get(key(OWN)))), "Extra": 1}, "exactly one member"),
    ],
)
def test_malformed_batches_are_refused_whole_before_any_call(
    seeded: Direct,
    proxy: str,
    tokens: dict[str, str | None],
    http: httpx.Client,
    body: dict[str, Any],
    message: str,
) -> None:
    response = post_batch(http, proxy, body, tokens["alice"])
    assert response.status_code == 400
    assert response.json()["__type"].endswith("#ValidationException")
    assert message in response.json()["message"]
    assert stored(seeded, OWN, "b#1") is None


def test_a_batch_without_a_valid_token_makes_no_call(
    seeded: Direct, proxy: str, tokens: dict[str, str | None], http: httpx.Client
) -> None:
    for token in (None, tokens["expired"]):
        response = post_batch(http, proxy, calls(("PutItem", new("batch#anon"))), token)
        assert response.status_code == 401
    assert stored(seeded, OWN, "batch#anon") is None


def test_every_call_costs_a_rate_limit_token(
    seeded: Direct,
    make_proxy: Callable[..., str],
    tokens: dict[str, str | None],
    http: httpx.Client,
) -> None:
    """Calls beyond the subject's bucket are answered 429 each, and are not made."""
    url = make_proxy(rate_limit=0.001, rate_burst=5)
    batch = calls(*(("PutItem", new(f"limited#{i}")) for i in range(8)))
    replies = post_batch(http, url, batch, tokens["alice"]).json()["Responses"]
    assert [r["Status"] for r in replies] == [200] * 5 + [429] * 3
    assert replies[-1]["Body"]["__type"].endswith("#ThrottlingException")
    landed = [stored(seeded, OWN, f"limited#{i}") is not None for i in range(8)]
    assert landed == [True] * 5 + [False] * 3
    # The bucket is empty: the next batch is refused whole, as a single call would be.
    assert post_batch(http, url, batch, tokens["alice"]).status_code == 429


def test_the_access_log_names_the_batch_and_its_calls(
    seeded: Direct,
    proxy: str,
    tokens: dict[str, str | None],
    http: httpx.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pysync.access")
    batch = calls(("GetItem", get(key(OWN))), ("GetItem", get(key(VICTIM))))
    assert post_batch(http, proxy, batch, tokens["alice"]).status_code == 200
    entries = [json.loads(r.getMessage()) for r in caplog.records if r.name == "pysync.access"]
    entry = entries[-1]
    assert (entry["op"], entry["calls"], entry["statuses"]) == ("Batch", 2, [200, 403])
    assert entry["scopes"] == [OWN]


async def test_http_remote_batches_and_each_call_gets_its_outcome(
    seeded: Direct, proxy: str, tokens: dict[str, str | None]
) -> None:
    """The client's call_many over the real proxy: one request, per-call results."""
    sent: list[str] = []
    remote = HttpRemote(proxy + "/dynamodb", (tokens["alice"] or "").removeprefix("Bearer "))
    inner = remote._send

    async def counting(url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        sent.append(headers["X-Amz-Target"])
        return await inner(url, headers, body)

    remote._send = counting
    try:
        results = await remote.call_many(
            [("PutItem", new(f"remote#{i}")) for i in range(30)]
            + [("PutItem", new("remote#0")), ("GetItem", get(key(VICTIM)))]
        )
    finally:
        await remote.close()
    assert sent == [BATCH_TARGET]
    assert all(isinstance(r, dict) for r in results[:30])
    assert isinstance(results[30], RemoteError)
    assert results[30].code == "ConditionalCheckFailedException"
    assert isinstance(results[31], RemoteError)
    assert results[31].status == 403
    assert all(stored(seeded, OWN, f"remote#{i}") is not None for i in range(30))
