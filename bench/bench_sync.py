"""Sync: pysync push and base sync in Chromium vs boto3 straight to DynamoDB Local.

Run: ``.venv/bin/python bench/bench_sync.py [--push-n 10000] [--pull-n 20000]``

One run starts DynamoDB Local (in memory), creates the tables, opens one Chromium
page (bench/pages/bench.html through bench/_browser.py) and serves the pysync proxy
(``create_app(ProxyConfig(...))``, uvicorn in a thread, CORS allowed for the page's
origin, no rate limit) against the same DynamoDB Local. Then:

- push: a fresh replica holds ``--push-n`` pending mutations (puts of new records,
  each its own outbox entry: created with ``Replica._write(..., group=None)``, the
  entries that as many separate ``put`` calls create, in one local transaction to
  save set-up time), timed ``await sync.push()`` through ``HttpRemote``, three
  times: pysync's default (each change one conditional ``PutItem``, up to 50 per
  HTTP request in the proxy's batch, ``push_concurrency`` = 8 requests out at a
  time; Chromium opens at most 6 connections per origin), the same one request per
  change (``push_batch=1``), and the packs option (``Sync(pack_size=50)``: 50
  changes per ``TransactWriteItems``).
  Baseline: boto3 ``put_item`` of the same items (same attributes, pysync's
  marshalling) with the same condition ``attribute_not_exists(pk)``, ``ALL_OLD``
  on failure and ``ReturnConsumedCapacity=TOTAL``, sequentially and with a thread
  pool of 16. Every variant sums the write capacity DynamoDB Local reports; as it
  reports 2.0 for any transaction, whatever its size, the rows also give what
  DynamoDB bills by its documented rule (1 unit per KB of item written alone, 2 in
  a transaction), from the items' sizes. Then a sweep of requests out at a time
  for single writes (``--push-sweep``, ``--push-sweep-n`` items per point): pysync's
  push with ``push_batch=1`` and that ``push_concurrency``, the JS floor with as many requests
  out, and a boto3 16-thread run beside each point;
- base sync: ``--pull-n`` items loaded with boto3 ``BatchWriteItem``, timed
  ``await sync.pull()`` on a fresh replica (empty cursor) until every item is in
  IndexedDB. Baseline: boto3 paging the same ``Query`` (``pk = :p``, consistent) and
  deserializing every item to a Python dict (``TypeDeserializer``). A
  ``PerformanceObserver({type: "longtask", buffered: true})`` registered before the
  pull reports the main thread's long tasks that overlap it.

For reference, the browser's own floor ("JS floor"): plain JS in the page posting
the default push's requests with ``fetch`` (the same conditional ``PutItem``
requests, as many in flight as pysync sends at a time), and paging the base sync's Query with
``fetch`` into IndexedDB (DynamoDB's 1 MB pages, the fewest requests, where
pysync's base sync reads 500 items per request; one strict transaction per page).
The variants alternate within a round, the order flipping every round; the push
is one round by default (``--push-runs``), the base sync two (``--pull-runs``).

Every pysync run is timed inside the page (``performance.now()``); pysync's
methods are wrapped with timers for a breakdown (wall time summed per method; the
push's requests overlap, so their sum exceeds the elapsed time). Results go to
bench/results/sync.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import inspect
import json
import os
import socket
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import boto3
import uvicorn
from _browser import ROOT, bench_page
from boto3.dynamodb.types import TypeDeserializer
from botocore.config import Config

from pysync import Sync
from pysync._marshal import to_item
from pysync._sync._items import sort_key
from pysync._sync._pull import BASE_PAGE
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
from pysync.testing._dynamo import item_size

RESULTS = ROOT / "bench" / "results" / "sync.json"
TABLE = "bench_sync"
THREADS = 16  # the boto3 baseline's thread pool
# pysync's push (Sync's defaults): requests out at a time; the packs option's size.
PUSH_CONCURRENCY = inspect.signature(Sync.__init__).parameters["push_concurrency"].default
PUSH_BATCH = inspect.signature(Sync.__init__).parameters["push_batch"].default
PACK_OPTION = 50
GOAL_PUSH = 1.0  # vs boto3 with THREADS threads, at 1 write unit per change
# Issue 12: a base sync at least 0.9x the plain-JS floor (the same page fetching the
# same items and writing them to IndexedDB) and at least 0.5x boto3 paging the Query.
GOAL_PULL_FLOOR = 0.9
GOAL_PULL_BOTO3 = 0.5
GOAL_LONGTASK_MS = 50.0

# Defined once in the page's Python; each coroutine returns a JSON string.
PAGE_CODE = r"""
import asyncio
import gc
import json

import js
import pysync
from pysync import AppSchema, CollectionSpec, HttpRemote, Index, Sync, delete_indexeddb
from pysync._sync import _pull, _push

SCHEMA = AppSchema(version=1, collections={"items": CollectionSpec(indexes=(Index("by_n", "n"),))})


