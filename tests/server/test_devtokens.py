"""The dev-only sign-in ``POST /dev/token`` (:class:`DevTokens`): only ``pysync dev`` has it.

In process (``httpx.ASGITransport`` runs no lifespan, so no DynamoDB is needed).
Whether the proxy accepts a minted token is asked of the app itself through
``GET /changes``: past the token and scope checks it answers 503 (the change
feed runs in the lifespan), before them 401 or 403.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette

import pysync.server
from pysync import cli
from pysync.server import (
    CHANGES_PATH,
    DEMO_SHARED_SCOPE,
    DEV_JWT_SECRET,
    DEV_TOKEN_PATH,
    DevTokens,
    ProxyConfig,
    create_app,
    local_session,
)
from pysync.server._app import verifier_from_config

SECRET = "devtokens-secret-0123456789-0123456789"
AUDIENCE = "pysync-dev-test"
ISSUER = "https://issuer.dev.test"
MESSAGE = 'expected {"user": "<name>"}: 1-32 of a-z, 0-9, "_", "-"'


def client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
def config() -> ProxyConfig:
    return ProxyConfig(jwt_secret=SECRET, audience=AUDIENCE, issuer=ISSUER)


@pytest.fixture
def app(config: ProxyConfig) -> Starlette:
    tokens = DevTokens(SECRET, scopes=(DEMO_SHARED_SCOPE,), audience=AUDIENCE, issuer=ISSUER)
    return create_app(config, session=local_session(), dev_tokens=tokens)


async def subscribe(http: httpx.AsyncClient, token: str, scope: str) -> httpx.Response:
    """``GET /changes`` for ``scope`` with ``token``: 503 once the proxy let it through."""
    return await http.get(CHANGES_PATH, params={"scope": scope, "token": token})


async def test_sign_in_mints_a_token_the_proxy_accepts(app: Starlette, config: ProxyConfig) -> None:
    async with client(app) as http:
        before = time.time()
        response = await http.post(DEV_TOKEN_PATH, json={"user": "alice"})
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert set(body) == {"user", "token", "scopes", "expires_in"}
        assert body["user"] == "alice"
        assert body["scopes"] == ["u#alice", "s#team"]
        assert body["expires_in"] == 3600

        principal = await verifier_from_config(config).verify(f"Bearer {body['token']}")
        assert principal.subject == "alice"
        assert principal.scopes == {"u#alice", "s#team"}
        assert before + 3600 - 5 <= principal.expires_at <= time.time() + 3600 + 5
        claims = jwt.decode(
            body["token"], SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER
        )
        assert claims["scopes"] == body["scopes"]

        # The app's own checks let it through for the user's and the team's scopes only.
        for scope in ("u#alice", "s#team"):
            allowed = await subscribe(http, body["token"], scope)
            assert allowed.status_code == 503, allowed.text
            assert "change feed is not running" in allowed.text
        assert (await subscribe(http, body["token"], "u#bob")).status_code == 403
        assert (await subscribe(http, body["token"], "s#other")).status_code == 403


async def test_each_sign_in_is_a_fresh_token_for_that_user(app: Starlette) -> None:
    async with client(app) as http:
        first = (await http.post(DEV_TOKEN_PATH, json={"user": "bob"})).json()
        again = (await http.post(DEV_TOKEN_PATH, json={"user": "bob"})).json()
        other = (await http.post(DEV_TOKEN_PATH, json={"user": "carol_2-x"})).json()
    assert first["token"] != again["token"]
    assert first["scopes"] == again["scopes"] == ["u#bob", "s#team"]
    assert other["scopes"] == ["u#carol_2-x", "s#team"]
    assert jwt.decode(other["token"], options={"verify_signature": False})["sub"] == "carol_2-x"


async def test_a_token_of_another_secret_is_refused_by_the_proxy(config: ProxyConfig) -> None:
    """The endpoint signs with the secret it is given: one the proxy does not share fails."""
    other = DevTokens("another-secret-0123456789-0123456789", audience=AUDIENCE, issuer=ISSUER)
    app = create_app(config, session=local_session(), dev_tokens=other)
    async with client(app) as http:
        token = (await http.post(DEV_TOKEN_PATH, json={"user": "alice"})).json()["token"]
        assert (await subscribe(http, token, "u#alice")).status_code == 401


@pytest.mark.parametrize("user", ["a", "z" * 32, "a1", "user_name-2", "x-"])
async def test_user_names_that_are_accepted(app: Starlette, user: str) -> None:
    async with client(app) as http:
        response = await http.post(DEV_TOKEN_PATH, json={"user": user})
    assert response.status_code == 200, response.text
    assert response.json()["scopes"][0] == f"u#{user}"


BAD_BODIES: dict[str, bytes] = {
    "not json": b"user=alice",
    "empty": b"",
    "not utf-8": b'{"user": "\xff"}',
    "no user": b'{"name": "alice"}',
    "empty object": b"{}",
    "a list": b'["alice"]',
    "a string": b'"alice"',
    "null": b"null",
    "capital": b'{"user": "Alice"}',
    "space": b'{"user": "a b"}',
    "33 chars": json.dumps({"user": "a" * 33}).encode(),
    "empty name": b'{"user": ""}',
    "leading digit": b'{"user": "1alice"}',
    "leading dash": b'{"user": "-alice"}',
    "trailing newline": b'{"user": "alice\\n"}',
    "scope characters": b'{"user": "alice#s"}',
    "a path": b'{"user": "../alice"}',
    "non-ascii": '{"user": "alicé"}'.encode(),
    "number": b'{"user": 5}',
    "null user": b'{"user": null}',
    "list user": b'{"user": ["alice"]}',
    "object user": b'{"user": {"name": "alice"}}',
    "over 1 KB": json.dumps({"user": "alice", "pad": "x" * 1100}).encode(),
}


@pytest.mark.parametrize("body", list(BAD_BODIES.values()), ids=list(BAD_BODIES))
async def test_bad_bodies_are_refused_with_a_clear_message(app: Starlette, body: bytes) -> None:
    async with client(app) as http:
        response = await http.post(
            DEV_TOKEN_PATH, content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json() == {"error": MESSAGE}
    assert "token" not in response.json()


async def test_the_body_limit_is_1_kb(app: Starlette) -> None:
    def body(size: int) -> bytes:
        base = b'{"user": "alice", "pad": ""}'
        return base[:-2] + b"x" * (size - len(base)) + base[-2:]

    async with client(app) as http:
        at_limit = await http.post(DEV_TOKEN_PATH, content=body(1024))
        over = await http.post(DEV_TOKEN_PATH, content=body(1025))
    assert (at_limit.status_code, over.status_code) == (200, 400)


async def test_only_post_signs_in(app: Starlette) -> None:
    async with client(app) as http:
        got = await http.get(DEV_TOKEN_PATH, params={"user": "alice"})
        put = await http.put(DEV_TOKEN_PATH, json={"user": "alice"})
    assert got.status_code == put.status_code == 405
    assert "token" not in got.text


@pytest.mark.parametrize("web", [False, True], ids=["no web dir", "web dir"])
async def test_an_app_without_dev_tokens_has_no_sign_in(tmp_path: Path, web: bool) -> None:
    web_dir = None
    if web:  # the static mount at / then answers every other path
        web_dir = tmp_path / "web"
        web_dir.mkdir()
        (web_dir / "index.html").write_text("<title>app</title>")
    app = create_app(ProxyConfig(jwt_secret=SECRET, web_dir=web_dir), session=local_session())
    async with client(app) as http:
        posted = await http.post(DEV_TOKEN_PATH, json={"user": "alice"})
        got = await http.get(DEV_TOKEN_PATH)
    assert posted.status_code in (404, 405)
    assert got.status_code == 404
    assert "token" not in posted.text


# -- through the CLI: `pysync serve` never mounts it, `pysync dev` does --------------------


@pytest.fixture
def captured_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Make the CLI hand its app over instead of running it (and leave the environment
    and the working directory out of it)."""
    for name in list(os.environ):
        if name.startswith("PYSYNC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    captured: dict[str, Any] = {}

    def run(app: Any, config: Any, host: str, port: int, log_level: str) -> None:
        captured["app"] = app
        captured["config"] = config

    monkeypatch.setattr(cli, "_run", run)
    return captured


def route_paths(app: Starlette) -> list[str]:
    return [getattr(route, "path", "") for route in app.routes]


async def test_pysync_serve_has_no_sign_in(
    captured_app: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Credentials for its signer (botocore's chain reads the environment first).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    assert cli.main(["serve", "--dev"]) == 0  # even with the development secret
    app = captured_app["app"]
    assert DEV_TOKEN_PATH not in route_paths(app)
    async with client(app) as http:
        response = await http.post(DEV_TOKEN_PATH, json={"user": "alice"})
    assert response.status_code in (404, 405)
    assert "token" not in response.text


class FakeDynamoDBLocal:
    """Stands in for DynamoDB Local (Java): the app is built, never run."""

    endpoint = "http://127.0.0.1:9"

    def __init__(self, **_: Any) -> None:
        pass

    def __enter__(self) -> FakeDynamoDBLocal:
        return self

    def __exit__(self, *_: object) -> None:
        pass


@pytest.fixture
def dev_app(monkeypatch: pytest.MonkeyPatch, captured_app: dict[str, Any]) -> Any:
    monkeypatch.setattr(pysync.server, "DynamoDBLocal", FakeDynamoDBLocal)
    monkeypatch.setattr(pysync.server, "dynamodb_client", lambda *_, **__: None)
    monkeypatch.setattr(pysync.server, "create_tables", lambda *_, **__: None)

    def build(*args: str) -> Starlette:
        with contextlib.redirect_stdout(None):
            assert cli.main(["dev", *args]) == 0
        app: Starlette = captured_app["app"]
        return app

    return build


async def test_pysync_dev_signs_users_in_to_their_space_and_the_team(dev_app: Any) -> None:
    app = dev_app("--scope", "s#extra")
    assert DEV_TOKEN_PATH in route_paths(app)
    async with client(app) as http:
        response = await http.post(DEV_TOKEN_PATH, json={"user": "dana"})
        assert response.status_code == 200
        body = response.json()
        assert body["scopes"] == ["u#dana", "s#team", "s#extra"]
        claims = jwt.decode(body["token"], DEV_JWT_SECRET, algorithms=["HS256"])
        assert claims["sub"] == "dana"
        for scope in body["scopes"]:
            assert (await subscribe(http, body["token"], scope)).status_code == 503
        assert (await subscribe(http, body["token"], "u#alice")).status_code == 403


async def test_pysync_dev_tokens_carry_the_configured_audience_and_issuer(
    dev_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYSYNC_JWT_SECRET", SECRET)
    monkeypatch.setenv("PYSYNC_JWT_AUDIENCE", AUDIENCE)
    monkeypatch.setenv("PYSYNC_JWT_ISSUER", ISSUER)
    app = dev_app()
    async with client(app) as http:
        token = (await http.post(DEV_TOKEN_PATH, json={"user": "erin"})).json()["token"]
        assert (await subscribe(http, token, "u#erin")).status_code == 503
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert claims["sub"] == "erin"


async def test_pysync_dev_with_the_team_scope_lists_it_once(dev_app: Any) -> None:
    app = dev_app("--scope", "s#team")
    async with client(app) as http:
        body = (await http.post(DEV_TOKEN_PATH, json={"user": "dana"})).json()
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert body["scopes"] == claims["scopes"] == ["u#dana", "s#team"]
