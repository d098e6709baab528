"""Propagation: a write in browser A reaches browser B's live query, stage by stage.

Run: ``.venv/bin/python bench/bench_propagation.py [--writes 300] [--warmup 20]``
(or ``bench/run_all.py --only propagation``).

One run starts DynamoDB Local (in memory), creates the tables and serves the real
proxy in a uvicorn thread of this process, configured as ``pysync dev`` configures
it: the stream consumer on, polling DynamoDB Streams with ``pysync dev``'s interval
(read from src/pysync/cli.py), the realtime feed ``GET /changes``, the access log
on, the limits of ``uvicorn_config``. The proxy also serves ``bench/pages/`` and a
private copy of the offline Pyodide dist, so the pages talk to their own origin as
the demo does. Two Chromium browser contexts are two devices of one user (each its
own IndexedDB and Web Locks, so each is its tab's leader); each page loads Pyodide
and the pysync wheel and runs what an app does with the public API:
``pysync.connect``, a live query ``collection.watch`` (the 20 newest tasks),
``Sync(...)``, ``start()`` and ``listen("/changes", token)``.

Device A puts one new task at a time; the driver waits until B's live query has
reported it and A's sync round is over, pauses a random 0 to 20 ms (so writes do
not fall in phase with the consumer's polls), and goes on. Timestamps, all on one
clock (wall-clock ms: ``performance.timeOrigin + performance.now()`` in the pages,
``time.time()`` in the server; each page's offset from the server is read before
and after, server-page-server, and subtracted):

- in the pages, pysync's methods are wrapped from Python in the page (the put,
  ``Sync.sync``, ``Puller.head``, ``Pusher._set_inflight``, ``HttpRemote.call``,
  ``Sync._on_event``, ``Puller.apply_entries``/``apply``, ``Replica._changed``) and
  the live query's callback stamps the task's first appearance;
- in the server, this process wraps the proxy's and consumer's functions
  (``DynamoDBEndpoint.handle``, ``Forwarder.send``, ``DynamoDBAPI.streams``
  (GetRecords), ``Changelog.append``, ``ChangeFeed.publish``, the SSE response's
  ``send``) by monkeypatching, before the app starts: nothing in src/ is changed.

Results go to bench/results/propagation.json; bench/report.py renders them with
its generic renderer (title, method, rows, notes).
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import datetime
import inspect
import json
import logging
import math
import os
import platform
import random
import re
import signal
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvicorn
from _browser import _LOAD, _RUN_PYTHON, PAGES, ROOT, browser_config, dist_snapshot

import pysync.cli
from pysync.server import (
    DEV_JWT_SECRET,
    DynamoDBLocal,
    ProxyConfig,
    _app,
    _changelog,
    _dynamo,
    _forward,
    _realtime,
    create_app,
    create_tables,
    dynamodb_client,
    issue_token,
    local_session,
)
from pysync.server._limits import uvicorn_config

RESULTS = ROOT / "bench" / "results" / "propagation.json"
SERVER_LOG = ROOT / "test-results" / "bench-propagation-server.log"
TABLE = "pysync"
USER = "alice"
GOAL_P50_MS = 60.0
GOAL_P99_MS = 250.0
GOAL = f"p50 < {GOAL_P50_MS:g} ms and p99 < {GOAL_P99_MS:g} ms"
#: Document ids of the benchmark's tasks: found by this pattern in requests, stream
#: records, changelog entries and SSE events.
ID_RE = re.compile(r"w\d{5}z")
WRITE_OPS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"})


def dev_poll_interval() -> float:
    """The stream poll interval ``pysync dev`` sets (src/pysync/cli.py)."""
    source = inspect.getsource(pysync.cli)
    found = re.search(r"replace\(stream_poll_interval=([0-9.]+)\)", source)
    if found is None:
        raise RuntimeError("could not find pysync dev's stream_poll_interval in pysync/cli.py")
    return float(found.group(1))


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def wall_ms() -> float:
    return time.time() * 1000.0


# -- the server, instrumented -----------------------------------------------------------


class ServerMarks:
    """Server-side timestamps (wall ms) per task id, first one wins; written from the
    server's thread, read by the driver after the run."""

    def __init__(self) -> None:
        self.marks: dict[str, dict[str, float]] = {}
        self.tokens: dict[str, str] = {}  # SSE token -> device name
        self.get_records = 0
        self.get_records_nonempty = 0
        self.requests: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        #: Poke the stream consumer after each write the proxy forwards (the variant).
        self.poke = False
        self.pokes = 0
        self.app: Any = None

    def mark(self, ids: list[str], name: str, t: float) -> None:
        for doc_id in ids:
            self.marks.setdefault(doc_id, {}).setdefault(name, t)


