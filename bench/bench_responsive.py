"""Responsiveness and memory: long tasks, input latency and heap while pysync syncs, in Chromium.

Run: ``.venv/bin/python bench/bench_responsive.py [--base-n 20000] [--push-n 10000] ...``
(or ``bench/run_all.py --only responsive``). Results go to bench/results/responsive.json.

One run starts two DynamoDB Locals (in memory), one table in each, and a pysync
proxy for each (``create_app(ProxyConfig(...))``, uvicorn in a thread, as
bench/bench_sync.py does): ``bench_resp`` without the stream consumer (the push and
the local transactions: nothing else runs while they are measured; an emulator of
its own, as DynamoDB Local's stream reads of the other table's large stream slow the
whole emulator down) and ``bench_resp_log``
with it (``consumer=True``, as ``pysync serve``/``dev`` run it), for the base sync,
the pull of changelog entries and the memory rounds; the benchmark waits until the
consumer has appended every change (the changelog head) before it measures.

Responsiveness (one Chromium page, Pyodide and the pysync wheel of build/pyodide/,
public API only: ``pysync.connect``, ``Sync(...).pull()``/``push()``,
``replica.transaction()``): for each operation, a ``PerformanceObserver`` of type
``longtask`` (buffered) is registered before it starts, and while it runs the driver
clicks a button in the page every ``--click-ms`` (CDP ``Input.dispatchMouseEvent``,
press and release, sent without waiting for the page's acknowledgement, so a busy
page does not slow the clicking down); a click handler records
``performance.now() - event.timeStamp`` when it starts. The same probe runs with
nothing else running (the idle baseline).

Attribution: each operation runs again with ``asyncio.Handle._run`` wrapped inside
the page (Pyodide's event loop runs every callback and task step as a browser task
of its own), timing every synchronous stretch between two awaits and noting where
the coroutine resumed and where it suspended next; once more with ``cProfile``
around each stretch (the functions of the stretches over ``--profile-min-ms``).

Memory (a second page, fresh Pyodide): the JS heap (CDP ``Runtime.getHeapUsage``
after ``HeapProfiler.collectGarbage``), Pyodide's wasm memory (``HEAP8.length``:
it never shrinks), and Python's own view (``sys.getallocatedblocks()``, objects
tracked by the GC) after ``gc.collect()``, before a base sync of ``--base-n``
items, after it, after ``--rounds`` pull rounds of ``--round-changes`` changes each
(made with boto3, the replica kept open) and after ``--rounds`` more base syncs
(database closed, deleted and synced again).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _browser import _LOAD, _RUN_PYTHON, DIST, PAGES, ROOT, browser_config, dist_snapshot, serve
from bench_sync import ServerThread, boto3_client

from pysync._marshal import to_item
from pysync._sync._items import sort_key
from pysync.server import (
    DEV_JWT_SECRET,
    DynamoDBLocal,
    ProxyConfig,
    create_app,
    create_tables,
    dynamodb_client,
    issue_token,
    local_session,
)

RESULTS = ROOT / "bench" / "results" / "responsive.json"
TABLE_PUSH = "bench_resp"  # no stream consumer
TABLE_LOG = "bench_resp_log"  # with the stream consumer (changelog)
APP = "bench-resp"
GOAL_TASK_MS = 50.0
GOAL_INPUT_P99_MS = 50.0
GOAL_MEMORY = 0.10  # after the repeated syncs, within 10 % of after the first sync
GOAL_TEXT = f"no long task over {GOAL_TASK_MS:.0f} ms; input p99 < {GOAL_INPUT_P99_MS:.0f} ms"
BUTTON = {"x": 60, "y": 30}  # centre of the probe button (see PROBE_JS)

# Defined once in each page's Python; the coroutines return JSON strings.
PAGE_CODE = r"""
import asyncio
import asyncio.events
import cProfile
import gc
import json
import pstats
import sys

import js
import pysync
from pysync import AppSchema, CollectionSpec, HttpRemote, Index, Sync, delete_indexeddb

APP = "__APP__"
SCHEMA = AppSchema(version=1, collections={"items": CollectionSpec(indexes=(Index("by_n", "n"),))})


def make_docs(n, start=0, title="Item {i} title text"):
    return [
        {
            "id": f"r{i:06d}",
            "title": title.format(i=i),
            "n": i,
            "done": False,
            "tags": ["a", "b"],
            "score": 1.5,
        }
        for i in range(start, start + n)
    ]


def collect():
    gc.collect()
    js.gc()


# -- the synchronous stretches of Pyodide's event loop ---------------------------------
# WebLoop runs each Handle (a task step, a callback) from a browser task of its own:
# one Handle._run is one synchronous stretch of Python between two awaits.
_HANDLE_RUN = asyncio.events.Handle._run
trace = {"mode": None, "armed": False, "steps": [], "count": 0, "total": 0.0}
MIN_STEP_MS = 2.0


def _short(path):
    i = path.rfind("/pysync/")
    if i >= 0:
        return path[i + 1 :]
    return path.rsplit("/", 1)[-1]


def _where(chain):
    if chain is None:
        return "(callback)"
    ours = [c for c in chain if "/pysync/" in c[0]] or chain[-1:]
    if not ours:
        return "(finished)"
    file, line, name = ours[-1]
    return f"{_short(file)}:{line} {name}"


def _stack(chain):
    if chain is None:
        return []
    return [f"{_short(f)}:{line} {name}" for f, line, name in chain if "/pysync/" in f]


# Python's cyclic GC, timed: a collection runs inside whatever stretch allocates.
gcs = {"start": 0.0, "ms": 0.0, "count": 0, "max": 0.0, "by_gen": {}}


def _gc_callback(phase, info):
    now = js.performance.now()
    if phase == "start":
        gcs["start"] = now
        return
    ms = now - gcs["start"]
    gcs["ms"] += ms
    gcs["count"] += 1
    gcs["max"] = max(gcs["max"], ms)
    slot = gcs["by_gen"].setdefault(str(info.get("generation")), [0, 0.0])
    slot[0] += 1
    slot[1] += ms


def gc_watch(on):
    if on:
        gcs.update(start=0.0, ms=0.0, count=0, max=0.0, by_gen={})
        if _gc_callback not in gc.callbacks:
            gc.callbacks.append(_gc_callback)
    elif _gc_callback in gc.callbacks:
        gc.callbacks.remove(_gc_callback)
    return json.dumps(
        {
            "count": gcs["count"],
            "ms": round(gcs["ms"], 1),
            "max_ms": round(gcs["max"], 1),
            "by_generation": {k: [c, round(ms, 1)] for k, (c, ms) in gcs["by_gen"].items()},
        }
    )


def mark(on):
    # Stretches are recorded only while an operation runs (from its t0 to its t1); the
    # performance mark shows the same instant in a Chrome trace.
    trace["armed"] = on
    js.performance.mark("pysync-op-start" if on else "pysync-op-end")
    return js.performance.now()


def _task_chain(task):
    out = []
    coro = task.get_coro()
    while coro is not None and len(out) < 20:
        frame = (
            getattr(coro, "cr_frame", None)
            or getattr(coro, "gi_frame", None)
            or getattr(coro, "ag_frame", None)
        )
        if frame is None:
            break
        out.append((frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "gi_yieldfrom", None)
            or getattr(coro, "ag_await", None)
        )
    return out


