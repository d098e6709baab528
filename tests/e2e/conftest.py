"""End-to-end fixtures: the real demo stack, one Chromium, a fresh browser context per test.

The server is started the way ``./run.sh demo`` starts it (``pysync dev`` from the
repository root: DynamoDB Local + proxy serving ``web/`` and ``build/pyodide/``),
on a free port. Set ``PYSYNC_BASE_URL`` to test a server that is already running.
Its output goes to ``test-results/e2e-server.log``; failed tests leave a screenshot
there too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests._browser_config import ROOT, config

OUTPUT_DIR = ROOT / config.OUTPUT_DIR
SERVER_START_TIMEOUT_S = 60
# The line uvicorn logs once it accepts connections.
_READY_LINE = "Uvicorn running on"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pysync_command() -> list[str]:
    script = Path(sys.executable).with_name("pysync")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pysync.cli"]


class DemoServer:
    """``pysync dev`` as a child process; ready once uvicorn listens and /healthz answers.

    ``args`` are more options of ``pysync dev`` (e.g. ``--pyodide-dir``). It can be
    stopped and started again: on the same port (so the same origin for the browser),
    with a fresh DynamoDB Local, appending to the same log.
    """

    def __init__(self, log_path: Path, args: Sequence[str] = ()) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.args = tuple(args)
        self._ready = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._starts = 0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._ready.clear()
        self._starts += 1
        self._proc = subprocess.Popen(
            [
                *_pysync_command(),
                "dev",
                "--port",
                str(self.port),
                "--log-level",
                "info",
                *self.args,
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._reader = threading.Thread(target=self._copy_output, daemon=True)
        self._reader.start()
        if not self._ready.wait(SERVER_START_TIMEOUT_S) or self._proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"pysync dev did not start:\n{self.log_path.read_text()}")
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=10) as response:
            assert response.status == 200, response.read()

    def _copy_output(self) -> None:
        # Drains the pipe (the server must never block on a full one) into the log.
        assert self._proc is not None
        assert self._proc.stdout is not None
        with self.log_path.open("w" if self._starts == 1 else "a") as log:
            for line in self._proc.stdout:
                log.write(line)
                log.flush()
                if _READY_LINE in line:
                    self._ready.set()
        self._ready.set()  # exited: wake start() so it fails at once

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # as Ctrl-C: uvicorn, then DynamoDB Local, stop
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        assert proc.stdout is not None
        proc.stdout.close()
        self._proc = None


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """Base URL of the demo server (started for the session unless PYSYNC_BASE_URL is set)."""
    if os.environ.get("PYSYNC_BASE_URL"):
        yield config.BASE_URL.rstrip("/")
        return
    server = DemoServer(OUTPUT_DIR / "e2e-server.log")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


# Package scope, not session: Playwright's sync API cannot run twice at once in a
# thread, and tests/conftest.py starts its own for the pytest-pyodide tests.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One Chromium for every end-to-end test, launched as playwright.config.py says."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=config.CHROMIUM_EXECUTABLE, args=config.CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Demo:
    """A page of the demo app in its own browser context (so its own IndexedDB)."""

    page: Page
    context: BrowserContext
    url: str
    console_errors: list[str] = field(default_factory=list)
    console_log: list[str] = field(default_factory=list)

    def open(self) -> None:
        """Navigate to the app and wait until it is running; fail with the page's banner."""
        self.page.goto(self.url + "/")
        self.wait_until_started()

    def reload(self) -> None:
        self.page.reload()
        self.wait_until_started()

    def wait_until_started(self) -> None:
        self.wait_for_boot_to_end()
        state = self.state
        assert state == "ready", f"data-pysync={state}: {self.page.inner_text('#boot-status')}"

    def wait_for_boot_to_end(self) -> None:
        try:
            self.page.wait_for_function("['ready', 'error'].includes(document.body.dataset.pysync)")
        except PlaywrightTimeoutError:
            status = self.page.locator("#boot-status").text_content(timeout=1000)
            raise AssertionError(
                f"the page did not finish booting; status: {status!r}; "
                f"console: {self.console_log[-20:]}"
            ) from None

    def wait_until_stored_for_offline(self) -> dict[str, Any]:
        """Wait for ``window.pysyncOffline``: the service worker (web/sw.js) has stored this
        build, so the next load works with no network. Call it before going offline."""
        offline: dict[str, Any] = self.page.evaluate("window.pysyncOffline")
        assert offline["ready"], offline
        return offline

    @property
    def state(self) -> str:
        return str(self.page.evaluate("document.body.dataset.pysync"))

    def run(self, code: str) -> Any:
        """Run Python in the page (``window.pysyncRun``) and return its JSON result."""
        return self.page.evaluate("code => window.pysyncRun(code)", dedent(code))

    def screenshot(self, name: str) -> Path:
        path = OUTPUT_DIR / f"{name}.png"
        self.page.screenshot(path=path, full_page=True)
        return path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


def new_demo(
    browser: Browser, url: str, viewport: dict[str, int] | None = None, **options: Any
) -> Demo:
    """A page in a fresh context (its own IndexedDB) on ``url``, recording its console.

    ``options`` go to ``browser.new_context`` (e.g. ``service_workers="block"``).
    """
    context = browser.new_context(viewport=viewport or config.VIEWPORT, **options)  # type: ignore[arg-type]
    context.set_default_timeout(config.TIMEOUT_MS)
    page = context.new_page()
    demo = Demo(page, context, url)

    def on_console(message: ConsoleMessage) -> None:
        demo.console_log.append(f"{message.type}: {message.text}")
        if message.type == "error":
            demo.console_errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: demo.console_errors.append(str(error)))
    return demo


@pytest.fixture
def demo(browser: Browser, server_url: str, request: pytest.FixtureRequest) -> Iterator[Demo]:
    """A fresh context and page on the demo server (not yet navigated)."""
    demo = new_demo(browser, server_url)
    page = demo.page
    try:
        yield demo
    finally:
        if request.node.stash.get(_FAILED, False) and not page.is_closed():
            demo.screenshot(f"failed-{request.node.name}")
        demo.context.close()
