"""Finding the ```python samples of the documentation, and reporting their failures.

Shared by ``tests/docs/test_samples.py`` (CPython) and ``tests/e2e/test_doc_samples.py``
(Chromium); see the first for the rules.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Where a block runs, by the ``<!-- sample: KIND -->`` line before its fence.
KINDS = {
    "cpython": "CPython, pysync.testing.MemoryBrowser standing in for the browser",
    "server": "CPython, next to DynamoDB Local (server-side code)",
    "browser": "Chromium, in the demo page served by `pysync dev`",
    "skip": "not run",
}
LANGUAGES = {"python", "py"}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_MARKER = re.compile(r"^\s*<!--\s*sample:\s*(?P<body>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced Python block of a Markdown file."""

    path: str  # relative to the repository root, e.g. "docs/data-api.md"
    line: int  # 1-based line of the opening fence
    first: int  # 1-based line of the first line of code
    code: str
    kind: str = "cpython"
    reason: str = ""  # for "skip"; for "invalid", what is wrong with the marker

    @property
    def id(self) -> str:
        """The test id: ``data-api.md:42`` (the file name and the line of the fence)."""
        return f"{Path(self.path).name}:{self.line}"

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def filename(self) -> str:
        """The file name its code is compiled with (absolute, so tracebacks show its lines)."""
        return str(ROOT / self.path)

    def source(self) -> str:
        """The code, preceded by blank lines so that its line numbers are the file's."""
        return "\n" * (self.first - 1) + self.code


def markdown_files(root: Path = ROOT) -> list[Path]:
    """README.md and every docs/*.md, as they are on disk now."""
    files = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    return [path for path in files if path.is_file()]


def blocks_of(path: Path, root: Path = ROOT) -> Iterator[Block]:
    """The ```python blocks of one Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    relative = path.relative_to(root).as_posix()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        words = opening["info"].strip().split()
        end = i + 1
        while end < len(lines):
            closing = _FENCE.match(lines[end])
            if (
                closing is not None
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and not closing["info"].strip()
            ):
                break
            end += 1
        if words and words[0].lower() in LANGUAGES:
            body = [_unindent(line, indent) for line in lines[i + 1 : end]]
            kind, reason = _marker(lines[i - 1] if i > 0 else "")
            yield Block(relative, i + 1, i + 2, "\n".join(body) + "\n", kind, reason)
        i = end + 1


def _unindent(line: str, indent: int) -> str:
    removable = len(line) - len(line.lstrip(" \t"))
    return line[min(indent, removable) :]


def _marker(line: str) -> tuple[str, str]:
    """The kind (and reason) a ``<!-- sample: ... -->`` line gives; ``cpython`` without one."""
    found = _MARKER.match(line)
    if found is None:
        return "cpython", ""
    kind, _, reason = found["body"].partition(" ")
    kind, reason = kind.strip().lower(), reason.strip()
    if kind not in KINDS:
        return "invalid", f"unknown sample kind {kind!r} (known: {', '.join(KINDS)})"
    if kind == "skip" and not reason:
        return "invalid", "<!-- sample: skip --> needs a reason: <!-- sample: skip REASON -->"
    return kind, reason


def all_blocks(root: Path = ROOT) -> list[Block]:
    """Every Python block of README.md and docs/*.md."""
    return [block for path in markdown_files(root) for block in blocks_of(path, root)]


def failure_report(block: Block, error: BaseException, runner: str) -> str:
    """A failure message that starts with the doc file and line, then the sample's traceback."""
    frames = traceback.extract_tb(error.__traceback__)
    mine = [frame for frame in frames if frame.filename == block.filename]
    line = mine[-1].lineno if mine else getattr(error, "doc_line", None) or block.first
    exception = traceback.TracebackException.from_exception(error)
    # Drop the harness's own frames: the traceback starts in the sample.
    while exception.stack and exception.stack[0].filename != block.filename:
        exception.stack.pop(0)
    details = "".join(exception.format()).replace(str(ROOT) + "/", "")
    return (
        f"{block.path}:{line}: {type(error).__name__}: {error}\n"
        f"  in the ```python block at {block.where} (run in {runner})\n"
        f"{_hint(error)}{details}"
    )


def page_failure_report(block: Block, failure: dict[str, object]) -> str:
    """The same, for a failure the page reported (see :data:`PAGE_RUNNER`)."""
    line = failure.get("line") or block.first
    return (
        f"{block.path}:{line}: {failure['type']}: {failure['message']}\n"
        f"  in the ```python block at {block.where} (run in {KINDS['browser']})\n"
        f"{failure['traceback']}"
    )


def _hint(error: BaseException) -> str:
    if isinstance(error, ModuleNotFoundError) and error.name in {"js", "pyodide"}:
        return (
            "  (page-only code: put `<!-- sample: browser -->` on the line before the "
            "fence to run it in Chromium)\n"
        )
    if isinstance(error, NameError):
        return (
            "  (a sample should define what it uses; names a page takes for granted "
            "must be stated on the page and provided by the harness)\n"
        )
    return ""


#: Defines ``_pysync_doc_sample(source, filename, timeout)`` in a page's pysyncRun
#: namespace: it runs a block there (top-level await allowed) and returns None, or
#: the failure as {type, message, line, traceback}.
PAGE_RUNNER = """
import ast as _ast
import asyncio as _asyncio
import inspect as _inspect
import linecache as _linecache
import traceback as _traceback


async def _pysync_doc_sample(source, filename, timeout):
    lines = source.splitlines(True)
    _linecache.cache[filename] = (len(source), None, lines, filename)
    try:
        code = compile(source, filename, "exec", flags=_ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, globals())
        if _inspect.isawaitable(result):
            await _asyncio.wait_for(result, timeout)
    except BaseException as error:
        frames = _traceback.extract_tb(error.__traceback__)
        mine = [frame.lineno for frame in frames if frame.filename == filename]
        exception = _traceback.TracebackException.from_exception(error)
        while exception.stack and exception.stack[0].filename != filename:
            exception.stack.pop(0)
        if isinstance(error, TimeoutError):
            error = TimeoutError(f"the block did not finish within {timeout} s")
        return {
            "type": type(error).__name__,
            "message": str(error),
            "line": mine[-1] if mine else None,
            "traceback": "".join(exception.format()),
        }
    return None
"""