def _waiting_chain(future):
    # The coroutine chain of the task awaiting ``future`` (an IndexedDB transaction's end).
    for callback, *_ in getattr(future, "_callbacks", None) or ():
        owner = getattr(callback, "__self__", None)
        if isinstance(owner, asyncio.Task):
            return _task_chain(owner)
    return None


def _measured(call, chain, label):
    # Run call(); if an operation is being traced, time it (and profile it) as one stretch.
    # chain() gives the coroutine chain it resumes / suspends; label names a non-task stretch.
    if trace.get("depth"):  # inside a stretch already timed
        return call()
    trace["depth"] = 1
    armed = trace["armed"]
    before = chain()
    gc_before = gcs["ms"]
    profile = cProfile.Profile() if trace["mode"] == "profile" else None
    t0 = js.performance.now()
    if profile is not None:
        profile.enable()
    try:
        return call()
    finally:
        if profile is not None:
            profile.disable()
        ms = js.performance.now() - t0
        trace["depth"] = 0
        if armed or trace["armed"]:
            _record(t0, ms, gcs["ms"] - gc_before, before, chain(), label, profile)


def _record(t0, ms, gc_ms, before, after, label, profile):
    trace["count"] += 1
    trace["total"] += ms
    if ms >= MIN_STEP_MS:
        trace["steps"].append(
            {
                "t": round(t0, 2),
                "ms": round(ms, 2),
                "gc_ms": round(gc_ms, 2),
                "from": label or _where(before),
                "to": _where(after),
                "stack": _stack(after if after else before),
            }
        )
    if profile is not None and ms >= trace["profile_min_ms"]:
        stats = pstats.Stats(profile).stats
        agg = trace["profile"]
        for (file, line, name), (cc, nc, tt, ct, callers) in stats.items():
            key = f"{_short(file)}:{line}({name})"
            slot = agg.setdefault(key, [0, 0.0, 0.0])
            slot[0] += nc
            slot[1] += tt * 1000
            slot[2] += ct * 1000
        trace["long"].append(round(ms, 1))