def make_docs(n, start=0):
    return [
        {
            "id": f"r{i:06d}",
            "title": f"Item {i} title text",
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


# -- timers around pysync's steps (wall ms summed per method, and calls) -------------
timings = {}
_originals = {}


def _wrap(owner, name):
    original = getattr(owner, name)
    _originals[(owner, name)] = original

    async def timed(*args, **kwargs):
        t0 = js.performance.now()
        try:
            return await original(*args, **kwargs)
        finally:
            slot = timings.setdefault(name, [0, 0.0])
            slot[0] += 1
            slot[1] += js.performance.now() - t0

    setattr(owner, name, timed)


def instrument(on):
    targets = [
        (HttpRemote, "call"),
        (HttpRemote, "call_js"),
        (_push.Pusher, "_next"),
        (_push.Pusher, "_set_inflight"),
        (_push.Pusher, "_acked"),
        (_pull.Puller, "cursor"),
        (_pull.Puller, "apply"),
        (_pull.Puller, "_drop_unseen"),
    ]
    if on:
        timings.clear()
        for owner, name in targets:
            _wrap(owner, name)
    else:
        for (owner, name), original in _originals.items():
            setattr(owner, name, original)
        _originals.clear()


def breakdown():
    return {k: {"calls": c, "ms": round(ms, 1)} for k, (c, ms) in sorted(timings.items())}


replicas = {}


async def fresh_replica(app, user):
    name = f"pysync:{app}:{user}"
    await delete_indexeddb(name)
    db = await pysync.connect(app, user=user, schema=SCHEMA)
    replicas[user] = db
    return db


async def drop_replica(user):
    db = replicas.pop(user)
    db.close()
    await delete_indexeddb(db.name)


async def prepare_push(user, n):
    db = await fresh_replica("bench-push", user)
    coll = db["items"]
    t0 = js.performance.now()
    await db._write([coll._put_write(doc) for doc in make_docs(n)], group=None)
    ms = js.performance.now() - t0
    entries = await db.outbox()
    assert len(entries) == n and all(e["group"] is None for e in entries), "outbox differs"
    return json.dumps({"prepare_ms": ms, "pending": db.status.pending})


async def push(user, url, token, pack_size=1, concurrency=None, batch=None):
    db = replicas[user]
    options = {"pack_size": pack_size}
    if concurrency is not None:
        options["push_concurrency"] = concurrency
    if batch is not None:
        options["push_batch"] = batch
    sync = Sync(db, HttpRemote(url, token), table=TABLE, **options)
    collect()
    instrument(True)
    try:
        t0 = js.performance.now()
        report = await sync.push()
        t1 = js.performance.now()
    finally:
        instrument(False)
    pending = len(await db.outbox())
    await drop_replica(user)
    return json.dumps(
        {
            "ms": t1 - t0,
            "pushed": report.pushed,
            "conflicts": report.conflicts,
            "rejected": report.rejected,
            "capacity_units": report.capacity_units,
            "left_in_outbox": pending,
            "breakdown": breakdown(),
        }
    )


async def base_sync(user, url, token, n):
    db = await fresh_replica("bench-pull", user)
    sync = Sync(db, HttpRemote(url, token), table=TABLE)
    collect()
    # The forced collections are a task of their own (a full V8 GC of this page can
    # take 100 ms), ended before the timed region: not one of the sync's long tasks.
    await asyncio.sleep(0)
    instrument(True)
    try:
        t0 = js.performance.now()
        report = await sync.pull()
        t1 = js.performance.now()
    finally:
        instrument(False)
    count = await db["items"].count()
    sample = await db["items"].get("r000007")
    await drop_replica(user)
    assert count == n, f"pulled {count} of {n}"
    assert sample == make_docs(1, 7)[0], f"record differs: {sample}"
    return json.dumps(
        {
            "ms": t1 - t0,
            "t0": t0,
            "t1": t1,
            "applied": report.applied,
            "pages": report.pages,
            "base_sync": report.base_sync,
            "breakdown": breakdown(),
        }
    )
"""

# Long tasks of the main thread, observed from before the pull until after it.
LONGTASK_JS = r"""
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
"""

# The browser's own floor for a push: the default push's requests (one conditional
# PutItem per change) posted with fetch() straight from JavaScript, PUSH_CONCURRENCY
# at a time (a sliding window, as pysync's), no IndexedDB, no outbox.
FETCH_JS = r"""
async ([url, token, bodies, window, operation]) => {
  const headers = {
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": "DynamoDB_20120810." + operation,
    Authorization: "Bearer " + token,
  };
  let next = 0;
  let units = 0;
  const failures = [];
  async function worker() {
    while (next < bodies.length) {
      const body = bodies[next++];
      const response = await fetch(url, { method: "POST", headers, body });
      const text = await response.text();
      if (response.status !== 200) failures.push(text.slice(0, 200));
      else units += JSON.parse(text).ConsumedCapacity?.CapacityUnits ?? 0;
    }
  }
  const t0 = performance.now();
  await Promise.all(Array.from({ length: window }, worker));
  return { ms: performance.now() - t0, failures, units };
}
"""

# The browser's own floor for a base sync: plain JS pages through the same Query
# (DynamoDB's 1 MB pages, the fewest requests; pysync's base sync reads 500 items
# per request), turns every item into a plain object (the record pysync stores: the
# document, _v, _seq and the index field) and puts each page in one strict
# transaction into a database shaped like pysync's (bench/pages/replica_baseline.js's
# openPysyncShape is not loaded here, so the store is created below). No outbox
# check, no clock: a floor, not a replica.
PULL_JS = r"""
async ([url, token, scope, name]) => {
  const value = (attr) => {
    const [kind, v] = Object.entries(attr)[0];
    if (kind === "S") return v;
    if (kind === "N") return Number(v);
    if (kind === "BOOL") return v;
    if (kind === "NULL") return undefined;
    if (kind === "L") return v.map(value);
    if (kind === "M") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, value(x)]));
    throw new Error("unexpected attribute type " + kind);
  };
  const done = (tx) => new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error);
  });
  await new Promise((resolve) => {
    const request = indexedDB.deleteDatabase(name);
    request.onsuccess = request.onerror = () => resolve();
  });
  const db = await new Promise((resolve, reject) => {
    const request = indexedDB.open(name, 1);
    request.onupgradeneeded = () =>
      request.result.createObjectStore("items", { keyPath: "id" }).createIndex("by_n", "_ix.by_n");
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  const headers = {
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": "DynamoDB_20120810.Query",
    Authorization: "Bearer " + token,
  };
  const t0 = performance.now();
  let start = null;
  let count = 0;
  let idbMs = 0; // the page's IndexedDB transactions alone, from the first put to complete
  do {
    const request = {
      TableName: "__TABLE__",
      KeyConditionExpression: "pk = :p AND begins_with(sk, :ns)",
      ExpressionAttributeValues: { ":p": { S: scope }, ":ns": { S: "bench-pull/" } },
      ConsistentRead: true,
    };
    if (start) request.ExclusiveStartKey = start;
    const response = await fetch(url, { method: "POST", headers, body: JSON.stringify(request) });
    const page = await response.json();
    if (response.status !== 200) throw new Error(JSON.stringify(page));
    const tIdb = performance.now();
    const tx = db.transaction("items", "readwrite", { durability: "strict" });
    const store = tx.objectStore("items");
    for (const item of page.Items) {
      const record = {};
      for (const [k, attr] of Object.entries(item)) {
        if (!["pk", "sk", "_hlc", "_c", "_m"].includes(k)) record[k] = value(attr);
      }
      record._seq = 0;
      record._ix = { by_n: record.n };
      store.put(record);
    }
    await done(tx);
    idbMs += performance.now() - tIdb;
    count += page.Items.length;
    start = page.LastEvaluatedKey;
  } while (start);
  const ms = performance.now() - t0;
  db.close();
  await new Promise((resolve) => {
    const request = indexedDB.deleteDatabase(name);
    request.onsuccess = request.onerror = () => resolve();
  });
  return { ms, count, idbMs };
}
"""

# -- servers ----------------------------------------------------------------------------


class ServerThread:
    """uvicorn serving an ASGI app on a pre-bound socket in a thread (as tests/server do)."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the proxy did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@contextlib.contextmanager
def proxy(endpoint: str, origin: str) -> Iterator[str]:
    """The pysync proxy for DynamoDB Local at ``endpoint``; yields its base URL."""
    config = ProxyConfig(
        table=TABLE,
        dynamodb_endpoint=endpoint,
        jwt_secret=DEV_JWT_SECRET,
        allowed_origins=(origin,),
        rate_limit=1e9,
        rate_burst=10**9,
    )
    with ServerThread(create_app(config, session=local_session())) as server:
        yield server.url


# -- boto3 baselines -----------------------------------------------------------------


def boto3_client(endpoint: str) -> Any:
    """One boto3 client (thread-safe), with a pool for the THREADS threads, no retries."""
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(max_pool_connections=THREADS, retries={"max_attempts": 1}),
    )


