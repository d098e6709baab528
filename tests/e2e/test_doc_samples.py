"""The ```python blocks of README.md and docs/*.md marked ``<!-- sample: browser -->``.

They run in Chromium, in the demo page of ``pysync dev`` (this package's
``server_url`` and ``browser``), through ``window.pysyncRun``: the blocks of one
file in order, in one page and one namespace. Before a page's first block the
test stores a token for ``alice`` in ``sessionStorage["pysync-token"]``, minted
as ``pysync token --user alice`` does. The rules for every block are in
``tests/docs/test_samples.py``; the CPython ones run there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import Browser, ConsoleMessage

from pysync.server import DEV_JWT_SECRET, issue_token
from tests._browser_config import config
from tests.docs._samples import PAGE_RUNNER, Block, all_blocks, page_failure_report
from tests.e2e.conftest import Demo

#: Seconds one block may take in the page.
TIMEOUT_S = 60.0
#: The user whose token the pages get (a page's samples connect as this user).
USER = "alice"

BLOCKS = [block for block in all_blocks() if block.kind == "browser"]


@dataclass
class Page:
    demo: Demo
    #: Failure report of each block run so far (None: it passed), by line.
    results: dict[int, str | None] = field(default_factory=dict)


class Pages:
    """One demo page per Markdown file, opened at the file's first browser block."""

    def __init__(self, browser: Browser, server_url: str) -> None:
        self.browser, self.server_url = browser, server_url
        self.opened: dict[str, Page] = {}

    def __getitem__(self, path: str) -> Page:
        if path not in self.opened:
            self.opened[path] = Page(self._open())
        return self.opened[path]

    def _open(self) -> Demo:
        context = self.browser.new_context(viewport=config.VIEWPORT)  # type: ignore[arg-type]
        context.set_default_timeout(config.TIMEOUT_MS)
        demo = Demo(context.new_page(), context, self.server_url)

        def on_console(message: ConsoleMessage) -> None:
            demo.console_log.append(f"{message.type}: {message.text}")

        demo.page.on("console", on_console)
        demo.open()
        secret = os.environ.get("PYSYNC_JWT_SECRET") or DEV_JWT_SECRET
        token = issue_token(secret, USER, ttl=3600)
        demo.page.evaluate("t => sessionStorage.setItem('pysync-token', t)", token)
        demo.run(PAGE_RUNNER + "\nNone")
        return demo

    def close(self) -> None:
        for page in self.opened.values():
            page.demo.context.close()


@pytest.fixture(scope="module")
def pages(browser: Browser, server_url: str) -> Iterator[Pages]:
    opened = Pages(browser, server_url)
    yield opened
    opened.close()


def run_block(page: Page, block: Block) -> str | None:
    failure = page.demo.run(
        f"await _pysync_doc_sample({block.source()!r}, {block.path!r}, {TIMEOUT_S!r})"
    )
    if failure is None:
        return None
    report = page_failure_report(block, failure)
    console = [line for line in page.demo.console_log[-10:] if line.startswith("error")]
    return report + ("\nconsole errors:\n" + "\n".join(console) if console else "")


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_sample_in_the_page(block: Block, pages: Pages) -> None:
    page = pages[block.path]
    for earlier in BLOCKS:
        if earlier.path != block.path or earlier.line >= block.line:
            continue
        if earlier.line not in page.results:
            page.results[earlier.line] = run_block(page, earlier)
        if page.results[earlier.line] is not None:
            first_line = str(page.results[earlier.line]).splitlines()[0]
            pytest.skip(f"{block.where} builds on {earlier.where}, which failed: {first_line}")
    if block.line not in page.results:
        page.results[block.line] = run_block(page, block)
    failure = page.results[block.line]
    if failure is not None:
        pytest.fail(failure, pytrace=False)