def _timed_run(self):
    owner = getattr(self._callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        return _measured(lambda: _HANDLE_RUN(self), lambda: _task_chain(owner), None)
    label = f"(callback {getattr(self._callback, '__qualname__', '?')})"
    return _measured(lambda: _HANDLE_RUN(self), lambda: None, label)


# IndexedDB results reach Python from the browser's request events, not through the
# event loop: the helper calls the database's sink, which hands them to the transaction
# (IndexedDBTransaction.deliver); the transaction body's callbacks run there.
try:
    from pysync._store import _indexeddb as _idb

    _DELIVER = _idb.IndexedDBTransaction.deliver

    def _timed_deliver(self, *args):
        if trace["mode"] is None:
            return _DELIVER(self, *args)
        done = getattr(self, "_done", None)
        return _measured(
            lambda: _DELIVER(self, *args),
            lambda: _waiting_chain(done),
            "(IndexedDB results: IndexedDBTransaction.deliver)",
        )

    _idb.IndexedDBTransaction.deliver = _timed_deliver
except (ImportError, AttributeError):  # the store changed: stretches from the loop only
    pass


def trace_start(mode, profile_min_ms=30.0):
    trace.update(mode=mode, armed=False, steps=[], count=0, total=0.0, profile={}, long=[])
    trace["profile_min_ms"] = profile_min_ms
    asyncio.events.Handle._run = _timed_run


def trace_stop():
    asyncio.events.Handle._run = _HANDLE_RUN
    top = sorted(trace["profile"].items(), key=lambda kv: -kv[1][1])[:25]
    return {
        "mode": trace["mode"],
        "count": trace["count"],
        "total_ms": round(trace["total"], 1),
        "steps": trace["steps"],
        "profiled_stretches_ms": trace["long"],
        "profile_top_tottime": [
            {"function": k, "calls": c, "tottime_ms": round(tt, 1), "cumtime_ms": round(ct, 1)}
            for k, (c, tt, ct) in top
        ],
        "profile_top_cumtime": [
            {"function": k, "calls": c, "tottime_ms": round(tt, 1), "cumtime_ms": round(ct, 1)}
            for k, (c, tt, ct) in sorted(trace["profile"].items(), key=lambda kv: -kv[1][2])[:25]
        ],
    }


# -- the operations -----------------------------------------------------------------------
replicas = {}


async def fresh_replica(user):
    await delete_indexeddb(f"pysync:{APP}:{user}")
    db = await pysync.connect(APP, user=user, schema=SCHEMA)
    replicas[user] = db
    return db


async def drop_replica(user):
    db = replicas.pop(user)
    db.close()
    await delete_indexeddb(db.name)


def syncer(user, url, token, table):
    return Sync(replicas[user], HttpRemote(url, token), table=table)


async def op_base_sync(user, url, token, table, n):
    db = await fresh_replica(user)
    sync = syncer(user, url, token, table)
    t0 = mark(True)
    report = await sync.pull()
    t1 = mark(False)
    count = await db["items"].count()
    await drop_replica(user)
    assert report.base_sync and count == n, f"base sync: {count} of {n}, {report}"
    return json.dumps({"t0": t0, "t1": t1, "applied": report.applied, "pages": report.pages})


async def prepare_push(user, n):
    # n pending changes, each its own outbox entry (what n separate put() calls leave),
    # written in one local transaction to save set-up time.
    db = await fresh_replica(user)
    coll = db["items"]
    await db._write([coll._put_write(doc) for doc in make_docs(n)], group=None)
    return json.dumps({"pending": db.status.pending})


async def op_push(user, url, token, table, n):
    db = replicas[user]
    sync = syncer(user, url, token, table)
    t0 = mark(True)
    report = await sync.push()
    t1 = mark(False)
    left = len(await db.outbox())
    await drop_replica(user)
    assert report.pushed == n and not left, f"push: {report}, {left} left"
    return json.dumps({"t0": t0, "t1": t1, "pushed": report.pushed})


async def prepare_pull(user, url, token, table, n):
    db = await fresh_replica(user)
    report = await syncer(user, url, token, table).pull()
    assert report.base_sync and await db["items"].count() == n, f"prepare pull: {report}"
    return json.dumps({"applied": report.applied})


async def op_pull(user, url, token, table, n):
    db = replicas[user]
    sync = syncer(user, url, token, table)
    t0 = mark(True)
    report = await sync.pull()
    t1 = mark(False)
    sample = await db["items"].get("r000007")
    await drop_replica(user)
    assert report.applied == n and not report.base_sync, f"pull: {report}"
    assert sample["title"] == "Item 7 changed", f"pull: {sample}"
    return json.dumps({"t0": t0, "t1": t1, "applied": report.applied, "pages": report.pages})


async def op_transactions(user, count, size):
    db = await fresh_replica(user)
    spans = []
    mark(True)
    for k in range(count):
        docs = make_docs(size, k * size)
        t0 = js.performance.now()
        async with db.transaction() as tx:
            for doc in docs:
                tx.put("items", doc)
        spans.append([t0, js.performance.now()])
    mark(False)
    total = await db["items"].count()
    await drop_replica(user)
    assert total == count * size, f"transactions: {total}"
    return json.dumps({"t0": spans[0][0], "t1": spans[-1][1], "spans": spans})


# -- memory --------------------------------------------------------------------------------
mem = {}


def py_memory():
    # sys.getallocatedblocks() is 0 here (Pyodide's CPython has no pymalloc): the memory
    # page runs tracemalloc instead, started before the first reading.
    import tracemalloc

    gc.collect()
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    return json.dumps(
        {"py_traced": current, "py_traced_peak": peak, "py_objects": len(gc.get_objects())}
    )


async def mem_base_sync(user, url, token, table, n, again):
    if again:
        mem.pop("sync", None)
        await drop_replica(user)
    await fresh_replica(user)
    mem["sync"] = syncer(user, url, token, table)
    t0 = js.performance.now()
    report = await mem["sync"].pull()
    ms = js.performance.now() - t0
    count = await replicas[user]["items"].count()
    assert report.base_sync and count == n, f"memory base sync: {count} of {n}"
    return json.dumps({"ms": ms})


async def mem_pull(user, changes, round_):
    t0 = js.performance.now()
    report = await mem["sync"].pull()
    ms = js.performance.now() - t0
    assert report.applied == changes and not report.base_sync, f"memory pull: {report}"
    doc = await replicas[user]["items"].get("r000000")
    assert doc["title"] == f"round {round_}", doc
    return json.dumps({"ms": ms})
"""

# The probe button, its click handler, and the long-task observer.
PROBE_JS = r"""
() => {
  const button = document.createElement("button");
  button.id = "probe";
  button.textContent = "probe";
  button.style.cssText = "position:fixed;left:0;top:10px;width:120px;height:40px";
  document.body.appendChild(button);
  window.clicks = [];
  button.addEventListener("click", (event) => {
    const now = performance.now();
    clicks.push([event.timeStamp, now - event.timeStamp]);
  });
  window.longTasks = {
    start() {
      this.entries = [];
      this.observer = new PerformanceObserver((list) => {
        for (const e of list.getEntries()) this.entries.push([e.startTime, e.duration]);
      });
      this.observer.observe({ type: "longtask", buffered: true });
      return PerformanceObserver.supportedEntryTypes.includes("longtask");
    },
    stop() {
      for (const e of this.observer.takeRecords()) this.entries.push([e.startTime, e.duration]);
      this.observer.disconnect();
      return this.entries;
    },
  };
  return true;
}
"""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of values (non-empty)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


# -- the browser ----------------------------------------------------------------------------


class Page:
    """An async Playwright page with Pyodide and pysync loaded, a CDP session and the probe."""

    def __init__(self, page: Any, cdp: Any, origin: str, browser: Any, version: str) -> None:
        self.browser = browser
        self.page = page
        self.cdp = cdp
        self.origin = origin
        self.chromium_version: str = browser.version
        self.pyodide_version = version

    async def js(self, expression: str, arg: Any = None) -> Any:
        return await self.page.evaluate(expression, arg)

    async def py(self, code: str) -> Any:
        return await self.page.evaluate(_RUN_PYTHON, code)

    async def py_json(self, code: str) -> Any:
        return json.loads(await self.py(code))


@contextlib.asynccontextmanager
async def browser_pages() -> AsyncIterator[Callable[[], Any]]:
    """Chromium (playwright.config.py's settings); yields an async factory of loaded pages."""
    from playwright.async_api import async_playwright

    config = browser_config()
    with dist_snapshot() as dist, serve({"/": PAGES, "/pyodide/": dist}) as base_url:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=config.CHROMIUM_EXECUTABLE, args=config.CHROMIUM_ARGS
            )

            async def new_page() -> Page:
                context = await browser.new_context(viewport=config.VIEWPORT)
                context.set_default_timeout(600_000)
                page = await context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                await page.goto(f"{base_url}/bench.html")
                try:
                    version = await page.evaluate(_LOAD)
                except Exception as error:
                    raise RuntimeError(f"loading Pyodide failed: {error}; {errors}") from None
                cdp = await context.new_cdp_session(page)
                loaded = Page(page, cdp, base_url, browser, version)
                await loaded.js(PROBE_JS)
                await loaded.py(PAGE_CODE.replace("__APP__", APP))
                return loaded

            try:
                yield new_page
            finally:
                await browser.close()


async def clicker(page: Page, done: Callable[[], bool], interval_s: float) -> int:
    """Click the probe button every ``interval_s`` until ``done()``; returns clicks sent.

    Each click is a CDP press and release sent without awaiting the page's
    acknowledgement (which waits for the page's main thread): a busy page gets its
    clicks queued at the usual rate, as a user's would be.
    """
    sent: list[asyncio.Future[Any]] = []
    count = 0
    next_at = time.perf_counter()
    while not done():
        for kind in ("mousePressed", "mouseReleased"):
            event = {"type": kind, "button": "left", "clickCount": 1, **BUTTON}
            sent.append(asyncio.ensure_future(page.cdp.send("Input.dispatchMouseEvent", event)))
        count += 1
        next_at += interval_s
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    await asyncio.gather(*sent)
    return count


def major_faults() -> int:
    """The machine's major page faults so far (a page read back from disk blocks the
    thread that touched it: a task's wall time without its CPU time)."""
    with open("/proc/vmstat") as vmstat:
        for line in vmstat:
            name, _, value = line.partition(" ")
            if name == "pgmajfault":
                return int(value)
    return 0


def _input_stats(latencies: list[float]) -> dict[str, Any]:
    if not latencies:
        return {"clicks": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "clicks": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(_pct(latencies, 99), 1),
        "max_ms": round(max(latencies), 1),
    }


async def probed(page: Page, code: str, interval_s: float) -> dict[str, Any]:
    """Run the page's Python ``code`` (returns JSON with ``t0``/``t1``) under the probes."""
    await page.py("collect()")
    await page.js("() => { clicks.length = 0; }")
    supported = await page.js("() => longTasks.start()")
    await page.py("gc_watch(True)")
    await page.browser.start_tracing(page=page.page, categories=TRACE_CATEGORIES)
    faults = major_faults()
    operation = asyncio.ensure_future(page.py(code))
    sent = await clicker(page, operation.done, interval_s)
    run = json.loads(await operation)
    run["major_faults"] = major_faults() - faults
    run["main_thread"] = main_thread_tasks(await page.browser.stop_tracing())
    run["python_gc"] = json.loads(await page.py("gc_watch(False)"))
    await asyncio.sleep(0.2)  # the last clicks' handlers
    entries = await page.js("() => longTasks.stop()")
    clicks = await page.js("() => clicks.splice(0)")
    t0, t1 = run["t0"], run["t1"]
    during = [[s, d] for s, d in entries if s < t1 and s + d > t0]
    latencies = [lat for stamp, lat in clicks if t0 <= stamp <= t1]
    durations = [d for _, d in during]
    run.update(
        ms=round(t1 - t0, 1),
        longtask_api=supported,
        clicks_sent=sent,
        longtasks={
            "count": len(durations),
            "total_ms": round(sum(durations), 1),
            "max_ms": round(max(durations, default=0.0), 1),
            "over_50ms": sum(1 for d in durations if d > GOAL_TASK_MS),
            "entries": [[round(s, 1), round(d, 1)] for s, d in during],
        },
        input=_input_stats(latencies),
        input_latencies_ms=[round(x, 1) for x in latencies],
    )
    return run


# The browser's own record of the page's main-thread tasks: wall time (dur) and the
# thread's CPU time (tdur). A task's wall time also includes the time its thread was off
# the CPU: waiting for one on a loaded machine, or blocked.
TRACE_CATEGORIES = ["toplevel", "blink.user_timing"]


def main_thread_tasks(trace: bytes) -> dict[str, Any]:
    """Tasks over 50 ms (wall) of the renderer main thread between the op's marks."""
    events = json.loads(trace)["traceEvents"]
    marks = {e["name"]: e for e in events if e.get("name") in ("pysync-op-start", "pysync-op-end")}
    if len(marks) < 2:
        return {"error": "no op marks in the trace"}
    thread = (marks["pysync-op-start"]["pid"], marks["pysync-op-start"]["tid"])
    t0, t1 = marks["pysync-op-start"]["ts"], marks["pysync-op-end"]["ts"]
    tasks = [
        e
        for e in events
        if (e.get("pid"), e.get("tid")) == thread
        and e.get("ph") == "X"
        and e.get("name") in ("RunTask", "ThreadControllerImpl::RunTask")
        and e["ts"] < t1
        and e["ts"] + e.get("dur", 0) > t0
    ]
    long = [e for e in tasks if e.get("dur", 0) > GOAL_TASK_MS * 1000]
    busy_wall = sum(e.get("dur", 0) for e in tasks) / 1000
    busy_cpu = sum(e.get("tdur", 0) for e in tasks) / 1000
    return {
        "tasks": len(tasks),
        "busy_wall_ms": round(busy_wall, 1),
        "busy_cpu_ms": round(busy_cpu, 1),
        "long_wall_cpu_ms": [
            [round(e["dur"] / 1000, 1), round(e.get("tdur", 0) / 1000, 1)] for e in long
        ],
        "over_50ms_cpu": sum(1 for e in tasks if e.get("tdur", 0) > GOAL_TASK_MS * 1000),
        "max_cpu_ms": round(max((e.get("tdur", 0) for e in tasks), default=0) / 1000, 1),
    }


async def idle_probe(page: Page, seconds: float, interval_s: float) -> dict[str, Any]:
    """The probe with nothing else running."""
    await page.js("() => { clicks.length = 0; }")
    supported = await page.js("() => longTasks.start()")
    t0 = await page.js("() => performance.now()")
    end = time.perf_counter() + seconds
    sent = await clicker(page, lambda: time.perf_counter() > end, interval_s)
    await asyncio.sleep(0.2)
    t1 = await page.js("() => performance.now()")
    entries = await page.js("() => longTasks.stop()")
    clicks = await page.js("() => clicks.splice(0)")
    during = [d for s, d in entries if t0 <= s <= t1]
    latencies = [lat for stamp, lat in clicks if t0 <= stamp <= t1]
    return {
        "ms": round(t1 - t0, 1),
        "longtask_api": supported,
        "clicks_sent": sent,
        "longtasks": {
            "count": len(during),
            "total_ms": round(sum(during), 1),
            "max_ms": round(max(during, default=0.0), 1),
            "over_50ms": sum(1 for d in during if d > GOAL_TASK_MS),
            "entries": [],
        },
        "input": _input_stats(latencies),
        "input_latencies_ms": [round(x, 1) for x in latencies],
    }


async def traced(page: Page, code: str, mode: str, profile_min_ms: float) -> dict[str, Any]:
    """Run ``code`` with the page's Handle._run timer (``steps``) or profiler (``profile``)."""
    await page.py("collect()")
    supported = await page.js("() => longTasks.start()")
    await page.py(f"trace_start({mode!r}, {profile_min_ms})")
    await page.py("gc_watch(True)")
    try:
        run = json.loads(await page.py(code))
    finally:
        trace = await page.py("json.dumps(trace_stop())")
        run_gc = json.loads(await page.py("gc_watch(False)"))
    entries = await page.js("() => longTasks.stop()")
    t0, t1 = run["t0"], run["t1"]
    run["longtask_api"] = supported
    run["longtasks"] = [[s, d] for s, d in entries if s < t1 and s + d > t0]
    run["trace"] = json.loads(trace)
    run["python_gc"] = run_gc
    return run


def attribute(run: dict[str, Any]) -> dict[str, Any]:
    """Match the steps-mode run's long tasks with the Python stretches inside them."""
    steps = run["trace"]["steps"]
    tasks = []
    by_where: dict[str, dict[str, Any]] = {}
    for start, duration in run["longtasks"]:
        inside = [s for s in steps if start - 1 <= s["t"] <= start + duration + 1]
        python_ms = sum(s["ms"] for s in inside)
        gc_ms = sum(s["gc_ms"] for s in inside)
        top = max(inside, key=lambda s: s["ms"], default=None)
        where = f"{top['from']} -> {top['to']}" if top else "(no Python stretch)"
        tasks.append(
            {
                "start": round(start, 1),
                "ms": round(duration, 1),
                "python_ms": round(python_ms, 1),
                "gc_ms": round(gc_ms, 1),
                "stretch": where,
                "stack": top["stack"] if top else [],
            }
        )
        slot = by_where.setdefault(
            where, {"tasks": 0, "total_ms": 0.0, "max_ms": 0.0, "gc_ms": 0.0}
        )
        slot["tasks"] += 1
        slot["total_ms"] = round(slot["total_ms"] + duration, 1)
        slot["gc_ms"] = round(slot["gc_ms"] + gc_ms, 1)
        slot["max_ms"] = round(max(slot["max_ms"], duration), 1)
    # The stretches of 20 ms and more, grouped by where they resumed and suspended.
    stretches: dict[str, dict[str, Any]] = {}
    for s in steps:
        if s["ms"] < 20:
            continue
        key = f"{s['from']} -> {s['to']}"
        slot = stretches.setdefault(
            key, {"count": 0, "total_ms": 0.0, "max_ms": 0.0, "gc_ms": 0.0, "stack": s["stack"]}
        )
        slot["count"] += 1
        slot["total_ms"] = round(slot["total_ms"] + s["ms"], 1)
        slot["gc_ms"] = round(slot["gc_ms"] + s["gc_ms"], 1)
        slot["max_ms"] = round(max(slot["max_ms"], s["ms"]), 1)
    return {
        "ms": round(run["t1"] - run["t0"], 1),
        "python_stretches": run["trace"]["count"],
        "python_total_ms": run["trace"]["total_ms"],
        "longtasks": len(tasks),
        "longtask_total_ms": round(sum(t["ms"] for t in tasks), 1),
        "longtask_python_ms": round(sum(t["python_ms"] for t in tasks), 1),
        "longtask_gc_ms": round(sum(t["gc_ms"] for t in tasks), 1),
        "python_gc": run["python_gc"],
        "longtasks_by_stretch": dict(sorted(by_where.items(), key=lambda kv: -kv[1]["total_ms"])),
        "stretches_over_20ms": dict(sorted(stretches.items(), key=lambda kv: -kv[1]["total_ms"])),
        "tasks": tasks,
    }


# -- servers and data ----------------------------------------------------------------------


@contextlib.contextmanager
def proxy(endpoint: str, origin: str, table: str, consumer: bool) -> Iterator[str]:
    """The pysync proxy for ``table`` (optionally with its stream consumer); yields its URL."""
    config = ProxyConfig(
        table=table,
        dynamodb_endpoint=endpoint,
        jwt_secret=DEV_JWT_SECRET,
        allowed_origins=(origin,),
        rate_limit=1e9,
        rate_burst=10**9,
        consumer=consumer,
        stream_poll_interval=0.05,
    )
    with ServerThread(create_app(config, session=local_session())) as server:
        yield server.url + "/dynamodb"


def make_docs(n: int, start: int = 0, title: str = "Item {i} title text") -> list[dict[str, Any]]:
    """The documents of PAGE_CODE's ``make_docs``."""
    return [
        {
            "id": f"r{i:06d}",
            "title": title.format(i=i),
            "n": i,
            "done": False,
            "tags": ["a", "b"],
            "score": 1.5,
        }
        for i in range(start, start + n)
    ]


def item(scope: str, doc: dict[str, Any], version: int) -> dict[str, Any]:
    """A DynamoDB item as a writer following the contract leaves it: a new ``_m``, ``_v``."""
    system = {
        "_hlc": f"{int(time.time() * 1000):015d}-000000-0123456789abcdef",
        "_c": "0123456789abcdef",
        "_m": uuid.uuid4().hex,
        "_v": version,
    }
    return to_item({**doc, "pk": scope, "sk": sort_key(APP, "items", doc["id"]), **system})


def batch_write(client: Any, table: str, items: list[dict[str, Any]]) -> float:
    """BatchWriteItem (25 per request, unprocessed ones resent); seconds."""
    t0 = time.perf_counter()
    for i in range(0, len(items), 25):
        requests = {table: [{"PutRequest": {"Item": one}} for one in items[i : i + 25]]}
        while requests:
            requests = client.batch_write_item(RequestItems=requests).get("UnprocessedItems") or {}
    return time.perf_counter() - t0


def head(client: Any, scope: str) -> int:
    """The scope's changelog head (0 before the first entry)."""
    found = client.get_item(
        TableName=f"{TABLE_LOG}_changes",
        Key={"pk": {"S": scope}, "sk": {"N": "0"}},
        ConsistentRead=True,
    ).get("Item")
    return int(found["head"]["N"]) if found and "head" in found else 0


def wait_head(client: Any, scope: str, target: int, timeout: float = 300.0) -> float:
    """Wait until the consumer has appended up to ``target``; seconds waited."""
    t0 = time.monotonic()
    while (current := head(client, scope)) < target:
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"changelog head {current} of {target} after {timeout} s")
        time.sleep(0.1)
    return time.monotonic() - t0