def make_docs(n: int, start: int = 0) -> list[dict[str, Any]]:
    """The documents of PAGE_CODE's ``make_docs``."""
    return [
        {
            "id": f"r{i:06d}",
            "title": f"Item {i} title text",
            "n": i,
            "done": False,
            "tags": ["a", "b"],
            "score": 1.5,
        }
        for i in range(start, start + n)
    ]


def item(scope: str, doc: dict[str, Any], app: str) -> dict[str, Any]:
    """The DynamoDB item pysync's push writes for a new record of ``app`` (Pusher._write)."""
    system = {
        "_hlc": f"{int(time.time() * 1000):015d}-000000-0123456789abcdef",
        "_c": "0123456789abcdef",
        "_m": uuid.uuid4().hex,
        "_v": 1,
    }
    return to_item({**doc, "pk": scope, "sk": sort_key(app, "items", doc["id"]), **system})


def boto3_push(client: Any, scope: str, n: int, threads: int) -> dict[str, Any]:
    """PutItem of n new items, conditional as pysync's; sequential or with a pool."""
    items = [item(scope, doc, "bench-push") for doc in make_docs(n)]

    def put(one: dict[str, Any]) -> float:
        response = client.put_item(
            TableName=TABLE,
            Item=one,
            ConditionExpression="attribute_not_exists(pk)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
            ReturnConsumedCapacity="TOTAL",
        )
        return float(response["ConsumedCapacity"]["CapacityUnits"])

    t0 = time.perf_counter()
    if threads == 1:
        units = sum(put(one) for one in items)
    else:
        with ThreadPoolExecutor(threads) as pool:
            units = sum(pool.map(put, items))
    seconds = time.perf_counter() - t0
    return {"ms": seconds * 1000, "items": n, "capacity_units": units}


