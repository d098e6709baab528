"""Shared test setup.

pytest-pyodide launches Playwright's own browser build, which is never installed
here; its ``playwright_browsers`` fixture is replaced by one that starts Debian's
Chromium with the settings of ``playwright.config.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests._browser_config import config


@pytest.fixture(scope="module")
def playwright_browsers(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    if request.config.option.runner.lower() != "playwright":
        yield {}
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=config.CHROMIUM_EXECUTABLE, args=config.CHROMIUM_ARGS
        )
        try:
            yield {"chrome": browser}
        finally:
            browser.close()
