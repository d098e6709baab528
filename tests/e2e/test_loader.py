"""The loader fails loudly: a red banner, data-pysync="error" and a rejected pysyncBoot."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from playwright.sync_api import Route, expect

from tests._browser_config import ROOT

from .conftest import Demo

WHEEL = json.loads((ROOT / "build" / "pyodide" / "pysync-wheel.json").read_text())["file_name"]


def not_found(route: Route) -> None:
    route.fulfill(status=404, body="not found")


def garbage(route: Route) -> None:
    route.fulfill(status=200, body=b"PK\x03\x04 this is not the wheel the lock file describes")


def failing_app(route: Route) -> None:
    route.fulfill(
        status=200,
        content_type="text/x-python; charset=utf-8",
        body="def main():\n    raise RuntimeError('boom while starting')\n\nmain()\n",
    )


FAILURES: dict[str, tuple[str, Callable[[Route], None], str]] = {
    # name: (path the route breaks, how, text the banner must show)
    "loader-missing": ("/loader.js", not_found, "could not load loader.js"),
    "pyodide-module-missing": ("/pyodide/pyodide.mjs", not_found, "could not load Pyodide"),
    "pyodide-wasm-missing": ("/pyodide/pyodide.asm.wasm", not_found, "could not start Pyodide"),
    "wheel-missing": (f"/pyodide/{WHEEL}", not_found, "could not install the pysync wheel"),
    "wheel-corrupt": (f"/pyodide/{WHEEL}", garbage, "could not install the pysync wheel"),
    "app-raises": ("/app.py", failing_app, "RuntimeError: boom while starting"),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_failed_boot_is_shown_in_the_page(demo: Demo, failure: str) -> None:
    path, handler, expected = FAILURES[failure]
    demo.page.route(lambda url: url.split("?")[0].endswith(path), handler)
    demo.page.goto(demo.url + "/")
    demo.wait_for_boot_to_end()

    assert demo.state == "error"
    banner = demo.page.locator("#boot-status")
    expect(banner).to_be_visible()
    expect(banner).to_have_attribute("role", "alert")
    expect(banner).to_contain_text("pysync failed to start")
    expect(banner).to_contain_text(expected)
    assert banner.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(176, 0, 32)"
    expect(demo.page.locator("#app")).to_be_hidden()
    rejection = demo.page.evaluate("window.pysyncBoot.then(() => null, (e) => e.message)")
    assert rejection is not None
    assert expected in rejection
    if failure == "wheel-missing":
        assert f"{WHEEL}: HTTP 404" in rejection, rejection
    if failure == "wheel-corrupt":
        assert "does not match pyodide-lock.json" in rejection, rejection
    demo.screenshot(f"boot-failure-{failure}")