def load_items(client: Any, scope: str, n: int) -> float:
    """BatchWriteItem n items (25 per request, unprocessed ones resent); seconds."""
    items = [item(scope, doc, "bench-pull") for doc in make_docs(n)]  # pysync's base sync reads
    t0 = time.perf_counter()
    for i in range(0, n, 25):
        requests = {TABLE: [{"PutRequest": {"Item": one}} for one in items[i : i + 25]]}
        while requests:
            response = client.batch_write_item(RequestItems=requests)
            requests = response.get("UnprocessedItems") or {}
    return time.perf_counter() - t0


def boto3_query(client: Any, scope: str, n: int) -> dict[str, Any]:
    """Page through the scope's Query (consistent) and deserialize every item to a dict."""
    deserializer = TypeDeserializer()
    request: dict[str, Any] = {
        "TableName": TABLE,
        "KeyConditionExpression": "pk = :p AND begins_with(sk, :ns)",  # as pysync's base sync
        "ExpressionAttributeValues": {":p": {"S": scope}, ":ns": {"S": "bench-pull/"}},
        "ConsistentRead": True,
    }
    docs: list[dict[str, Any]] = []
    pages = 0
    t0 = time.perf_counter()
    while True:
        page = client.query(**request)
        pages += 1
        docs.extend(
            {k: deserializer.deserialize(v) for k, v in raw.items()} for raw in page["Items"]
        )
        if "LastEvaluatedKey" not in page:
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    seconds = time.perf_counter() - t0
    assert len(docs) == n, f"queried {len(docs)} of {n}"
    return {"ms": seconds * 1000, "items": n, "pages": pages}


# -- runs -----------------------------------------------------------------------------


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _rate(run: dict[str, Any], n: int) -> float:
    return n / (run["ms"] / 1000)


def _stats(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 1),
        "min": round(ordered[0], 1),
        "max": round(ordered[-1], 1),
        "runs": [round(v, 1) for v in values],
    }


class Names:
    """Fresh users (hence scopes u#<user>), unique within the run."""

    def __init__(self) -> None:
        self.count = 0
        self.stamp = uuid.uuid4().hex[:6]

    def next(self, kind: str) -> str:
        self.count += 1
        return f"{kind}-{self.stamp}-{self.count}"


def pysync_push(
    page: Any,
    url: str,
    user: str,
    n: int,
    pack: int = 1,
    concurrency: int | None = None,
    batch: int | None = None,
) -> dict[str, Any]:
    prepared = page.run_python_json(f"await prepare_push({user!r}, {n})")
    token = issue_token(DEV_JWT_SECRET, user)
    code = f"await push({user!r}, {url!r}, {token!r}, {pack}, {concurrency!r}, {batch!r})"
    run = page.run_python_json(code)
    if run["pushed"] != n or run["left_in_outbox"] or run["conflicts"] or run["rejected"]:
        raise RuntimeError(f"push did not push everything: {run}")
    run["prepare_ms"] = prepared["prepare_ms"]
    return run


def pysync_pull(page: Any, url: str, user: str, scope: str, n: int) -> dict[str, Any]:
    # The loaded scope is the user's own (u#<user>): the replica's default scope.
    assert scope == f"u#{user}"
    token = issue_token(DEV_JWT_SECRET, user)
    code = f"await base_sync({user!r}, {url!r}, {token!r}, {n})"
    supported = page.run_js("() => longTasks.start()")
    run = page.run_python_json(code)
    entries = page.run_js("() => longTasks.stop()")
    during = [d for start, d in entries if start < run["t1"] and start + d > run["t0"]]
    run["longtask_api"] = supported
    run["longtasks"] = {
        "count": len(during),
        "over_50ms": sum(1 for d in during if d > GOAL_LONGTASK_MS),
        "max_ms": round(max(during, default=0.0), 1),
        "total_ms": round(sum(during), 1),
        "durations_ms": sorted((round(d, 1) for d in during), reverse=True)[:20],
    }
    return run


