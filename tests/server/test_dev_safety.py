"""What the development stack exposes, and to whom.

- DynamoDB Local accepts any credentials: it must listen on loopback only, so
  that nobody on the network reaches every user's items around the proxy
  (checked from the machine's own network address, through real sockets).
- ``pysync token`` and ``pysync dev`` grant another user's private scope only
  when asked to on purpose (``--allow-other-user-scope``).
- ``pysync dev`` honours ``PYSYNC_ALLOWED_ORIGINS`` and ``--allow-origin``; its
  own origin is the default.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette

import pysync.server
from pysync import cli
from pysync.server import DEV_JWT_SECRET, DEV_TOKEN_PATH, DynamoDBLocal, _devstack
from pysync.server._devstack import check_loopback_only, free_port, listening_addresses

REPO = Path(__file__).resolve().parents[2]
LIST_TABLES = {
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": "DynamoDB_20120810.ListTables",
    "Authorization": "AWS4-HMAC-SHA256 Credential=anyone/20260101/us-east-1/dynamodb/"
    "aws4_request, SignedHeaders=host, Signature=00",  # DynamoDB Local checks no signature
}


def outside_addresses() -> list[str]:
    """This machine's addresses other than loopback (as `hostname -I` lists them)."""
    found: list[str] = []
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        listed = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5)
        found = listed.stdout.split()
    if not found:  # the address of the default route, without sending anything
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.connect(("192.0.2.1", 9))
            found = [udp.getsockname()[0]]
    return [a for a in found if not ipaddress.ip_address(a.split("%")[0]).is_loopback]


def connect(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        sock.connect((host, port))


def assert_loopback_only(port: int) -> None:
    """From every outside address the port refuses connections; 127.0.0.1 serves."""
    outside = outside_addresses()
    if not outside:
        pytest.skip("this machine has no address besides loopback")
    for address in outside:
        with pytest.raises(ConnectionRefusedError):
            connect(address, port)
    response = httpx.post(f"http://127.0.0.1:{port}/", content=b"{}", headers=LIST_TABLES)
    assert response.status_code == 200
    assert "TableNames" in response.json()
    addresses = listening_addresses(port)
    if addresses is not None:  # Linux: what the kernel says is listening
        assert addresses
        assert all(_devstack.is_loopback(a) for a in addresses), addresses


# -- DynamoDB Local on loopback ------------------------------------------------------------


def test_dynamodb_local_listens_on_loopback_only(dynamodb: DynamoDBLocal) -> None:
    assert dynamodb.endpoint == f"http://127.0.0.1:{dynamodb.port}"
    assert_loopback_only(dynamodb.port)


@pytest.mark.skipif(listening_addresses(1) is None, reason="needs Linux /proc/net/tcp")
def test_a_listener_beyond_loopback_is_found() -> None:
    with socket.create_server(("0.0.0.0", 0)) as wide:
        port = wide.getsockname()[1]
        with pytest.raises(RuntimeError, match="beyond loopback"):
            check_loopback_only(port)
    with socket.create_server(("127.0.0.1", 0)) as narrow:
        check_loopback_only(narrow.getsockname()[1])


@pytest.mark.skipif(listening_addresses(1) is None, reason="needs Linux /proc/net/tcp")
def test_dynamodb_local_on_every_interface_is_stopped_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The launcher made to bind the wildcard address: the start check refuses it.
    monkeypatch.setattr(_devstack, "LOOPBACK", "0.0.0.0")
    database = DynamoDBLocal()
    with pytest.raises(RuntimeError, match="beyond loopback"):
        database.start()
    with pytest.raises(ConnectionRefusedError):
        connect("127.0.0.1", database.port)  # Java was stopped


def test_the_launcher_is_compiled_once_and_cached() -> None:
    first = _devstack.launcher_classpath()
    assert (first / "PysyncLoopbackDynamoDBLocal.class").is_file()
    assert _devstack.launcher_classpath() == first


# -- pysync token and pysync dev: another user's private scope ---------------------------


def test_token_refuses_another_users_private_scope(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["token", "--user", "alice", "--scope", "s#team", "--scope", "u#bob"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "u#bob" in err
    assert "--allow-other-user-scope" in err


def test_token_grants_it_when_asked_on_purpose(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["token", "--user", "alice", "--scope", "u#bob", "--allow-other-user-scope"]
    assert cli.main(argv) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), DEV_JWT_SECRET, algorithms=["HS256"])
    assert claims["scopes"] == ["u#alice", "u#bob"]


def test_token_with_its_own_and_shared_scopes_needs_no_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["token", "--user", "alice", "--scope", "u#alice", "--scope", "s#x"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), DEV_JWT_SECRET, algorithms=["HS256"])
    assert claims["scopes"] == ["u#alice", "s#x"]


def test_token_help_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["token", "--help"])
    assert "--allow-other-user-scope" in capsys.readouterr().out


class _NoJava:
    def __init__(self, **_: Any) -> None:
        raise AssertionError("pysync dev started DynamoDB Local before checking its options")