class _AccessCounter(logging.Handler):
    """Counts the proxy's access-log lines per operation, and errors (throttling…)."""

    def __init__(self, marks: ServerMarks) -> None:
        super().__init__()
        self.server_marks = marks

    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry = json.loads(record.getMessage())
        except ValueError:
            return
        self.server_marks.requests[str(entry.get("op") or entry.get("path"))] += 1
        if entry.get("error"):
            self.server_marks.errors[str(entry["error"])] += 1


_received: contextvars.ContextVar[float] = contextvars.ContextVar("received", default=0.0)


def instrument_server(marks: ServerMarks) -> None:
    """Wrap the proxy's and the consumer's functions with timers (this process only)."""
    handle = _app.DynamoDBEndpoint.handle

    async def timed_handle(self: Any, request: Any) -> Any:
        _received.set(wall_ms())
        return await handle(self, request)

    _app.DynamoDBEndpoint.handle = timed_handle  # type: ignore[method-assign]

    send = _forward.Forwarder.send

    async def timed_send(self: Any, body: bytes, headers: dict[str, str]) -> Any:
        target = next((v for k, v in headers.items() if k.lower() == "x-amz-target"), "")
        write = target.rpartition(".")[2] in WRITE_OPS
        t0 = wall_ms()
        reply = await send(self, body, headers)
        t1 = wall_ms()
        if write and reply.status == 200:
            if marks.poke:  # what the proxy's handler would do with StreamConsumer.poke
                consumer = marks.app.state.pysync.consumer
                if consumer is not None:
                    consumer.poke()
                    marks.pokes += 1
            ids = ID_RE.findall(body.decode(errors="replace"))
            marks.mark(ids, "proxy_in", _received.get() or t0)
            marks.mark(ids, "upstream_start", t0)
            marks.mark(ids, "landed", t1)
        return reply

    _forward.Forwarder.send = timed_send  # type: ignore[method-assign]

    streams = _dynamo.DynamoDBAPI.streams

    async def timed_streams(self: Any, operation: str, body: dict[str, Any]) -> Any:
        t0 = wall_ms()
        reply = await streams(self, operation, body)
        if operation == "GetRecords":
            t1 = wall_ms()
            marks.get_records += 1
            records = reply.get("Records") or []
            if records:
                marks.get_records_nonempty += 1
            for record in records:
                key = ((record.get("dynamodb") or {}).get("Keys") or {}).get("sk", {}).get("S", "")
                ids = ID_RE.findall(key)
                marks.mark(ids, "getrecords_start", t0)
                marks.mark(ids, "getrecords_end", t1)
        return reply

    _dynamo.DynamoDBAPI.streams = timed_streams  # type: ignore[method-assign]

    append = _changelog.Changelog.append

    async def timed_append(self: Any, scope: str, changes: Any) -> Any:
        ids = [i for change in changes for i in ID_RE.findall(change.key)]
        marks.mark(ids, "append_start", wall_ms())
        return await append(self, scope, changes)

    _changelog.Changelog.append = timed_append  # type: ignore[method-assign]

    publish = _realtime.ChangeFeed.publish

    def timed_publish(self: Any, scope: str, entries: list[dict[str, Any]]) -> None:
        t = wall_ms()  # the listener runs right after the append's transaction
        ids = [i for entry in entries for i in ID_RE.findall(entry["key"]["S"])]
        marks.mark(ids, "append_done", t)
        publish(self, scope, entries)

    _realtime.ChangeFeed.publish = timed_publish  # type: ignore[method-assign]

    stream_call = _realtime._EventStream.__call__

    async def timed_stream(self: Any, scope: Any, receive: Any, send: Any) -> None:
        query = parse_qs(scope.get("query_string", b"").decode())
        device = marks.tokens.get((query.get("token") or [""])[0], "other")

        async def timed_send(message: Any) -> None:
            await send(message)  # through the middlewares to uvicorn's transport
            if message["type"] == "http.response.body":
                ids = ID_RE.findall(message.get("body", b"").decode(errors="replace"))
                if ids:
                    marks.mark(ids, f"sse_sent_{device}", wall_ms())

        await stream_call(self, scope, receive, timed_send)

    _realtime._EventStream.__call__ = timed_stream  # type: ignore[method-assign]


class ServerThread:
    """uvicorn (with ``uvicorn_config``, as ``pysync dev``) in a thread, on a bound socket."""

    def __init__(self, sock: socket.socket, app: Any, config: ProxyConfig) -> None:
        self.sock = sock
        options = uvicorn_config(app, config, log_level="warning", access_log=False)
        self.server = uvicorn.Server(options)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the proxy did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        runtime = getattr(self.server.config.app, "state", None)
        runtime = getattr(runtime, "pysync", None) if runtime is not None else None
        if runtime is not None:
            runtime.close_streams()  # SSE responses never end by themselves
        self.server.should_exit = True
        self.thread.join(15)