def js_fetch_push(
    page: Any, url: str, user: str, n: int, window: int = PUSH_CONCURRENCY
) -> dict[str, Any]:
    """The requests pysync's default push sends (one conditional PutItem per change,
    as ``Pusher._write`` builds it), posted by plain JS fetch, ``window`` at a time."""
    bodies = [
        json.dumps(
            {
                "TableName": TABLE,
                "Item": item(f"u#{user}", doc, "bench-push"),
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                "ReturnConsumedCapacity": "TOTAL",
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        )
        for doc in make_docs(n)
    ]
    token = issue_token(DEV_JWT_SECRET, user)
    run = page.run_js(FETCH_JS, [url, token, bodies, window, "PutItem"])
    if run["failures"]:
        raise RuntimeError(f"fetch push failed: {run['failures'][:3]}")
    return {"ms": run["ms"], "items": n, "capacity_units": run["units"]}


def billed_units(n: int, transactional: bool) -> float:
    """The write units DynamoDB bills for the push's n items by its documented rule:
    one per started KB of each item written alone, twice that in a transaction
    (DynamoDB Local reports 2.0 for any transaction, however large)."""
    sizes = [item_size(item("u#billing-check", doc, "bench-push")) for doc in make_docs(n)]
    return float(sum(-(-size // 1024) for size in sizes) * (2 if transactional else 1))


#: The push variants: (key, label, transactional writes).
PUSH_VARIANTS = (
    ("pysync", "pysync default: plain conditional writes, batched", False),
    ("pysync_unbatched", "pysync push_batch=1: a request per change", False),
    ("pysync_packs", f"pysync packs option: {PACK_OPTION} per TransactWriteItems", True),
    ("boto3_sequential", "boto3 put_item, sequential", False),
    ("boto3_threads16", f"boto3 put_item, {THREADS} threads", False),
    ("js_fetch", "JS fetch floor: one PutItem request per change", False),
)


def push_phase(
    page: Any, url: str, client: Any, args: argparse.Namespace, names: Names
) -> dict[str, Any]:
    n = args.push_n
    _log(f"push: warm-up ({args.push_warmup} items each)")
    pysync_push(page, url, names.next("warm"), args.push_warmup)
    pysync_push(page, url, names.next("warm"), args.push_warmup, batch=1)
    pysync_push(page, url, names.next("warm"), args.push_warmup, PACK_OPTION)
    js_fetch_push(page, url, names.next("warm"), args.push_warmup)
    boto3_push(client, "u#" + names.next("warm"), args.push_warmup, 1)
    boto3_push(client, "u#" + names.next("warm"), args.push_warmup, THREADS)
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in PUSH_VARIANTS}
    chosen = [key for key, _, _ in PUSH_VARIANTS if key in args.push_variants]
    # The goal's pair runs more rounds (alone, taking turns): one run of each swings by
    # more than the gap between them on this machine.
    goal_pair = [key for key in ("pysync", "boto3_threads16") if key in chosen]
    rounds = [chosen] * args.push_runs + [goal_pair] * args.push_goal_runs
    for round_, variants in enumerate(rounds):
        if round_ % 2 == 0:
            variants = variants[::-1]
        for variant in variants:
            user = names.next("push")
            if variant == "pysync":
                run = pysync_push(page, url, user, n)
            elif variant == "pysync_unbatched":
                run = pysync_push(page, url, user, n, batch=1)
            elif variant == "pysync_packs":
                run = pysync_push(page, url, user, n, PACK_OPTION)
            elif variant == "js_fetch":
                run = js_fetch_push(page, url, user, n)
            else:
                threads = 1 if variant == "boto3_sequential" else THREADS
                run = boto3_push(client, f"u#{user}", n, threads)
            runs[variant].append(run)
            _log(f"push n={n} {variant}: {run['ms']:.0f} ms, {_rate(run, n):.0f} items/s")
    return {k: v for k, v in runs.items() if v}


def push_sweep(
    page: Any, url: str, client: Any, args: argparse.Namespace, names: Names
) -> list[dict[str, Any]]:
    """Single conditional writes at several concurrencies: pysync's default push
    (``push_concurrency``) and the JS floor (requests out at a time), each point
    next to a boto3 16-thread run of the same size."""
    n = args.push_sweep_n
    points = []
    for concurrency in args.push_sweep:
        baseline = boto3_push(client, "u#" + names.next("sweep"), n, THREADS)
        ours = pysync_push(page, url, names.next("sweep"), n, 1, concurrency, batch=1)
        floor = js_fetch_push(page, url, names.next("sweep"), n, concurrency)
        point = {
            "concurrency": concurrency,
            "n": n,
            "pysync_items_per_s": round(_rate(ours, n), 1),
            "js_fetch_items_per_s": round(_rate(floor, n), 1),
            "boto3_threads16_items_per_s": round(_rate(baseline, n), 1),
        }
        points.append(point)
        _log(f"push sweep: {point}")
    return points


def push_rows(push: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """One row per push variant: items/s, ratio vs boto3 16 threads, write units."""
    threads16 = _rate_of(push["boto3_threads16"], n)
    out = []
    for key, label, transactional in PUSH_VARIANTS:
        runs = push[key]
        rate = _rate_of(runs, n)
        reported = statistics.median(r["capacity_units"] for r in runs) / n
        billed = billed_units(n, transactional) / n
        row: dict[str, Any] = {
            "operation": f"push: {label}",
            "n": n,
            "runs": len(runs),
            "items_per_s": rate,
            "ratio": round(rate / threads16, 3),
            "wcu_per_change": round(billed, 3),
            "wcu_reported_per_change": round(reported, 3),
            "goal": "-",
            "goal_met": "-",
            "ms": _stats([r["ms"] for r in runs]),
        }
        if key == "pysync":
            row["goal"] = f"ratio >= {GOAL_PUSH:g} vs boto3 {THREADS} threads at 1 WCU per change"
            row["goal_met"] = rate / threads16 >= GOAL_PUSH and billed == reported == 1.0
        out.append(row)
    return out


def _per_run(runs: list[dict[str, Any]], n: int) -> str:
    return ", ".join(f"{_rate(run, n):,.0f}" for run in runs)


def push_notes(push: dict[str, Any], sweep: list[dict[str, Any]], n: int) -> list[str]:
    """Prose from the push's numbers: the cost of each option, and the sweep."""
    rows = {key: row for (key, _, _), row in zip(PUSH_VARIANTS, push_rows(push, n), strict=True)}
    ours, packs, floor = rows["pysync"], rows["pysync_packs"], rows["js_fetch"]
    alone = rows["pysync_unbatched"]
    notes = [
        f"Push: pysync's default sends each change as one conditional PutItem "
        f"({ours['wcu_per_change']:g} WCU per change), a round's writes up to "
        f"{PUSH_BATCH} per HTTP request in a batch the proxy fans out as single writes: "
        f"{ours['items_per_s']:,.0f} items/s, {ours['ratio']:.2f}x boto3 {THREADS} threads "
        f"(medians of {ours['runs']} runs each; items/s per run, taking turns: pysync "
        f"{_per_run(push['pysync'], n)}, boto3 {_per_run(push['boto3_threads16'], n)}). "
        f"Sent one request per change (`push_batch=1`): {alone['items_per_s']:,.0f} "
        f"items/s ({alone['ratio']:.2f}x); plain JS posting those single requests reaches "
        f"{floor['items_per_s']:,.0f} items/s ({floor['ratio']:.2f}x): each request costs "
        "the browser its own round of work (renderer, network service, browser process) "
        "that boto3's threads in one process do not pay, and the batch pays it once per "
        f"{PUSH_BATCH} changes. The packs option (`Sync(pack_size={PACK_OPTION})`, "
        f"{PACK_OPTION} per TransactWriteItems): {packs['items_per_s']:,.0f} items/s "
        f"({packs['ratio']:.2f}x) at {packs['wcu_per_change']:g} WCU per change, as "
        "DynamoDB bills transactional writes (DynamoDB Local reports "
        f"{packs['wcu_reported_per_change']:g} per change: 2.0 per transaction, whatever "
        "its size). What limits the batched push is the outbox's IndexedDB work in the "
        "page (see the breakdown in the results: marking, reading and acknowledging "
        "rounds), not the network."
    ]
    if sweep:
        cells = "; ".join(
            f"{p['concurrency']}: pysync {p['pysync_items_per_s']:,.0f}, JS "
            f"{p['js_fetch_items_per_s']:,.0f} (boto3 {THREADS} threads "
            f"{p['boto3_threads16_items_per_s']:,.0f})"
            for p in sweep
        )
        notes.append(
            f"Requests out at a time, single conditional writes, {sweep[0]['n']:,} items "
            f"per point (items/s): {cells}. Chromium opens at most 6 HTTP/1.1 connections "
            "per origin; more requests queue in the browser."
        )
    return notes


def js_pull(page: Any, url: str, user: str, scope: str, n: int) -> dict[str, Any]:
    """The browser's floor for the base sync: plain JS fetch, convert, put per page."""
    code = PULL_JS.replace("__TABLE__", TABLE)
    run = page.run_js(code, [url, issue_token(DEV_JWT_SECRET, user), scope, "bench-pull-js"])
    if run["count"] != n:
        raise RuntimeError(f"JS pulled {run['count']} of {n}")
    return {"ms": run["ms"], "items": n, "idb_ms": run["idbMs"]}


def pull_phase(
    page: Any, url: str, client: Any, args: argparse.Namespace, names: Names
) -> dict[str, Any]:
    n = args.pull_n
    base_user = names.next("base")
    scope = f"u#{base_user}"
    _log(f"pull: loading {n} items with BatchWriteItem")
    load_s = load_items(client, scope, n)
    _log(f"pull: loaded in {load_s:.1f} s")
    # A warm-up run of each, unmeasured: the first run in a page pays for its code's
    # first use (V8's tiering of Pyodide's and the page's code), in JS as in Python.
    warmup = {
        "boto3": boto3_query(client, scope, n)["ms"],
        "js_fetch_idb": js_pull(page, url, base_user, scope, n)["ms"],
        "pysync": pysync_pull(page, url, base_user, scope, n)["ms"],
    }
    _log("pull warm-up (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in warmup.items()))
    runs: dict[str, list[dict[str, Any]]] = {
        "pysync": [],
        "boto3": [],
        "js_fetch_idb": [],
    }
    for round_ in range(args.pull_runs):
        variants = ["boto3", "js_fetch_idb", "pysync"]
        if round_ % 2:
            variants.reverse()
        for variant in variants:
            if variant == "boto3":
                run = boto3_query(client, scope, n)
            elif variant == "js_fetch_idb":
                run = js_pull(page, url, base_user, scope, n)
            else:
                run = pysync_pull(page, url, base_user, scope, n)
            runs[variant].append(run)
            extra = ""
            if "longtasks" in run:
                lt = run["longtasks"]
                extra = f", longest task {lt['max_ms']} ms, {lt['over_50ms']} over 50 ms"
            _log(f"pull n={n} {variant}: {run['ms']:.0f} ms, {_rate(run, n):.0f} items/s{extra}")
    return {
        "load_s": round(load_s, 1),
        "warmup_ms": {k: round(v, 1) for k, v in warmup.items()},
        **{k: v for k, v in runs.items() if v},
    }


# -- results ------------------------------------------------------------------------------


def _rate_of(runs: list[dict[str, Any]], n: int) -> float:
    return round(n / (statistics.median(r["ms"] for r in runs) / 1000), 1)


def _row(
    operation: str,
    n: int,
    runs: dict[str, list[dict[str, Any]]],
    baseline: str,
    baseline_label: str,
    goal: float,
) -> dict[str, Any]:
    """A flat row (the generic report table shows its scalar fields) plus statistics."""
    ours = _stats([r["ms"] for r in runs["pysync"]])
    theirs = _stats([r["ms"] for r in runs[baseline]])
    ours_rate = _rate_of(runs["pysync"], n)
    theirs_rate = _rate_of(runs[baseline], n)
    ratio = ours_rate / theirs_rate
    return {
        "operation": operation,
        "n": n,
        "runs": len(runs["pysync"]),
        "pysync_s": round(ours["median"] / 1000, 2),
        "pysync_items_per_s": ours_rate,
        "baseline": baseline_label,
        "baseline_s": round(theirs["median"] / 1000, 2),
        "baseline_items_per_s": theirs_rate,
        "ratio": round(ratio, 3),
        "goal": f"ratio >= {goal:g}",
        "goal_met": ratio >= goal,
        "pysync_ms": ours,
        "baseline_ms": theirs,
    }


def rows(push: dict[str, Any], pull: dict[str, Any], args: argparse.Namespace) -> list[Any]:
    """The rows of the report: the push's variants, base sync, long tasks."""
    out: list[Any] = push_rows(push, args.push_n)
    for baseline, label, goal in (
        # The same HTTP and IndexedDB work done by plain JS in the page: the browser's
        # own limit, whatever pysync does.
        ("js_fetch_idb", "plain JS: fetch 1 MB pages, put each in IndexedDB", GOAL_PULL_FLOOR),
        ("boto3", "boto3 Query pages to dicts (CPython)", GOAL_PULL_BOTO3),
    ):
        out.append(
            _row("base sync (pull into a fresh replica)", args.pull_n, pull, baseline, label, goal)
        )

    def worst(runs: list[dict[str, Any]]) -> dict[str, Any]:
        return max(runs, key=lambda r: r["longtasks"]["max_ms"])["longtasks"]

    ours = worst(pull["pysync"])
    out.append(
        {
            "operation": "longest main-thread task during base sync (ms; tasks > 50 ms)",
            "n": args.pull_n,
            "runs": len(pull["pysync"]),
            "pysync_s": f"{ours['max_ms']:.0f} ms; {ours['over_50ms']} over 50 ms",
            "pysync_items_per_s": "-",
            "baseline": "-",
            "baseline_s": "-",
            "baseline_items_per_s": "-",
            "ratio": "-",
            "goal": f"no task over {GOAL_LONGTASK_MS:.0f} ms",
            "goal_met": all(r["longtasks"]["over_50ms"] == 0 for r in pull["pysync"]),
            "longtasks_per_run": [r["longtasks"] for r in pull["pysync"]],
        }
    )
    return out


def pull_notes(pull: dict[str, Any], n: int) -> list[str]:
    """Where the base sync's time goes, from this run's numbers."""
    ours, floor, boto = (_rate_of(pull[v], n) for v in ("pysync", "js_fetch_idb", "boto3"))
    run = min(
        pull["pysync"],
        key=lambda r: abs(r["ms"] - statistics.median(x["ms"] for x in pull["pysync"])),
    )
    parts = run["breakdown"]
    longest = max(r["longtasks"]["max_ms"] for r in pull["pysync"])
    floor_run = min(
        pull["js_fetch_idb"],
        key=lambda r: abs(r["ms"] - statistics.median(x["ms"] for x in pull["js_fetch_idb"])),
    )
    ratios = [
        round(theirs["ms"] / mine["ms"], 2)
        for mine, theirs in zip(pull["pysync"], pull["js_fetch_idb"], strict=True)
    ]
    cold = pull.get("warmup_ms", {})
    # The base sync's pages come through call_js (kept in JavaScript) in the page.
    requests = sum(parts.get(name, {}).get("ms", 0) for name in ("call", "call_js"))
    return [
        f"Base sync of {n:,} items: pysync {ours:,.0f} items/s, {ours / floor:.2f}x the plain-JS "
        f"floor ({floor:,.0f}/s: fetch of DynamoDB's 1 MB pages, a plain object per item, one "
        f"IndexedDB transaction per page) and {ours / boto:.2f}x boto3 ({boto:,.0f}/s, no "
        f"storage). In the median run ({run['ms']:.0f} ms, {run['pages']} pages of up to "
        f"{BASE_PAGE}): the requests {requests:.0f} ms in all "
        f"(the next page is fetched while one is applied, so they overlap), applying pages "
        f"{parts['apply']['ms']:.0f} ms in {parts['apply']['calls']} store transactions (one per "
        f"page), looking for local "
        f"records the server no longer has {parts['_drop_unseen']['ms']:.0f} ms. The longest "
        f"main-thread task in any run: {longest:.0f} ms"
        + (
            f" (over {GOAL_LONGTASK_MS:.0f} ms: bench_responsive traces and profiles the base "
            "sync's long tasks, with an input probe)."
            if longest > GOAL_LONGTASK_MS
            else "."
        )
        + " Both convert the items in JavaScript and write a page per transaction: pysync's "
        "pages stay in JavaScript from the response to IndexedDB (Python sees their sort "
        "keys), and any page holding an item that JavaScript cannot convert exactly as "
        "Python does (bytes, numbers beyond 15 digits or with an exponent) is converted in "
        "Python instead. "
        f"IndexedDB itself is most of the floor: in its median run ({floor_run['ms']:.0f} ms) "
        f"its transactions took {floor_run['idb_ms']:.0f} ms, about "
        f"{floor_run['idb_ms'] * 1000 / n:.0f} us per record. Per round (the variants run "
        f"one after another), pysync's speed over the floor's: {ratios}. Each variant ran "
        "once unmeasured first"
        + (
            f" (pysync {cold['pysync']:.0f} ms, the floor {cold['js_fetch_idb']:.0f} ms, "
            f"boto3 {cold['boto3']:.0f} ms): a page's first run pays for its code's first use."
            if cold
            else "."
        )
    ]


def main() -> None:
    """Run the benchmark and write bench/results/sync.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--push-n", type=int, default=10_000, help="pending mutations to push")
    parser.add_argument("--push-runs", type=int, default=1, help="measured rounds of push")
    parser.add_argument(
        "--push-goal-runs",
        type=int,
        default=2,
        help="more rounds of the default push and boto3 16 threads alone (the goal's ratio)",
    )
    parser.add_argument("--push-warmup", type=int, default=100, help="items of the warm-up push")
    parser.add_argument(
        "--push-sweep",
        type=lambda text: [int(x) for x in text.split(",") if x],
        default=[2, 4, 6, 8, 16],
        help="requests out at a time to sweep for single writes (comma-separated; '' for none)",
    )
    parser.add_argument(
        "--push-variants",
        type=lambda text: text.split(","),
        default=[key for key, _, _ in PUSH_VARIANTS],
        help="push variants to measure (comma-separated; the report needs them all)",
    )
    parser.add_argument("--push-sweep-n", type=int, default=2000, help="items per sweep point")
    parser.add_argument("--pull-n", type=int, default=20_000, help="items of the base sync")
    parser.add_argument("--pull-runs", type=int, default=5, help="measured rounds of base sync")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    started = time.monotonic()
    names = Names()
    with DynamoDBLocal() as database:
        create_tables(
            dynamodb_client(ProxyConfig(dynamodb_endpoint=database.endpoint), local_session()),
            TABLE,
        )
        client = boto3_client(database.endpoint)
        with bench_page() as page:
            origin = page.page.url.split("/bench.html")[0]
            with proxy(database.endpoint, origin) as base_url:
                machine = page.machine()
                machine["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
                page.run_python(PAGE_CODE)
                page.run_python(f"TABLE = {TABLE!r}")
                page.run_js(f"() => {{ {LONGTASK_JS} }}")
                url = base_url + "/dynamodb"
                push = push_phase(page, url, client, args, names)
                sweep = push_sweep(page, url, client, args, names)
                pull = pull_phase(page, url, client, args, names)
                machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]

    result = {
        "benchmark": "sync",
        "title": "Sync: pysync push and base sync (Chromium, through the proxy) vs boto3",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "setup": (
            f"DynamoDB Local in memory, proxy in a uvicorn thread of the benchmark process; "
            f"push: {args.push_warmup}-item warm-up, then {args.push_runs} round(s) of "
            f"{args.push_n} items per variant and {args.push_goal_runs} more of the default "
            f"push and boto3 {THREADS} threads (medians); base sync: {args.pull_n} items, "
            f"{args.pull_runs} round(s) per variant after one unmeasured; variants alternate"
        ),
        "push_n_note": (
            f"push measured with N = {args.push_n:,} (--push-n), not 10,000; "
            "nothing is extrapolated"
            if args.push_n < 10_000
            else ""
        ),
        # A run of some push variants (--push-variants) is for exploring: no report.
        "rows": rows(push, pull, args) if len(push) == len(PUSH_VARIANTS) else [],
        "notes": (
            [*push_notes(push, sweep, args.push_n), *pull_notes(pull, args.pull_n)]
            if len(push) == len(PUSH_VARIANTS)
            else []
        ),
        "push_runs": push,
        "push_sweep": sweep,
        "pull_runs": pull,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    _log(f"wrote {args.output} in {result['elapsed_s']} s")


if __name__ == "__main__":
    main()