class Names:
    def __init__(self) -> None:
        self.stamp = uuid.uuid4().hex[:6]
        self.count = 0

    def next(self, kind: str) -> str:
        self.count += 1
        return f"{kind}-{self.stamp}-{self.count}"


# -- phases ----------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, client: Any, urls: dict[str, str]) -> None:
        self.args = args
        self.client = client
        self.urls = urls
        self.names = Names()
        self.base_user = self.names.next("base")

    def load_base(self) -> dict[str, Any]:
        n = self.args.base_n
        scope = f"u#{self.base_user}"
        load_s = batch_write(self.client, TABLE_LOG, [item(scope, d, 1) for d in make_docs(n)])
        wait_s = wait_head(self.client, scope, n)
        _log(f"base: {n} items loaded in {load_s:.1f} s, in the changelog {wait_s:.1f} s later")
        return {"load_s": round(load_s, 1), "consumer_wait_s": round(wait_s, 1)}

    def _token(self, user: str) -> str:
        return issue_token(DEV_JWT_SECRET, user, ttl=24 * 3600)

    async def base_sync_code(self, page: Page) -> str:
        user = self.base_user
        url, token = self.urls[TABLE_LOG], self._token(user)
        return (
            f"await op_base_sync({user!r}, {url!r}, {token!r}, {TABLE_LOG!r}, {self.args.base_n})"
        )

    async def push_code(self, page: Page) -> str:
        user = self.names.next("push")
        n = self.args.push_n
        await page.py_json(f"await prepare_push({user!r}, {n})")
        url, token = self.urls[TABLE_PUSH], self._token(user)
        return f"await op_push({user!r}, {url!r}, {token!r}, {TABLE_PUSH!r}, {n})"

    async def pull_code(self, page: Page) -> str:
        user = self.names.next("pull")
        n = self.args.pull_n
        scope = f"u#{user}"
        url, token = self.urls[TABLE_LOG], self._token(user)
        batch_write(self.client, TABLE_LOG, [item(scope, d, 1) for d in make_docs(n)])
        wait_head(self.client, scope, n)
        await page.py_json(f"await prepare_pull({user!r}, {url!r}, {token!r}, {TABLE_LOG!r}, {n})")
        changed = make_docs(n, title="Item {i} changed")
        t0 = time.monotonic()
        batch_write(self.client, TABLE_LOG, [item(scope, d, 2) for d in changed])
        wait_s = wait_head(self.client, scope, 2 * n)
        _log(f"pull: {n} changes written and in the changelog in {time.monotonic() - t0:.1f} s")
        self.pull_consumer_wait_s = round(wait_s, 1)
        return f"await op_pull({user!r}, {url!r}, {token!r}, {TABLE_LOG!r}, {n})"

    async def transaction_code(self, page: Page) -> str:
        user = self.names.next("tx")
        return f"await op_transactions({user!r}, {self.args.tx_count}, {self.args.tx_size})"

    def operations(self) -> list[tuple[str, str, int, Callable[[Page], Any]]]:
        code = {
            "base_sync": self.base_sync_code,
            "push": self.push_code,
            "pull": self.pull_code,
            "transaction": self.transaction_code,
        }
        return [(key, label, n, code[key]) for key, label, n in operation_labels(self.args)]

    async def responsiveness(self, page: Page) -> dict[str, Any]:
        interval = self.args.click_ms / 1000
        out: dict[str, Any] = {}
        # A few clicks first: the first ones after load can meet one-off work (layout, focus).
        await idle_probe(page, 0.5, interval)
        out["idle"] = [await idle_probe(page, self.args.idle_s, interval)]
        _log(f"idle: {_brief(out['idle'][0])}")
        for key, label, _, code in self.operations():
            runs = []
            for _ in range(self.args.runs):
                runs.append(await probed(page, await code(page), interval))
                _log(f"{label}: {_brief(runs[-1])}")
            out[key] = runs
        return out

    async def attribution(self, page: Page) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, label, _, code in self.operations():
            if key not in self.args.attribute:
                continue
            entry: dict[str, Any] = {}
            for mode in self.args.trace_modes:
                run = await traced(page, await code(page), mode, self.args.profile_min_ms)
                if mode == "steps":
                    entry["steps"] = attribute(run)
                    top = next(iter(entry["steps"]["longtasks_by_stretch"].items()), None)
                    _log(f"{label}, steps: {entry['steps']['longtasks']} long tasks; top {top}")
                else:
                    trace = run["trace"]
                    entry["profile"] = {
                        "ms": round(run["t1"] - run["t0"], 1),
                        "profile_min_ms": self.args.profile_min_ms,
                        "profiled_stretches": len(trace["profiled_stretches_ms"]),
                        "profiled_ms": round(sum(trace["profiled_stretches_ms"]), 1),
                        "top_tottime": trace["profile_top_tottime"],
                        "top_cumtime": trace["profile_top_cumtime"],
                    }
                    top3 = [f["function"] for f in trace["profile_top_tottime"][:3]]
                    _log(f"{label}, profile: top {top3}")
            out[key] = entry
        return out

    async def memory(self, page: Page) -> dict[str, Any]:
        a = self.args
        user = self.base_user
        scope = f"u#{user}"
        url, token = self.urls[TABLE_LOG], self._token(user)
        readings: list[dict[str, Any]] = []

        async def reading(label: str, **extra: Any) -> None:
            values = await page.py_json("py_memory()")
            await page.cdp.send("HeapProfiler.collectGarbage")
            await page.cdp.send("HeapProfiler.collectGarbage")
            heap = await page.cdp.send("Runtime.getHeapUsage")
            wasm = await page.js("() => pyodide._module.HEAP8.length")
            values.update(
                label=label,
                js_heap_used=heap["usedSize"],
                js_heap_total=heap["totalSize"],
                wasm_bytes=wasm,
                **extra,
            )
            readings.append(values)
            _log(
                f"memory {label}: JS heap {heap['usedSize'] / 2**20:.1f} MB, "
                f"wasm {wasm / 2**20:.0f} MB, Python {values['py_traced'] / 2**20:.1f} MB "
                f"(peak {values['py_traced_peak'] / 2**20:.1f}), {values['py_objects']} objects"
            )

        await page.py("import tracemalloc; tracemalloc.start()")
        await reading("before")
        run = await page.py_json(
            f"await mem_base_sync({user!r}, {url!r}, {token!r}, {TABLE_LOG!r}, {a.base_n}, False)"
        )
        await reading("after base sync", ms=round(run["ms"], 1))
        version = 2
        for r in range(1, a.rounds + 1):
            changed = make_docs(a.round_changes, title=f"round {r}")
            target = head(self.client, scope) + a.round_changes
            batch_write(self.client, TABLE_LOG, [item(scope, d, version) for d in changed])
            version += 1
            wait_head(self.client, scope, target)
            run = await page.py_json(f"await mem_pull({user!r}, {a.round_changes}, {r})")
            await reading(f"pull round {r}", ms=round(run["ms"], 1))
        for r in range(1, a.rounds + 1):
            run = await page.py_json(
                f"await mem_base_sync({user!r}, {url!r}, {token!r}, {TABLE_LOG!r}, "
                f"{a.base_n}, True)"
            )
            await reading(f"base sync again {r}", ms=round(run["ms"], 1))
        return {"readings": readings}


