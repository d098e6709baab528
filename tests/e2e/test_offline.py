"""The app starts with no network after its first visit (web/sw.js), and a new build replaces
the old one: the service worker's caches and the per-build version of the pysync wheel."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pytest
from packaging.version import Version
from playwright.sync_api import Browser, Request, Response

from tests._browser_config import ROOT, load

from .conftest import OUTPUT_DIR, Demo, DemoServer, new_demo

build_dist = load("scripts/build_dist.py", "build_dist")

API_PATHS = ("/dynamodb", "/changes", "/healthz", "/dev/")
RELEASE = build_dist.release()  # pysync.__version__
WHEEL_VERSION = re.compile(re.escape(RELEASE) + r"\+g[0-9a-f]{10}")
CACHE_PREFIX = "pysync-offline-"

# Records every text the boot status line shows (MutationObserver records keep each
# text node that was added, so no step is lost however fast they follow each other).
STATUS_RECORDER = """
window.bootStatusSeen = [];
new MutationObserver((records) => {
  for (const record of records) {
    const target = record.target.nodeType === 1 ? record.target : record.target.parentElement;
    if (target?.id !== "boot-status") continue;
    if (record.type === "characterData") window.bootStatusSeen.push(record.target.data);
    for (const node of record.addedNodes) window.bootStatusSeen.push(node.textContent);
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""

CACHES = """async () => {
  const names = (await caches.keys()).filter((name) => name.startsWith("pysync-offline-"));
  const entries = {};
  for (const name of names) {
    entries[name] = (await (await caches.open(name)).keys()).map((request) => request.url);
  }
  return entries;
}"""


@dataclass
class Traffic:
    """What the page asked for, and how it was answered (from the page's side)."""

    responses: list[Response] = field(default_factory=list)
    failed: list[Request] = field(default_factory=list)

    def clear(self) -> None:
        self.responses.clear()
        self.failed.clear()

    @staticmethod
    def _is_app_file(url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and not parts.path.startswith(API_PATHS)

    def not_from_service_worker(self) -> list[str]:
        return [
            r.url for r in self.responses if self._is_app_file(r.url) and not r.from_service_worker
        ]

    def failures(self) -> list[str]:
        return [f"{r.url}: {r.failure}" for r in self.failed if self._is_app_file(r.url)]

    def paths(self) -> list[str]:
        return [urlsplit(r.url).path for r in self.responses]


@contextmanager
def app_page(
    browser: Browser, url: str, service_workers: Literal["allow", "block"] = "allow"
) -> Iterator[tuple[Demo, Traffic]]:
    """A page of the app at ``url`` in a fresh context (its own service workers and caches)."""
    demo = new_demo(browser, url, service_workers=service_workers)
    context, page = demo.context, demo.page
    page.add_init_script(STATUS_RECORDER)  # before the page's first navigation
    traffic = Traffic()
    page.on("response", lambda response: traffic.responses.append(response))
    page.on("requestfailed", lambda request: traffic.failed.append(request))
    try:
        yield demo, traffic
    finally:
        context.close()


@dataclass
class Site:
    """The app served by a ``pysync dev`` of this module's own, with a private source tree
    and Pyodide dist: tests stop and start the server and rebuild the dist, while
    ``build/pyodide`` and ``src/`` stay untouched."""

    server: DemoServer
    tree: Path
    dist: Path

    def rebuild(self) -> dict[str, Any]:
        build_dist.build(with_test_packages=False, dist=self.dist, source=self.tree)
        info: dict[str, Any] = json.loads((self.dist / "build.json").read_text())
        return info


@pytest.fixture(scope="module")
def private_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("offline")
    tree = root / "tree"
    shutil.copytree(
        ROOT / "src" / "pysync",
        tree / "src" / "pysync",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for name in ("pyproject.toml", "README.md", "scripts/build_dist.py"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, tree / name)
    dist = root / "pyodide"
    server = DemoServer(OUTPUT_DIR / "e2e-server-offline.log", ["--pyodide-dir", str(dist)])
    site = Site(server, tree, dist)
    site.rebuild()
    server.start()
    try:
        yield site
    finally:
        site.server.stop()


@pytest.fixture
def site(private_site: Site) -> Site:
    """The module's site, its server running (a test may have stopped it)."""
    if not private_site.server.running:
        private_site.server.start()
    return private_site


def boot_info(demo: Demo) -> dict[str, Any]:
    info: dict[str, Any] = demo.page.evaluate("window.pysyncBoot")
    return info


def status_seen(demo: Demo) -> list[str]:
    seen: list[str] = demo.page.evaluate("window.bootStatusSeen")
    return seen


def wait_for_log(server: DemoServer, offset: int, path: str) -> list[dict[str, Any]]:
    """Access-log entries written after ``offset`` once one is for ``path`` (the server
    writes its log just after answering)."""
    deadline = time.monotonic() + 10
    while True:
        entries = [
            json.loads(line)
            for line in server.log_path.read_text()[offset:].splitlines()
            if line.startswith('{"method"')
        ]
        if any(entry["path"] == path for entry in entries) or time.monotonic() > deadline:
            return entries
        time.sleep(0.1)


def test_the_wheel_version_is_a_hash_of_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(
        ROOT / "src" / "pysync",
        tree / "src" / "pysync",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    first = build_dist.build_version(tree)
    assert WHEEL_VERSION.fullmatch(first), first
    version = Version(first)
    assert version.public == build_dist.release(tree) == RELEASE
    assert version.local == f"g{build_dist.source_hash(tree)[:10]}"
    assert build_dist.build_version(tree) == first  # same source, same version

    module = tree / "src" / "pysync" / "_store" / "__init__.py"
    original = module.read_text()
    module.write_text(original + "\n# changed\n")
    changed = build_dist.build_version(tree)
    assert changed != first
    assert WHEEL_VERSION.fullmatch(changed), changed
    (tree / "src" / "pysync" / "new_module.py").write_text("")
    assert build_dist.build_version(tree) not in (first, changed)
    (tree / "src" / "pysync" / "new_module.py").unlink()
    module.write_text(original)
    assert build_dist.build_version(tree) == first

    # What hatchling builds with (pyproject.toml's [tool.hatch.version]).
    monkeypatch.delenv(build_dist.VERSION_VARIABLE, raising=False)
    assert build_dist.wheel_version() == RELEASE
    monkeypatch.setenv(build_dist.VERSION_VARIABLE, first)
    assert build_dist.wheel_version() == first


def test_the_second_visit_starts_offline(browser: Browser, site: Site) -> None:
    with app_page(browser, site.server.url) as (demo, traffic):
        demo.open()
        boot = boot_info(demo)
        assert WHEEL_VERSION.fullmatch(boot["wheel"]), boot
        assert boot["pysync"] == RELEASE
        assert demo.wait_until_stored_for_offline()["build"] == boot["build"]

        # The loader told what it was doing, with the download's size.
        seen = status_seen(demo)
        progress = re.compile(r"Loading Python \(\d+\.\d of \d+\.\d MB\)…")
        loading = [i for i, text in enumerate(seen) if progress.fullmatch(text)]
        assert loading, seen
        assert loading[0] < seen.index("Installing pysync…") < seen.index("Starting the app…"), seen

        demo.context.set_offline(True)
        traffic.clear()
        demo.reload()
        # Everything came from the service worker's cache: nothing reached the network.
        assert traffic.responses, "the page loaded nothing"
        assert traffic.not_from_service_worker() == []
        assert traffic.failures() == []
        assert "/pyodide/pyodide.asm.wasm" in traffic.paths()
        assert f"/pyodide/pysync-{boot['wheel']}-py3-none-any.whl" in traffic.paths()
        assert boot_info(demo)["wheel"] == boot["wheel"]
        # Python runs, and the app's code is there.
        assert demo.run("import app, pysync\npysync.__version__") == RELEASE
        assert demo.console_errors == []


def test_the_app_starts_while_the_server_is_down_and_reconnects(
    browser: Browser, site: Site
) -> None:
    server = site.server
    with app_page(browser, server.url) as (demo, traffic):
        demo.open()
        demo.wait_until_stored_for_offline()

        server.stop()
        traffic.clear()
        demo.reload()
        assert traffic.not_from_service_worker() == []
        assert traffic.failures() == []
        assert demo.run("1 + 1") == 2

        server.start()  # same port, so the same origin
        offset = len(server.log_path.read_text())
        demo.reload()
        # Online again: the page came from the server (network first), the API answers.
        requested = [entry["path"] for entry in wait_for_log(server, offset, "/")]
        assert "/" in requested, requested
        assert demo.page.evaluate("fetch('/healthz').then((r) => r.status)") == 200
        assert demo.console_errors == []


def test_a_new_build_replaces_the_old_one(browser: Browser, site: Site) -> None:
    old = json.loads((site.dist / "build.json").read_text())
    with app_page(browser, site.server.url) as (demo, traffic):
        demo.open()
        assert boot_info(demo)["wheel"] == old["pysync"]["version"]
        assert demo.wait_until_stored_for_offline()["build"] == old["build"]

        # A change of the source: a new wheel, under a new name, listed by the lock.
        init = site.tree / "src" / "pysync" / "__init__.py"
        init.write_text(init.read_text() + f"\n# change {old['build']}\n")
        new = site.rebuild()
        lock = json.loads((site.dist / "pyodide-lock.json").read_text())["packages"]["pysync"]
        assert new["pysync"]["version"] != old["pysync"]["version"]
        assert new["pysync"]["file_name"] != old["pysync"]["file_name"]
        assert lock["file_name"] == new["pysync"]["file_name"]
        assert lock["version"] == new["pysync"]["version"]
        assert new["build"] != old["build"]

        traffic.clear()
        demo.reload()
        boot = boot_info(demo)
        assert boot["wheel"] == new["pysync"]["version"]
        assert boot["build"] == new["build"]
        assert "Updating the app…" in status_seen(demo)
        assert f"/pyodide/{new['pysync']['file_name']}" in traffic.paths()
        assert f"/pyodide/{old['pysync']['file_name']}" not in traffic.paths()
        assert demo.wait_until_stored_for_offline()["build"] == new["build"]
        # The old build's cache is gone; the new one holds the new wheel only.
        cached = demo.page.evaluate(CACHES)
        assert list(cached) == [f"{CACHE_PREFIX}1-{new['build']}"], list(cached)
        (urls,) = cached.values()
        assert f"{site.server.url}/pyodide/{new['pysync']['file_name']}" in urls
        assert f"{site.server.url}/pyodide/{old['pysync']['file_name']}" not in urls

        demo.context.set_offline(True)
        traffic.clear()
        demo.reload()
        assert boot_info(demo)["wheel"] == new["pysync"]["version"]
        assert traffic.not_from_service_worker() == []
        assert demo.console_errors == []


def test_without_a_service_worker_the_app_still_runs(browser: Browser, site: Site) -> None:
    # Registration refused (as in a browser without service workers for the page).
    with app_page(browser, site.server.url, service_workers="block") as (demo, _):
        demo.open()
        offline = demo.page.evaluate("window.pysyncOffline")
        assert offline["ready"] is False, offline
        assert any("will not start offline" in line for line in demo.console_log), demo.console_log
        assert demo.run("1 + 1") == 2
        assert demo.console_errors == []
