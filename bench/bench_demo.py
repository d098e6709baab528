"""Demo: the task board (web/) as users experience it, in Chromium against ``pysync dev``.

Run: ``.venv/bin/python bench/bench_demo.py [--startup-runs 5] [--tasks 100] [--base-n 2000]``

One run starts ``pysync dev`` on a free port (as tests/e2e/conftest.py's DemoServer
does: DynamoDB Local in memory, the proxy, the stream consumer), serving a copy of
``web/`` with ``bench/pages/pyodide_start.html`` added and a private copy of the
offline Pyodide dist (``_browser.dist_snapshot``). One Debian Chromium with the
settings of ``playwright.config.py``; every device is a browser context of its own
(its own HTTP cache, service worker, IndexedDB and localStorage). An init script in
every page records, with a ``MutationObserver`` on the document, the
``performance.now()`` (ms since the navigation started) at which
``body[data-pysync]`` turns ``ready``, the board shows the expected number of tasks,
the status bar says ``synced …``; a capture-phase ``submit`` listener records when a
form is submitted (the click on "Sign in" or "Add"). The observer runs at the end of
the task that changed the DOM, so a time is when the DOM held it; the frame that
paints it follows within one refresh.

1. Start-up (``--startup-runs`` rounds; each round a fresh context for the demo and
   one for the baseline, their order flipping every round). The user has a board of
   ``--startup-tasks`` tasks on the server, and is signed in: the session is in
   localStorage (``storage_state``), so only the HTTP cache, the service worker and
   IndexedDB start empty.
   - first visit (cold): navigate; "board" is when the user's tasks are on the board
     (a base sync of them, the app's data being on the server only);
   - second visit, online: once ``window.pysyncOffline`` says the build is stored, a
     new tab navigates again (the service worker answers; the data is in IndexedDB);
   - second visit, offline: ``context.set_offline(True)``, a new tab again.
   Baseline: ``pyodide_start.html``, a page that only does ``loadPyodide`` from
   ``/pyodide/`` as web/loader.js does: a first visit in a fresh context of its own,
   and, after the demo's visits, twice in the demo's context, where the demo's service
   worker serves it from the same cache (the second of those loads is the baseline of
   the second visits: by then Chromium has the compiled code of the wasm module it keeps
   for a Cache Storage response). Ratios: demo / plain Pyodide, ready and board.
2. Propagation through the UI: two devices (contexts) of one user, both showing a
   list; device A types a task title and clicks "Add" (``fill`` + ``click``), one task
   at a time, ``--tasks`` measured after ``--warmup``. A's submit listener stamps
   the submit, B's observer stamps when B's board first shows the title, both with
   ``performance.timeOrigin + performance.now()`` (wall-clock ms on the clock both
   renderer processes derive from the machine's). The driver checks that the two
   pages agree: it reads A, B, A in turn, several times; the offset of B against the
   middle of the A readings, with half the A-to-A interval as its bound, is recorded
   before and after. Also recorded: when A's own board shows the task, and when A's
   "n pending" chip returns to "0 pending" (the push acknowledged).
3. Base sync in the UI: in a fresh context with the app loaded and nobody signed in,
   ``pysyncRun`` opens the app's replica of a new user's board and writes ``--base-n``
   tasks in one list (transactions of 100 documents shaped as the app's ``add_task``
   makes them), pushes them with a ``Sync`` as the app's, then deletes the user's
   databases: the context is now a device without the user's data, as a second
   device would be. A new tab boots the app on the sign-in screen, the name is typed
   and "Sign in" clicked: timed from that submit to the first task on the board, to
   all of them, and to the status bar saying "synced" (both boards' first sync done).
   Between runs (``--base-runs``) the app signs out and the databases are deleted
   again. Long tasks (``PerformanceObserver``) and board redraws are counted, and one
   redraw (the live query of all tasks and a full render) is timed afterwards.

Results go to bench/results/demo.json; bench/report.py renders them.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _browser import PAGES, ROOT, browser_config, dist_snapshot
from _stats import summarize

RESULTS = ROOT / "bench" / "results" / "demo.json"
SERVER_LOG = ROOT / "test-results" / "bench-demo-server.log"
BASELINE_PAGE = "pyodide_start.html"
SESSION_KEY = "pysync-demo:session"  # web/app.py's SESSION_KEY
SERVER_START_TIMEOUT_S = 90
WAIT_MS = 90_000  # the longest single wait for the page (a boot, a base sync)

# Runs in every page before its own scripts (context.add_init_script).
INIT_JS = r"""
(() => {
  if (window.top !== window) return;
  const b = (window.__bench = {
    marks: {},          // ms since navigation start (performance.now())
    expect: __EXPECT__, // tasks the board must show for the "board" mark (null: none)
    renders: 0,         // times #board's children were replaced
    trackTitles: false, // record when each task title first shows (b.seen)
    seen: {},           // title -> timeOrigin + now()
    submits: {},        // new-task title -> timeOrigin + now() of its submit
    pending: [],        // [timeOrigin + now(), "n pending"] on every change of the chip
    longtasks: [],      // [startTime, duration]
  });
  const now = () => performance.now();
  b.abs = () => performance.timeOrigin + performance.now();
  b.arm = (expect) => {
    b.expect = expect;
    for (const key of ["first", "board", "synced", "submit"]) delete b.marks[key];
    b.renders = 0;
  };
  let lastPending = null;
  const check = (records) => {
    const t = now();
    if (records.some((r) => r.type === "childList" && r.target.id === "board")) b.renders++;
    const body = document.body;
    if (!body) return;
    const state = body.dataset.pysync;
    if (state === "ready" && b.marks.ready === undefined) b.marks.ready = t;
    if (state === "error" && b.marks.error === undefined) b.marks.error = t;
    if (b.expect !== null) {
      const screen = document.getElementById("board-screen");
      if (screen && !screen.hidden && b.marks.board === undefined) {
        const count = document.querySelectorAll("#board li.task").length;
        if (count > 0 && b.marks.first === undefined) b.marks.first = t;
        if (count >= b.expect) b.marks.board = t;
      }
      const synced = document.getElementById("status-synced");
      if (b.marks.synced === undefined && synced && synced.textContent.startsWith("synced "))
        b.marks.synced = t;
    }
    const pending = document.getElementById("status-pending");
    if (pending && pending.textContent !== lastPending) {
      lastPending = pending.textContent;
      b.pending.push([b.abs(), lastPending]);
    }
    if (b.trackTitles) {
      const abs = b.abs();
      for (const node of document.querySelectorAll("#board li.task .title")) {
        if (!(node.textContent in b.seen)) b.seen[node.textContent] = abs;
      }
    }
  };
  new MutationObserver(check).observe(document, {
    subtree: true, childList: true, characterData: true,
    attributes: true, attributeFilter: ["data-pysync", "hidden"],
  });
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.id === "signin-form") b.marks.submit = now();
    if (form.classList && form.classList.contains("new-task")) {
      b.submits[form.elements.namedItem("title").value.trim()] = b.abs();
    }
  }, true);
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) b.longtasks.push([e.startTime, e.duration]);
    }).observe({ type: "longtask", buffered: true });
  } catch (error) {}
})();
"""

# What a visit's page reports: the marks, the loader's boot steps, the bytes it fetched.
VISIT_JS = """async () => {
  const boot = window.pysyncBoot ? await window.pysyncBoot.catch((e) => ({error: String(e)}))
                                 : null;
  const entries = [...performance.getEntriesByType("navigation"),
                   ...performance.getEntriesByType("resource")];
  return {
    marks: window.__bench.marks,
    boot: boot && { timings: boot.timings, python: boot.python, wheel: boot.wheel,
                    error: boot.error },
    transfer_bytes: entries.reduce((sum, e) => sum + (e.transferSize || 0), 0),
    from_service_worker: entries.filter((e) => e.workerStart > 0).length,
    requests: entries.length,
    resources: entries.map((e) => [new URL(e.name).pathname, Math.round(e.startTime),
                                   Math.round(e.responseEnd), e.transferSize || 0]),
    pyodide: window.pyodide ? window.pyodide.version : null,
    controlled: !!(navigator.serviceWorker && navigator.serviceWorker.controller),
  };
}"""

# The first "0 pending" after a nonzero count that follows the submit of ``title``.
PENDING_ZERO_JS = """(title) => {
  const b = window.__bench;
  const start = b.submits[title];
  if (start === undefined) return null;
  let busy = false;
  for (const [t, text] of b.pending) {
    if (t < start) continue;
    if (text !== "0 pending") busy = true;
    else if (busy) return t;
  }
  return null;
}"""

# Defined once per page (pysyncRun's namespace is shared by its calls).
SEED_PY = r"""
import asyncio
import js
import pysync
import app as _demo