def _brief(run: dict[str, Any]) -> str:
    lt, inp = run["longtasks"], run["input"]
    thread = run.get("main_thread") or {}
    cpu = f"; longest task's CPU {thread['max_cpu_ms']} ms" if "max_cpu_ms" in thread else ""
    return (
        f"{run['ms']:.0f} ms, {lt['count']} long tasks (total {lt['total_ms']} ms, "
        f"longest {lt['max_ms']} ms), input p50/p99/max {inp['p50_ms']}/{inp['p99_ms']}/"
        f"{inp['max_ms']} ms over {inp['clicks']} clicks{cpu}"
    )


# -- results ---------------------------------------------------------------------------------


def _response_row(operation: str, n: int | None, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row: long tasks and input latency over all runs of an operation."""
    latencies = [x for r in runs for x in r["input_latencies_ms"]]
    durations = [d for r in runs for _, d in r["longtasks"]["entries"]]
    if not durations:  # the idle probe keeps counts only
        count = sum(r["longtasks"]["count"] for r in runs)
        total = sum(r["longtasks"]["total_ms"] for r in runs)
        longest = max(r["longtasks"]["max_ms"] for r in runs)
    else:
        count, total, longest = len(durations), sum(durations), max(durations)
    inp = _input_stats(latencies)
    threads = [r["main_thread"] for r in runs if "tasks" in r.get("main_thread", {})]
    met = (
        longest <= GOAL_TASK_MS and inp["p99_ms"] is not None and inp["p99_ms"] < GOAL_INPUT_P99_MS
    )
    return {
        "operation": operation,
        "n": n,
        "runs": len(runs),
        "pysync_ms": round(statistics.median(r["ms"] for r in runs), 1) if n else None,
        "long_tasks": count,
        "long_task_total_ms": round(total, 1),
        "longest_task_ms": round(longest, 1),
        # The same tasks seen by the browser's tracing: their main-thread CPU time.
        "longest_task_cpu_ms": max((t["max_cpu_ms"] for t in threads), default=None),
        "tasks_over_50ms_cpu": sum(t["over_50ms_cpu"] for t in threads) if threads else None,
        "clicks": inp["clicks"],
        "input_p50_ms": inp["p50_ms"],
        "input_p99_ms": inp["p99_ms"],
        "input_max_ms": inp["max_ms"],
        "goal": GOAL_TEXT if n is not None else f"input p99 < {GOAL_INPUT_P99_MS:.0f} ms",
        "goal_met": met,
    }


def _mb(value: float) -> float:
    return round(value / 2**20, 1)


def memory_rows(memory: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    readings = memory["readings"]
    by_label = {r["label"]: r for r in readings}
    first = by_label["after base sync"]
    picks = [
        ("memory: before the base sync", by_label["before"], None),
        (f"memory: after a base sync of {args.base_n:,} items", first, None),
        (
            f"memory: after {args.rounds} pull rounds of {args.round_changes} changes",
            by_label[f"pull round {args.rounds}"],
            first,
        ),
        (
            f"memory: after {args.rounds} more base syncs (database deleted, synced again)",
            by_label[f"base sync again {args.rounds}"],
            first,
        ),
    ]
    rows = []
    for label, r, ref in picks:
        row: dict[str, Any] = {
            "operation": label,
            "js_heap_mb": _mb(r["js_heap_used"]),
            "wasm_mb": _mb(r["wasm_bytes"]),
            "py_mb": _mb(r["py_traced"]),
            "py_peak_mb": _mb(r["py_traced_peak"]),
            "py_objects": r["py_objects"],
        }
        if ref is not None:
            heap = r["js_heap_used"] / ref["js_heap_used"] - 1
            python = r["py_traced"] / ref["py_traced"] - 1
            row["js_heap_change"] = f"{heap:+.1%}"
            row["py_change"] = f"{python:+.1%}"
            row["goal"] = (
                f"JS heap and Python memory within {GOAL_MEMORY:.0%} of after the first sync"
            )
            row["goal_met"] = abs(heap) <= GOAL_MEMORY and abs(python) <= GOAL_MEMORY
        rows.append(row)
    return rows


def _ms(value: float) -> str:
    return f"{value:,.0f} ms"


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def notes(
    responsive: dict[str, Any],
    attribution: dict[str, Any],
    memory: dict[str, Any] | None,
    labels: dict[str, str],
) -> list[str]:
    """Paragraphs written from the measured numbers."""
    out = []
    idle = _response_row("idle", None, responsive["idle"])
    out.append(
        f"Idle baseline (the probe alone, {idle['clicks']} clicks): input latency p50 "
        f"{idle['input_p50_ms']} ms, p99 {idle['input_p99_ms']} ms, max {idle['input_max_ms']} ms, "
        f"{_n(idle['long_tasks'], 'long task')}."
    )
    for key, label in labels.items():
        if key not in responsive:
            continue
        row = _response_row(label, 1, responsive[key])
        text = (
            f"{label[0].upper()}{label[1:]}: {_ms(row['pysync_ms'])}, "
            f"{_n(row['long_tasks'], 'long task')} "
            f"totalling {_ms(row['long_task_total_ms'])} (longest "
            f"{row['longest_task_ms']} ms); input p50 {row['input_p50_ms']} ms, p99 "
            f"{row['input_p99_ms']} ms, max {row['input_max_ms']} ms over {row['clicks']} clicks."
        )
        threads = [r["main_thread"] for r in responsive[key] if "tasks" in r.get("main_thread", {})]
        pairs = [p for t in threads for p in t["long_wall_cpu_ms"]]
        if pairs:
            cpu = sorted(c for _, c in pairs)
            spread = (
                f"its CPU time was {cpu[0]:.0f} ms"
                if len(cpu) == 1
                else f"their CPU time was {cpu[0]:.0f} to {cpu[-1]:.0f} ms (median "
                f"{statistics.median(cpu):.0f} ms)"
            )
            text += (
                f" The browser's trace saw {_n(len(pairs), 'main-thread task')} over 50 ms "
                f"wall time; {spread}, the rest of each was the thread off the CPU "
                f"(waiting for one, or blocked); {_n(row['tasks_over_50ms_cpu'], 'task')} used "
                f"over 50 ms of CPU "
                f"(longest {row['longest_task_cpu_ms']} ms). The main thread was busy "
                f"{_ms(sum(t['busy_wall_ms'] for t in threads))} wall, "
                f"{_ms(sum(t['busy_cpu_ms'] for t in threads))} CPU."
            )
        faults = [r["major_faults"] for r in responsive[key] if "major_faults" in r]
        if faults:
            seconds = sum(r["ms"] for r in responsive[key] if "major_faults" in r) / 1000
            text += (
                f" The machine took {sum(faults):,} major page faults meanwhile "
                f"({sum(faults) / seconds:.1f} a second; each blocks the thread that touched "
                "the page until it is read back from disk)."
            )
        elif any("error" in r.get("main_thread", {}) for r in responsive[key]):
            text += (
                " The browser's trace of this run is incomplete (its buffer filled before the "
                "end), so there is no CPU time for its tasks."
            )
        gcs = [r["python_gc"] for r in responsive[key] if "python_gc" in r]
        if gcs:
            text += (
                f" Python's cyclic GC ran {_n(sum(g['count'] for g in gcs), 'time')} in it, "
                f"{_ms(sum(g['ms'] for g in gcs))} in all (longest "
                f"{max(g['max_ms'] for g in gcs)} ms)."
            )
        steps = attribution.get(key, {}).get("steps")
        if steps and steps["longtasks"]:
            groups = list(steps["longtasks_by_stretch"].items())[:3]
            parts = [
                f"{where} ({_n(g['tasks'], 'task')}, {_ms(g['total_ms'])}, "
                f"longest {g['max_ms']} ms, "
                f"GC {_ms(g['gc_ms'])})"
                for where, g in groups
            ]
            text += (
                f" In the traced run ({_ms(steps['ms'])}), {_n(steps['longtasks'], 'long task')} "
                f"({_ms(steps['longtask_total_ms'])}) held {_ms(steps['longtask_python_ms'])} of "
                "Python stretches (one stretch: from where a coroutine resumed to where it "
                f"next awaited), {_ms(steps['longtask_gc_ms'])} of it in the cyclic GC; the "
                "biggest: " + "; ".join(parts) + "."
            )
        elif steps:
            text += f" The traced run ({_ms(steps['ms'])}) had no long task."
        profile = attribution.get(key, {}).get("profile")
        if profile and profile["profiled_stretches"]:
            top = ", ".join(
                f"{f['function']} {f['tottime_ms']:.0f} ms" for f in profile["top_tottime"][:5]
            )
            text += (
                f" Profiled (cProfile, which slows Python about 2x), the "
                f"{profile['profiled_stretches']} stretches over "
                f"{profile['profile_min_ms']:.0f} ms "
                f"spent their own time most in: {top} (a GC pass counts in the function "
                "that allocated when it started)."
            )
        out.append(text)
    if memory:
        readings = memory["readings"]
        by = {r["label"]: r for r in readings}
        before, first = by["before"], by["after base sync"]
        pulls = [r for r in readings if r["label"].startswith("pull round")]
        bases = [r for r in readings if r["label"].startswith("base sync again")]
        heap_pulls = ", ".join(f"{_mb(r['js_heap_used'])}" for r in pulls)
        heap_bases = ", ".join(f"{_mb(r['js_heap_used'])}" for r in bases)
        kb = lambda r: f"{r['py_traced'] / 1024:,.0f}"  # noqa: E731
        per_pull = (pulls[-1]["py_traced"] - first["py_traced"]) / len(pulls) / 1024
        per_base = (bases[-1]["py_traced"] - first["py_traced"]) / len(bases) / 1024
        out.append(
            f"Memory: the JS heap was {_mb(before['js_heap_used'])} MB before the base sync and "
            f"{_mb(first['js_heap_used'])} MB after it; after each of {len(pulls)} pull rounds "
            f"{heap_pulls} MB; after each of {len(bases)} more base syncs {heap_bases} MB. "
            "Python's own memory (tracemalloc, started at the first reading: allocated since "
            f"and still held) was {kb(first)} KB after the first sync (peak during it "
            f"{_mb(first['py_traced_peak'])} MB), {kb(pulls[-1])} KB after the pull rounds "
            f"({per_pull:+.1f} KB a round) and {kb(bases[-1])} KB after the base syncs "
            f"again ({per_base:+.1f} KB each: "
            + ", ".join(kb(r) for r in bases)
            + f" KB); GC-tracked objects {first['py_objects']:,} after the first sync, "
            f"{bases[-1]['py_objects']:,} at the end. Pyodide's wasm memory (it never shrinks: "
            f"the allocator's high-water mark) went {_mb(before['wasm_bytes'])} -> "
            f"{_mb(first['wasm_bytes'])} -> {_mb(pulls[-1]['wasm_bytes'])} -> "
            f"{_mb(bases[-1]['wasm_bytes'])} MB (before, after the first sync, after the pull "
            "rounds, after the base syncs again)."
        )
    return out


def machine_info(page: Page) -> dict[str, Any]:
    lock = json.loads((DIST / "pyodide-lock.json").read_text())
    wheel = lock["packages"]["pysync"]["version"]
    spec = importlib.util.spec_from_file_location("build_dist", ROOT / "scripts" / "build_dist.py")
    assert spec is not None
    assert spec.loader is not None
    build_dist = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_dist)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "chromium": page.chromium_version,
        "pyodide": page.pyodide_version,
        "platform": platform.platform(),
        "dist": str(DIST),
        "pysync_wheel": wheel,
        "wheel_matches_src": wheel == build_dist.build_version(ROOT),
        "git_head": commit,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    # The push gets a DynamoDB Local of its own: DynamoDB Local's stream reads slow the
    # whole emulator down as a stream grows (with the base's 20,000 records in the
    # other table's stream, the consumer's polling held the push to ~25 items/s),
    # where DynamoDB's tables do not share a machine.
    with DynamoDBLocal() as database, DynamoDBLocal() as push_database:
        for endpoint, table in (
            (push_database.endpoint, TABLE_PUSH),
            (database.endpoint, TABLE_LOG),
        ):
            create_tables(
                dynamodb_client(ProxyConfig(dynamodb_endpoint=endpoint), local_session()), table
            )
        client = boto3_client(database.endpoint)
        async with browser_pages() as new_page:
            page = await new_page()
            machine = machine_info(page)
            machine["python_in_page"] = await page.py("import sys; sys.version.split()[0]")
            machine["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
            if not machine["wheel_matches_src"]:
                _log(
                    f"note: the dist's wheel {machine['pysync_wheel']} is not built from src/ "
                    "as it is now (run scripts/build_dist.py)"
                )
            with (
                proxy(push_database.endpoint, page.origin, TABLE_PUSH, False) as push_url,
                proxy(database.endpoint, page.origin, TABLE_LOG, True) as log_url,
            ):
                bench = Bench(args, client, {TABLE_PUSH: push_url, TABLE_LOG: log_url})
                setup = bench.load_base()
                responsive = await bench.responsiveness(page)
                attribution = await bench.attribution(page)
                memory = None
                if args.rounds:
                    memory = await bench.memory(await new_page())
            machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result = {
        "benchmark": "responsive",
        "title": "Responsiveness and memory while pysync syncs (Chromium, proxy, DynamoDB Local)",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {k: v for k, v in vars(args).items() if k != "output"},
        "setup": setup,
        "runs": responsive,
        "attribution": attribution,
        "memory": memory,
    }
    return summarize(result, args)


def operation_labels(a: argparse.Namespace) -> list[tuple[str, str, int]]:
    """(key, label, n) of each measured operation."""
    return [
        ("base_sync", f"base sync of {a.base_n:,} items", a.base_n),
        ("push", f"push of {a.push_n:,} pending changes", a.push_n),
        ("pull", f"pull of {a.pull_n:,} changelog entries", a.pull_n),
        ("transaction", f"transaction() writing {a.tx_size} documents (x{a.tx_count})", a.tx_size),
    ]


def summarize(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Add the method, rows and notes, computed from the raw measurements of ``result``."""
    responsive, memory = result["runs"], result["memory"]
    ops = operation_labels(args)
    rows = [_response_row("idle (the probe alone)", None, responsive["idle"])]
    rows += [_response_row(label, n, responsive[key]) for key, label, n in ops if key in responsive]
    if memory:
        rows += memory_rows(memory, args)
    labels = {key: label for key, label, _ in ops}
    summary = {
        "method": method(args),
        "rows": rows,
        "notes": notes(responsive, result["attribution"], memory, labels),
    }
    # Keep the summary first (after the machine) and the raw data last.
    head = {k: result[k] for k in ("benchmark", "title", "date", "machine") if k in result}
    rest = {k: v for k, v in result.items() if k not in head and k not in summary}
    return {**head, **summary, **rest}


def method(a: argparse.Namespace) -> str:
    return (
        "One Chromium page with Pyodide and the pysync wheel; two DynamoDB Locals in memory "
        "with a pysync proxy each, in threads of the benchmark process (one running the stream "
        "consumer, for the base sync and the pull; one without, for the push: an emulator of "
        "its own, as DynamoDB Local's reads of a large stream slow the whole emulator down, "
        "which held the push to ~25 items/s when they shared one); public API only. "
        f"Operations: a base sync of {a.base_n:,} items (loaded with boto3 BatchWriteItem, fresh "
        f"replica, `Sync.pull()`), a push of {a.push_n:,} pending changes (`Sync.push()`), a pull "
        f"of {a.pull_n:,} changelog entries (a base-synced replica; {a.pull_n:,} updates written "
        "with boto3; timed once the consumer's changelog head holds them all), and "
        f"{a.tx_count} back-to-back `replica.transaction()`s of {a.tx_size} puts. During each, a "
        "`PerformanceObserver` (`longtask`, buffered, registered before) collects the main "
        "thread's long tasks that overlap it, and the driver clicks a button every "
        f"{a.click_ms:g} ms (CDP `Input.dispatchMouseEvent`, not waiting for the page), whose "
        "handler records `performance.now() - event.timeStamp`; the idle row is the probe "
        f"alone for {a.idle_s:g} s. A Chrome trace (categories `toplevel`, `blink.user_timing`) "
        "of each operation gives the same tasks' main-thread CPU time (`tdur`): on this shared "
        "2-CPU machine a task's wall time also holds the time its thread was off the CPU "
        "(waiting for one, or blocked); the machine's major page faults (`/proc/vmstat` "
        "`pgmajfault`) are counted over each operation. "
        f"Python's cyclic GC is timed with `gc.callbacks`. Goal per operation: {GOAL_TEXT} "
        "(wall time, as the user feels it). Each operation then runs "
        "again with Pyodide's event-loop steps timed (`asyncio.Handle._run` wrapped: each is "
        "one synchronous stretch of Python between two awaits, with where it resumed and "
        "suspended) and once more under cProfile, to name the Python work inside the long "
        "tasks (notes below, details in the JSON). Memory, in a second page: the JS heap "
        "(CDP `Runtime.getHeapUsage` after `HeapProfiler.collectGarbage`), Pyodide's wasm "
        "memory (`HEAP8.length`, which never shrinks) and Python's own memory (tracemalloc, "
        "started at the first reading: what was allocated since and is still held, after "
        "`gc.collect()`) and GC-tracked objects, before and after a base sync of "
        f"{a.base_n:,} items, after {a.rounds} pull rounds of {a.round_changes} boto3 changes "
        f"each (replica kept open), and after {a.rounds} more base syncs (database closed, "
        "deleted and synced again)."
    )


def main() -> None:
    """Run the benchmark and write bench/results/responsive.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-n", type=int, default=20_000, help="items of the base sync")
    parser.add_argument("--push-n", type=int, default=10_000, help="pending changes to push")
    parser.add_argument("--pull-n", type=int, default=5_000, help="changelog entries to pull")
    parser.add_argument("--tx-size", type=int, default=100, help="documents per transaction()")
    parser.add_argument("--tx-count", type=int, default=20, help="transactions, back to back")
    parser.add_argument("--runs", type=int, default=1, help="measured runs per operation")
    parser.add_argument("--click-ms", type=float, default=25.0, help="interval between clicks")
    parser.add_argument("--idle-s", type=float, default=5.0, help="length of the idle probe")
    parser.add_argument(
        "--attribute",
        default="base_sync,push,pull,transaction",
        type=lambda s: [x for x in s.split(",") if x],
        help="operations to trace (comma-separated; empty: none)",
    )
    parser.add_argument(
        "--trace-modes",
        default="steps,profile",
        type=lambda s: [x for x in s.split(",") if x],
        help="steps (timed stretches), profile (cProfile) or both",
    )
    parser.add_argument("--profile-min-ms", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=10, help="repeated syncs of the memory phase")
    parser.add_argument("--round-changes", type=int, default=10, help="changes per pull round")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--resummarize",
        action="store_true",
        help="only recompute the rows and notes of --output from its raw data (no run)",
    )
    args = parser.parse_args()
    if args.resummarize:
        result = json.loads(args.output.read_text())
        settings = argparse.Namespace(**{**vars(args), **result["settings"]})
        args.output.write_text(json.dumps(summarize(result, settings), indent=2) + "\n")
        _log(f"rewrote the rows and notes of {args.output}")
        return

    started = time.monotonic()
    result = asyncio.run(run(args))
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    _log(f"wrote {args.output} in {result['elapsed_s']} s")


if __name__ == "__main__":
    main()
