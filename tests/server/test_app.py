"""The HTTP surface: headers in and out, CORS, static files, logs, upstream failures, limits."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import httpx
import pytest
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from pysync.server import API_PATH
from pysync.server._ratelimit import RateLimiter

from .conftest import JSON_TYPE, ORIGIN, Direct, proxy_post
from .hostile_corpus import OWN, TABLE, S

GET_OWN = {"TableName": TABLE, "Key": {"pk": S(OWN), "sk": S("todo#1")}}
CANNED_BODY = b'{"Item" : {"pk":{"S":"u#alice"}} }'


@dataclass
class Captured:
    """What the fake DynamoDB received."""

    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture(scope="module")
def fake_dynamodb() -> Iterator[tuple[str, Captured]]:
    """An upstream that records requests and answers with extra headers the proxy must drop."""
    captured = Captured()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            captured.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            for name, value in [
                ("Content-Type", JSON_TYPE),
                ("x-amzn-RequestId", "req-1"),
                ("x-amz-crc32", "123"),
                ("Set-Cookie", "upstream=secret"),
                ("X-Upstream-Internal", "1"),
                ("Content-Length", str(len(CANNED_BODY))),
            ]:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(CANNED_BODY)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", captured
    server.shutdown()
    server.server_close()


def test_only_signed_headers_go_upstream_and_only_dynamodb_headers_come_back(
    fake_dynamodb: tuple[str, Captured],
    make_proxy: Callable[..., str],
    tokens: dict[str, str | None],
    http: httpx.Client,
) -> None:
    upstream, captured = fake_dynamodb
    url = make_proxy(dynamodb_endpoint=upstream)
    response = proxy_post(
        http,
        url,
        "GetItem",
        b'{ "TableName" : "pysync_test", "Key": {"pk": {"S": "u#alice"}, "sk": {"S": "t\\u00e9"}}}',
        tokens["alice"],
        Cookie="session=browser",
        Origin=ORIGIN,
        **{"X-Amz-Security-Token": "forged", "X-Forwarded-For": "1.2.3.4", "X-Custom": "1"},
    )
    assert response.status_code == 200
    assert response.content == CANNED_BODY
    assert response.headers["x-amzn-requestid"] == "req-1"
    assert response.headers["x-amz-crc32"] == "123"
    assert "set-cookie" not in response.headers
    assert "x-upstream-internal" not in response.headers

    headers, body = captured.requests[-1]
    # The canonical re-serialization of what the browser sent, and nothing of the browser's.
    assert (
        body == '{"TableName":"pysync_test","Key":{"pk":{"S":"u#alice"},"sk":{"S":"té"}}}'.encode()
    )
    assert set(headers) <= {
        "host",
        "content-type",
        "content-length",
        "x-amz-target",
        "x-amz-date",
        "authorization",
        "accept-encoding",
        "accept",
        "connection",
        "user-agent",
    }
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=local/")
    assert headers["accept-encoding"] == "identity"

    # Recompute the signature over the bytes that arrived: it must match.
    request = AWSRequest(
        method="POST",
        url=upstream,
        data=body,
        headers={k: headers[k] for k in ("content-type", "x-amz-target", "x-amz-date")},
    )
    request.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(Credentials("local", "local"), "dynamodb", "us-east-1")
    expected = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    assert headers["authorization"].endswith(f"Signature={expected}")


def test_healthz(proxy: str, http: httpx.Client) -> None:
    response = http.get(proxy + "/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_cors_preflight_and_response(
    proxy: str, tokens: dict[str, str | None], http: httpx.Client
) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-amz-target",
    }
    allowed = http.options(proxy + API_PATH, headers={"Origin": ORIGIN, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "x-amz-target" in allowed.headers["access-control-allow-headers"]

    denied = http.options(proxy + API_PATH, headers={"Origin": "https://evil.test", **preflight})
    assert denied.status_code == 400
    assert "access-control-allow-origin" not in denied.headers

    response = proxy_post(http, proxy, "GetItem", GET_OWN, tokens["alice"], Origin=ORIGIN)
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "x-amzn-requestid" in response.headers["access-control-expose-headers"]
    other = proxy_post(http, proxy, "GetItem", GET_OWN, tokens["alice"], Origin="https://x.test")
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/", "text/html; charset=utf-8"),
        ("/app.mjs", "text/javascript; charset=utf-8"),
        ("/pyodide/pyodide.asm.wasm", "application/wasm"),
        ("/pyodide/pyodide.mjs", "text/javascript; charset=utf-8"),
        ("/pyodide/pyodide.js", "text/javascript; charset=utf-8"),
        ("/pyodide/pyodide-lock.json", "application/json"),
        ("/pyodide/pysync-0.1.0-py3-none-any.whl", "application/octet-stream"),
        ("/pyodide/python_stdlib.zip", "application/zip"),
    ],
)
def test_static_files(proxy: str, http: httpx.Client, path: str, media_type: str) -> None:
    response = http.get(proxy + path)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type


def test_static_files_stay_inside_their_directory(proxy: str, http: httpx.Client) -> None:
    assert http.get(proxy + "/pyodide/../../etc/passwd").status_code == 404
    assert http.get(proxy + "/pyodide/%2e%2e/%2e%2e/etc/passwd").status_code == 404


def test_access_log_is_json_without_secrets(
    proxy: str,
    tokens: dict[str, str | None],
    http: httpx.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pysync.access")
    token = tokens["alice"]
    assert token is not None
    proxy_post(http, proxy, "GetItem", GET_OWN, token)
    proxy_post(http, proxy, "GetItem", {**GET_OWN, "TableName": "nope"}, token)
    entries = [json.loads(r.getMessage()) for r in caplog.records if r.name == "pysync.access"]
    allowed, denied = entries[-2:]
    assert allowed["sub"] == "alice"
    assert allowed["op"] == "GetItem"
    assert allowed["status"] == 200
    assert allowed["tables"] == [TABLE]
    assert allowed["scopes"] == [OWN]
    assert allowed["request_id"]
    assert denied["error"] == "AccessDeniedException"
    assert denied["status"] == 403
    text = caplog.text
    assert token.split()[1] not in text
    assert token.split(".")[2] not in text
    assert "todo#1" not in text  # no bodies either


def _error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["__type"].split("#")[1]


def test_unreachable_dynamodb_is_a_502(
    make_proxy: Callable[..., str], tokens: dict[str, str | None], http: httpx.Client
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    url = make_proxy(dynamodb_endpoint=closed)
    response = proxy_post(http, url, "GetItem", GET_OWN, tokens["alice"])
    assert _error(response) == (502, "ServiceUnavailable")


def test_silent_dynamodb_is_a_504(
    make_proxy: Callable[..., str], tokens: dict[str, str | None], http: httpx.Client
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)  # accepts connections, never answers
        url = make_proxy(
            dynamodb_endpoint=f"http://127.0.0.1:{sock.getsockname()[1]}", upstream_timeout=0.3
        )
        response = proxy_post(http, url, "GetItem", GET_OWN, tokens["alice"])
    assert _error(response) == (504, "ServiceUnavailable")


def test_rate_limit_is_per_subject(
    make_proxy: Callable[..., str], tokens: dict[str, str | None], http: httpx.Client
) -> None:
    url = make_proxy(rate_limit=0.001, rate_burst=2)
    statuses = [proxy_post(http, url, "GetItem", GET_OWN, tokens["alice"]) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert int(statuses[-1].headers["retry-after"]) >= 1
    bob = {"TableName": TABLE, "Key": {"pk": S("u#bob"), "sk": S("todo#1")}}
    assert proxy_post(http, url, "GetItem", bob, tokens["bob"]).status_code == 200


def test_rate_limiter_refills_and_bounds_memory() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2, burst=3, max_keys=4, clock=lambda: now[0])
    assert [limiter.acquire("a") for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]
    now[0] += 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    for key in "bcdefgh":
        assert limiter.acquire(key) == 0.0
    assert len(limiter._buckets) <= 4
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate=0, burst=1)


def test_boto3_through_the_proxy(seeded: Direct, proxy: str, tokens: dict[str, str | None]) -> None:
    """A stock AWS SDK client works against the proxy with a bearer token."""
    client = boto3.client(
        "dynamodb",
        endpoint_url=proxy + API_PATH,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )

    def add_token(request: AWSRequest, **_: Any) -> None:
        request.headers["Authorization"] = tokens["alice"]

    client.meta.events.register("before-send.dynamodb.*", add_token)
    key = {"pk": S(OWN), "sk": S("boto#1")}
    client.put_item(TableName=TABLE, Item={**key, "title": S("via boto3")})
    assert client.get_item(TableName=TABLE, Key=key)["Item"]["title"] == S("via boto3")
    with pytest.raises(client.exceptions.ClientError, match="AccessDenied"):
        client.scan(TableName=TABLE)
    client.delete_item(TableName=TABLE, Key=key)
    client.close()


def test_client_request_token_is_passed_on(
    seeded: Direct, proxy: str, tokens: dict[str, str | None], http: httpx.Client
) -> None:
    body = {
        "TransactItems": [
            {"Update": {
                "TableName": TABLE,
                "Key": {"pk": S(OWN), "sk": S("idem#1")},
                "UpdateExpression": "ADD n :one",
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            }}
        ],
        "ClientRequestToken": "retry-token-1",
    }  # fmt: skip
    for _ in range(2):  # a retry with the same token is applied once
        assert (
            proxy_post(http, proxy, "TransactWriteItems", body, tokens["alice"]).status_code == 200
        )
    item = seeded.call("GetItem", {"TableName": TABLE, "Key": {"pk": S(OWN), "sk": S("idem#1")}})
    assert item["Item"]["n"] == {"N": "1"}
    seeded.call("DeleteItem", {"TableName": TABLE, "Key": {"pk": S(OWN), "sk": S("idem#1")}})


def test_unexpected_errors_keep_the_dynamodb_shape(
    proxy: str,
    tokens: dict[str, str | None],
    http: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("credentials could not be refreshed")

    monkeypatch.setattr(SigV4Auth, "add_auth", broken)
    response = proxy_post(http, proxy, "GetItem", GET_OWN, tokens["alice"])
    assert _error(response) == (500, "InternalServerError")
    assert "credentials could not be refreshed" not in response.text
    assert "credentials could not be refreshed" in caplog.text
