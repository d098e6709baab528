"""Run code in a real Chromium page with Pyodide and pysync loaded, for the benchmarks.

- :func:`serve` serves directories over HTTP on 127.0.0.1 and a free port, in a thread;
- :func:`dist_snapshot` copies the dist to a private temp directory (others rebuild it);
- :func:`bench_page` starts that server (``bench/pages/`` at ``/``, the offline Pyodide dist
  ``build/pyodide/`` at ``/pyodide/``), launches Debian's Chromium with the settings of
  ``playwright.config.py``, opens a page, loads Pyodide and ``pysync`` (by name, from the
  dist's lock file) and returns a :class:`BenchPage` to run Python or JavaScript in it.

Build the dist first (``./run.sh setup`` or ``./run.sh bench`` do).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "bench" / "pages"
# The offline Pyodide dist to load; PYSYNC_BENCH_DIST points at another one (say, the
# build/pyodide/ of a patched checkout, built with its scripts/build_dist.py).
DIST = Path(os.environ.get("PYSYNC_BENCH_DIST") or ROOT / "build" / "pyodide")


def browser_config() -> ModuleType:
    """``playwright.config.py`` (not importable by name), loaded like tests/_browser_config.py."""
    spec = importlib.util.spec_from_file_location(
        "playwright_config", ROOT / "playwright.config.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Handler(SimpleHTTPRequestHandler):
    """Serves files of several directories, each under a URL prefix ("mount")."""

    mounts: Mapping[str, Path] = {}
    extensions_map = {  # noqa: RUF012 (the base class declares it as a plain dict)
        **SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".whl": "application/zip",
    }

    def translate_path(self, path: str) -> str:
        url_path = path.split("?", 1)[0].split("#", 1)[0]
        # Longest prefix first, so "/pyodide/" wins over "/".
        for prefix in sorted(self.mounts, key=len, reverse=True):
            if url_path.startswith(prefix):
                relative = url_path[len(prefix) :]
                base = self.mounts[prefix].resolve()
                target = (base / relative).resolve()
                if target != base and base not in target.parents:
                    return str(base / "__outside__")  # 404, never a file outside the mount
                return str(target)
        return str(ROOT / "__nothing__")

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(mounts: Mapping[str, Path | str]) -> Iterator[str]:
    """Serve ``{url_prefix: directory}`` on 127.0.0.1 and a free port; yields the base URL."""
    handler = type(
        "MountHandler",
        (_Handler,),
        {"mounts": {prefix: Path(d) for prefix, d in mounts.items()}},
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="bench-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


_LOAD = """async () => {
  const errors = [];
  window.pyodide = await loadPyodide({ indexURL: "/pyodide/" });
  await pyodide.loadPackage("pysync", {
    messageCallback: () => {},
    errorCallback: (message) => errors.push(message),
  });
  if (errors.length) throw new Error("loading pysync failed: " + errors.join("; "));
  return pyodide.version;
}"""

# Runs Python, converts the value of its last expression to plain JS values.
_RUN_PYTHON = """async (code) => {
  const result = await pyodide.runPythonAsync(code);
  if (result && typeof result.toJs === "function") {
    try {
      return result.toJs({ dict_converter: Object.fromEntries, create_pyproxies: false });
    } finally {
      result.destroy();
    }
  }
  return result;
}"""


class BenchPage:
    """A Chromium page with Pyodide (``window.pyodide``) and pysync loaded."""

    def __init__(self, page: Any, browser: Any, pyodide_version: str) -> None:
        self.page = page
        self.chromium_version: str = browser.version
        self.pyodide_version = pyodide_version
        self.console: list[str] = []
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))

    def run_js(self, expression: str, arg: Any = None) -> Any:
        """``page.evaluate``: a JS expression or function (awaited if it returns a promise)."""
        return self.page.evaluate(expression, arg)

    def run_python(self, code: str) -> Any:
        """Run Python (top-level ``await`` allowed); returns its last expression as JSON-able data.

        Dicts, lists, numbers, strings, bools and None come back as such; to be safe
        with anything else, return ``json.dumps(...)`` and use :meth:`run_python_json`.
        """
        return self.page.evaluate(_RUN_PYTHON, code)

    def run_python_json(self, code: str) -> Any:
        """Run Python whose last expression is a JSON string; returns it parsed."""
        return json.loads(self.run_python(code))

    def machine(self) -> dict[str, Any]:
        """What the page ran on: CPU count, Chromium and Pyodide versions."""
        import platform

        return {
            "cpus": os.cpu_count(),
            "browser_hardware_concurrency": self.run_js("navigator.hardwareConcurrency"),
            "chromium": self.chromium_version,
            "pyodide": self.pyodide_version,
            "python_in_page": self.run_python("import sys; sys.version.split()[0]"),
            "platform": platform.platform(),
            "dist": str(DIST),
        }


def _consistent(dist: Path) -> bool:
    """Whether every package file of ``dist``'s lock file is there with its sha256."""
    try:
        lock = json.loads((dist / "pyodide-lock.json").read_text())
        return all(
            hashlib.sha256((dist / entry["file_name"]).read_bytes()).hexdigest() == entry["sha256"]
            for entry in lock["packages"].values()
        )
    except (OSError, ValueError, KeyError):
        return False


@contextlib.contextmanager
def dist_snapshot(attempts: int = 10) -> Iterator[Path]:
    """A private copy of build/pyodide/, consistent with its lock file.

    Other jobs rebuild the shared dist at any time (``./run.sh`` does on every
    command); a copy keeps a run from loading half-written or mixed files.
    """
    if not (DIST / "pyodide-lock.json").exists():
        raise SystemExit(f"{DIST} has no pyodide-lock.json: run ./run.sh setup first")
    with tempfile.TemporaryDirectory(prefix="pysync-bench-dist-") as tmp:
        copy = Path(tmp) / "pyodide"
        for _ in range(attempts):
            shutil.rmtree(copy, ignore_errors=True)
            try:
                shutil.copytree(DIST, copy)
            except (OSError, shutil.Error):
                time.sleep(1)
                continue
            if _consistent(copy):
                yield copy
                return
            time.sleep(1)
        raise RuntimeError(f"{DIST} stayed inconsistent with its lock file (being rebuilt?)")


@contextlib.contextmanager
def bench_page(page_name: str = "bench.html") -> Iterator[BenchPage]:
    """Open ``bench/pages/<page_name>`` in Chromium with Pyodide and pysync loaded."""
    from playwright.sync_api import sync_playwright

    config = browser_config()
    with (
        dist_snapshot() as dist,
        serve({"/": PAGES, "/pyodide/": dist}) as base_url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(
            executable_path=config.CHROMIUM_EXECUTABLE, args=config.CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport=config.VIEWPORT)
            context.set_default_timeout(config.TIMEOUT_MS)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{base_url}/{page_name}")
            try:
                version = page.evaluate(_LOAD)
            except Exception as error:
                raise RuntimeError(
                    f"loading Pyodide failed: {error}; page errors: {errors}"
                ) from None
            yield BenchPage(page, browser, version)
        finally:
            browser.close()
