"""Every ```python block of README.md and docs/*.md runs, as a newcomer would copy it.

The files are read when the tests are collected, so a page added later is tested
without changing anything here. Each block is one test, named after its file and
the line of its opening fence (``data-api.md:3``). A page is a story: the blocks of
one file run in order in one namespace (per place they run in), so a later block
may use what an earlier one defined; a block whose predecessor failed is skipped
with that failure as the reason. Top-level ``await`` works.

Where a block runs is said by an HTML comment on the line right before its fence
(Markdown renders nothing for it):

* no comment (or ``<!-- sample: cpython -->``): here, in CPython, with
  :class:`pysync.testing.MemoryBrowser` standing in for the browser: a
  ``pysync.connect(...)`` without ``platform=`` opens a tab of it (one tab per
  page) and ``open_indexeddb(schema)`` opens its in-memory storage. No other
  names are given: a sample imports and defines what it uses.
* ``<!-- sample: server -->``: here too, next to DynamoDB Local (started once,
  with the tables of ``pysync dev``: ``pysync``, ``pysync_changes``,
  ``pysync_streams``), for server-side code. While it runs, the environment
  points every AWS client at DynamoDB Local (``AWS_ENDPOINT_URL_DYNAMODB``,
  ``PYSYNC_DYNAMODB_ENDPOINT``, dummy credentials, ``us-east-1``), and the name
  ``client`` is ``boto3.client("dynamodb")`` unless the page defined its own.
* ``<!-- sample: browser -->``: in Chromium, in the demo page of ``pysync dev``
  (``tests/e2e/test_doc_samples.py``): for code that needs ``js``, the DOM or
  the real proxy. Before the page's first block the test stores a token for
  ``alice`` (as ``pysync token --user alice`` mints it) in
  ``sessionStorage["pysync-token"]``.
* ``<!-- sample: skip REASON -->``: not run, reported as skipped with the
  reason. Only for code that cannot run at all (a fragment); keep it rare.

A page that relies on one of these (``client``, the token in ``sessionStorage``)
says so in its text. A failing block fails with its file and line first, then
its traceback from the sample's own line on.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import pysync
import pysync._browser
import pysync._store
from pysync.testing import MemoryBrowser, MemoryTab

from ._samples import KINDS, ROOT, Block, all_blocks, failure_report

#: Seconds one block may take (a sample that waits forever fails instead of hanging).
TIMEOUT_S = 60.0

BLOCKS = [block for block in all_blocks() if block.kind != "browser"]


@dataclass
class Page:
    """The CPython side of one Markdown file: its namespace, event loop and browser."""

    path: str
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    browser: MemoryBrowser = field(default_factory=MemoryBrowser)
    namespace: dict[str, Any] = field(default_factory=lambda: {"__name__": "__sample__"})
    #: Failure report of each block run so far (None: it passed), by line.
    results: dict[int, str | None] = field(default_factory=dict)
    #: The ``client`` the harness gave the page's server blocks, if any.
    client: Any = None
    _tab: MemoryTab | None = None

    def __post_init__(self) -> None:
        self.background_errors: list[str] = []
        self.loop.set_exception_handler(self._background_error)

    def _background_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        self.background_errors.append(
            f"{context.get('message')}: {error!r}" if error else str(context.get("message"))
        )

    @property
    def tab(self) -> MemoryTab:
        """The page's one tab (created at the first ``pysync.connect``)."""
        if self._tab is None:
            self._tab = self.browser.tab()
        return self._tab

    async def _open_indexeddb(self, schema: pysync.Schema) -> pysync.Database:
        return await self.tab.open_store(schema)

    def close(self) -> None:
        loop = self.loop
        if loop.is_closed():
            return
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        if self.client is not None:
            self.client.close()


@pytest.fixture(scope="module")
def pages() -> Iterator[dict[str, Page]]:
    opened: dict[str, Page] = {}
    yield opened
    for page in opened.values():
        page.close()


@pytest.fixture(scope="session")
def docs_dynamodb() -> Iterator[str]:
    """DynamoDB Local with the tables ``pysync dev`` creates; its endpoint."""
    from pysync.server import (
        DynamoDBLocal,
        ProxyConfig,
        create_tables,
        dynamodb_client,
        local_session,
    )

    with DynamoDBLocal() as database:
        config = ProxyConfig(dynamodb_endpoint=database.endpoint)
        client = dynamodb_client(config, local_session())
        create_tables(client, config.table)
        client.close()
        yield database.endpoint


@contextlib.contextmanager
def server_environment(endpoint: str) -> Iterator[None]:
    """Every AWS client made inside reaches DynamoDB Local with dummy credentials."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "PYSYNC_TABLE", "PYSYNC_AWS_PROFILE"):
            patch.delenv(name, raising=False)
        for name, value in {
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(ROOT / "build" / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(ROOT / "build" / "no-aws-credentials"),
            "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
            "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": endpoint,
            "PYSYNC_DYNAMODB_ENDPOINT": endpoint,
            "PYSYNC_REGION": "us-east-1",
        }.items():
            patch.setenv(name, value)
        yield


@contextlib.contextmanager
def browser_stand_in(page: Page) -> Iterator[None]:
    """``pysync.connect`` without a platform and ``open_indexeddb`` use the page's MemoryBrowser."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pysync._browser, "BrowserPlatform", lambda: page.tab)
        for module in (pysync, pysync._store):
            patch.setattr(module, "open_indexeddb", page._open_indexeddb)
        yield