async def bench_seed(user, token, list_name, n, prefix):
    '''A list and n tasks in user's own board, shaped as the app's add_list/add_task make
    them, written to the app's replica in transactions of 100 and pushed by a Sync as the
    app's. The page is on the sign-in screen: no board is drawn while it writes.'''
    replica = await pysync.connect(_demo.MINE.app, user, _demo.SCHEMA)
    try:
        list_id = f"{prefix}list"
        await replica["lists"].put({"id": list_id, "name": list_name, "order": 1})
        t0 = js.performance.now()
        for start in range(0, n, 100):  # a transaction changes at most 100 documents
            async with replica.transaction() as tx:
                for i in range(start, min(n, start + 100)):
                    tx.put("tasks", {"id": f"{prefix}{i:05d}", "list": list_id,
                                     "title": f"Task {i} of {list_name}", "done": False,
                                     "order": i + 1, "votes": 0, "notes": ""})
        t1 = js.performance.now()
        remote = pysync.HttpRemote(js.location.origin + "/dynamodb", token)
        sync = pysync.Sync(replica, remote, scope=f"u#{user}")
        for _ in range(20):
            await sync.push()
            if not await replica.outbox():
                break
        else:
            raise RuntimeError(f"not pushed: {len(await replica.outbox())} entries left")
        return {"write_ms": t1 - t0, "push_ms": js.performance.now() - t1}
    finally:
        replica.close()


