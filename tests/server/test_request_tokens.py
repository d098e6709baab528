"""``ClientRequestToken``: the proxy sends a per-user token, so users cannot collide.

All users share the proxy's AWS identity, and DynamoDB remembers a transaction's
token for ten minutes per identity. Passed on unchanged, one user's token made
another user's transaction fail (``IdempotentParameterMismatchException``).
Through a real proxy to DynamoDB Local.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from pysync.server._policy import user_request_token

from .conftest import Direct, claims, hs256, proxy_post
from .hostile_corpus import TABLE, N, S


def counter(scope: str, sk: str, token: str, by: int = 1) -> dict[str, Any]:
    """A transaction adding ``by`` to ``n`` of one item; not conditional, so a replay shows."""
    return {
        "TransactItems": [
            {
                "Update": {
                    "TableName": TABLE,
                    "Key": {"pk": S(scope), "sk": S(sk)},
                    "UpdateExpression": "ADD n :by",
                    "ExpressionAttributeValues": {":by": N(by)},
                }
            }
        ],
        "ClientRequestToken": token,
    }


def value(direct: Direct, scope: str, sk: str) -> str | None:
    reply = direct.call(
        "GetItem",
        {"TableName": TABLE, "Key": {"pk": S(scope), "sk": S(sk)}, "ConsistentRead": True},
    )
    item = reply.get("Item")
    return None if item is None else str(item["n"]["N"])


@pytest.fixture
def token() -> str:
    return f"tok-{uuid.uuid4()}"[:36]


def test_two_users_with_the_same_token_both_succeed(
    direct: Direct, proxy: str, http: httpx.Client, token: str
) -> None:
    alice, bob = f"Bearer {hs256(claims('alice'))}", f"Bearer {hs256(claims('bob'))}"
    sk = f"idem#{token}"
    first = proxy_post(http, proxy, "TransactWriteItems", counter("u#alice", sk, token), alice)
    assert first.status_code == 200, first.text
    # The same token from another user, with another request: DynamoDB would have
    # answered IdempotentParameterMismatchException, or skipped a repeated request.
    second = proxy_post(http, proxy, "TransactWriteItems", counter("u#bob", sk, token), bob)
    assert second.status_code == 200, second.text
    assert value(direct, "u#alice", sk) == "1"
    assert value(direct, "u#bob", sk) == "1"


def test_a_shared_space_is_no_way_around_it(
    direct: Direct, proxy: str, http: httpx.Client, token: str
) -> None:
    # alice and carol both write s#team with the same token and the same request:
    # each user's transaction is applied (each added 1), not taken for the other's.
    alice = f"Bearer {hs256(claims('alice'))}"
    carol = f"Bearer {hs256(claims('carol', scopes=['s#team']))}"
    sk = f"idem#{token}"
    for user in (alice, carol):
        response = proxy_post(http, proxy, "TransactWriteItems", counter("s#team", sk, token), user)
        assert response.status_code == 200, response.text
    assert value(direct, "s#team", sk) == "2"


def test_a_users_retry_is_applied_once_and_a_changed_request_still_refused(
    direct: Direct, proxy: str, http: httpx.Client, token: str
) -> None:
    alice = f"Bearer {hs256(claims('alice'))}"
    sk = f"idem#{token}"
    for _ in range(3):  # a client retrying after a lost reply
        response = proxy_post(
            http, proxy, "TransactWriteItems", counter("u#alice", sk, token), alice
        )
        assert response.status_code == 200, response.text
    assert value(direct, "u#alice", sk) == "1"
    changed = proxy_post(
        http, proxy, "TransactWriteItems", counter("u#alice", sk, token, by=5), alice
    )
    assert changed.status_code == 400
    assert changed.json()["__type"].endswith("#IdempotentParameterMismatchException")
    assert value(direct, "u#alice", sk) == "1"


def test_the_token_sent_to_dynamodb_is_per_user_and_stable() -> None:
    ours = user_request_token("alice", "t-1")
    assert ours == user_request_token("alice", "t-1")
    assert len(ours) == 36
    assert all(c in "0123456789abcdef" for c in ours)
    assert ours != user_request_token("bob", "t-1")
    assert ours != user_request_token("alice", "t-2")
    assert ours != "t-1"
    # The subject and the token cannot be re-cut into another pair.
    assert user_request_token("ab", "c") != user_request_token("a", "bc")
    assert user_request_token("a\0", "b") != user_request_token("a", "\0b")