@pytest.mark.parametrize("scope", ["u#bob", "u#alice"])
def test_dev_refuses_private_scopes_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], scope: str
) -> None:
    # Every --scope goes to every user signing in at /dev/token: u#alice too.
    monkeypatch.setattr(pysync.server, "DynamoDBLocal", _NoJava)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["dev", "--user", "alice", "--scope", scope])
    assert exit_info.value.code == 2
    assert "--allow-other-user-scope" in capsys.readouterr().err


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.2", "::", "example.org"])
def test_dev_refuses_to_listen_beyond_loopback_unless_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], host: str
) -> None:
    # Anyone reaching /dev/token can sign in as anyone: the dev stack stays on loopback.
    monkeypatch.setattr(pysync.server, "DynamoDBLocal", _NoJava)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["dev", "--host", host])
    assert exit_info.value.code == 2
    assert "--allow-remote" in capsys.readouterr().err


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_dev_starts_on_loopback_without_the_flag(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.setattr(pysync.server, "DynamoDBLocal", _NoJava)
    with pytest.raises(AssertionError, match="before checking its options"):
        cli.main(["dev", "--host", host])  # past the checks: it starts DynamoDB Local


class _FakeDynamoDBLocal:
    """Stands in for DynamoDB Local (Java): the app is built, never run."""

    endpoint = "http://127.0.0.1:9"

    def __init__(self, **_: Any) -> None:
        pass

    def __enter__(self) -> _FakeDynamoDBLocal:
        return self

    def __exit__(self, *_: object) -> None:
        pass


@pytest.fixture
def dev_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """`pysync dev <args>` built but not run: its app (and the environment kept out)."""
    for name in list(os.environ):
        if name.startswith("PYSYNC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pysync.server, "DynamoDBLocal", _FakeDynamoDBLocal)
    monkeypatch.setattr(pysync.server, "dynamodb_client", lambda *_, **__: None)
    monkeypatch.setattr(pysync.server, "create_tables", lambda *_, **__: None)
    captured: dict[str, Any] = {}

    def run(app: Any, *_: Any, **__: Any) -> None:
        captured["app"] = app

    monkeypatch.setattr(cli, "_run", run)

    def build(*args: str) -> Starlette:
        with contextlib.redirect_stdout(None):
            assert cli.main(["dev", *args]) == 0
        app: Starlette = captured["app"]
        return app

    return build


async def preflight(app: Starlette, origin: str) -> str | None:
    """The Access-Control-Allow-Origin the app answers a preflight from ``origin`` with."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        response = await http.options(
            "/dynamodb",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,x-amz-target",
            },
        )
    return response.headers.get("access-control-allow-origin")


async def test_dev_allows_its_own_origin_by_default(dev_app: Any) -> None:
    app = dev_app("--port", "8000")
    assert await preflight(app, "http://127.0.0.1:8000") == "http://127.0.0.1:8000"
    assert await preflight(app, "https://elsewhere.test") is None


async def test_dev_honours_pysync_allowed_origins(
    dev_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYSYNC_ALLOWED_ORIGINS", "https://app.test, https://b.test")
    app = dev_app("--port", "8000")
    assert await preflight(app, "https://app.test") == "https://app.test"
    assert await preflight(app, "https://b.test") == "https://b.test"
    assert await preflight(app, "https://elsewhere.test") is None


async def test_dev_allow_origin_flag_wins_over_the_environment(
    dev_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYSYNC_ALLOWED_ORIGINS", "https://app.test")
    app = dev_app("--allow-origin", "https://flag.test")
    assert await preflight(app, "https://flag.test") == "https://flag.test"
    assert await preflight(app, "https://app.test") is None


async def test_dev_grants_private_scopes_when_asked_on_purpose(dev_app: Any) -> None:
    app = dev_app("--scope", "u#bob", "--allow-other-user-scope")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        body = (await http.post(DEV_TOKEN_PATH, json={"user": "dana"})).json()
    assert body["scopes"] == ["u#dana", "s#team", "u#bob"]


# -- the whole `pysync dev`, as a process ---------------------------------------------------


@pytest.fixture(scope="module")
def dev_stack() -> Iterator[dict[str, Any]]:
    """`pysync dev` with PYSYNC_ALLOWED_ORIGINS set; its printed endpoints and token."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSYNC_")}
    env["PYSYNC_ALLOWED_ORIGINS"] = "https://app.test"
    process = subprocess.Popen(
        [sys.executable, "-m", "pysync.cli", "dev", "--port", str(port), "--user", "alice"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(6)]
        local = next(line for line in lines if "DynamoDB Local:" in line).split()[2]
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "pysync dev exited"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "pysync dev did not answer"
            time.sleep(0.05)
        yield {"base": base, "dynamodb": local}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        if process.stdout is not None:
            process.stdout.close()


def test_pysync_dev_keeps_dynamodb_local_off_the_network(dev_stack: dict[str, Any]) -> None:
    endpoint = httpx.URL(dev_stack["dynamodb"])
    assert endpoint.host == "127.0.0.1"
    assert endpoint.port is not None
    assert_loopback_only(endpoint.port)


def test_pysync_dev_answers_cors_for_the_configured_origin(dev_stack: dict[str, Any]) -> None:
    def allowed(origin: str) -> str | None:
        response = httpx.options(
            dev_stack["base"] + "/dynamodb",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,x-amz-target",
            },
        )
        return response.headers.get("access-control-allow-origin")

    assert allowed("https://app.test") == "https://app.test"
    assert allowed("https://elsewhere.test") is None