async def bench_forget(user):
    '''Sign out and delete the user's local databases: a device without their data.'''
    _demo.app.close_session()
    js.localStorage.removeItem(_demo.SESSION_KEY)
    for spec in (_demo.MINE, _demo.TEAM):
        await pysync.delete_indexeddb(f"pysync:{spec.app}:{user}")


async def bench_render_cost():
    '''One live-query run of the board's tasks and one full render of the page, timed.'''
    space = _demo.app.spaces["mine"]
    t0 = js.performance.now()
    docs = await space.replica["tasks"].query()
    t1 = js.performance.now()
    _demo.app._render_now()
    t2 = js.performance.now()
    return {"tasks": len(docs), "query_ms": t1 - t0, "render_ms": t2 - t1}
"""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the server ---------------------------------------------------------------------


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    # PR_SET_PDEATHSIG: pysync dev (and through its own, DynamoDB Local) stops if we die.
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


class DevServer:
    """``pysync dev`` as a child process on a free port (tests/e2e/conftest.py's DemoServer)."""

    def __init__(self, web_dir: Path, pyodide_dir: Path, log_path: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = ["--web-dir", str(web_dir), "--pyodide-dir", str(pyodide_dir)]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> DevServer:
        script = Path(sys.executable).with_name("pysync")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "pysync.cli"]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*command, "dev", "--port", str(self.port), "--log-level", "info", *self.args],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                preexec_fn=_die_with_parent,
            )
        try:
            self._wait_until_up()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_until_up(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pysync dev did not start:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __exit__(self, *exc: object) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)  # as Ctrl-C: uvicorn, then DynamoDB Local, stop
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def token(self, user: str) -> dict[str, Any]:
        """The session web/app.py keeps after signing ``user`` in (``POST /dev/token``)."""
        request = urllib.request.Request(
            f"{self.url}/dev/token",
            data=json.dumps({"user": user}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
        expires_ms = int(time.time() * 1000) + int(body["expires_in"]) * 1000
        return {
            "user": body["user"],
            "token": body["token"],
            "scopes": body["scopes"],
            "expires_ms": expires_ms,
        }


@contextlib.contextmanager
def site() -> Iterator[DevServer]:
    """``pysync dev`` serving a copy of web/ plus the baseline page, and a copy of the dist."""
    with dist_snapshot() as dist, tempfile.TemporaryDirectory(prefix="pysync-bench-web-") as tmp:
        web = Path(tmp) / "web"
        shutil.copytree(ROOT / "web", web)
        shutil.copyfile(PAGES / BASELINE_PAGE, web / BASELINE_PAGE)
        with DevServer(web, dist, SERVER_LOG) as server:
            yield server


# -- devices ------------------------------------------------------------------------


class Device:
    """A browser context (its own caches, service worker, storage) and its current tab."""

    def __init__(
        self,
        browser: Any,
        url: str,
        expect: int | None = None,
        session: dict[str, Any] | None = None,
    ) -> None:
        config = browser_config()
        options: dict[str, Any] = {"viewport": config.VIEWPORT}
        if session is not None:
            entry = {"name": SESSION_KEY, "value": json.dumps(session)}
            options["storage_state"] = {
                "cookies": [],
                "origins": [{"origin": url, "localStorage": [entry]}],
            }
        self.url = url
        self.context = browser.new_context(**options)
        self.context.set_default_timeout(config.TIMEOUT_MS)
        self.context.add_init_script(INIT_JS.replace("__EXPECT__", json.dumps(expect)))
        self.errors: list[str] = []
        self.page: Any = None

    def new_tab(self) -> Any:
        """Close the current tab (if any) and open a blank new one."""
        if self.page is not None and not self.page.is_closed():
            self.page.close()
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on(
            "console",
            lambda message: message.type == "error" and self.errors.append(message.text),
        )
        return self.page

    def visit(self, path: str = "/", board: bool = True) -> dict[str, Any]:
        """A new tab navigates to ``path``; returns what it reports once it is ready
        (and, with ``board`` and an expected task count, once the board shows them)."""
        page = self.new_tab()
        page.goto(self.url + path, wait_until="commit")
        self.wait(
            "(board) => __bench.marks.error !== undefined || (__bench.marks.ready !== undefined"
            " && (!board || __bench.expect === null || __bench.marks.board !== undefined))",
            board,
        )
        report: dict[str, Any] = page.evaluate(VISIT_JS)
        if "error" in report["marks"] or (report["boot"] or {}).get("error"):
            status = page.locator("#boot-status").text_content(timeout=1000)
            raise RuntimeError(f"{path} failed to start: {status!r}; {self.errors[-5:]}")
        return report

    def wait(self, expression: str, arg: Any = None, timeout: int = WAIT_MS) -> Any:
        try:
            return self.page.wait_for_function(expression, arg=arg, timeout=timeout).json_value()
        except Exception as error:
            raise RuntimeError(
                f"waiting for {expression[:80]!r} failed: {error}; page errors: {self.errors[-5:]}"
            ) from None

    def run(self, code: str) -> Any:
        """Python in the page (``window.pysyncRun``), its last expression as JSON data."""
        return self.page.evaluate("code => window.pysyncRun(code)", code)

    def sign_in(self, user: str) -> None:
        """Type the name and click "Sign in", as a person does."""
        self.page.fill("#signin-name", user)
        self.page.get_by_role("button", name="Sign in", exact=True).click()

    def wait_signed_in(self, user: str) -> None:
        self.wait(
            "(user) => document.getElementById('user').textContent === user"
            " && !document.getElementById('board-screen').hidden",
            user,
        )

    def wait_synced(self) -> None:
        self.wait(
            "() => document.getElementById('status-pending').textContent === '0 pending'"
            " && document.getElementById('status-synced').textContent.startsWith('synced ')"
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.context.close()


@contextlib.contextmanager
def device(browser: Any, url: str, **options: Any) -> Iterator[Device]:
    one = Device(browser, url, **options)
    try:
        yield one
    finally:
        one.close()


def signed_in_device(browser: Any, url: str, user: str) -> Device:
    """A new device on the app, ``user`` signed in through the form."""
    one = Device(browser, url)
    try:
        one.visit()
        one.sign_in(user)
        one.wait_signed_in(user)
    except BaseException:
        one.close()
        raise
    return one


def seed(creator: Device, server: DevServer, user: str, list_name: str, n: int) -> dict[str, Any]:
    """Put a list of ``n`` tasks in ``user``'s board on the server, from ``creator``'s
    current page (the app loaded, nobody signed in: no board is drawn meanwhile)."""
    creator.run(SEED_PY)
    token = server.token(user)["token"]
    prefix = list_name[0].lower()
    code = f"await bench_seed({user!r}, {token!r}, {list_name!r}, {n}, {prefix!r})"
    seeded: dict[str, Any] = creator.run(code)
    return {k: round(v, 1) for k, v in seeded.items()}


class Names:
    """User names unique within the run (the dev stack's DynamoDB is fresh anyway)."""

    def __init__(self) -> None:
        self.stamp = uuid.uuid4().hex[:6]

    def user(self, kind: str) -> str:
        return f"{kind}-{self.stamp}"


# -- 1. start-up ----------------------------------------------------------------------


def _visit_row(report: dict[str, Any]) -> dict[str, Any]:
    marks, boot = report["marks"], report.get("boot") or {}
    return {
        "ready_ms": round(marks["ready"], 1),
        "board_ms": round(marks["board"], 1) if "board" in marks else None,
        "synced_ms": round(marks["synced"], 1) if "synced" in marks else None,
        "boot_ms": boot.get("timings"),
        "transfer_bytes": report["transfer_bytes"],
        "requests": report["requests"],
        "from_service_worker": report["from_service_worker"],
        "controlled": report["controlled"],
        "resources": report["resources"],  # [path, start ms, end ms, bytes transferred]
    }


def startup_phase(
    browser: Any, server: DevServer, args: argparse.Namespace, names: Names
) -> dict[str, Any]:
    user = names.user("boot")
    _log(f"start-up: seeding {args.startup_tasks} tasks for {user}")
    with device(browser, server.url) as creator:
        creator.visit()
        seed(creator, server, user, "Start", args.startup_tasks)
    runs: dict[str, list[dict[str, Any]]] = {
        "cold": [],
        "warm_online": [],
        "warm_offline": [],
        "baseline_cold": [],
        "baseline_sw_first": [],
        "baseline_sw": [],
    }
    plain_page = "/" + BASELINE_PAGE
    for round_ in range(args.startup_runs):
        order = ["baseline", "demo"] if round_ % 2 == 0 else ["demo", "baseline"]
        for variant in order:
            if variant == "baseline":
                with device(browser, server.url) as plain:
                    runs["baseline_cold"].append(_visit_row(plain.visit(plain_page)))
                continue
            session = server.token(user)
            with device(browser, server.url, expect=args.startup_tasks, session=session) as app:
                runs["cold"].append(_visit_row(app.visit()))
                offline = app.page.evaluate("window.pysyncOffline")
                if not offline.get("ready"):
                    raise RuntimeError(f"the build was not stored for offline use: {offline}")
                app.wait_synced()
                runs["warm_online"].append(_visit_row(app.visit()))
                app.wait_synced()
                app.context.set_offline(True)
                try:
                    runs["warm_offline"].append(_visit_row(app.visit()))
                finally:
                    app.context.set_offline(False)
                # Plain Pyodide from the same service worker's cache, after the demo's
                # visits: its first load, then a second one (the one that can use the
                # compiled code Chromium keeps for a wasm response of Cache Storage).
                for key in ("baseline_sw_first", "baseline_sw"):
                    report = app.visit(plain_page, board=False)
                    if not report["controlled"]:
                        raise RuntimeError("the plain page was not served by the service worker")
                    runs[key].append(_visit_row(report))
        last = {k: v[-1]["ready_ms"] for k, v in runs.items() if v}
        _log(f"start-up round {round_ + 1}: ready ms {last}")
    return {"user_tasks": args.startup_tasks, "runs": runs}


# -- 2. propagation -------------------------------------------------------------------


def clock_offset(a: Device, b: Device, tries: int = 7) -> dict[str, float]:
    """B's ``timeOrigin + now()`` minus A's, read A-B-A; the tightest of ``tries``."""
    best: dict[str, float] | None = None
    for _ in range(tries):
        a1 = a.page.evaluate("__bench.abs()")
        b1 = b.page.evaluate("__bench.abs()")
        a2 = a.page.evaluate("__bench.abs()")
        bound = (a2 - a1) / 2
        if best is None or bound < best["bound_ms"]:
            best = {"offset_ms": round(b1 - (a1 + a2) / 2, 3), "bound_ms": round(bound, 3)}
    assert best is not None
    return best


def propagation_phase(
    browser: Any, server: DevServer, args: argparse.Namespace, names: Names
) -> dict[str, Any]:
    user = names.user("prop")
    with (
        contextlib.closing(signed_in_device(browser, server.url, user)) as a,
        contextlib.closing(signed_in_device(browser, server.url, user)) as b,
    ):
        list_name = "Inbox"
        a.page.fill("#new-list-name", list_name)
        a.page.click("#add-list")
        b.wait(
            "(name) => [...document.querySelectorAll('h3.list-name')]"
            ".some((h) => h.textContent === name)",
            list_name,
        )
        a.wait_synced()
        b.wait_synced()
        a.page.evaluate("__bench.trackTitles = true")
        b.page.evaluate("__bench.trackTitles = true")
        field = a.page.locator("section.list input.new-task-title")
        add = a.page.locator("section.list button.add-task")
        offsets = [clock_offset(a, b)]
        titles = []
        total = args.warmup + args.tasks
        _log(f"propagation: {total} tasks ({args.warmup} warm-up) typed on A, seen on B")
        for i in range(total):
            title = f"task {i:03d} {names.stamp}"
            field.fill(title)
            add.click()
            b.wait("(t) => t in __bench.seen", title, timeout=30_000)
            a.wait(PENDING_ZERO_JS, title, timeout=30_000)
            titles.append(title)
            if (i + 1) % 25 == 0:
                _log(f"propagation: {i + 1} of {total}")
        offsets.append(clock_offset(a, b))
        sent = a.page.evaluate("__bench.submits")
        own = a.page.evaluate("__bench.seen")
        seen = b.page.evaluate("__bench.seen")
        zero = {t: a.page.evaluate(PENDING_ZERO_JS, t) for t in titles}
        longtasks_a = a.page.evaluate("__bench.longtasks.length")
        errors = a.errors + b.errors
    samples = [
        {
            "title": t,
            "b_shows_ms": round(seen[t] - sent[t], 2),
            "a_shows_ms": round(own[t] - sent[t], 2),
            "a_pending_zero_ms": round(zero[t] - sent[t], 2),
        }
        for t in titles
    ]
    measured = samples[args.warmup :]
    return {
        "tasks": len(measured),
        "warmup": args.warmup,
        "clock_offsets": offsets,
        "b_shows": percentiles([s["b_shows_ms"] for s in measured]),
        "a_shows": percentiles([s["a_shows_ms"] for s in measured]),
        "a_pending_zero": percentiles([s["a_pending_zero_ms"] for s in measured]),
        "a_longtasks": longtasks_a,
        "page_errors": errors[-10:],
        "samples": samples,
    }


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95, p99, min, max, mean (ms)."""
    ordered = sorted(values)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50": round(statistics.median(ordered), 1),
        "p95": round(cuts[94], 1),
        "p99": round(cuts[98], 1),
        "min": round(ordered[0], 1),
        "max": round(ordered[-1], 1),
        "mean": round(statistics.fmean(ordered), 1),
    }


# -- 3. base sync in the UI -------------------------------------------------------------


def base_sync_phase(
    browser: Any, server: DevServer, args: argparse.Namespace, names: Names
) -> dict[str, Any]:
    user = names.user("base")
    n = args.base_n
    runs = []
    with device(browser, server.url) as fresh:
        # The first device: this context, which then forgets the user (deletes the
        # databases the seeding wrote) to be the device without their data.
        _log(f"base sync: a first device creates {n} tasks for {user}")
        fresh.visit()
        seeded = seed(fresh, server, user, "Backlog", n)
        fresh.run(f"await bench_forget({user!r})")
        _log(
            f"base sync: written locally in {seeded['write_ms']:.0f} ms, "
            f"pushed in {seeded['push_ms']:.0f} ms"
        )
        for run in range(args.base_runs):
            boot = fresh.visit()  # the sign-in screen (the app holds no session)
            fresh.page.evaluate(f"__bench.arm({n})")
            fresh.sign_in(user)
            fresh.wait(
                "() => __bench.marks.board !== undefined && __bench.marks.synced !== undefined"
            )
            marks = fresh.page.evaluate("__bench.marks")
            t0, board, synced = marks["submit"], marks["board"], marks["synced"]
            end = max(board, synced)
            tasks = fresh.page.evaluate(
                "([t0, t1]) => __bench.longtasks.filter(([s, d]) => s < t1 && s + d > t0)"
                ".map(([s, d]) => d)",
                [t0, end],
            )
            fresh.run(SEED_PY)
            cost = fresh.run("await bench_render_cost()")
            row = {
                "first_task_ms": round(marks["first"] - t0, 1),
                "board_ms": round(board - t0, 1),
                "synced_ms": round(synced - t0, 1),
                "done_ms": round(end - t0, 1),
                "renders": fresh.page.evaluate("__bench.renders"),
                "longtasks": {
                    "count": len(tasks),
                    "max_ms": round(max(tasks, default=0.0), 1),
                    "total_ms": round(sum(tasks), 1),
                },
                "shown": fresh.page.locator("#board li.task").count(),
                "one_render": {k: round(v, 1) for k, v in cost.items()},
                "boot_from_service_worker": boot["controlled"],
            }
            if row["shown"] != n:
                raise RuntimeError(f"the board shows {row['shown']} of {n} tasks")
            runs.append(row)
            _log(
                f"base sync run {run + 1}: first task {row['first_task_ms']:.0f} ms, board "
                f"{row['board_ms']:.0f} ms, synced {row['synced_ms']:.0f} ms, "
                f"{row['renders']} renders (one: query {cost['query_ms']:.0f} ms + render "
                f"{cost['render_ms']:.0f} ms), longest task {row['longtasks']['max_ms']:.0f} ms"
            )
            fresh.run(f"await bench_forget({user!r})")
    return {"n": n, "seed": seeded, "runs": runs}


# -- results ----------------------------------------------------------------------------


def _summary(values: list[float | None]) -> dict[str, Any] | None:
    present = [v for v in values if v is not None]
    return summarize(present) if present else None


def _ratio(ours: dict[str, Any] | None, theirs: dict[str, Any] | None) -> float | None:
    if not ours or not theirs:
        return None
    return round(ours["median"] / theirs["median"], 2)


def startup_rows(startup: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per kind of visit: medians of ready and board, ratios to plain Pyodide."""
    runs = startup["runs"]
    base = {
        "cold": _summary([r["ready_ms"] for r in runs["baseline_cold"]]),
        "sw": _summary([r["ready_ms"] for r in runs["baseline_sw"]]),
    }
    labels = {
        "cold": ("first visit (cold: no cache, no service worker)", "cold"),
        "warm_online": ("second visit, online (service worker)", "sw"),
        "warm_offline": ("second visit, offline (service worker)", "sw"),
    }
    baseline_labels = {
        "cold": "plain Pyodide, first visit",
        "sw": "plain Pyodide, from the same service worker",
    }
    rows = []
    for key, (label, baseline) in labels.items():
        ready = _summary([r["ready_ms"] for r in runs[key]])
        board = _summary([r["board_ms"] for r in runs[key]])
        steps = {
            step: _summary([(r["boot_ms"] or {}).get(step) for r in runs[key]])
            for step in ("pyodide", "pysync", "app")
        }
        rows.append(
            {
                "visit": label,
                "key": key,
                "runs": len(runs[key]),
                "ready_ms": ready,
                "board_ms": board,
                "boot_ms": steps,
                "baseline": baseline_labels[baseline],
                "baseline_ms": base[baseline],
                "ready_ratio": _ratio(ready, base[baseline]),
                "board_ratio": _ratio(board, base[baseline]),
                "transfer_mb": round(
                    statistics.median(r["transfer_bytes"] for r in runs[key]) / 1e6, 2
                ),
            }
        )
    return rows


def main() -> None:
    """Run the benchmark and write bench/results/demo.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--startup-runs", type=int, default=5, help="start-up rounds")
    parser.add_argument("--startup-tasks", type=int, default=20, help="tasks on the board")
    parser.add_argument("--tasks", type=int, default=100, help="measured tasks, propagation")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up tasks, propagation")
    parser.add_argument("--base-n", type=int, default=2000, help="tasks of the base sync")
    parser.add_argument("--base-runs", type=int, default=2, help="base sync runs")
    parser.add_argument(
        "--only", choices=("startup", "propagation", "base_sync"), action="append", default=[]
    )
    parser.add_argument("--deadline", type=int, default=600, help="abort after this many s")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    phases = args.only or ["startup", "propagation", "base_sync"]

    def timeout(signum: int, frame: Any) -> None:
        raise TimeoutError(f"bench_demo took more than {args.deadline} s")

    signal.signal(signal.SIGALRM, timeout)
    signal.alarm(args.deadline)

    from playwright.sync_api import sync_playwright

    config = browser_config()
    started = time.monotonic()
    names = Names()
    results: dict[str, Any] = {}
    machine: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    with site() as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=config.CHROMIUM_EXECUTABLE, args=config.CHROMIUM_ARGS
        )
        try:
            machine["chromium"] = browser.version
            runners = {
                "startup": startup_phase,
                "propagation": propagation_phase,
                "base_sync": base_sync_phase,
            }
            try:
                for name in phases:
                    began = time.monotonic()
                    results[name] = runners[name](browser, server, args, names)
                    results[name]["elapsed_s"] = round(time.monotonic() - began, 1)
                    _log(f"{name}: {results[name]['elapsed_s']} s")
            except BaseException:
                _log(f"pysync dev's log ({SERVER_LOG}), last lines:\n{server.log_tail()}")
                raise
            with device(browser, server.url) as probe:
                report = probe.visit("/" + BASELINE_PAGE)
                machine["pyodide"] = report["pyodide"]
                machine["python_in_page"] = probe.page.evaluate(
                    "pyodide.runPython('import sys; sys.version.split()[0]')"
                )
        finally:
            browser.close()
    signal.alarm(0)
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    machine["platform"] = __import__("platform").platform()

    result: dict[str, Any] = {
        "benchmark": "demo",
        "title": "Demo app as users see it: start-up, propagation, base sync in the UI",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "setup": (
            f"Start-up: {args.startup_runs} rounds, board of {args.startup_tasks} tasks; "
            f"propagation: {args.tasks} tasks after {args.warmup} warm-up; "
            f"base sync: {args.base_n} tasks, {args.base_runs} runs"
        ),
        **results,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    if "startup" in results:
        result["startup_rows"] = startup_rows(results["startup"])
    if args.only and args.output == RESULTS and RESULTS.exists():
        previous = json.loads(RESULTS.read_text())
        result = {**previous, **result}  # keep the phases not run this time
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print_summary(result)
    _log(f"wrote {args.output} in {result['elapsed_s']} s")


def print_summary(result: dict[str, Any]) -> None:
    if "startup" in result:
        first = _summary([r["ready_ms"] for r in result["startup"]["runs"]["baseline_sw_first"]])
        if first:
            _log(f"plain Pyodide, first load from the service worker: {first['median']:.0f} ms")
    for row in result.get("startup_rows", []):
        board = row["board_ms"]["median"] if row["board_ms"] else float("nan")
        _log(
            f"{row['visit']}: ready {row['ready_ms']['median']:.0f} ms "
            f"({row['ready_ratio']}x {row['baseline']} {row['baseline_ms']['median']:.0f} ms), "
            f"board {board:.0f} ms"
        )
    if "propagation" in result:
        p = result["propagation"]
        for key, label in (
            ("b_shows", "B shows A's task"),
            ("a_shows", "A shows its own task"),
            ("a_pending_zero", "A back to 0 pending"),
        ):
            s = p[key]
            _log(f"{label}: p50 {s['p50']} p95 {s['p95']} p99 {s['p99']} max {s['max']} ms")
        _log(f"clock offsets B-A: {p['clock_offsets']}")
    if "base_sync" in result:
        for run in result["base_sync"]["runs"]:
            _log(
                f"base sync of {result['base_sync']['n']}: board {run['board_ms']:.0f} ms, "
                f"synced {run['synced_ms']:.0f} ms"
            )


if __name__ == "__main__":
    main()