def compile_block(block: Block, config: pytest.Config) -> Any:
    """The block's code object: top-level await allowed, asserts explained as pytest does."""
    source = block.source()
    tree = ast.parse(source, block.filename)
    with contextlib.suppress(Exception):  # pytest's rewriter is internal: optional
        from _pytest.assertion.rewrite import rewrite_asserts

        rewrite_asserts(tree, source.encode(), None, config)
    return compile(tree, block.filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


class SampleTimeoutError(Exception):
    """A block that did not finish in time (its traceback: where it was waiting)."""


async def _execute(code: Any, namespace: dict[str, Any]) -> None:
    result = eval(code, namespace)
    if not inspect.isawaitable(result):
        return
    task = asyncio.ensure_future(result)
    done, _ = await asyncio.wait({task}, timeout=TIMEOUT_S)
    if done:
        return task.result()
    stack = task.get_stack()  # where it waits: the sample's frame
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    error = SampleTimeoutError(f"the block did not finish within {TIMEOUT_S} s")
    error.doc_line = stack[0].f_lineno if stack else None  # type: ignore[attr-defined]
    raise error


def run_block(page: Page, block: Block, request: pytest.FixtureRequest) -> str | None:
    """Run one block in its page; its failure report, or None."""
    runner = KINDS[block.kind]
    try:
        code = compile_block(block, request.config)
        with contextlib.ExitStack() as stack:
            stack.enter_context(browser_stand_in(page))
            if block.kind == "server":
                stack.enter_context(server_environment(request.getfixturevalue("docs_dynamodb")))
                if "client" not in page.namespace:
                    import boto3

                    page.client = boto3.client("dynamodb")
                    page.namespace["client"] = page.client
            page.loop.run_until_complete(_execute(code, page.namespace))
    except Exception as error:
        return failure_report(block, error, runner)
    if page.background_errors:
        errors, page.background_errors[:] = list(page.background_errors), []
        return (
            f"{block.where}: the block left failing background tasks (run in {runner}):\n"
            + "\n".join(errors)
        )
    return None


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_sample(block: Block, pages: dict[str, Page], request: pytest.FixtureRequest) -> None:
    if block.kind == "invalid":
        pytest.fail(f"{block.where}: {block.reason}", pytrace=False)
    if block.kind == "skip":
        pytest.skip(f"{block.where}: {block.reason}")
    if block.path not in pages:
        pages[block.path] = Page(block.path)
    page = pages[block.path]
    # The story so far: blocks before this one (run already, or now when this test runs alone).
    for earlier in BLOCKS:
        if earlier.path != block.path or earlier.line >= block.line:
            continue
        if earlier.kind not in ("cpython", "server"):
            continue
        if earlier.line not in page.results:
            page.results[earlier.line] = run_block(page, earlier, request)
        if page.results[earlier.line] is not None:
            first_line = str(page.results[earlier.line]).splitlines()[0]
            pytest.skip(f"{block.where} builds on {earlier.where}, which failed: {first_line}")
    if block.line not in page.results:
        page.results[block.line] = run_block(page, block, request)
    failure = page.results[block.line]
    if failure is not None:
        pytest.fail(failure, pytrace=False)


def test_every_page_was_found() -> None:
    """The discovery sees README.md and docs/*.md (a guard against a silent empty run)."""
    paths = {block.path for block in all_blocks()}
    assert "README.md" in paths
    assert any(path.startswith("docs/") for path in paths)


def test_blocks_markers_and_lines(tmp_path: Any) -> None:
    """What the discovery takes from Markdown: fences, languages, markers, indentation."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("```python\nx = 1\n```\n")
    (tmp_path / "docs" / "page.md").write_text(
        "# Page\n"
        "```sh\nls\n```\n"
        "<!-- sample: browser -->\n"
        "```python\nimport js\n```\n"
        "- a list item:\n"
        "\n"
        "  ```py\n  if True:\n      y = 2\n  ```\n"
        "<!-- sample: skip a fragment of a config -->\n"
        "~~~python\n```\n~~~\n"
        "<!-- sample: skip -->\n"
        "```python\npass\n```\n"
        "<!-- sample: wasm -->\n"
        "```Python title\npass\n```\n"
        "<!-- a comment -->\n"
        "```python\npass\n```\n"
    )
    found = [
        (b.id, b.first, b.code, b.kind, b.reason)
        for b in all_blocks(tmp_path)
        if b.kind != "invalid"
    ]
    assert found == [
        ("README.md:1", 2, "x = 1\n", "cpython", ""),
        ("page.md:6", 7, "import js\n", "browser", ""),
        ("page.md:11", 12, "if True:\n    y = 2\n", "cpython", ""),
        ("page.md:16", 17, "```\n", "skip", "a fragment of a config"),
        ("page.md:28", 29, "pass\n", "cpython", ""),
    ]
    invalid = [(b.id, b.reason) for b in all_blocks(tmp_path) if b.kind == "invalid"]
    assert [id_ for id_, _ in invalid] == ["page.md:20", "page.md:24"]
    assert "needs a reason" in invalid[0][1]
    assert "unknown sample kind 'wasm'" in invalid[1][1]
