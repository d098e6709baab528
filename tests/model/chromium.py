"""Devices whose replica runs in a Chromium page, through the real proxy to DynamoDB Local.

The third runner of the model (after memory and the CPython stack): the same
programs, the same :class:`~tests.model.runner.Run` and oracle, and inside each
page the very same :class:`~tests.model.device.PyDevice` logic. Only the parts
below it are real instead of simulated:

* storage is the page's IndexedDB (``pysync.connect`` on the browser platform;
  broadcast channels and Web Locks are the browser's own);
* the remote is :class:`pysync.HttpRemote` (``pyfetch``) to the proxy that served the
  page, which forwards to DynamoDB Local; the stream consumer writes the changelog;
* faults are injected inside the page, by the model's :class:`FaultyRemote`
  around that remote (offline, lost replies, 5xx, refusals, a write hanging
  in flight), which passes one request at a time (``PyDevice(serial=True)``);
* a reload is either a reconnect on the same IndexedDB (``PyDevice.reload``) or
  a real page reload; a crash is either the push cancelled mid-flight in the
  page (``PyDevice.crash``) or the page closed while the write hangs and a new
  page opened on the same IndexedDB (a standby page of the same context,
  booted beforehand). Which one is drawn per event from the seed (``page_share``).

The page is served by the proxy itself: a small loader, a private copy of the
Pyodide runtime of ``build/pyodide`` and a zip of ``src/pysync`` and
``tests/model`` as they are when the lab starts.

Determinism: the program decides every step; the clock of each device is a fake
one (the model's); ids come from counters; and the changelog never races the
devices: after every write a page sends, and after every step, the world
*settles*: it writes a marker item and waits until the consumer has appended
it (and stamped what it had to), again while stamps land. While the changelog
"lags" (consumer stopped) nothing is waited for. No wall-clock sleep decides
an outcome: a seed replays step for step.

Differential: each program also runs in memory (``MemoryWorld``), and the two
step logs, normalized (ids, scope, key order), are compared: a difference says
where the real browser and stack parted from the simulation (memory plays
``forget_tokens`` as the stack does: not at all). It is counted in the outcome's
``ops`` and kept in :attr:`ChromiumLab.divergences`, not a failure: both runs
may be right (see there).

One :func:`chromium_lab` (an async context manager) starts DynamoDB Local, the
proxy (uvicorn thread), the consumer and one Chromium with a context per
device; its :meth:`ChromiumLab.world` makes a fresh world per program (its own
user, so its own scope and IndexedDB databases), reusing the pages::

    async with chromium_lab() as lab:
        for seed in seeds:
            program = from_seed(seed)
            outcome = await lab.run(program)  # run_program(program, lab.world(program)),
                                              # then the differential

This module is also imported inside the page (:class:`PageHarness` and what it
uses): its top level imports only the standard library, pysync and the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .device import TABLE, WRITES, PyDevice, deterministic_ids
from .program import APP, Program

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page

    from .runner import Outcome

ROOT = Path(__file__).resolve().parents[2]
logger = logging.getLogger("tests.model.chromium")
#: Scope of the settle markers (no user's: a token never names it).
MARKER_SCOPE = "u#~settle"
#: One call into a page (a sync of a long outbox included).
CALL_TIMEOUT_S = 120.0
BOOT_TIMEOUT_MS = 60_000
SETTLE_TIMEOUT_S = 60.0
API_PATH = "/dynamodb"  # pysync.server.API_PATH (the server package is not in the page)


# == in the page ===========================================================================


def _once(stop: Callable[[], Any]) -> Callable[[], None]:
    """``stop`` made idempotent (the replica and a crash may both stop one thing)."""
    done: list[bool] = []

    def run() -> None:
        if not done:
            done.append(True)
            stop()

    return run


class _Channel:
    """A real BroadcastChannel that goes quiet once closed (as a crashed tab's)."""

    def __init__(self, inner: Any, close: Callable[[], None]) -> None:
        self.inner, self._close, self.open = inner, close, True

    def post(self, message: dict[str, Any]) -> None:
        if self.open:
            self.inner.post(message)

    def close(self) -> None:
        self.open = False
        self._close()


class PageBrowser:
    """What :class:`PyDevice` uses of ``MemoryBrowser``, in a real page.

    Storage, channels and locks are the browser's (:class:`PageTab`); the clock
    and connectivity stay the model's: a fake clock that moves only when the
    program says, and an online flag (the device's network is its
    :class:`FaultyRemote`, which fails every call while offline).
    """

    def __init__(self, now_ms: int, online: bool = True) -> None:
        self.now_ms = now_ms
        self.is_online = online
        self.listeners: list[Callable[[bool], None]] = []

    def tab(self) -> PageTab:
        return PageTab(self)

    def set_online(self, online: bool) -> None:
        self.is_online = online
        for listener in list(self.listeners):
            listener(online)


class PageTab:
    """A :class:`~pysync._platform.Platform`: the browser's, with the model's clock."""

    def __init__(self, browser: PageBrowser) -> None:
        from pysync._browser import BrowserPlatform

        self.browser = browser
        self.real = BrowserPlatform()
        self.stops: list[Callable[[], None]] = []

    def now_ms(self) -> int:
        return self.browser.now_ms

    async def open_store(self, schema: Any) -> Any:
        return await self.real.open_store(schema)

    async def delete_store(self, name: str) -> None:
        """Delete the IndexedDB database ``name`` (every connection to it closed)."""
        from pysync._store import delete_indexeddb

        await delete_indexeddb(name)

    def channel(self, name: str, on_message: Callable[[dict[str, Any]], None]) -> _Channel:
        inner = self.real.channel(name, on_message)
        close = _once(inner.close)
        self.stops.append(close)
        return _Channel(inner, close)

    def request_leadership(self, name: str, on_granted: Callable[[], None]) -> Callable[[], None]:
        stop = _once(self.real.request_leadership(name, on_granted))
        self.stops.append(stop)
        return stop

    def online(self) -> bool:
        return self.browser.is_online

    def on_online_change(self, callback: Callable[[bool], None]) -> Callable[[], None]:
        listeners = self.browser.listeners
        listeners.append(callback)
        return lambda: listeners.remove(callback) if callback in listeners else None

    def event_source(self, url: str, on_event: Callable[[str, str], None]) -> Callable[[], None]:
        stop = _once(self.real.event_source(url, on_event))
        self.stops.append(stop)
        return stop

    def crash(self) -> None:
        """The tab dies: its locks are released, its channels and sources close."""
        for stop in self.stops:
            stop()


class SettlingRemote:
    """The page's real remote: after each write the world settles (see the module
    docstring) before the device goes on, so the changelog holds the write, as in memory.

    Errors of the real network and servers (not injected ones: those are raised above
    this) are noted in ``errors``: a run expects none, as they make it take another path
    than the same program in memory.
    """

    def __init__(self, inner: Any, settle: Callable[[], Any]) -> None:
        self.inner = inner
        self.settle = settle
        self.errors: list[str] = []

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        from pysync import RemoteError

        try:
            result: dict[str, Any] = await self.inner.call(operation, payload)
            return result
        except RemoteError as error:
            self._note(operation, error)
            raise
        finally:
            if operation in WRITES:
                await self.settle()

    async def call_many(self, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        """A batch (one request to the proxy); the world settles after it if it wrote."""
        from pysync import RemoteError

        try:
            results: list[Any] = await self.inner.call_many(calls)
            for (operation, _), result in zip(calls, results, strict=True):
                if isinstance(result, RemoteError):
                    self._note(operation, result)
            return results
        finally:
            if any(operation in WRITES for operation, _ in calls):
                await self.settle()

    @property
    def in_page(self) -> bool:
        """Whether the inner remote's ``call_js`` can be used (it can, in the page)."""
        return bool(getattr(self.inner, "in_page", False))

    async def call_js(self, operation: str, payload: dict[str, Any]) -> Any:
        """A read whose response stays in JavaScript (a base sync's page)."""
        from pysync import RemoteError

        try:
            return await self.inner.call_js(operation, payload)
        except RemoteError as error:
            self._note(operation, error)
            raise

    def _note(self, operation: str, error: Any) -> None:
        if error.status == 0 or error.status >= 500 or error.retryable:
            self.errors.append(f"{operation}: {error.code} {error.status} {error}"[:200])


async def _settle_from_page() -> None:
    import js  # type: ignore[import-not-found]

    await js.modelSettle()


class PageHarness:
    """The device of one page, called with JSON by :class:`ChromiumDevice`.

    ``do_*`` methods are the harness's own; any other name is a method of the
    :class:`PyDevice` (the model's own logic, run here unchanged).
    """

    def __init__(self) -> None:
        self.device: PyDevice | None = None
        self.user: str | None = None
        #: The ids of the device on the page now (``deterministic_ids``).
        self.ids = contextlib.ExitStack()

    async def call(self, name: str, args: str) -> str:
        """``{"result": ..., "errors": [errors of the real network since the last call]}``."""
        own = getattr(self, f"do_{name}", None)
        method = own if own is not None else getattr(self.device, name)
        result = await method(*json.loads(args))
        errors: list[str] = []
        if self.device is not None:
            remote = self.device.remote.inner
            errors, remote.errors = remote.errors, []
        return json.dumps({"result": result, "errors": errors})

    async def do_open(self, config: dict[str, Any]) -> dict[str, Any] | None:
        """A device on this page's IndexedDB: fresh, or carrying on after a page reload
        (``old_layout``: its database rewritten as an older pysync stored it first, then
        opened: what :meth:`PyDevice.reopen_old_layout` answers)."""
        import js

        from pysync import HttpRemote

        await self.do_close(False)
        # Ids from a counter, apart per device and page life (in the client id too).
        self.ids.close()
        own = (config["index"] << 28) | config["life"]
        self.ids.enter_context(deterministic_ids(config["seed"], own))
        remote = SettlingRemote(
            HttpRemote(str(js.location.origin) + API_PATH, config["token"]), _settle_from_page
        )
        device = PyDevice(
            config["index"],
            remote,
            config["strategy"],
            config["user"],
            browser=PageBrowser,
            serial=True,
            options=config.get("options"),
        )
        if config.get("state"):
            device.restore(config["state"])
        self.device, self.user = device, config["user"]
        if config.get("old_layout"):  # the database as an older pysync left it, first
            upgrade: dict[str, Any] = await device.reopen_old_layout(
                config["old_layout"]["version"]
            )
            return upgrade
        await device.open()
        return None

    async def do_crash_begin(self, land: str) -> dict[str, Any]:
        """``PyDevice.crash`` up to the tab's death: a push until its first write hangs
        (sent or not, per ``land``). The page is then closed with the push still waiting;
        the new one carries on from ``state``."""
        device = self.device
        assert device is not None
        push, in_flight = await device.hang_push(land)
        outcome = (push.exception() or push.result()) if push.done() else None
        return {**device.crashed(outcome, in_flight), "state": await device.state()}

    async def do_close(self, drop: bool = True) -> None:
        """Close the replica; ``drop``: delete its IndexedDB database too (end of a seed)."""
        device, self.device = self.device, None
        if device is not None:
            with contextlib.suppress(Exception):
                await device.close()
        if drop and self.user is not None:
            await _delete_database(f"pysync:{APP}:{self.user}")


async def _delete_database(name: str) -> None:
    import js
    from pyodide.ffi import create_proxy  # type: ignore[import-not-found]

    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def finish(_event: Any) -> None:
        if not done.done():
            done.set_result(None)

    request = js.indexedDB.deleteDatabase(name)
    handler = create_proxy(finish)
    request.onsuccess = request.onerror = request.onblocked = handler
    try:
        await done
    finally:
        request.onsuccess = request.onerror = request.onblocked = None
        handler.destroy()


# == the stack: DynamoDB Local, the proxy and the stream consumer ==========================


class Stack:
    """DynamoDB Local, the proxy (uvicorn in a thread, on one socket kept across restarts)
    serving the model page, and a stream consumer in this event loop that the world
    stops, restarts or lets catch up."""

    def __init__(self, web_dir: Path, pyodide_dir: Path) -> None:
        self.web_dir, self.pyodide_dir = web_dir, pyodide_dir
        self.consumer: Any = None
        self.workers = 0
        self.markers = 0
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self.counts: Counter[str] = Counter()

    async def start(self) -> None:
        import secrets
        import socket

        from pysync.server import (
            DynamoDBAPI,
            DynamoDBLocal,
            ProxyConfig,
            Signer,
            create_tables,
            dynamodb_client,
            local_session,
        )

        self.dynamodb = DynamoDBLocal()
        await asyncio.to_thread(self.dynamodb.start)
        self.secret = secrets.token_hex(32)
        self.config = ProxyConfig(
            table=TABLE,
            dynamodb_endpoint=self.dynamodb.endpoint,
            jwt_secret=self.secret,
            rate_limit=1e6,
            rate_burst=1_000_000,
            web_dir=self.web_dir,
            pyodide_dir=self.pyodide_dir,
        )
        client = dynamodb_client(self.config, local_session())
        await asyncio.to_thread(create_tables, client, TABLE)
        self.api = DynamoDBAPI(
            Signer(self.config.region, session=local_session()), self.config.dynamodb_url
        )
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        await self.start_proxy()
        await self.start_consumer()

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.stop_consumer(abort=True)
        with contextlib.suppress(Exception):
            await self.stop_proxy()
        with contextlib.suppress(Exception):
            await self.api.aclose()
        self.sock.close()
        await asyncio.to_thread(self.dynamodb.stop)

    def token(self, user: str) -> str:
        from pysync.server import issue_token

        return issue_token(self.secret, user, ttl=24 * 3600)

    # -- the proxy --------------------------------------------------------------------

    async def start_proxy(self) -> None:
        import threading

        import uvicorn

        from pysync.server import create_app, local_session

        app = create_app(self.config, session=local_session())
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        # A duplicate of the listening socket: the server closes it when it stops, the
        # socket itself keeps listening (connections wait in its backlog meanwhile).
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock.dup()]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the proxy did not start")
            await asyncio.sleep(0.01)

    async def stop_proxy(self) -> None:
        self.server.should_exit = True
        await asyncio.to_thread(self.thread.join, 15)

    async def restart_proxy(self) -> None:
        await self.stop_proxy()
        await self.start_proxy()

    # -- the consumer -----------------------------------------------------------------

    async def start_consumer(self, max_records: int = 1000) -> Any:
        from pysync.server import Changelog, StreamConsumer

        self.workers += 1
        consumer = StreamConsumer(
            self.api,
            TABLE,
            Changelog(self.api, f"{TABLE}_changes"),
            worker_id=f"model-consumer-{self.workers}",  # a new process: a new worker
            poll_interval=0.01,
            lease_duration=1.0,  # an aborted worker's lease is taken over after 1 s
            max_records=max_records,
            # One stamp at a time, in the order of the records (as MemoryDynamo): stamps of
            # one batch landing concurrently would order their changelog entries at random.
            stamp_concurrency=1,
        )
        processed = consumer._process

        async def process(shard: str, records: list[dict[str, Any]]) -> None:
            await processed(shard, records)  # appended, and stamped where needed
            for record in records:
                keys = (record.get("dynamodb") or {}).get("Keys") or {}
                if keys.get("pk", {}).get("S") == MARKER_SCOPE:
                    waiter = self._waiting.pop(keys["sk"]["S"], None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)

        consumer._process = process
        await consumer.start()
        self.consumer = consumer
        return consumer

    async def stop_consumer(self, abort: bool = False) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            await (consumer.abort() if abort else consumer.stop())

    async def settle(self) -> None:
        """Wait until the changelog holds every write made so far (nothing if it lags)."""
        while self.consumer is not None:
            consumer = self.consumer
            stamps = consumer.stats.stamps
            self.markers += 1
            key = f"m#{self.markers}"
            waiter = asyncio.get_running_loop().create_future()
            self._waiting[key] = waiter
            item = {"pk": {"S": MARKER_SCOPE}, "sk": {"S": key}, "_v": {"N": "1"}, "_m": {"S": key}}
            await self.api.call("PutItem", {"TableName": TABLE, "Item": item})
            self.counts["settle markers"] += 1
            try:
                await asyncio.wait_for(waiter, SETTLE_TIMEOUT_S)
            except TimeoutError:
                raise RuntimeError(f"the consumer did not append marker {key}") from None
            if consumer is self.consumer and consumer.stats.stamps == stamps:
                return
            self.counts["settle rounds for stamps"] += 1

    async def catch_up(self, n: int | None) -> None:
        """A stopped consumer runs again: for good, or until it appended ``n`` more records
        (the stamps these call for are records too, counted once read), as
        ``MemoryDynamo.deliver(n)``."""
        if self.consumer is not None:
            return
        if n is None:
            await self.start_consumer()
            return
        consumer = await self.start_consumer(max_records=n)
        left = [n]
        done = asyncio.Event()
        process, streams = consumer._process, consumer.api.streams

        async def counted(shard: str, records: list[dict[str, Any]]) -> None:
            await process(shard, records)
            left[0] -= len(records)
            consumer.max_records = max(left[0], 1)

        async def read(operation: str, body: dict[str, Any]) -> dict[str, Any]:
            if operation == "GetRecords" and left[0] <= 0:
                done.set()
                await asyncio.Event().wait()  # read no further; the stop cancels this
            reply: dict[str, Any] = await streams(operation, body)
            if operation == "GetRecords" and not reply.get("Records"):
                done.set()  # nothing more was held back
            return reply

        consumer._process = counted
        # Only this consumer's reads are watched (the API object is shared).
        consumer.api = _Watched(consumer.api, read)
        await asyncio.wait_for(done.wait(), SETTLE_TIMEOUT_S)
        await self.stop_consumer()


class _Watched:
    """An API object whose ``streams`` calls go through ``watch`` (the rest unchanged)."""

    def __init__(self, api: Any, watch: Callable[..., Any]) -> None:
        self._api, self.streams = api, watch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)


