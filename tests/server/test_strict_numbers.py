"""Every number the proxy reads is ASCII digits, finite and in range, or a clear 400.

``str.isdigit()`` is true for ``"²"`` (which ``int()`` refuses: it was a 500) and
for ``"١٢"`` (which ``int()`` reads as 12). Request bodies are in the hostile
corpus (``NUMBERS``); here are the headers and query parameters, through a real
proxy (uvicorn, real HTTP), and the pure checks.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from pysync.server import ProxyConfig, create_app, local_session
from pysync.server._errors import ValidationError
from pysync.server._numbers import (
    ascii_digits,
    check_attribute_numbers,
    check_number,
    positive_int,
)

from .conftest import JSON_TYPE, SECRET, Direct, claims, hs256
from .hostile_corpus import AUDIENCE, ISSUER, TABLE

INVALID = (400, "com.amazonaws.dynamodb.v20120810#ValidationException")


def refusal(response: httpx.Response) -> tuple[int, str]:
    assert response.headers["content-type"] == JSON_TYPE
    body = response.json()
    assert set(body) == {"__type", "message"}
    return response.status_code, body["__type"]


@pytest.mark.parametrize(
    "after",
    [
        "\u00b2",  # superscript two: isdigit() but not int() (was a 500)
        "\u0661\u0662",  # Arabic-Indic 12: isdigit() and int() == 12 (was accepted)
        "\uff11",  # fullwidth 1
        "1\u00b2",
        "-1",
        "+1",
        " 1",
        "1.0",
        "1e3",
        "0x10",
        "1_000",
        "9" * 19,  # beyond 18 digits
    ],
)
def test_after_must_be_ascii_digits(
    seeded: Direct, proxy: str, http: httpx.Client, after: str
) -> None:
    response = http.get(
        proxy + "/changes",
        params={"scope": "u#alice", "after": after},
        headers={"Authorization": f"Bearer {hs256(claims())}"},
    )
    assert refusal(response) == INVALID
    assert "after / Last-Event-ID" in response.json()["message"]


@pytest.mark.parametrize("raw", [b"\xb2", b"\xb9\xb2", b"-1", b"1.5", b"99999999999999999999"])
def test_last_event_id_must_be_ascii_digits(
    seeded: Direct, proxy: str, http: httpx.Client, raw: bytes
) -> None:
    # Header values reach the app as latin-1: the byte 0xB2 is "²".
    response = http.get(
        proxy + "/changes",
        params={"scope": "u#alice"},
        headers={"Authorization": f"Bearer {hs256(claims())}", "Last-Event-ID": raw},
    )
    assert refusal(response) == INVALID


@pytest.mark.parametrize("after", ["0", "1", "000002", "9" * 18])
def test_ascii_after_still_opens_the_stream(
    seeded: Direct, proxy: str, http: httpx.Client, after: str
) -> None:
    with http.stream(
        "GET",
        proxy + "/changes",
        params={"scope": "u#alice", "after": after},
        headers={"Authorization": f"Bearer {hs256(claims())}"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        first = next(response.iter_lines())
        assert first == "retry: 1000"


def test_a_non_ascii_content_length_over_a_real_socket_is_no_server_error(
    proxy: str, http: httpx.Client
) -> None:
    # uvicorn's HTTP parser refuses it before the app; the proxy keeps serving.
    url = urlsplit(proxy)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(
            b"POST /dynamodb HTTP/1.1\r\nHost: proxy\r\nContent-Type: " + JSON_TYPE.encode()
            + b"\r\nX-Amz-Target: DynamoDB_20120810.GetItem\r\nAuthorization: Bearer "
            + hs256(claims()).encode() + b"\r\nContent-Length: \xb2\r\n\r\n{}"
        )  # fmt: skip
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"400"
    assert http.get(proxy + "/healthz").status_code == 200


async def asgi_post(app: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, Any]:
    """One POST /dynamodb straight into the ASGI app, headers exactly as given."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/dynamodb",
        "raw_path": b"/dynamodb",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body_out


@pytest.mark.parametrize("declared", [b"\xb2", b"\xb9", b"-2", b"2.0", b" 2"])
async def test_a_non_ascii_content_length_is_a_400_under_any_asgi_server(declared: bytes) -> None:
    # Other ASGI servers may pass such a header on: the app itself answers 400, not 500.
    config = ProxyConfig(table=TABLE, jwt_secret=SECRET, audience=AUDIENCE, issuer=ISSUER)
    app = create_app(config, session=local_session())
    status, body = await asgi_post(
        app,
        [
            (b"content-type", JSON_TYPE.encode()),
            (b"x-amz-target", b"DynamoDB_20120810.GetItem"),
            (b"authorization", f"Bearer {hs256(claims())}".encode()),
            (b"content-length", declared),
        ],
        b"{}",
    )
    assert (status, httpx.Response(200, content=body).json()["__type"]) == INVALID


def test_the_checks() -> None:
    assert ascii_digits("0")
    assert ascii_digits("9" * 18)
    for text in ("", "\u00b2", "\u0661", "-1", "1 ", "9" * 19):
        assert not ascii_digits(text)
    good = ["0", "-0", "+1", "1.", ".5", "1e5", "1.0E+2", "00012", "1E125", "9.9E125", "1E-130"]
    good += ["0E-200", "1" * 38, "1" * 38 + "0" * 50]
    for number in good:
        check_number(number, "N")
    bad: list[Any] = ["", "-", "1e", " 1", "1 ", "NaN", "Infinity", "0x10", "1_000", "\u0663"]
    bad += ["\uff11", "1e\u0967", "1E126", "1E-131", "1" * 39, "1e" + "9" * 40, 5, None]
    for number in bad:
        with pytest.raises(ValidationError):
            check_number(number, "N")
    assert positive_int(1, "Limit") == 1
    for bad_limit in (0, -1, 2**31, True, 1.0, "1", None):
        with pytest.raises(ValidationError, match="Limit must be an integer from 1 to"):
            positive_int(bad_limit, "Limit")
    # Attribute values are found by shape, anywhere: names are never taken for types.
    check_attribute_numbers({"Item": {"N": {"S": "x"}, "NS": {"L": []}, "n": {"N": "1"}}})
    with pytest.raises(ValidationError, match=r"Item\.a\.M\.b\.L\[1\]\.N"):
        check_attribute_numbers({"Item": {"a": {"M": {"b": {"L": [{"N": "1"}, {"N": "\u0663"}]}}}}})
    with pytest.raises(ValidationError, match=r"NS\[1\]"):
        check_attribute_numbers({"Item": {"s": {"NS": ["1", "x"]}}})