@contextlib.contextmanager
def stack(poll: float, marks: ServerMarks) -> Iterator[tuple[str, ProxyConfig]]:
    """DynamoDB Local + the instrumented proxy (consumer on); yields (base URL, config)."""
    instrument_server(marks)
    access = logging.getLogger("pysync.access")
    access.setLevel(logging.INFO)  # pysync dev logs at info: the access log is written
    SERVER_LOG.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(SERVER_LOG, mode="w")
    counter = _AccessCounter(marks)
    for handler in (file_handler, counter):
        access.addHandler(handler)
    logging.getLogger("pysync").addHandler(file_handler)
    try:
        with dist_snapshot() as dist, DynamoDBLocal() as database:
            create_tables(
                dynamodb_client(ProxyConfig(dynamodb_endpoint=database.endpoint), local_session()),
                TABLE,
            )
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            base = f"http://127.0.0.1:{sock.getsockname()[1]}"
            config = ProxyConfig(
                table=TABLE,
                dynamodb_endpoint=database.endpoint,
                jwt_secret=DEV_JWT_SECRET,
                allowed_origins=(base,),
                web_dir=PAGES,
                pyodide_dir=dist,
                consumer=True,
                stream_poll_interval=poll,
            )
            app = create_app(config, session=local_session())
            marks.app = app
            with ServerThread(sock, app, config):
                yield base, config
            sock.close()
    finally:
        for handler in (file_handler, counter):
            access.removeHandler(handler)
        logging.getLogger("pysync").removeHandler(file_handler)
        file_handler.close()


# -- the pages ---------------------------------------------------------------------------

# Defined once in each page: the app (public API) and the timers around pysync's steps.
PAGE_PY = r"""
import asyncio
import json
import re

import js
import pysync
from pysync import AppSchema, CollectionSpec, HttpRemote, Index, Sync
from pysync._replica import Replica
from pysync._sync._engine import Sync as _Sync
from pysync._sync._pull import Puller
from pysync._sync._push import Pusher

ID_RE = re.compile(r"w\d{5}z")
WRITE_OPS = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"}


def now():
    return js.performance.timeOrigin + js.performance.now()


marks = {}   # task id -> {name: wall ms}
events = []  # [name, start, end] of steps not tied to one task (sync rounds, head reads)


def mark(ids, name, t=None):
    t = now() if t is None else t
    for i in ids:
        marks.setdefault(i, {}).setdefault(name, t)


# -- timers (class attributes replaced before the Sync is made) ----------------------
_call = HttpRemote.call


async def call(self, operation, payload):
    ids = ID_RE.findall(json.dumps(payload)) if operation in WRITE_OPS else ()
    mark(ids, "push_start")
    try:
        return await _call(self, operation, payload)
    finally:
        mark(ids, "push_reply")


HttpRemote.call = call

_sync = _Sync.sync


async def sync_round(self):
    t0 = now()
    try:
        return await _sync(self)
    finally:
        events.append(["sync", t0, now()])


_Sync.sync = sync_round


def _timed_event(owner, name, label):
    original = getattr(owner, name)

    async def timed(self, *args, **kwargs):
        t0 = now()
        try:
            return await original(self, *args, **kwargs)
        finally:
            events.append([label, t0, now()])

    setattr(owner, name, timed)


_timed_event(Puller, "head", "head")
_timed_event(Pusher, "_next", "next")
_timed_event(Pusher, "_set_inflight", "inflight")
_timed_event(Pusher, "_acked", "acked")

_on_event = _Sync._on_event


def on_event(self, kind, data):
    if kind == "message":
        mark(ID_RE.findall(data), "event_in")
    return _on_event(self, kind, data)


_Sync._on_event = on_event

_apply_entries = Puller.apply_entries
_realtime_depth = [0]


async def apply_entries(self, items):
    mark([i for item in items for i in ID_RE.findall(item["key"]["S"])], "apply_entries_start")
    _realtime_depth[0] += 1
    try:
        return await _apply_entries(self, items)
    finally:
        _realtime_depth[0] -= 1


Puller.apply_entries = apply_entries

_apply = Puller.apply
_applying = []


async def apply(self, changes, report, **options):
    ids = [c.key for c in changes if isinstance(c.key, str) and ID_RE.fullmatch(c.key)]
    mark(ids, "apply_start")
    mark(ids, "path", "realtime" if _realtime_depth[0] else "pull")
    _applying[:] = ids
    try:
        return await _apply(self, changes, report, **options)
    finally:
        _applying.clear()
        mark(ids, "apply_end")


Puller.apply = apply

_changed = Replica._changed


def changed(self, collections):
    mark(_applying, "changed")  # the apply's transaction is done: live queries re-run
    _applying.clear()
    return _changed(self, collections)


Replica._changed = changed

# -- the app ---------------------------------------------------------------------------
SCHEMA = AppSchema(1, {"tasks": CollectionSpec(indexes=(Index("by_n", "n"),))})
seen = {}
waiters = {}


def on_tasks(tasks):
    t = now()
    for task in tasks:
        i = task["id"]
        if i not in seen:
            seen[i] = t
            mark([i], "callback", t)
            waiter = waiters.pop(i, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(t)


async def start(user, token):
    global db, sync, live
    origin = js.location.origin
    db = await pysync.connect("prop", user, SCHEMA)
    live = db["tasks"].watch(on_tasks, index="by_n", reverse=True, limit=20)
    sync = Sync(db, HttpRemote(origin + "/dynamodb", token))
    sync.start()
    sync.listen(origin + "/changes", token)
    for _ in range(300):
        if sync.realtime_connected and db.status.last_synced is not None:
            return True
        await asyncio.sleep(0.05)
    raise RuntimeError(f"not connected: {db.status}")


async def write(i):
    doc_id = f"w{i:05d}z"
    t0 = now()
    await db["tasks"].put({"id": doc_id, "title": f"task {i}", "n": i, "done": False})
    marks.setdefault(doc_id, {})["put_start"] = t0
    mark([doc_id], "put_end")
    return doc_id


async def wait_seen(doc_id, timeout):
    if doc_id in seen:
        return seen[doc_id]
    waiter = asyncio.get_event_loop().create_future()
    waiters[doc_id] = waiter
    return await asyncio.wait_for(waiter, timeout)


async def wait_idle(timeout):
    '''Until this device's outbox is empty and no sync round runs.'''
    for _ in range(int(timeout / 0.005)):
        status = db.status
        if status.pending == 0 and not status.syncing:
            return True
        await asyncio.sleep(0.005)
    raise RuntimeError(f"still busy: {status}")


def dump():
    return json.dumps({"marks": marks, "events": events, "status": repr(db.status)})
"""


