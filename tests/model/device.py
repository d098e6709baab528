"""A device behind a small async, JSON-friendly interface, and its CPython implementation.

:class:`Device` is what a runner drives: plain dicts in, plain dicts out, so a
device can equally be a replica in this process (:class:`PyDevice`, on the
in-memory browser of ``pysync.testing``) or one in a Chromium page (an adapter
that forwards the same calls to the page). Faults of the device's network are
injected through :meth:`Device.inject`; a CPython device runs them in a
:class:`FaultyRemote` around the real remote (``MemoryDynamo`` or the proxy over HTTP).

Every edit result says what the edit was made on and where it went::

    {"ok": True, "id": "a", "pre": {...} | None, "post": {...} | None, "mid": "…" | None,
     "entry": 17 | None, "cancelled": [12]}

``pre``/``post`` are the document before and after (without system fields);
``entry`` and ``mid`` are the number and mutation id of the outbox entry the edit
created or folded into (``None``: it changed nothing); ``cancelled`` the entries
it removed (a delete of a record created here and never pushed).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any, Protocol
from unittest import mock

import pysync
from pysync import (
    AppSchema,
    CollectionSpec,
    DocumentExistsError,
    DocumentNotFoundError,
    Index,
    RemoteError,
    Sync,
)
from pysync.testing import MemoryBrowser

from .program import APP, COUNTERS, DOCS

TABLE = "pysync_model"
START_MS = 1_800_000_000_000  # January 2027 (tombstone TTLs stay in the future)
WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"})

Doc = dict[str, Any]


def schema(version: int) -> AppSchema:
    """The app's schema at ``version``: each upgrade adds an index and a migration step.

    The steps rebuild every document (dropping a field nobody writes), so stored
    documents and queued changes go through the migration without changing, and
    devices on different versions still agree with the server.
    """
    docs = tuple(Index(f"x{v}", "x") for v in range(2, version + 1))
    counters = tuple(Index(f"tag{v}", "tag") for v in range(2, version + 1))

    def step(_collection: str, doc: Doc) -> Doc:
        return {k: v for k, v in doc.items() if k != "legacy"}

    return AppSchema(
        version,
        {DOCS: CollectionSpec(indexes=docs), COUNTERS: CollectionSpec(indexes=counters)},
        migrations={v: step for v in range(2, version + 1)},
    )


def union_remote_wins(base: Doc | None, local: Doc | None, remote: Doc | None) -> Doc | None:
    """The callback strategy: both sides' fields, the server's on a clash."""
    if local is None or remote is None:
        return remote if remote is not None else local
    return {**local, **remote}


STRATEGY = {"lww": "lww", "server": "server", "client": "client", "callback": union_remote_wins}


class Device(Protocol):
    """One device of the user, as a runner drives it (every argument and result is JSON)."""

    index: int

    async def edit(self, op: dict[str, Any]) -> dict[str, Any]: ...

    async def transaction(self, ops: list[dict[str, Any]]) -> dict[str, Any]:
        """``{"ok", "error", "edits": [edit result per op]}``; all or nothing."""
        ...

    async def sync(self, kind: str) -> dict[str, Any]:
        """``kind``: sync, push or pull. ``{"ok", "error", "report"}``."""
        ...

    async def push_with_edits(self, ops: list[dict[str, Any]]) -> dict[str, Any]:
        """A push during whose first write (in flight) ``ops`` are made:
        ``{"ok", "error", "report", "edits", "in_flight": bool}``."""
        ...

    async def retry(self, mid: str) -> dict[str, Any]: ...

    async def discard(self, mid: str) -> dict[str, Any]: ...

    async def outbox(self) -> list[dict[str, Any]]: ...

    async def lineage(self) -> dict[str, list[str]]:
        """Every mutation id each outbox entry (by its number ``n``) carried so far (a
        merged change may be sent under a new id)."""
        ...

    async def documents(self) -> dict[str, dict[str, Doc]]:
        """``{collection: {id: document}}``."""
        ...

    async def conflicts(self) -> list[dict[str, Any]]: ...

    async def reload(self, version: int | None = None) -> None:
        """Close the replica and open it again on the same storage (``version``: upgrade)."""
        ...

    async def crash(self, land: str) -> dict[str, Any]:
        """Cancel a push while a write is in flight, then reconnect. ``land``: the write
        lands (``yes``), never does (``no``) or lands at the next step (``later``)."""
        ...

    async def old_layout(self, version: int | None, land: str | None) -> dict[str, Any]:
        """Rewrite the database as the pysync before outbox layout 2 stored it and open it
        again with today's (``version``: a higher app version too; ``land``: crash first,
        as :meth:`crash`). ``{"ok", "in_flight"?, "entries", "states", "grouped",
        "transactions", "problems": [what the upgrade did not keep]}``."""
        ...

    async def set_online(self, online: bool) -> None: ...

    async def advance_clock(self, ms: int) -> None: ...

    async def inject(self, fault: dict[str, Any]) -> None:
        """``{"kind": "lose", "n", "status"}`` (applied, reply lost),
        ``{"kind": "fail", "n", "code", "status", "writes": bool}`` (refused before) or
        ``{"kind": "batch_lost", "n"}`` (a batch applied, its whole reply lost)."""
        ...

    async def clear_faults(self) -> None:
        """Forget injected faults; deliver writes still held back (``later``)."""
        ...

    async def late(self) -> int:
        """Deliver writes a crash left on the way (``later``); how many."""
        ...

    async def close(self) -> None: ...


# -- the network of a CPython device ----------------------------------------------------


#: Requests one device operation may send before the runner calls it a livelock.
BUDGET = 3000
#: Seconds a push cancelled by a crash may take to end (it has nothing left to wait for:
#: the hanging write is cancelled with it).
CANCEL_SECONDS = 5.0


class Livelock(Exception):
    """A device operation kept sending requests without end."""


class FaultyRemote:
    """A :class:`~pysync.Remote` around another one, failing on purpose.

    Offline: every call fails with a network error (nothing is sent). Rules
    apply to the next matching calls: ``fail`` (refuse before sending),
    ``lose`` (send, then lose the reply of the next call that succeeds),
    ``hook`` (run a coroutine just before sending), ``hang`` (send or not, then
    never answer: a crash point), ``batch_lost`` (a batch: see below).

    Batches: when the inner remote has ``call_many`` (``MemoryDynamo``'s
    connection, the proxy's ``Pysync_20261205.Batch`` over HTTP) so does this
    one, and the pusher sends the calls it starts together through it. Each
    call of a batch meets the rules as it would alone, in the batch's order:
    offline and ``fail`` answer it without sending it, its ``hook`` runs (and
    ``on_write`` is awaited) before the batch leaves, ``lose`` takes the reply
    of a call that succeeded. The calls that are sent go to the inner
    ``call_many`` together, except around a ``hang``: the calls before it go
    (their answers wait with the batch's), the hanging call goes (or not) alone,
    and the calls after it are never sent; the batch never answers. One fault
    only a batch has: ``batch_lost``, the reply of the next batch of two or more
    calls with a write among them is lost after all its calls were dealt with
    (each gets a network error).
    """

    def __init__(self, inner: Any, serial: bool = False) -> None:
        self.inner = inner
        #: One request at a time (a call, or a batch), each letting the others queue
        #: first: the calls go in the order a push makes them whatever the transport,
        #: and a hanging write holds the line (no sibling request on its way when a
        #: crash cuts the push).
        self.lock = asyncio.Lock() if serial else None
        self.offline = False
        self.rules: list[dict[str, Any]] = []
        self.held: list[tuple[str, dict[str, Any]]] = []  # sent, arriving later
        self.hung = asyncio.Event()
        self.calls = 0
        self.budget = self.limit = BUDGET
        self.on_write: Any = None  # awaited before each write is sent (the device notes its outbox)
        #: Batches and their sizes (calls), and batch replies lost, so far.
        self.batches: Counter[int] = Counter()
        self.batches_lost = 0
        #: The tasks sending a batch (the batcher's own, which a cancelled push does not
        #: cancel): a crash cuts them (:meth:`cut`).
        self.sending: set[asyncio.Task[Any]] = set()
        if callable(getattr(inner, "call_many", None)):
            self.call_many = self._call_many
        # In a page, a base sync's pages come through call_js (kept in JavaScript).
        if callable(getattr(inner, "call_js", None)):
            self.call_js = self._call_js

    @property
    def in_page(self) -> bool:
        """Whether the inner remote's ``call_js`` can be used (the page's fetch)."""
        return bool(getattr(self.inner, "in_page", False))

    def _take(self, kind: str, operation: str) -> dict[str, Any] | None:
        for rule in self.rules:
            if rule["kind"] == kind and (operation in WRITES or not rule.get("writes", True)):
                rule["n"] -= 1
                if rule["n"] <= 0:
                    self.rules.remove(rule)
                return rule
        return None

    def _spend(self, operation: str) -> None:
        self.calls += 1
        self.budget -= 1
        if self.budget < 0:
            raise Livelock(f"more than {self.limit} requests in one operation ({operation})")

    @staticmethod
    def _lost(rule: dict[str, Any]) -> RemoteError:
        if rule.get("status", 0) >= 500:
            return RemoteError("InternalServerError", "applied, then 500", 500, {})
        return RemoteError("NetworkError", "the reply was lost", 0, {})

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._in_line(operation, payload, self.inner.call)
        return result

    async def _call_js(self, operation: str, payload: dict[str, Any]) -> Any:
        """``call_js`` (offered when the inner remote has it): the same rules as ``call``."""
        return await self._in_line(operation, payload, self.inner.call_js)

    async def _in_line(self, operation: str, payload: dict[str, Any], send: Any) -> Any:
        if self.lock is None:
            return await self._call(operation, payload, send)
        async with self.lock:
            await asyncio.sleep(0)
            return await self._call(operation, payload, send)

    async def _call(self, operation: str, payload: dict[str, Any], send: Any) -> Any:
        self._spend(operation)
        if self.offline:
            raise RemoteError("NetworkError", "offline", 0, {})
        hook = self._take("hook", operation)
        if hook is not None:
            await hook["fn"]()
        if operation in WRITES and self.on_write is not None:
            await self.on_write()
        fail = self._take("fail", operation)
        if fail is not None:
            raise RemoteError(fail["code"], "injected", fail["status"], {})
        hang = self._take("hang", operation)
        if hang is not None:
            await self._hang(operation, payload, hang)
        result = await send(operation, payload)
        lose = self._take("lose", operation)
        if lose is not None:
            raise self._lost(lose)
        return result

    async def _hang(self, operation: str, payload: dict[str, Any], rule: dict[str, Any]) -> None:
        """Send the call or not (per the rule's ``land``), then never answer."""
        if rule["land"] == "yes":
            with contextlib.suppress(RemoteError):
                await self.inner.call(operation, copy.deepcopy(payload))
        elif rule["land"] == "later":
            self.held.append((operation, copy.deepcopy(payload)))
        self.hung.set()
        await asyncio.Event().wait()  # never answers; the crash cancels it

    async def _call_many(
        self, calls: list[tuple[str, dict[str, Any]]]
    ) -> list[dict[str, Any] | RemoteError]:
        """``call_many`` (offered when the inner remote has it): see the class."""
        task = asyncio.current_task()
        assert task is not None
        self.sending.add(task)
        try:
            if self.lock is None:
                return await self._many(calls)
            async with self.lock:
                await asyncio.sleep(0)
                return await self._many(calls)
        finally:
            self.sending.discard(task)

    async def _many(
        self, calls: list[tuple[str, dict[str, Any]]]
    ) -> list[dict[str, Any] | RemoteError]:
        self.batches[len(calls)] += 1
        if self.offline:
            for operation, _ in calls:
                self._spend(operation)
            return [RemoteError("NetworkError", "offline", 0, {}) for _ in calls]
        # Each call meets the rules in order, as alone; a hanging one ends the walk (the
        # calls after it are never sent: they cost nothing and take no rule).
        answers: list[dict[str, Any] | RemoteError | None] = [None] * len(calls)
        hooks: list[dict[str, Any]] = []
        hang: tuple[int, dict[str, Any]] | None = None
        for i, (operation, _) in enumerate(calls):
            self._spend(operation)
            hook = self._take("hook", operation)
            if hook is not None:
                hooks.append(hook)
            fail = self._take("fail", operation)
            if fail is not None:
                answers[i] = RemoteError(fail["code"], "injected", fail["status"], {})
                continue
            rule = self._take("hang", operation)
            if rule is not None:
                hang = (i, rule)
                break
        walked = calls if hang is None else calls[: hang[0] + 1]
        for hook in hooks:
            await hook["fn"]()
        if self.on_write is not None and any(op in WRITES for op, _ in walked):
            await self.on_write()
        before = len(calls) if hang is None else hang[0]
        sent = [i for i in range(before) if answers[i] is None]
        if sent:
            replies = await self.inner.call_many([calls[i] for i in sent])
            for i, reply in zip(sent, replies, strict=True):
                answers[i] = reply
        if hang is not None:
            await self._hang(*calls[hang[0]], hang[1])
        writes = [op for op, _ in calls if op in WRITES]
        if len(calls) > 1 and writes and self._take("batch_lost", writes[0]) is not None:
            self.batches_lost += 1
            return [RemoteError("NetworkError", "the batch's reply was lost", 0, {}) for _ in calls]
        for i in sent:
            if isinstance(answers[i], dict):
                lose = self._take("lose", calls[i][0])
                if lose is not None:
                    answers[i] = self._lost(lose)
        return [answer for answer in answers if answer is not None]  # every one answered

    def cut(self) -> None:
        """The tab dies: the batches it has out die with it (a crash)."""
        for task in list(self.sending):
            task.cancel()

    async def deliver_held(self) -> int:
        held, self.held = self.held, []
        for operation, payload in held:
            with contextlib.suppress(RemoteError):
                await self.inner.call(operation, payload)
        return len(held)


# -- deterministic ids ------------------------------------------------------------------


@contextlib.contextmanager
def deterministic_ids(seed: int | None, own: int = 0) -> Iterator[None]:
    """Mutation ids, group ids and client ids from a counter (a run replays exactly).

    ``own``: a number (below 2**32) for ids apart from every other counter's of the seed
    (a page's: its device and page life): the counter's high half, so in the client id too.
    """
    counter = itertools.count((own << 32) + 1)
    prefix = f"{(seed or 0) & 0xFFFFFFFF:08x}"

    def new_id() -> str:
        # The counter first: a client id is the first 16 digits, and each device's
        # must differ (it breaks ties of hybrid logical clocks).
        return f"{next(counter):016x}{prefix}{0:08x}"

    with contextlib.ExitStack() as stack:
        for name, module in list(sys.modules.items()):
            own = name.startswith("pysync.") and name != "pysync._documents"
            if own and callable(getattr(module, "new_id", None)):
                stack.enter_context(mock.patch.object(module, "new_id", new_id))
        yield


async def no_sleep(_: float) -> None:
    return None


# -- a replica in this process ---------------------------------------------------------


def _apply(op: dict[str, Any], doc: Doc | None, key: Any) -> Doc | None:
    """What a local edit makes of ``doc`` (the public API's semantics)."""
    kind = op["op"]
    if kind in ("put", "add"):
        return {"id": key, **op["doc"]}
    if kind == "delete":
        return None
    assert doc is not None
    if kind == "patch":
        return {**doc, **op["set"]}
    return {**doc, op["field"]: doc.get(op["field"], 0) + op["by"]}


def _removed(before: list[Doc], after: list[Doc]) -> list[int]:
    """The outbox entries an edit removed (a create never pushed, deleted), by number."""
    left = {entry["n"] for entry in after}
    return [int(entry["n"]) for entry in before if entry["n"] not in left]


class PyDevice:
    """A device: its own browser profile (storage, clock), replica, sync engine and network."""

    def __init__(
        self,
        index: int,
        remote: Any,
        strategy: str,
        user: str,
        table: str = TABLE,
        *,
        browser: Callable[..., Any] = MemoryBrowser,
        serial: bool = False,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.index = index
        self.table = table
        self.user = user
        self.strategy = strategy
        #: ``Sync``'s push options (``push_batch``, ``pack_size``, ``push_concurrency``);
        #: the library's defaults for those not given.
        self.options = dict(options or {})
        #: ``MemoryBrowser`` or what stands for it (``tab()``, ``now_ms``, ``set_online``),
        #: made by ``browser(now_ms=...)``.
        self.browser = browser(now_ms=START_MS + 1000 * index)
        self.remote = FaultyRemote(remote, serial=serial)
        self.version = 1
        self.replica: pysync.Replica | None = None
        self.tab: Any = None
        self.engine: Sync | None = None
        #: Each outbox entry (by its number) and every mutation id it carried: a merged
        #: change may be sent under a new id. Noted whenever the outbox is read and
        #: before each write leaves.
        self.carried: dict[int, list[str]] = {}
        self.remote.on_write = self._note_outbox

    def _note(self, entries: list[Doc]) -> None:
        for entry in entries:
            mids = self.carried.setdefault(int(entry["n"]), [])
            if entry["mid"] not in mids:
                mids.append(str(entry["mid"]))

    async def _note_outbox(self) -> None:
        if self.replica is not None and not self.replica.closed:
            self._note(await self.replica.outbox())

    async def lineage(self) -> dict[str, list[str]]:
        """Every mutation id each outbox entry (by number) carried so far."""
        await self._note_outbox()
        return {str(n): list(mids) for n, mids in self.carried.items()}

    async def open(self) -> None:
        self.tab = self.browser.tab()
        self.replica = await pysync.connect(APP, self.user, schema(self.version), platform=self.tab)
        self.engine = Sync(
            self.replica,
            self.remote,
            table=self.table,
            sleep=no_sleep,
            strategy=STRATEGY[self.strategy],  # type: ignore[arg-type]
            **self.options,
        )

    @property
    def db(self) -> pysync.Replica:
        assert self.replica is not None
        return self.replica

    # -- edits ----------------------------------------------------------------------

    async def _entries(self, targets: list[tuple[str, Any]]) -> dict[tuple[str, Any], list[Doc]]:
        found: dict[tuple[str, Any], list[Doc]] = {t: [] for t in targets}
        outbox = await self.db.outbox()
        self._note(outbox)
        for entry in outbox:
            target = (entry["collection"], entry["id"])
            if target in found:
                found[target].append(entry)
        return found

    @staticmethod
    def _changed(before: list[Doc], after: list[Doc]) -> Doc | None:
        """The entry an edit created or changed (``None``: it removed one, or did nothing)."""
        for entry in after:
            if entry not in before:
                return entry
        return None

    async def edit(self, op: dict[str, Any]) -> dict[str, Any]:
        coll = self.db[op["coll"]]
        key = op.get("id")
        pre = await coll.get(key) if key is not None else None
        target = (op["coll"], key)
        before = (await self._entries([target]))[target] if key is not None else []
        try:
            kind = op["op"]
            if kind == "put":
                post: Doc | None = await coll.put({"id": key, **op["doc"]})
            elif kind == "add":
                post = await coll.add({"id": key, **op["doc"]} if key is not None else op["doc"])
                key = post["id"]
                target = (op["coll"], key)
            elif kind == "patch":
                post = await coll.patch(key, op["set"])
            elif kind == "increment":
                post = await coll.increment(key, op["field"], op["by"])
            else:
                await coll.delete(key)
                post = None
        except (DocumentNotFoundError, DocumentExistsError) as error:
            return {"ok": False, "error": type(error).__name__, "id": key, "pre": pre}
        after = (await self._entries([target]))[target]
        changed = self._changed(before, after)
        return {
            "ok": True,
            "id": key,
            "pre": pre,
            "post": post,
            "mid": None if changed is None else changed["mid"],
            "entry": None if changed is None else changed["n"],
            "cancelled": _removed(before, after),
        }

    async def transaction(self, ops: list[dict[str, Any]]) -> dict[str, Any]:
        targets = list(dict.fromkeys((op["coll"], op["id"]) for op in ops))
        docs = {t: await self.db[t[0]].get(t[1]) for t in targets}
        before = await self._entries(targets)
        everything = await self.documents()
        outbox = await self.db.outbox()
        try:
            async with self.db.transaction() as tx:
                for op in ops:
                    coll, key, kind = op["coll"], op["id"], op["op"]
                    if kind in ("put", "add"):
                        tx.put(coll, {"id": key, **op["doc"]})
                    elif kind == "patch":
                        tx.patch(coll, key, op["set"])
                    elif kind == "increment":
                        tx.increment(coll, key, op["field"], op["by"])
                    else:
                        tx.delete(coll, key)
        except (DocumentNotFoundError, DocumentExistsError) as error:
            # All or nothing: nothing of it was written.
            unchanged = await self.documents() == everything and await self.db.outbox() == outbox
            return {"ok": False, "error": type(error).__name__, "atomic": unchanged}
        after = await self._entries(targets)
        edits = []
        for op in ops:
            target = (op["coll"], op["id"])
            pre = docs[target]
            docs[target] = _apply(op, pre, op["id"])
            edits.append({"ok": True, "id": op["id"], "pre": pre, "post": docs[target]})
        for op, edit in zip(ops, edits, strict=True):
            target = (op["coll"], op["id"])
            changed = self._changed(before[target], after[target])
            edit["mid"] = None if changed is None else changed["mid"]
            edit["entry"] = None if changed is None else changed["n"]
            edit["cancelled"] = _removed(before[target], after[target])
            if op["op"] == "delete" and edit["pre"] is None:
                edit["mid"] = edit["entry"] = None  # a delete of nothing writes nothing
        actual = {t: await self.db[t[0]].get(t[1]) for t in targets}
        return {"ok": True, "edits": edits, "as_applied": actual == docs}

    # -- sync -----------------------------------------------------------------------

    async def sync(self, kind: str) -> dict[str, Any]:
        assert self.engine is not None
        self.remote.budget = self.remote.limit
        try:
            report = await getattr(self.engine, kind)()
        except RemoteError as error:
            return {"ok": False, "error": error.code}
        return {"ok": True, "report": asdict(report)}

    async def push_with_edits(self, ops: list[dict[str, Any]]) -> dict[str, Any]:
        edits: list[dict[str, Any]] = []

        async def during() -> None:
            for op in ops:
                edits.append(await self.edit(op))

        self.remote.rules.insert(0, {"kind": "hook", "n": 1, "fn": during})
        result = await self.sync("push")
        in_flight = bool(edits)
        self.remote.rules = [r for r in self.remote.rules if r.get("fn") is not during]
        if not in_flight:
            await during()
        return {**result, "edits": edits, "in_flight": in_flight}

    async def retry(self, mid: str) -> dict[str, Any]:
        await self.db.retry(mid)
        return {"ok": True}

    async def discard(self, mid: str) -> dict[str, Any]:
        await self.db.discard(mid)
        return {"ok": True}

    # -- reads ----------------------------------------------------------------------

    async def outbox(self) -> list[dict[str, Any]]:
        entries = [dict(e) for e in await self.db.outbox()]
        self._note(entries)
        return entries

    async def documents(self) -> dict[str, dict[str, Doc]]:
        return {
            name: {doc["id"]: doc for doc in await self.db[name].query()}
            for name in (DOCS, COUNTERS)
        }

    async def conflicts(self) -> list[dict[str, Any]]:
        return [dict(c) for c in await self.db.store.query("_conflicts")]

    # -- life cycle -----------------------------------------------------------------

    async def reload(self, version: int | None = None) -> None:
        self.db.close()
        if version is not None:
            self.version = version
        await self.open()

    async def hang_push(self, land: str) -> tuple[asyncio.Future[Any], bool]:
        """A push until its first write hangs in flight (sent or not, per ``land``): the
        push (still waiting, or done) and whether a write hangs. The tab dies next: this
        returns without letting the push run any further."""
        assert self.engine is not None
        self.remote.budget = self.remote.limit
        self.remote.hung.clear()
        rule = {"kind": "hang", "n": 1, "land": land}
        self.remote.rules.insert(0, rule)
        push = asyncio.ensure_future(self.engine.push())
        waiter = asyncio.ensure_future(self.remote.hung.wait())
        await asyncio.wait({push, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if rule in self.remote.rules:
            self.remote.rules.remove(rule)
        return push, self.remote.hung.is_set()

    @staticmethod
    def crashed(outcome: Any, in_flight: bool) -> dict[str, Any]:
        """What :meth:`crash` answers for the push's ``outcome`` (result or exception)."""
        if not isinstance(outcome, BaseException) or isinstance(
            outcome, asyncio.CancelledError | pysync.DatabaseClosedError
        ):
            return {"ok": True, "in_flight": in_flight}
        if isinstance(outcome, RemoteError):
            return {"ok": False, "in_flight": in_flight, "error": outcome.code}
        raise outcome  # the push failed otherwise: a bug

    async def crash(self, land: str) -> dict[str, Any]:
        result = await self._die(land)
        await self.open()
        return result

    async def _die(self, land: str) -> dict[str, Any]:
        """:meth:`crash` up to the tab's death (its database closed, not opened again)."""
        push, in_flight = await self.hang_push(land)
        # The tab dies: nothing of it runs again (its store is closed before the
        # cancelled push could write to it).
        push.cancel()
        self.remote.cut()  # its batches out too (the batcher's tasks, not the push's)
        self.db.close()
        self.tab.crash()
        await asyncio.wait({push}, timeout=CANCEL_SECONDS)
        if not push.done():
            raise Livelock(f"the push went on {CANCEL_SECONDS:g} s after it was cancelled")
        outcome = (await asyncio.gather(push, return_exceptions=True))[0]
        return self.crashed(outcome, in_flight)

    async def old_layout(
        self, version: int | None = None, land: str | None = None
    ) -> dict[str, Any]:
        """Close the replica (``land``: crash it as :meth:`crash` does), rewrite its
        database as the pysync before outbox layout 2 stored it (:mod:`.layout`) and open
        it again with today's, at ``version`` if given (an app upgrade at once). What
        the rewrite found, and ``problems``: what today's pysync did not keep of it."""
        if land is None:
            self.db.close()
            result: dict[str, Any] = {"ok": True}
        else:
            result = await self._die(land)
        return {**result, **await self.reopen_old_layout(version)}

    async def reopen_old_layout(self, version: int | None = None) -> dict[str, Any]:
        """:meth:`old_layout` once the replica is closed (or its tab gone)."""
        from .layout import OUTBOX, rewrite_as_layout_1

        tab = self.browser.tab()
        delete = getattr(tab, "delete_store", None)
        if delete is None:  # the in-memory browser
            delete = self.browser.storage.delete_database
        current = schema(self.version).store_schema(f"pysync:{APP}:{self.user}")
        found = await rewrite_as_layout_1(tab, delete, current, self.version)
        if version is not None:
            self.version = version
        await self.open()
        entries = found["old"][OUTBOX]
        return {
            "entries": len(entries),
            "states": dict(sorted(Counter(str(e["state"]) for e in entries).items())),
            "grouped": sum(1 for e in entries if e.get("group") is not None),
            "transactions": found["transactions"],
            "problems": await self._kept(found, upgraded=version is not None),
        }

    async def _kept(self, found: dict[str, Any], upgraded: bool) -> list[str]:
        """What today's pysync, opening a database of layout 1, did not keep of it: every
        entry as it was (``upgraded``: its identity and state), every document, the counts
        of the status and each record's sync state."""
        from .layout import OUTBOX, old_entry

        problems: list[str] = []
        was = {int(e["n"]): e for e in found["old"][OUTBOX]}
        now = {int(e["n"]): old_entry(e) for e in await self.outbox()}
        fields = ("n", "mid", "collection", "id", "op", "group", "state", "follows", "error")
        for n in sorted(was.keys() | now.keys()):
            before, after = was.get(n), now.get(n)
            if before is None or after is None:
                problems.append(f"outbox entry {n} {'lost' if after is None else 'appeared'}")
            else:
                # An app upgrade rewrites an entry's documents (the migration's steps).
                same = (
                    all(before.get(f) == after.get(f) for f in fields)
                    if upgraded
                    else before == after
                )
                if not same:
                    problems.append(f"outbox entry {n} changed: {before} -> {after}")
        docs = {
            name: {
                r["id"]: {k: v for k, v in r.items() if not k.startswith("_")}
                for r in found["rows"][name]
            }
            for name in (DOCS, COUNTERS)
        }
        if await self.documents() != docs:
            problems.append(f"documents changed: {docs} -> {await self.documents()}")
        rejected = sum(1 for e in was.values() if e["state"] == "rejected")
        status = self.db.status
        if (status.pending, status.rejected) != (len(was) - rejected, rejected):
            problems.append(
                f"status counts pending={status.pending} rejected={status.rejected}, the "
                f"outbox holds {len(was) - rejected} and {rejected}"
            )
        states: dict[tuple[str, Any], str] = {}
        for e in was.values():
            target = (e["collection"], e["id"])
            if e["state"] == "rejected" or target not in states:
                states[target] = "rejected" if e["state"] == "rejected" else "pending"
        for (coll, key), expected in states.items():
            state = await self.db.sync_state(coll, key)
            if state != expected:
                problems.append(f"sync_state of {coll}#{key} is {state}, not {expected}")
        return problems

    async def state(self) -> dict[str, Any]:
        """What outlives the tab (JSON): clock, connectivity, schema version, faults not
        used yet, writes on their way (``later``) and the outbox's lineage."""
        return {
            "version": self.version,
            "now_ms": self.browser.now_ms,
            "online": not self.remote.offline,
            "rules": [r for r in self.remote.rules if r["kind"] in ("fail", "lose", "batch_lost")],
            "held": [[op, payload] for op, payload in self.remote.held],
            "carried": await self.lineage(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Carry on from :meth:`state` in a new tab (before :meth:`open`)."""
        self.version = state["version"]
        self.browser.now_ms = state["now_ms"]
        self.browser.set_online(state["online"])
        self.remote.offline = not state["online"]
        self.remote.rules = [dict(rule) for rule in state["rules"]]
        self.remote.held = [(op, payload) for op, payload in state["held"]]
        self.carried = {int(n): list(mids) for n, mids in state["carried"].items()}

    async def set_online(self, online: bool) -> None:
        self.remote.offline = not online
        self.browser.set_online(online)

    async def advance_clock(self, ms: int) -> None:
        self.browser.now_ms += ms

    async def inject(self, fault: dict[str, Any]) -> None:
        self.remote.rules.append(dict(fault))

    async def clear_faults(self) -> None:
        self.remote.rules.clear()
        await self.late()

    async def late(self) -> int:
        return await self.remote.deliver_held()

    async def close(self) -> None:
        if self.replica is not None:
            self.replica.close()
