"""The PyScript example (``web/pyscript/``) runs pysync in Chromium from this server alone.

``pysync dev`` serves npm ``@pyscript/core`` at ``/pyscript/`` and the example page
at ``/pyscript/`` too (the dist has no ``index.html``). The page loads Pyodide from
``/pyodide/`` and the pysync wheel through ``pyodide-lock.json``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Response

from pysync.server import DEV_JWT_SECRET, issue_token
from tests._browser_config import ROOT, config
from tests.e2e.conftest import OUTPUT_DIR

PAGE = ROOT / "web" / "pyscript" / "index.html"
DOC = ROOT / "docs" / "pyscript.md"


@dataclass
class Network:
    """Every request of the test's browser contexts, and the responses that failed."""

    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def record(self, context: BrowserContext) -> None:
        context.on("request", lambda request: self.requests.append(request.url))
        context.on("response", self._on_response)

    def _on_response(self, response: Response) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.status} {response.url}")

    def paths(self) -> set[str]:
        return {urlsplit(url).path for url in self.requests}


def origin(url: str) -> str:
    if url.startswith("blob:"):  # blob:http://host:port/uuid belongs to that origin
        url = url[len("blob:") :]
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture
def network() -> Iterator[tuple[Network, list[BrowserContext]]]:
    recorded = Network()
    contexts: list[BrowserContext] = []
    yield recorded, contexts
    for context in contexts:
        context.close()


def open_page(browser: Browser, url: str, network: Network, contexts: list[BrowserContext]) -> Page:
    """A fresh browser context (its own IndexedDB) on ``url``, once Python has run."""
    context = browser.new_context(viewport=config.VIEWPORT)
    context.set_default_timeout(config.TIMEOUT_MS)
    contexts.append(context)
    network.record(context)
    page = context.new_page()
    page.goto(url)
    wait_until_ready(page)
    return page


def wait_until_ready(page: Page) -> None:
    """Wait for the page's Python to finish; fail with PyScript's error banner if it did not."""
    page.wait_for_function(
        "document.body.dataset.pysync === 'ready' || document.querySelector('.py-error')"
    )
    errors = page.locator(".py-error").all_inner_texts()
    assert not errors, f"PyScript reported: {errors}"


def notes(page: Page) -> list[str]:
    return page.locator("#notes li").all_inner_texts()


def add_note(page: Page, text: str) -> None:
    """Type a note into the form and submit it with Enter, as a user does."""
    page.fill("#note-text", text)
    page.press("#note-text", "Enter")


def wait_for_note(page: Page, text: str) -> None:
    page.wait_for_function(
        "text => [...document.querySelectorAll('#notes li')].some(li => li.textContent === text)",
        arg=text,
    )


def wait_for_server_items(url: str, token: str, user: str, text: str) -> str:
    """The user's items in DynamoDB (read through the proxy) once one holds ``text``."""
    query = {
        "TableName": "pysync",
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": f"u#{user}"}},
    }
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "DynamoDB_20120810.Query",
        "Authorization": f"Bearer {token}",
    }
    deadline = time.monotonic() + config.TIMEOUT_MS / 1000  # a bound, not a measurement
    while True:
        response = httpx.post(url + "/dynamodb", json=query, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        if text in response.text or time.monotonic() > deadline:
            assert text in response.text, f"never pushed: {response.text}"
            return response.text
        time.sleep(0.1)


def test_pyscript_page_stores_syncs_and_stays_on_its_origin(
    browser: Browser,
    server_url: str,
    network: tuple[Network, list[BrowserContext]],
) -> None:
    recorded, contexts = network
    example = server_url + "/pyscript/"
    try:
        # Without a token: the form writes to IndexedDB, the live query shows it, and a
        # reload reads it back (nothing was synced: there is no token to sync with).
        local = open_page(browser, example, recorded, contexts)
        assert notes(local) == []
        add_note(local, "kept in IndexedDB")
        wait_for_note(local, "kept in IndexedDB")
        assert local.input_value("#note-text") == ""
        local.reload()
        wait_until_ready(local)
        wait_for_note(local, "kept in IndexedDB")
        assert notes(local) == ["kept in IndexedDB"]

        # With a token: the note goes through the proxy to DynamoDB Local, where this
        # user's token reads it back, and the page sees its push acknowledged.
        user = f"e2e-pyscript-{uuid.uuid4().hex[:8]}"
        token = issue_token(DEV_JWT_SECRET, user)
        synced = open_page(browser, f"{example}#token={token}", recorded, contexts)
        assert f"Signed in as {user}" in synced.inner_text("#status")
        add_note(synced, "synced through the proxy")
        wait_for_note(synced, "synced through the proxy")
        stored = wait_for_server_items(server_url, token, user, "synced through the proxy")
        assert "kept in IndexedDB" not in stored  # the tokenless note never left its browser
        synced.wait_for_function("document.body.dataset.pending === '0'")
        assert notes(synced) == ["synced through the proxy"]
    except Exception:
        for index, context in enumerate(contexts):
            for page in context.pages:
                page.screenshot(path=OUTPUT_DIR / f"failed-pyscript-{index}.png")
        raise

    # Everything came from the server: PyScript, Pyodide, the wheel (named by the
    # lock file, whatever its version), the proxy and the realtime feed.
    fetched = [url for url in recorded.requests if not url.startswith("data:")]
    assert {origin(url) for url in fetched} == {server_url}
    paths = recorded.paths()
    assert {"/pyscript/", "/pyscript/core.js", "/pyodide/pyodide.mjs", "/dynamodb"} <= paths
    assert "/pyodide/pyodide-lock.json" in paths
    assert any(re.fullmatch(r"/pyodide/pysync-[^/]+\.whl", path) for path in paths), paths
    assert recorded.failed == []


def test_the_documented_snippet_is_the_one_the_page_uses() -> None:
    """docs/pyscript.md's config lines appear verbatim in the tested page."""
    (snippet,) = re.findall(r"```html\n(.*?)```", DOC.read_text(), re.DOTALL)[:1]
    page = PAGE.read_text()
    script_lines = [line.strip() for line in snippet.splitlines() if "<script" in line]
    assert len(script_lines) == 2, snippet
    for line in script_lines:
        assert line in page, line