class Device:
    """One browser context (a device) with one page running the app."""

    def __init__(self, browser: Any, config: Any, base: str, name: str) -> None:
        self.name = name
        self.context = browser.new_context(viewport=config.VIEWPORT)
        self.context.set_default_timeout(60_000)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.console: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.goto(f"{base}/bench.html")
        self.pyodide = self.page.evaluate(_LOAD)
        self.py(PAGE_PY)

    def py(self, code: str) -> Any:
        return self.page.evaluate(_RUN_PYTHON, code)

    def now(self) -> float:
        return float(self.page.evaluate("performance.timeOrigin + performance.now()"))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.py("sync.stop(); live.cancel(); db.close()")
        self.context.close()


def clock_offset(device: Device, tries: int = 9) -> dict[str, float]:
    """The page's wall ms minus the server's, read server-page-server; the tightest read."""
    best: dict[str, float] | None = None
    for _ in range(tries):
        s1 = wall_ms()
        p = device.now()
        s2 = wall_ms()
        bound = (s2 - s1) / 2
        if best is None or bound < best["bound_ms"]:
            best = {"offset_ms": round(p - (s1 + s2) / 2, 3), "bound_ms": round(bound, 3)}
    assert best is not None
    return best


# -- analysis ----------------------------------------------------------------------------

# (key, label, from mark, to mark, on B's path): consecutive path stages add up to the total.
STAGES = [
    ("a_write_to_push", "A: put() -> push request starts (fetch)", "a.put_start", "a.push_start"),
    ("push_to_landed", "A: push fetch -> the write landed in DynamoDB", "a.push_start", "s.landed"),
    ("stream", "stream delivery: landed -> consumer's GetRecords returned it",
     "s.landed", "s.getrecords_end"),
    ("append", "consumer read -> changelog append done", "s.getrecords_end", "s.append_done"),
    ("sse", "append -> event sent on B's SSE stream", "s.append_done", "s.sse_sent_B"),
    ("to_page", "event sent -> B's page has it (EventSource)", "s.sse_sent_B", "b.event_in"),
    ("b_apply", "B: apply into IndexedDB (event -> transaction done)", "b.event_in", "b.changed"),
    ("b_live", "B: live query re-run -> callback", "b.changed", "b.callback"),
]  # fmt: skip
SHORT = {
    "a_write_to_push": "A's put to push",
    "push_to_landed": "the push to DynamoDB",
    "stream": "stream delivery",
    "append": "the changelog append",
    "sse": "append to SSE send",
    "to_page": "SSE send to B's page",
    "b_apply": "B's apply",
    "b_live": "B's live query",
}
# Parts of a stage (not on the path themselves) and reference times off B's path.
DETAILS = [
    ("a_put", "  of which A's put() (IndexedDB write, outbox)", "a.put_start", "a.put_end"),
    ("a_wake", "  of which put() done -> sync round starts", "a.put_end", "a.sync_start"),
    ("a_head", "  of which the push reads the changelog head (GetItem)",
     "a.head_start", "a.head_end"),
    ("a_inflight", "  of which marking the entry in flight (IndexedDB)",
     "a.inflight_start", "a.inflight_end"),
    ("a_to_proxy", "  of which fetch -> proxy has the request", "a.push_start", "s.proxy_in"),
    ("a_upstream", "  of which the proxy's PutItem to DynamoDB Local",
     "s.upstream_start", "s.landed"),
    ("push_request", "A: push request, fetch -> reply (A's own; B does not wait for it)",
     "a.push_start", "a.push_reply"),
    ("poll_wait", "  of which waiting for the next poll (landed -> GetRecords sent)",
     "s.landed", "s.getrecords_start"),
    ("getrecords", "  of which the GetRecords call", "s.getrecords_start", "s.getrecords_end"),
    ("append_tx", "  of which the append's TransactWriteItems",
     "s.append_start", "s.append_done"),
    ("b_to_apply", "  of which event -> apply starts (lock, cursor read)",
     "b.event_in", "b.apply_start"),
    ("b_apply_tx", "  of which the apply's IndexedDB transaction", "b.apply_start", "b.changed"),
]  # fmt: skip


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95, p99, max, mean (ms)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        ordered = ordered * 2
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(cuts[94], 2),
        "p99_ms": round(cuts[98], 2),
        "max_ms": round(ordered[-1], 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
    }


