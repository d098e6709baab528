"""Token verification details: JWKS over HTTP, scope claims, configuration errors."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest

from pysync.server import ProxyError, TokenVerifier, _auth, issue_token

from .conftest import Keys, claims, hs256, rs256

SECRET = "s" * 32


@pytest.fixture
def jwks_url(keys: Keys) -> Iterator[tuple[str, list[str]]]:
    """A JWKS endpoint on a local HTTP server; the list records each fetch."""
    fetches: list[str] = []
    document = json.dumps(keys.jwks).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fetches.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json", fetches
    server.shutdown()
    server.server_close()


async def test_rs256_from_jwks_url_is_fetched_once(
    keys: Keys, jwks_url: tuple[str, list[str]]
) -> None:
    url, fetches = jwks_url
    verifier = TokenVerifier(jwks_url=url, audience="pysync-test", issuer="https://issuer.test")
    token = rs256(claims(), keys.rsa)
    for _ in range(3):
        principal = await verifier.verify(f"Bearer {token}")
        assert principal.subject == "alice"
    assert fetches == ["/.well-known/jwks.json"]


async def test_scopes_from_claims() -> None:
    verifier = TokenVerifier(secret=SECRET)
    token = hs256({"sub": "ann", "exp": time.time() + 60, "scopes": ["s#a", "x#b", "s#"]}, SECRET)
    principal = await verifier.verify(f"bearer {token}")  # the scheme is case-insensitive
    assert principal.scopes == {"u#ann", "s#a"}


async def test_sub_scope_can_be_turned_off() -> None:
    verifier = TokenVerifier(secret=SECRET, user_scope_from_sub=False)
    token = hs256({"sub": "ann", "exp": time.time() + 60}, SECRET)
    assert (await verifier.verify(f"Bearer {token}")).scopes == frozenset()


async def test_issue_token_round_trip() -> None:
    token = issue_token(SECRET, "bob", scopes=["s#team", "u#bob"], ttl=60, audience="a")
    principal = await TokenVerifier(secret=SECRET, audience="a").verify(f"Bearer {token}")
    assert principal.scopes == {"u#bob", "s#team"}
    assert jwt.decode(token, SECRET, algorithms=["HS256"], audience="a")["scopes"] == [
        "u#bob",
        "s#team",
    ]


async def test_leeway_tolerates_small_clock_skew() -> None:
    verifier = TokenVerifier(secret=SECRET, leeway=30)
    token = hs256({"sub": "ann", "exp": time.time() - 5}, SECRET)
    await verifier.verify(f"Bearer {token}")
    strict = TokenVerifier(secret=SECRET, leeway=0)
    with pytest.raises(ProxyError, match="expired"):
        await strict.verify(f"Bearer {token}")


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="configure"):
        TokenVerifier()
    with pytest.raises(ValueError, match="32 bytes"):
        TokenVerifier(secret="short")


async def test_cached_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = TokenVerifier(secret=SECRET, leeway=0)
    now = time.time()
    token = hs256({"sub": "ann", "exp": now + 60}, SECRET)
    assert (await verifier.verify(f"Bearer {token}")).subject == "ann"
    assert (await verifier.verify(f"Bearer {token}")).subject == "ann"  # from the cache
    monkeypatch.setattr(_auth.time, "time", lambda: now + 61)
    with pytest.raises(ProxyError, match="expired"):
        await verifier.verify(f"Bearer {token}")
