"""A client that disconnects mid-body is a client disconnect in the log, not a server fault.

Through real proxies (uvicorn, real sockets): a request is started with a
``Content-Length`` larger than what is sent, then the socket is closed.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from botocore.auth import SigV4Auth

from pysync.server import DevTokens, ProxyConfig, create_app, local_session

from .conftest import JSON_TYPE, SECRET, ServerThread, claims, hs256, proxy_post

GET_OWN = {"TableName": "pysync_test", "Key": {"pk": {"S": "u#alice"}, "sk": {"S": "todo#1"}}}


def send_half_and_hang_up(url: str, path: str, headers: dict[str, str]) -> None:
    """Send the headers and 10 of 1000 announced body bytes, then close the connection."""
    parts = urlsplit(url)
    lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", "Content-Length: 1000"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + b'{"TableNam')
        time.sleep(0.05)  # the app is reading the body when the client goes


def wait_for_record(caplog: pytest.LogCaptureFixture, text: str, limit: float = 5.0) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for record in caplog.records:
            if text in record.getMessage():
                return record
        time.sleep(0.02)
    raise AssertionError(f"no log record with {text!r}: {caplog.text}")


def server_faults(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_a_disconnect_mid_body_is_logged_as_such_without_a_traceback(
    proxy: str, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pysync")
    send_half_and_hang_up(
        proxy,
        "/dynamodb",
        {
            "Authorization": f"Bearer {hs256(claims())}",
            "Content-Type": JSON_TYPE,
            "X-Amz-Target": "DynamoDB_20120810.GetItem",
        },
    )
    record = wait_for_record(caplog, "client disconnected")
    assert record.name == "pysync.proxy"
    assert record.levelno == logging.INFO
    assert record.exc_info is None
    assert "GetItem" in record.getMessage()
    assert server_faults(caplog) == []
    # The proxy goes on serving.
    assert http.get(proxy + "/healthz").status_code == 200


def test_a_real_fault_is_still_logged_with_its_traceback(
    proxy: str,
    http: httpx.Client,
    tokens: dict[str, str | None],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("signing failed for real")

    monkeypatch.setattr(SigV4Auth, "add_auth", broken)
    response = proxy_post(http, proxy, "GetItem", GET_OWN, tokens["alice"])
    assert response.status_code == 500
    (fault,) = server_faults(caplog)
    assert fault.levelno == logging.ERROR
    assert fault.exc_info is not None
    assert "signing failed for real" in str(fault.exc_info[1])


@pytest.fixture(scope="module")
def dev_proxy() -> Iterator[str]:
    """A proxy with the dev-only sign-in (as `pysync dev` mounts it); DynamoDB is not needed."""
    config = ProxyConfig(jwt_secret=SECRET, dynamodb_endpoint="http://127.0.0.1:9")
    app = create_app(config, session=local_session(), dev_tokens=DevTokens(SECRET))
    with ServerThread(app) as server:
        yield server.url


def test_a_disconnect_mid_body_at_the_dev_sign_in_is_no_server_fault(
    dev_proxy: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pysync")
    send_half_and_hang_up(dev_proxy, "/dev/token", {"Content-Type": "application/json"})
    record = wait_for_record(caplog, "client disconnected")
    assert record.exc_info is None
    assert server_faults(caplog) == []
    signed_in = httpx.post(dev_proxy + "/dev/token", json={"user": "dana"}, timeout=5)
    assert signed_in.status_code == 200