def _between(events: list[list[Any]], label: str, lo: float, hi: float) -> list[Any] | None:
    """The last event ``label`` that started in [lo, hi]."""
    found = None
    for name, start, end in events:
        if name == label and lo <= start <= hi:
            found = [name, start, end]
    return found


def samples_of(
    ids: list[str],
    a: dict[str, Any],
    b: dict[str, Any],
    server: ServerMarks,
    offsets: dict[str, float],
) -> list[dict[str, Any]]:
    """Per write: every mark on the server's clock (pages corrected by their offset)."""
    out = []
    for doc_id in ids:
        am = a["marks"].get(doc_id, {})
        bm = b["marks"].get(doc_id, {})
        sm = server.marks.get(doc_id, {})
        row: dict[str, Any] = {"id": doc_id, "path": bm.get("path")}
        for prefix, marks, offset in (("a", am, offsets["A"]), ("b", bm, offsets["B"])):
            for name, value in marks.items():
                if isinstance(value, (int, float)):
                    row[f"{prefix}.{name}"] = value - offset
        for name, value in sm.items():
            row[f"s.{name}"] = value
        # A's sync round and the steps of its push between the put and the fetch.
        if "a.put_start" in row and "a.push_start" in row:
            lo = am["put_start"]
            hi = am["push_start"]
            for label in ("sync", "head", "inflight"):
                found = _between(a["events"], label, lo, hi)
                if found is not None:
                    row[f"a.{label}_start"] = found[1] - offsets["A"]
                    row[f"a.{label}_end"] = found[2] - offsets["A"]
        out.append(row)
    return out


