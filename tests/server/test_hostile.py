"""Every case of the hostile corpus is refused with the right status and changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from .conftest import JSON_TYPE, Direct, dumps, proxy_post
from .hostile_corpus import CORPUS, OWN, Case, get, key


@pytest.fixture(scope="module")
def limited_proxy(make_proxy: Callable[..., str]) -> str:
    """A proxy whose rate limit allows one request per 1000 s."""
    return make_proxy(rate_limit=0.001, rate_burst=1)


@pytest.fixture(scope="module")
def baseline(seeded: Direct) -> list[tuple[str, list[dict[str, Any]]]]:
    """Both tables before the corpus runs; no case may change them."""
    return seeded.snapshot()


def test_corpus_is_large_and_ids_are_unique() -> None:
    ids = [case.id for case in CORPUS]
    assert len(ids) >= 150
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", CORPUS, ids=[case.id for case in CORPUS])
def test_hostile_request_is_refused_and_changes_nothing(
    case: Case,
    proxy: str,
    limited_proxy: str,
    seeded: Direct,
    baseline: list[tuple[str, list[dict[str, Any]]]],
    tokens: dict[str, str | None],
    http: httpx.Client,
) -> None:
    url = proxy
    if case.proxy == "limited":
        url = limited_proxy
        # Use up the bucket with a harmless read (it may itself be throttled already).
        proxy_post(http, url, "GetItem", get(key(OWN)), tokens["alice"])

    headers = {"Content-Type": JSON_TYPE, **case.headers}
    target = case.target or (f"DynamoDB_20120810.{case.op}" if case.op else None)
    if target:
        headers["X-Amz-Target"] = target
    authorization = tokens[case.token]
    if authorization is not None:
        headers["Authorization"] = authorization
    body = case.body if isinstance(case.body, bytes) else dumps(case.body)
    response = http.post(
        url + "/dynamodb", content=iter([body]) if case.chunked else body, headers=headers
    )

    error = response.json()
    assert (response.status_code, error["__type"]) == (
        case.expect[0],
        f"com.amazonaws.dynamodb.v20120810#{case.expect[1]}",
    ), error["message"]
    assert set(error) == {"__type", "message"}
    assert response.headers["content-type"] == JSON_TYPE
    assert seeded.snapshot() == baseline