# == the world and its devices =============================================================


class ChromiumDevice:
    """A :class:`~tests.model.device.Device` whose replica runs in a page of ``slot``."""

    def __init__(
        self,
        world: ChromiumWorld,
        slot: Slot,
        index: int,
        strategy: str,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.world, self.slot = world, slot
        self.index = index
        self.config = {
            "index": index,
            "strategy": strategy,
            "options": dict(options or {}),
            "user": world.user,
            "token": world.token,
            "seed": world.seed,
            "life": 0,
        }
        self.draw = _page_draws(world.seed, index)
        #: The same for old layout steps, apart: the others draw as they did before them.
        self.layout_draw = _page_draws(world.seed, index, "old_layout")

    async def _call(self, name: str, *args: Any, limit_s: float = CALL_TIMEOUT_S) -> Any:
        return await self.slot.call(name, list(args), limit_s)

    async def open(
        self, state: dict[str, Any] | None = None, old_layout: dict[str, Any] | None = None
    ) -> Any:
        return await self._call("open", {**self.config, "state": state, "old_layout": old_layout})

    async def _new_life(
        self, state: dict[str, Any], old_layout: dict[str, Any] | None = None
    ) -> Any:
        self.config["life"] += 1
        return await self.open(state, old_layout)

    def _page(self, kind: str) -> bool:
        """Whether this reload, upgrade, crash or old layout is a real page event (counted by
        kind)."""
        lab = self.world.lab
        layout = kind == "old_layout"
        page = (self.layout_draw if layout else self.draw).random() < lab.page_share
        counts = lab.layout_counts if layout else lab.counts
        counts[f"{kind}:{'page' if page else 'in page'}"] += 1
        return page

    async def edit(self, op: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("edit", op)
        return result

    async def transaction(self, ops: list[dict[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("transaction", ops)
        return result

    async def sync(self, kind: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("sync", kind)
        return result

    async def push_with_edits(self, ops: list[dict[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("push_with_edits", ops)
        return result

    async def retry(self, mid: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("retry", mid)
        return result

    async def discard(self, mid: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("discard", mid)
        return result

    async def outbox(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call("outbox")
        return result

    async def lineage(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = await self._call("lineage")
        return result

    async def documents(self) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = await self._call("documents")
        return result

    async def conflicts(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call("conflicts")
        return result

    async def reload(self, version: int | None = None) -> None:
        if not self._page("upgrade" if version is not None else "reload"):
            await self._call("reload", version)
            return
        state = await self._call("state")
        if version is not None:
            state["version"] = version
        await self.slot.reload()
        await self._new_life(state)

    async def crash(self, land: str) -> dict[str, Any]:
        if not self._page("crash"):
            result: dict[str, Any] = await self._call("crash", land)
            return result
        begun = await self._call("crash_begin", land)
        state = begun.pop("state")
        await self.slot.reopen()
        await self._new_life(state)
        return dict(begun)

    async def old_layout(self, version: int | None, land: str | None) -> dict[str, Any]:
        """In the page (``PyDevice.old_layout``), or across a real page event: the page
        reloads (``land`` None) or is closed with a push's write hanging (as a crash),
        and the next one rewrites the database before it opens it."""
        if not self._page("old_layout"):
            result: dict[str, Any] = await self._call("old_layout", version, land)
            return result
        if land is None:
            begun: dict[str, Any] = {"ok": True}
            state = await self._call("state")
            await self.slot.reload()
        else:
            begun = await self._call("crash_begin", land)
            state = begun.pop("state")
            await self.slot.reopen()
        upgrade = await self._new_life(state, {"version": version})
        return {**begun, **upgrade}

    async def set_online(self, online: bool) -> None:
        await self._call("set_online", online)

    async def advance_clock(self, ms: int) -> None:
        await self._call("advance_clock", ms)

    async def inject(self, fault: dict[str, Any]) -> None:
        await self._call("inject", fault)

    async def clear_faults(self) -> None:
        await self._call("clear_faults")

    async def late(self) -> int:
        result: int = await self._call("late")
        return result

    async def close(self) -> None:
        await self._call("close", True, limit_s=30)


def _page_draws(seed: int, index: int, kind: str = "") -> random.Random:
    """Which reloads and crashes of a device (``kind`` old_layout: which of its old layout
    steps) are real page events: drawn from the seed."""
    return random.Random(f"{seed}:{index}:{kind}" if kind else f"{seed}:{index}")


def page_events(program: Program, page_share: float) -> Counter[str]:
    """How the program's reloads, upgrades and crashes will be played, as counted in
    :attr:`ChromiumLab.counts` (``crash:page``, ``reload:in page`` ...)."""
    devices = len(program["devices"])
    draws = [_page_draws(int(program.get("seed") or 0), i) for i in range(devices)]
    kinds: Counter[str] = Counter()
    for step in program["steps"]:
        if step["do"] in ("crash", "reload", "upgrade"):
            page = draws[step["dev"] % devices].random() < page_share
            kinds[f"{step['do']}:{'page' if page else 'in page'}"] += 1
    return kinds


class ChromiumWorld:
    """The server side of one program on the lab's stack (a :class:`~tests.model.runner.World`)."""

    name = "chromium"
    table = TABLE
    stamping = True

    def __init__(self, lab: ChromiumLab, program: Program, user: str) -> None:
        self.lab, self.stack = lab, lab.stack
        self.program = program
        self.seed = int(program.get("seed") or 0)
        self.user = user
        self.scope = f"u#{user}"
        self.token = self.stack.token(user)
        self.lagging = bool(program.get("lagging"))

    async def open(self) -> None:
        """The consumer runs at the start of every program, stopped if it lags from the start."""
        if self.stack.consumer is None:
            await self.stack.start_consumer()
        if self.lagging:
            await self.stack.stop_consumer()

    async def device(self, index: int, strategy: str, options: dict[str, Any]) -> ChromiumDevice:
        slot = await self.lab.slot(index)
        device = ChromiumDevice(self, slot, index, strategy, options)
        await device.open()
        return device

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.stack.api.call(operation, payload)
        return result

    async def _query(self, table: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": {"S": self.scope}},
            "ConsistentRead": True,
        }
        while True:
            page = await self.stack.api.call("Query", request)
            items += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return items
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def changelog(self) -> list[dict[str, Any]]:
        entries = await self._query(f"{TABLE}_changes")
        return [e for e in entries if e["sk"]["N"] != "0"]

    async def items(self) -> list[dict[str, Any]]:
        return await self._query(TABLE)

    async def lag(self) -> None:
        await self.stack.stop_consumer()

    async def catch_up(self, n: int | None) -> None:
        await self.stack.catch_up(n)
        if n is None:
            self.lagging = False

    async def expire(self, keep: int) -> None:
        """The changelog's TTL removes all of the scope's entries but the newest ``keep``."""
        seqs = sorted(int(e["sk"]["N"]) for e in await self.changelog())
        doomed = seqs[: max(0, len(seqs) - keep)]
        for seq in doomed:
            key = {"pk": {"S": self.scope}, "sk": {"N": str(seq)}}
            await self.stack.api.call("DeleteItem", {"TableName": f"{TABLE}_changes", "Key": key})

    async def forget_tokens(self) -> bool:
        return False  # DynamoDB Local keeps ClientRequestTokens for 10 minutes

    async def restart_proxy(self) -> bool:
        await self.stack.restart_proxy()
        return True

    async def restart_consumer(self, abort: bool) -> bool:
        if self.stack.consumer is None:
            return False  # stopped (lagging): nothing runs to restart
        await self.stack.stop_consumer(abort=abort)
        await self.stack.start_consumer()
        return True

    async def settle(self) -> None:
        await self.stack.settle()

    async def quiet(self) -> None:
        if self.stack.consumer is None:
            await self.stack.start_consumer()
        self.lagging = False
        await self.stack.settle()

    async def close(self) -> None:
        if self.stack.consumer is None:
            await self.stack.start_consumer()


# == the browser ============================================================================


class Slot:
    """One browser context (a device's profile: its IndexedDB) and its page.

    A second page of the context boots in the background as a standby: a crash
    closes the page and goes on in the standby (a new tab of the same profile,
    whose Python has not touched storage, locks or channels before), so that
    only real reloads wait for Pyodide to boot.
    """

    def __init__(self, lab: ChromiumLab, index: int, context: BrowserContext) -> None:
        self.lab, self.index, self.context = lab, index, context
        self.page: Page | None = None
        self.standby: asyncio.Task[Page] | None = None
        self.console: deque[str] = deque(maxlen=200)
        self.broken = False
        self.boots: list[float] = []
        self.timings: list[dict[str, int]] = []

    async def _new_page(self) -> Page:
        page = await self.context.new_page()
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        await page.goto(self.lab.stack.url + "/")
        await self._booted(page)
        return page

    async def _booted(self, page: Page) -> None:
        started = time.monotonic()
        await page.wait_for_function(
            "['ready', 'error'].includes(document.body.dataset.model)", timeout=BOOT_TIMEOUT_MS
        )
        if await page.evaluate("document.body.dataset.model") != "ready":
            error = await page.evaluate("window.modelError")
            raise RuntimeError(f"the model page did not start: {error}")
        self.boots.append(time.monotonic() - started)
        self.timings.append(await page.evaluate("window.modelTimings"))

    def _prepare_standby(self) -> None:
        if self.standby is None:
            self.standby = asyncio.ensure_future(self._new_page())

    async def open_page(self) -> None:
        """A booted page (the standby if there is one), and a new standby booting."""
        if self.standby is not None:
            standby, self.standby = self.standby, None
            try:
                self.page = await standby
            except Exception:
                self.page = await self._new_page()
        else:
            self.page = await self._new_page()
        self.broken = False
        self._prepare_standby()

    async def reload(self) -> None:
        """A real page reload (same context: same IndexedDB)."""
        assert self.page is not None
        started = time.monotonic()
        await self.page.reload()
        await self._booted(self.page)
        self.lab.seconds["page reload"] += time.monotonic() - started
        self.lab.calls["page reload"] += 1

    async def reopen(self) -> None:
        """The page is closed (its tasks die with it) and another one goes on."""
        started = time.monotonic()
        if self.page is not None:
            await self.page.close()
        await self.open_page()
        self.lab.seconds["page reopen"] += time.monotonic() - started
        self.lab.calls["page reopen"] += 1

    async def close(self) -> None:
        if self.standby is not None:
            self.standby.cancel()
            await asyncio.gather(self.standby, return_exceptions=True)
        await self.context.close()

    async def call(self, name: str, args: list[Any], limit_s: float) -> Any:
        if self.page is None or self.broken:
            raise RuntimeError(f"page {self.index} is not usable")
        started = time.monotonic()
        try:
            text = await asyncio.wait_for(
                self.page.evaluate("([n, a]) => window.modelCall(n, a)", [name, json.dumps(args)]),
                limit_s,
            )
        except Exception as error:
            if "Traceback" not in str(error):  # not Python's own error: the page is gone or hung
                self.broken = True
            console = "\n    ".join(list(self.console)[-15:])
            raise RuntimeError(
                f"dev{self.index} {name}: {error}\n  console:\n    {console}"
            ) from None
        finally:
            self.lab.seconds[name] += time.monotonic() - started
            self.lab.calls[name] += 1
        reply = json.loads(text)
        self.lab.errors += [f"dev{self.index} {name}: {error}" for error in reply["errors"]]
        return reply["result"]


class ChromiumLab:
    """The stack and a browser, shared by every program of a run (see :func:`chromium_lab`)."""

    def __init__(
        self, stack: Stack, browser: Browser, page_share: float, differential: bool
    ) -> None:
        self.stack, self.browser = stack, browser
        self.page_share = page_share
        self.differential = differential
        self.slots: dict[int, Slot] = {}
        self.users: Counter[int] = Counter()
        self.counts: Counter[str] = Counter()
        #: How old layout steps were played (``old_layout:page``, ``old_layout:in page``),
        #: apart from :attr:`counts`, which :func:`page_events` foretells.
        self.layout_counts: Counter[str] = Counter()
        #: Errors of the real network and servers the pages met (expected: none).
        self.errors: list[str] = []
        #: Programs whose step log differed from memory's: (seed, where). Both runs may
        #: be right (the oracle judges each): the browser and the stack interleave a
        #: push's concurrent requests otherwise than memory, so an injected fault may hit
        #: another write. A difference is a lead, not a failure.
        self.divergences: list[tuple[Any, str]] = []
        #: Time spent in (and number of) calls into the pages, by name.
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    async def slot(self, index: int) -> Slot:
        """The page of device ``index`` (a new context the first time; a new page if the
        last one broke)."""
        slot = self.slots.get(index)
        if slot is None:
            context = await self.browser.new_context()
            await context.expose_function("modelSettle", self.stack.settle)
            slot = self.slots[index] = Slot(self, index, context)
            await slot.open_page()
        elif slot.broken or slot.page is None or slot.page.is_closed():
            await slot.reopen()
        return slot

    def world(self, program: Program) -> ChromiumWorld:
        """A world for ``program``: its own user (scope, IndexedDB databases), these pages."""
        seed = int(program.get("seed") or 0)
        self.users[seed] += 1
        again = f"-{self.users[seed]}" if self.users[seed] > 1 else ""
        return ChromiumWorld(self, program, f"model-s{seed}{again}")

    async def run(self, program: Program) -> Outcome:
        """Run ``program`` in Chromium (its page events counted in ``outcome.ops``); with
        ``differential``, in memory too (see :attr:`divergences`)."""
        from .runner import run_program

        before, layouts = Counter(self.counts), Counter(self.layout_counts)
        outcome = await run_program(program, self.world(program))
        outcome.ops.update({f"chromium {k}": v for k, v in (self.counts - before).items()})
        outcome.ops.update({f"chromium {k}": v for k, v in (self.layout_counts - layouts).items()})
        if self.differential:
            with deterministic_ids(program.get("seed")):
                memory = await run_program(program, memory_world(program))
            difference = first_difference(memory.log, outcome.log)
            same = "same as" if difference is None else "differs from"
            outcome.ops[f"chromium: step log {same} memory's"] += 1
            if difference is not None:
                seed = program.get("seed")
                self.divergences.append((seed, difference))
                logger.warning("seed %s: memory's step log differs %s", seed, difference)
                outcome.log.append(f"differential: memory's step log differs {difference}")
        return outcome


# == the same program in memory ==========================================================


def memory_world(program: Program) -> Any:
    """The memory world of the differential: the page's device discipline (calls in
    line) and the stack's ClientRequestTokens (never forgotten within a run)."""
    from .memory import MemoryWorld

    class StackLikeMemory(MemoryWorld):
        async def device(self, index: int, strategy: str, options: dict[str, Any]) -> PyDevice:
            connection = self.db.connection()
            device = PyDevice(index, connection, strategy, self.user, serial=True, options=options)
            await device.open()
            return device

        async def forget_tokens(self) -> bool:
            return False  # as the stack (DynamoDB Local keeps them ten minutes)

    return StackLikeMemory(program)


def _canonical(text: str) -> str:
    """Python literals in a log line (dicts, lists) with their keys sorted: a document read
    back from IndexedDB or DynamoDB keeps its fields in another order."""
    import ast

    out, i = [], 0
    while i < len(text):
        if text[i] not in "{[":
            out.append(text[i])
            i += 1
            continue
        depth, j = 0, i
        for j in range(i, len(text)):
            depth += (text[j] in "{[") - (text[j] in "}]")
            if depth == 0:
                break
        chunk = text[i : j + 1]
        try:
            out.append(json.dumps(ast.literal_eval(chunk), sort_keys=True))
        except (ValueError, SyntaxError):
            out.append(chunk)
        i = j + 1
    return "".join(out)


def normalized(log: list[str]) -> list[str]:
    """A run's step log as any world would write it: ids numbered by first appearance,
    the user's scope, the consumer's stamp event ids and the push's write capacity
    blanked (DynamoDB Local reports 2.0 for any transaction, the fake bills each item
    as DynamoDB does), literals canonical."""
    import re

    ids: dict[str, str] = {}
    lines = []
    for line in log:
        if line.startswith("Traceback"):
            continue
        line = re.sub(r"u#[\w~-]+", "u#USER", line)
        line = re.sub(r"stamp:[0-9a-f-]+", "stamp:X", line)
        line = re.sub(r"\b[0-9a-f]{32}\b", lambda m: ids.setdefault(m[0], f"id{len(ids)}"), line)
        line = _canonical(line)
        lines.append(re.sub(r'"capacity_units":\s*[0-9.]+', '"capacity_units": N', line))
    return lines


def first_difference(memory: list[str], chromium: list[str]) -> str | None:
    """Where two step logs of one program part (``None``: nowhere)."""
    a, b = normalized(memory), normalized(chromium)
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            step = next((line for line in reversed(a[:i]) if line[:1].isdigit()), "setup")
            return f"after {step[:120]!r}: memory {x[:300]!r}, chromium {y[:300]!r}"
    if len(a) != len(b):
        return f"memory's log has {len(a)} lines, chromium's {len(b)}"
    return None


# == the page served to the browser =========================================================

_INDEX_HTML = """<!doctype html>
<meta charset="utf-8"><title>pysync model device</title><link rel="icon" href="data:,">
<body data-model="loading"><script type="module" src="model.js"></script></body>
"""

_MODEL_JS = """
// Boots Pyodide, unpacks pysync and the model (bundle.zip), and exposes
// window.modelCall(name, argsJson) -> resultJson on tests.model.chromium.PageHarness.
const timings = (window.modelTimings = {});
const mark = (step) => (timings[step] = Math.round(performance.now()));
try {
  const { loadPyodide } = await import("/pyodide/pyodide.mjs");
  const pyodide = await loadPyodide({ indexURL: "/pyodide/" });
  mark("pyodide");
  const bundle = await fetch("bundle.zip", { cache: "no-store" });
  if (!bundle.ok) throw new Error(`bundle.zip: HTTP ${bundle.status}`);
  pyodide.unpackArchive(await bundle.arrayBuffer(), "zip", { extractDir: "/home/pyodide/model" });
  await pyodide.runPythonAsync(`
import sys
sys.path.insert(0, "/home/pyodide/model")
from tests.model.chromium import PageHarness
harness = PageHarness()
`);
  mark("harness");
  const harness = pyodide.globals.get("harness");
  window.modelCall = (name, args) => harness.call(name, args);
  document.body.dataset.model = "ready";
} catch (error) {
  window.modelError = String((error && error.stack) || error);
  document.body.dataset.model = "error";
}
"""

_RUNTIME = (
    "pyodide.mjs",
    "pyodide.asm.mjs",
    "pyodide.asm.wasm",
    "python_stdlib.zip",
    "pyodide-lock.json",
)


def build_site(target: Path) -> tuple[Path, Path]:
    """The page (``web/``) with a zip of ``src/pysync`` and the model as they are now, and a
    private copy of the Pyodide runtime (``pyodide/``; others rebuild ``build/pyodide``)."""
    import shutil
    import zipfile

    dist = ROOT / "build" / "pyodide"
    missing = [name for name in _RUNTIME if not (dist / name).exists()]
    if missing:
        raise FileNotFoundError(f"{dist} lacks {missing}: run ./run.sh setup")
    web, pyodide = target / "web", target / "pyodide"
    web.mkdir(parents=True)
    pyodide.mkdir()
    for name in _RUNTIME:
        shutil.copyfile(dist / name, pyodide / name)
    (web / "index.html").write_text(_INDEX_HTML)
    (web / "model.js").write_text(_MODEL_JS)
    with zipfile.ZipFile(web / "bundle.zip", "w", zipfile.ZIP_DEFLATED) as bundle:
        for base, pattern in ((ROOT / "src", "pysync/**/*"), (ROOT, "tests/model/*.py")):
            for path in sorted(base.glob(pattern)):
                if path.is_file() and "__pycache__" not in path.parts:
                    bundle.write(path, path.relative_to(base).as_posix())
        bundle.write(ROOT / "tests" / "__init__.py", "tests/__init__.py")
    return web, pyodide


@contextlib.asynccontextmanager
async def chromium_lab(
    devices: int = 3, page_share: float = 0.5, differential: bool = True
) -> AsyncIterator[ChromiumLab]:
    """Start the stack and Chromium with ``devices`` pages booted; yield the lab.

    ``page_share``: the share of reloads and crashes that are real page reloads and
    page closes (the others reconnect or cancel inside the page). ``differential``:
    each program also runs in memory and the step logs are compared
    (:attr:`ChromiumLab.divergences`).
    """
    import tempfile

    from playwright.async_api import async_playwright

    from tests._browser_config import config

    with tempfile.TemporaryDirectory(prefix="pysync-model-") as tmp:
        web, pyodide = build_site(Path(tmp))
        stack = Stack(web, pyodide)
        await stack.start()
        try:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=config.CHROMIUM_EXECUTABLE, args=config.CHROMIUM_ARGS
                )
                lab = ChromiumLab(stack, browser, page_share, differential)
                try:
                    await asyncio.gather(*(lab.slot(i) for i in range(devices)))
                    yield lab
                finally:
                    for slot in lab.slots.values():
                        with contextlib.suppress(Exception):
                            await slot.close()
                    await browser.close()
        finally:
            await stack.stop()