def stage_rows(samples: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    complete = [s for s in samples if "a.put_start" in s and "b.callback" in s]
    totals = [s["b.callback"] - s["a.put_start"] for s in complete]
    total = percentiles(totals)
    total_row = {
        "measure": "total: A's put() -> B's live query callback",
        "writes": len(totals),
        **total,
        "goal": GOAL,
        "goal_met": total["p50_ms"] < GOAL_P50_MS and total["p99_ms"] < GOAL_P99_MS,
    }
    summary["total"] = total
    details = {key: (label, lo, hi) for key, label, lo, hi in DETAILS}
    parts = {
        "a_write_to_push": ["a_put", "a_wake", "a_head", "a_inflight"],
        "push_to_landed": ["a_to_proxy", "a_upstream", "push_request"],
        "stream": ["poll_wait", "getrecords"],
        "append": ["append_tx"],
        "b_apply": ["b_to_apply", "b_apply_tx"],
    }

    def row_of(key: str, label: str, lo: str, hi: str, path: bool) -> dict[str, Any] | None:
        values = [s[hi] - s[lo] for s in complete if lo in s and hi in s]
        if not values:
            return None
        stats = percentiles(values)
        summary[key] = {**stats, "n": len(values)}
        return {"measure": label, "writes": len(values), **stats}

    for key, label, lo, hi in STAGES:
        row = row_of(key, label, lo, hi, True)
        if row is not None:
            rows.append(row)
        for part in parts.get(key, []):
            plabel, plo, phi = details[part]
            prow = row_of(part, plabel, plo, phi, False)
            if prow is not None:
                rows.append(prow)
    rows.append(total_row)
    return rows, summary


# -- notes written from the numbers --------------------------------------------------------


def notes_of(summary: dict[str, Any], result: dict[str, Any]) -> list[str]:
    total = summary["total"]
    poll_ms = result["settings"]["stream_poll_interval_s"] * 1000
    path = [(key, label) for key, label, _, _ in STAGES if key in summary]
    p50_sum = sum(summary[k]["p50_ms"] for k, _ in path)
    ranked = sorted(path, key=lambda kl: summary[kl[0]]["p50_ms"], reverse=True)
    met = total["p50_ms"] < GOAL_P50_MS and total["p99_ms"] < GOAL_P99_MS
    notes = []

    def s(key: str, stat: str = "p50_ms") -> float:
        return float(summary.get(key, {}).get(stat, float("nan")))

    shares = ", ".join(f"{SHORT[k]} {summary[k]['p50_ms']:.1f} ms" for k, _ in ranked[:4])
    notes.append(
        f"The total is p50 {total['p50_ms']:.1f} ms, p99 {total['p99_ms']:.1f} ms "
        f"(max {total['max_ms']:.1f}) over {result['writes']} writes: the goal ({GOAL}) is "
        f"{'met' if met else 'not met'}. The stages' medians add up to {p50_sum:.1f} ms "
        f"(medians do not add exactly). The largest medians: {shares}. "
        f"Stage by stage: A's side (put to fetch) {s('a_write_to_push'):.1f} ms, the push to "
        f"DynamoDB {s('push_to_landed'):.1f} ms, the server's side (stream, append, SSE) "
        f"{s('stream') + s('append') + s('sse'):.1f} ms, the network to B "
        f"{s('to_page'):.1f} ms, B's side (apply, live query) "
        f"{s('b_apply') + s('b_live'):.1f} ms."
    )
    head = s("a_head")
    notes.append(
        f"A's side: put() itself takes {s('a_put'):.1f} ms (one IndexedDB transaction with the "
        f"outbox entry); the sync round starts {s('a_wake'):.1f} ms after it returns; before "
        + (
            "sending, the push marks the entry in flight in IndexedDB "
            f"({s('a_inflight'):.1f} ms). It reads no changelog head first: the pull's cursor "
            "bounds where a later check of an uncertain write looks."
            if math.isnan(head)
            else f"sending, the push reads the changelog head with a GetItem ({head:.1f} ms) "
            f"and marks the entry in flight in IndexedDB ({s('a_inflight'):.1f} ms)."
        )
    )
    notes.append(
        f"Server side: the write waits {s('poll_wait'):.1f} ms (p50; p99 "
        f"{s('poll_wait', 'p99_ms'):.1f}) for the consumer's next GetRecords, which polls "
        f"every {poll_ms:.0f} ms when the stream is idle (`pysync dev`'s interval), so about "
        f"half of that on average; the GetRecords call takes {s('getrecords'):.1f} ms, the "
        f"changelog append's TransactWriteItems {s('append_tx'):.1f} ms, and the event is on "
        f"B's SSE stream {s('sse'):.2f} ms after the append. The proxy pokes the consumer "
        "when DynamoDB accepts a write, so a write waits for the poll only while a GetRecords "
        f"is already out; the floor of this part is about {s('getrecords') + s('append'):.1f} "
        "ms (two DynamoDB Local calls)."
    )
    notes.append(
        f"B's side: the event reaches B's page {s('to_page'):.1f} ms after the server sent it "
        f"(EventSource, then Pyodide's handler); B then waits {s('b_to_apply'):.1f} ms before "
        f"applying (the sync lock, a read of the cursor in IndexedDB), the apply's readwrite "
        f"transaction takes {s('b_apply_tx'):.1f} ms, and the live query re-runs and calls "
        f"back {s('b_live'):.1f} ms later. B applies the event's entry itself "
        f"({result['paths'].get('realtime', 0)} of {result['writes']} writes through the "
        f"realtime path, {result['paths'].get('pull', 0)} through a pull)."
    )
    poke = (result.get("poke_variant") or {}).get("summary")

    def v(key: str, stat: str = "p50_ms") -> float:
        return float((poke or {}).get(key, {}).get(stat, float("nan")))

    if poke:
        notes.append(
            "With the consumer poked after each write (`StreamConsumer.poke()`, which the "
            "benchmark calls where the proxy has DynamoDB's reply to a write; "
            f"{result['poke_variant']['writes']} writes alternating with the ones above), "
            f"stream delivery is p50 {v('stream'):.1f} ms, p99 {v('stream', 'p99_ms'):.1f} "
            f"(without: {s('stream'):.1f}, {s('stream', 'p99_ms'):.1f}); the wait for the poll "
            f"p50 {v('poll_wait'):.1f} ms (without: {s('poll_wait'):.1f}); the total p50 "
            f"{v('total'):.1f} ms, p99 {v('total', 'p99_ms'):.1f} (without: "
            f"{total['p50_ms']:.1f}, {total['p99_ms']:.1f}). A poke-woken read that finds "
            "nothing is followed by a full pause, so pokes at most double an idle stream's "
            "GetRecords rate."
            + (
                " The totals' p99 differ mostly in stages the poke does not touch (A's and B's "
                "sides, under the machine's load): compare the stream rows."
                if v("total", "p99_ms") > total["p99_ms"]
                else ""
            )
        )
    notes.append(
        "What is left on the path is work: two IndexedDB transactions and a live query "
        "re-run per device, the PutItem, one GetRecords and one TransactWriteItems against "
        "DynamoDB Local, and two hops through the browser's network stack. Lower would need "
        "fewer of them: B applying the event without reading its cursor first (it is in "
        "memory while the feed runs), or the consumer publishing the event before its append "
        "is acknowledged (which would give up the changelog's order as the truth)."
    )
    tail = sorted(path, key=lambda kl: summary[kl[0]]["p99_ms"], reverse=True)[:3]
    notes.append(
        "Tails: the stages with the largest p99 are "
        + ", ".join(
            f"{SHORT[k]} ({summary[k]['p99_ms']:.1f} ms; p50 {summary[k]['p50_ms']:.1f})"
            for k, _ in tail
        )
        + f". The machine has {result['machine']['cpus']} CPUs shared by the two Chromium "
        "renderers, the proxy (with the consumer, in this process), DynamoDB Local's JVM and "
        f"other jobs (load average {result['machine']['load_average_at_start'][0]} at start, "
        f"{result['machine']['load_average_at_end'][0]} at end): a stage that waits for a CPU "
        "shows it in its tail."
    )
    return notes


# -- main --------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    poll = args.poll_interval if args.poll_interval is not None else dev_poll_interval()
    server = ServerMarks()
    config_pw = browser_config()
    machine: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    started = time.monotonic()
    with stack(poll, server) as (base, _config), sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=config_pw.CHROMIUM_EXECUTABLE, args=config_pw.CHROMIUM_ARGS
        )
        machine["chromium"] = browser.version
        try:
            tokens = {
                name: issue_token(DEV_JWT_SECRET, USER, ttl=4 * 3600 + n)
                for n, name in enumerate(("A", "B"))
            }
            for name, token in tokens.items():
                server.tokens[token] = name
            _log(f"propagation: loading two pages (Pyodide + pysync) from {base}")
            a = Device(browser, config_pw, base, "A")
            b = Device(browser, config_pw, base, "B")
            machine["pyodide"] = a.pyodide
            machine["python_in_page"] = a.py("import sys; sys.version.split()[0]")
            machine["pysync_wheel"] = a.py("import importlib.metadata as m; m.version('pysync')")
            try:
                for device in (a, b):
                    device.py(f"await start({USER!r}, {tokens[device.name]!r})")
                offsets_before = {d.name: clock_offset(d) for d in (a, b)}
                kinds = ["plain", "poke"] if args.poke_variant else ["plain"]
                total = (args.warmup + args.writes) * len(kinds)
                rng = random.Random(args.seed)
                ids: dict[str, list[str]] = {kind: [] for kind in kinds}
                _log(
                    f"propagation: {total} writes ({args.warmup} warm-up per variant), "
                    f"variants {kinds} alternating, poll {poll} s"
                )
                for i in range(total):
                    kind = kinds[i % len(kinds)]
                    server.poke = kind == "poke"
                    doc_id = a.py(f"await write({i})")
                    b.py(f"await wait_seen({doc_id!r}, 30)")
                    a.py("await wait_idle(30)")
                    ids[kind].append(doc_id)
                    time.sleep(rng.uniform(0, 0.02))
                    if (i + 1) % 50 == 0:
                        _log(f"propagation: {i + 1} of {total}")
                time.sleep(0.3)
                offsets_after = {d.name: clock_offset(d) for d in (a, b)}
                dumps = {d.name: json.loads(d.py("dump()")) for d in (a, b)}
                errors = a.errors + b.errors
            finally:
                a.close()
                b.close()
        finally:
            browser.close()
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]

    offsets = {
        name: (offsets_before[name]["offset_ms"] + offsets_after[name]["offset_ms"]) / 2
        for name in ("A", "B")
    }
    measured = ids["plain"][args.warmup :]
    samples = samples_of(measured, dumps["A"], dumps["B"], server, offsets)
    rows, summary = stage_rows(samples)
    paths = Counter(str(s.get("path")) for s in samples)
    variant: dict[str, Any] = {}
    if "poke" in ids:
        poked = samples_of(ids["poke"][args.warmup :], dumps["A"], dumps["B"], server, offsets)
        for sample in poked:
            sample["variant"] = "poke"
        poke_rows, poke_summary = stage_rows(poked)
        variant = {"writes": len(poked), "summary": poke_summary, "samples": poked}
        label = "variant, consumer poked by the proxy on each write: "
        labels = {key: label for key, label, _, _ in STAGES + DETAILS}
        wanted = {labels["stream"], labels["poll_wait"], poke_rows[-1]["measure"]}
        for row in poke_rows:
            if row["measure"] in wanted:
                rows.append(
                    {
                        **{k: v for k, v in row.items() if k not in ("goal", "goal_met")},
                        "measure": label + row["measure"].strip(),
                    }
                )
    result: dict[str, Any] = {
        "benchmark": "propagation",
        "title": "Propagation: a write in browser A to browser B's live query, by stage",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {
            "writes": args.writes,
            "warmup": args.warmup,
            "stream_poll_interval_s": poll,
            "poll_interval_source": "pysync dev (src/pysync/cli.py)"
            if args.poll_interval is None
            else "--poll-interval",
            "pause_between_writes_ms": [0, 20],
            "seed": args.seed,
        },
        "writes": len(measured),
        "paths": dict(paths),
        "poke_variant": {k: v for k, v in variant.items() if k != "samples"},
        "clock_offsets": {"before": offsets_before, "after": offsets_after},
        "server_counts": {
            "get_records": server.get_records,
            "get_records_with_records": server.get_records_nonempty,
            "pokes": server.pokes,
            "requests": dict(server.requests),
            "errors": dict(server.errors),
        },
        "page_errors": errors[-10:],
        "rows": rows,
        "summary": summary,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    result["method"] = method_of(result)
    result["notes"] = notes_of(summary, result)
    result["samples"] = [
        {k: (round(v, 2) if isinstance(v, float) else v) for k, v in s.items()}
        for s in samples + variant.get("samples", [])
    ]
    return result


def method_of(result: dict[str, Any]) -> str:
    settings = result["settings"]
    offsets = result["clock_offsets"]
    worst = max(
        abs(o["offset_ms"]) + o["bound_ms"] for when in offsets.values() for o in when.values()
    )
    return (
        "Two Chromium browser contexts are two devices of one user, each with its own "
        "IndexedDB; each page loads Pyodide and the pysync wheel and uses the public API as an "
        "app does: `pysync.connect`, a live query `tasks.watch(..., index='by_n', "
        "reverse=True, limit=20)` (the 20 newest tasks), `Sync(db, HttpRemote(...))`, "
        "`start()` and `listen('/changes', token)`. They talk over HTTP to the real proxy "
        "(`create_app` under uvicorn with `uvicorn_config`, in a thread of the benchmark "
        "process, serving the pages too, access log on) with its stream consumer and realtime "
        "feed, in front of DynamoDB Local in memory; the consumer polls DynamoDB Streams every "
        f"{settings['stream_poll_interval_s'] * 1000:g} ms when idle, the interval `pysync "
        "dev` uses. Device A puts one new task at a time "
        f"({settings['writes']} measured after {settings['warmup']} warm-up); the next write "
        "follows once B's live query has shown the task and A's sync round is over, after a "
        "random 0 to 20 ms pause. Total: from the call of A's `put()` to B's live query "
        "callback with the task. Stages: pysync's methods wrapped from Python inside each "
        "page, and the proxy's and consumer's functions wrapped by the benchmark (the request "
        "handler, the forward to DynamoDB, GetRecords, the changelog append, the feed's "
        "publish, the SSE response's send); no source file is changed. All times are "
        "wall-clock ms (`performance.timeOrigin + performance.now()` in the pages, "
        "`time.time()` in the server); each page's offset from the server clock, read "
        "server-page-server before and after, is subtracted (worst offset plus bound "
        f"{worst:.1f} ms). 'Landed' is when the proxy has DynamoDB's reply to the write. "
        "Rows indented 'of which' are parts of the stage above; the path stages add up to "
        "the total per write. The proxy pokes its stream consumer when DynamoDB accepts a "
        "write (`StreamConsumer.poke()`), as `pysync dev` and `pysync serve` run it."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=300, help="measured writes")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up writes")
    parser.add_argument(
        "--poll-interval", type=float, default=None, help="stream poll s (default: pysync dev's)"
    )
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument(
        "--poke-variant",
        action="store_true",
        help="also measure, alternating, writes after which the benchmark pokes the consumer "
        "itself (the proxy has done so on every write since StreamConsumer.poke was wired in)",
    )
    parser.add_argument("--deadline", type=int, default=900, help="abort after this many s")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    def timeout(signum: int, frame: Any) -> None:
        raise TimeoutError(f"bench_propagation took more than {args.deadline} s")

    signal.signal(signal.SIGALRM, timeout)
    signal.alarm(args.deadline)
    result = run(args)
    signal.alarm(0)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    for row in result["rows"]:
        _log(
            f"{row['measure']:<78} p50 {row['p50_ms']:7.2f}  p95 {row['p95_ms']:7.2f}  "
            f"p99 {row['p99_ms']:7.2f}  max {row['max_ms']:7.2f}"
        )
    _log(f"paths: {result['paths']}; offsets: {result['clock_offsets']}")
    _log(f"server: {result['server_counts']}")
    for note in result["notes"]:
        _log("- " + note)
    _log(f"wrote {args.output} in {result['elapsed_s']} s")


if __name__ == "__main__":
    main()
