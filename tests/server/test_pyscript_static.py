"""``/pyscript/``: PyScript's dist, falling back to ``<web_dir>/pyscript/``; its configuration."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from pysync.cli import _with_static_defaults
from pysync.server import DEV_JWT_SECRET, ProxyConfig, create_app, local_session


def _client(tmp_path: Path, *, pyscript: bool = True) -> httpx.AsyncClient:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "core.js").write_text("export {};")
    web = tmp_path / "web"
    (web / "pyscript").mkdir(parents=True)
    (web / "index.html").write_text("<title>demo</title>")
    (web / "pyscript" / "index.html").write_text("<title>example</title>")
    (web / "pyscript" / "core.js").write_text("shadowed by the dist")
    config = ProxyConfig(
        jwt_secret=DEV_JWT_SECRET, web_dir=web, pyscript_dir=dist if pyscript else None
    )
    # ASGITransport runs no lifespan: static files need no DynamoDB.
    app = create_app(config, session=local_session())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_pyscript_dist_then_the_example_page(tmp_path: Path) -> None:
    async with _client(tmp_path) as client:
        core = await client.get("/pyscript/core.js")
        page = await client.get("/pyscript/")
        redirected = await client.get("/pyscript", follow_redirects=True)
        demo = await client.get("/")
        missing = await client.get("/pyscript/missing.js")
        outside = await client.get("/pyscript/%2e%2e/%2e%2e/etc/passwd")
    assert core.status_code == 200
    assert core.text == "export {};"
    assert core.headers["content-type"] == "text/javascript; charset=utf-8"
    assert page.status_code == 200
    assert "example" in page.text
    assert redirected.text == page.text
    assert "demo" in demo.text
    assert missing.status_code == 404
    assert outside.status_code == 404


async def test_without_pyscript_dir_the_web_dir_serves_pyscript(tmp_path: Path) -> None:
    async with _client(tmp_path, pyscript=False) as client:
        core = await client.get("/pyscript/core.js")
    assert core.text == "shadowed by the dist"


def test_pyscript_dir_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = ProxyConfig.from_env({"PYSYNC_PYSCRIPT_DIR": "/srv/pyscript"})
    assert env.pyscript_dir == Path("/srv/pyscript")
    monkeypatch.chdir(tmp_path)
    assert _with_static_defaults(ProxyConfig()).pyscript_dir is None  # never required
    dist = Path("node_modules", "@pyscript", "core", "dist")
    dist.mkdir(parents=True)
    assert _with_static_defaults(ProxyConfig()).pyscript_dir == dist
    assert _with_static_defaults(env).pyscript_dir == Path("/srv/pyscript")
