"""Calls started together travel together, and each still gets its own outcome.

Three layers: the :class:`Batcher` (one event-loop turn's calls to ``call_many`` in
chunks), ``HttpRemote.call_many`` against a fake proxy (``send`` in-process), and a
push on :class:`MemoryDynamo` (batched writes land once each, also with lost replies).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

import pysync
import pysync._remote as remote_module
from pysync import AppSchema, CollectionSpec, Replica, Sync
from pysync._remote import BATCH_TARGET, TARGET_PREFIX, HttpRemote, RemoteError
from pysync._sync._batcher import Batcher
from pysync._sync._items import sort_key
from pysync.testing import MemoryBrowser, MemoryConnection, MemoryDynamo

from ._loop import settle, until

Calls = list[tuple[str, dict[str, Any]]]
Results = list[dict[str, Any] | RemoteError]


FAILED = "The conditional request failed"


def item(i: int) -> dict[str, Any]:
    return {"i": {"N": str(i)}}


def check_answers(results: list[Any], refused: set[int]) -> None:
    """Each call's own answer: ``{"i", "op"}``, or its own failed condition."""
    for i, result in enumerate(results):
        if i in refused:
            assert isinstance(result, RemoteError)
            assert (result.code, result.status) == ("ConditionalCheckFailedException", 400)
            assert (result.message, result.body["Item"]) == (FAILED, item(i))
        else:
            assert result == {"i": i, "op": "PutItem"}


class Plain:
    """A remote without ``call_many``: answers ``{"i", "op"}``, refuses the ``refuse`` ones."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.gate = gate  # while set: calls (and batches) wait for it
        self.refuse: set[int] = set()
        self.plain: list[str] = []
        self.out = self.most = 0

    def answer(self, operation: str, payload: dict[str, Any]) -> dict[str, Any] | RemoteError:
        i = payload["i"]
        if i in self.refuse:
            return RemoteError("ConditionalCheckFailedException", FAILED, 400, {"Item": item(i)})
        return {"i": i, "op": operation}

    async def _out(self) -> None:
        self.out += 1
        self.most = max(self.most, self.out)
        try:
            await (self.gate.wait() if self.gate else asyncio.sleep(0))
        finally:
            self.out -= 1

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.plain.append(operation)
        await self._out()
        result = self.answer(operation, payload)
        if isinstance(result, RemoteError):
            raise result
        return result


class Many(Plain):
    """A remote with ``call_many``; ``boom``: for a chunk holding that ``i`` it raises
    (or, ``short``, answers one call too few)."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        super().__init__(gate)
        self.batches: list[Calls] = []
        self.boom: int | None = None
        self.short = False

    async def call_many(self, calls: Calls) -> Results:
        self.batches.append(calls)
        await self._out()
        answers = [self.answer(op, payload) for op, payload in calls]
        if any(payload["i"] == self.boom for _, payload in calls):
            if self.short:
                return answers[:-1]
            raise RuntimeError("a bug in call_many")
        return answers


async def call_all(batcher: Batcher, n: int, op: str = "PutItem") -> list[Any]:
    calls = (batcher.call(op, {"i": i}) for i in range(n))
    return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)


# -- the Batcher ----------------------------------------------------------------------


async def test_calls_started_together_leave_in_chunks_and_each_gets_its_own_answer() -> None:
    """120 calls of one turn go out as 3 requests (50, 50, 20) in call order; every
    caller gets its own response, and a refused call raises only in its own caller."""
    remote = Many()
    remote.refuse = {3, 77}
    results = await call_all(Batcher(remote, 50, 8), 120)
    assert [[p["i"] for _, p in batch] for batch in remote.batches] == [
        list(range(50)),
        list(range(50, 100)),
        list(range(100, 120)),
    ]
    assert remote.plain == []
    check_answers(results, {3, 77})


async def test_concurrency_bounds_the_requests_out_at_once() -> None:
    """With ``concurrency`` 2, 5 chunks go out at most 2 at a time; plain calls too."""
    for remote, size in ((Many(asyncio.Event()), 2), (Plain(asyncio.Event()), 50)):
        assert remote.gate is not None
        task = asyncio.ensure_future(call_all(Batcher(remote, size, 2), 10))
        await until(lambda remote=remote: remote.out == 2)  # type: ignore[misc]
        await settle()
        assert remote.out == 2  # the others wait for a slot
        remote.gate.set()
        results = await task
        assert results == [{"i": i, "op": "PutItem"} for i in range(10)]
        assert remote.most == 2
        if isinstance(remote, Many):
            assert [len(batch) for batch in remote.batches] == [2] * 5


@pytest.mark.parametrize(("kind", "size"), [(Plain, 50), (Many, 1)], ids=["no-many", "1"])
async def test_without_call_many_or_with_size_1_each_call_goes_alone(
    kind: type[Plain], size: int
) -> None:
    """A remote without ``call_many``, or a batch size of 1: plain calls, same answers."""
    remote = kind()
    remote.refuse = {4}
    results = await call_all(Batcher(remote, size, 8), 10)
    assert remote.plain == ["PutItem"] * 10
    assert getattr(remote, "batches", []) == []
    check_answers(results, {4})


async def test_transactions_and_queries_never_go_into_a_batch() -> None:
    """Only single-item calls are batched: TransactWriteItems and Query go alone."""
    remote = Many()
    batcher = Batcher(remote, 50, 8)
    ops = ["PutItem", "TransactWriteItems", "GetItem", "Query", "UpdateItem", "DeleteItem"]
    results = await asyncio.gather(*(batcher.call(op, {"i": i}) for i, op in enumerate(ops)))
    assert results == [{"i": i, "op": op} for i, op in enumerate(ops)]
    assert remote.plain == ["TransactWriteItems", "Query"]
    assert [[op for op, _ in batch] for batch in remote.batches] == [
        ["PutItem", "GetItem", "UpdateItem", "DeleteItem"]
    ]


@pytest.mark.parametrize("short", [False, True], ids=["raises", "answers-too-few"])
async def test_a_bug_in_call_many_reaches_the_callers_of_its_chunk_and_nobody_hangs(
    short: bool,
) -> None:
    """A ``call_many`` that raises, or answers the wrong number of calls: each caller
    of that chunk gets an error (none waits forever); the other chunks are answered."""
    remote = Many()
    remote.boom, remote.short = 3, short
    results = await call_all(Batcher(remote, 2, 8), 6)
    assert all(isinstance(results[i], RuntimeError) for i in (2, 3))
    assert [results[i] for i in (0, 1, 4, 5)] == [{"i": i, "op": "PutItem"} for i in (0, 1, 4, 5)]


async def test_a_cancelled_caller_does_not_break_the_others_of_its_chunk() -> None:
    """A caller cancelled while its batch is out: the others get their answers, and
    the loop reports no stray error."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    remote = Many(asyncio.Event())
    assert remote.gate is not None
    batcher = Batcher(remote, 50, 8)
    tasks = [asyncio.ensure_future(batcher.call("PutItem", {"i": i})) for i in range(4)]
    await until(lambda: remote.out == 1)
    tasks[1].cancel()
    await settle()
    remote.gate.set()
    done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    assert isinstance(done[1], asyncio.CancelledError)
    assert [done[i] for i in (0, 2, 3)] == [{"i": i, "op": "PutItem"} for i in (0, 2, 3)]
    await settle()
    assert errors == []


@pytest.mark.parametrize(
    ("kind", "size", "plain"), [(Many, 50, 0), (Plain, 50, 120), (Many, 1, 120)]
)
async def test_call_all_answers_each_call_in_order_errors_as_values(
    kind: type[Plain], size: int, plain: int
) -> None:
    """``call_all``: the answers of calls the caller holds, in order, a refusal as its
    RemoteError in its own place; in chunks of ``size`` through ``call_many``, else
    call by call."""
    remote = kind()
    remote.refuse = {3, 77}
    calls: Calls = [("PutItem", {"i": i}) for i in range(120)]
    results = await asyncio.wait_for(Batcher(remote, size, 8).call_all(calls), 5)
    check_answers(results, {3, 77})
    assert len(remote.plain) == plain
    if plain == 0:
        assert [len(batch) for batch in getattr(remote, "batches", [])] == [50, 50, 20]


async def test_call_all_keeps_to_the_concurrency() -> None:
    """``call_all`` of 10 chunks with ``concurrency`` 2: at most 2 requests out."""
    remote = Many(asyncio.Event())
    assert remote.gate is not None
    calls: Calls = [("PutItem", {"i": i}) for i in range(20)]
    task = asyncio.ensure_future(Batcher(remote, 2, 2).call_all(calls))
    await until(lambda: remote.out == 2)
    await settle()
    assert remote.out == 2
    remote.gate.set()
    assert await asyncio.wait_for(task, 5) == [{"i": i, "op": "PutItem"} for i in range(20)]
    assert remote.most == 2


# -- HttpRemote.call_many against a fake proxy ---------------------------------------


class Proxy:
    """A fake pysync proxy (``send``) logging its requests. ``whole``: the answer to a
    batch as a whole (``(status, body)`` or an exception); ``refuse``: calls refused."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.whole: tuple[int, bytes] | Exception | None = None
        self.refuse: set[int] = set()

    def targets(self) -> list[str]:
        return [headers["X-Amz-Target"] for _, headers, _ in self.requests]

    def one(self, operation: str, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        i = request["i"]
        if i in self.refuse:
            kind = "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"
            return 400, {"__type": kind, "message": FAILED, "Item": item(i)}
        return 200, {"i": i, "op": operation}

    async def __call__(self, url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        document = json.loads(body)
        self.requests.append((url, headers, document))
        await asyncio.sleep(0)
        target = headers["X-Amz-Target"]
        if target != BATCH_TARGET:
            status, answer = self.one(target.removeprefix(TARGET_PREFIX), document)
            return status, json.dumps(answer).encode()
        if isinstance(self.whole, Exception):
            raise self.whole
        if self.whole is not None:
            return self.whole
        replies = [self.one(c["Operation"], c["Request"]) for c in document["Calls"]]
        return 200, json.dumps(
            {"Responses": [{"Status": s, "Body": b} for s, b in replies]}
        ).encode()


def puts(n: int) -> Calls:
    return [("PutItem", {"i": i}) for i in range(n)]


async def test_call_many_groups_by_count_in_the_documented_request_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At most BATCH_CALLS calls per request, in order, as ``{"Calls": [...]}`` with
    the batch target and the current token; a group of one goes as a plain call;
    each call's error document becomes its own RemoteError."""
    monkeypatch.setattr(remote_module, "BATCH_CALLS", 3)
    proxy = Proxy()
    proxy.refuse = {1, 5}
    tokens = iter(["t1", "t2", "t3", "t4"])
    remote = HttpRemote("https://proxy/x", lambda: next(tokens), send=proxy)
    calls = puts(7)
    results = await remote.call_many(calls)
    check_answers(results, {1, 5})
    assert proxy.targets() == [BATCH_TARGET] * 2 + [TARGET_PREFIX + "PutItem"]
    bodies = [body for _, _, body in proxy.requests]
    assert bodies[:2] == [
        {"Calls": [{"Operation": op, "Request": p} for op, p in calls[:3]]},
        {"Calls": [{"Operation": op, "Request": p} for op, p in calls[3:6]]},
    ]
    assert bodies[2] == calls[6][1]
    for (url, headers, _), token in zip(proxy.requests, ["t1", "t2", "t3"], strict=True):
        assert url == "https://proxy/x"
        assert headers["Authorization"] == f"Bearer {token}"
        assert headers["Content-Type"] == "application/x-amz-json-1.0"


async def test_call_many_groups_by_bytes_and_keeps_the_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No request carries more than BATCH_BYTES of calls; results stay in call order."""
    monkeypatch.setattr(remote_module, "BATCH_BYTES", 1000)
    proxy = Proxy()
    proxy.refuse = {2, 9}
    calls = [("PutItem", {"i": i, "pad": "x" * (150 + 40 * (i % 4))}) for i in range(12)]
    calls.append(("PutItem", {"i": 12, "pad": "x" * 1200}))  # bigger than a batch: alone
    results = await HttpRemote("u", "t", send=proxy).call_many(calls)
    check_answers(results, proxy.refuse)
    sent: list[int] = []
    for _, headers, body in proxy.requests:
        if headers["X-Amz-Target"] == BATCH_TARGET:
            requests = [c["Request"] for c in body["Calls"]]
            assert sum(len(json.dumps(r).encode()) for r in requests) <= 1000
            sent += [r["i"] for r in requests]
        else:
            sent.append(body["i"])
    assert proxy.targets().count(BATCH_TARGET) >= 3
    assert sent == list(range(13))


async def test_an_older_proxy_gets_single_calls_from_then_on() -> None:
    """UnknownOperationException for a batch: its calls go one by one, and later
    ``call_many`` calls never send the batch target again."""
    proxy = Proxy()
    proxy.refuse = {2}
    unknown = {"__type": "com.amazon.coral.service#UnknownOperationException"}
    proxy.whole = (400, json.dumps(unknown).encode())
    remote = HttpRemote("u", "t", send=proxy)
    check_answers(await remote.call_many(puts(4)), {2})
    assert proxy.targets() == [BATCH_TARGET] + [TARGET_PREFIX + "PutItem"] * 4
    proxy.requests.clear()
    check_answers(await remote.call_many(puts(5)), {2})
    assert proxy.targets() == [TARGET_PREFIX + "PutItem"] * 5


@pytest.mark.parametrize("status", [400, 403, 413])
async def test_a_batch_refused_whole_is_resent_call_by_call(status: int) -> None:
    """A batch refused as a whole for its content: each call is sent alone and gets
    its own verdict; batching stays on for the next calls."""
    proxy = Proxy()
    proxy.refuse = {1}
    refused = {"__type": "com.amazonaws.dynamodb.v20120810#ValidationException"}
    proxy.whole = (status, json.dumps(refused).encode())
    remote = HttpRemote("u", "t", send=proxy)
    check_answers(await remote.call_many(puts(3)), {1})
    assert proxy.targets() == [BATCH_TARGET] + [TARGET_PREFIX + "PutItem"] * 3
    proxy.whole = None
    proxy.requests.clear()
    check_answers(await remote.call_many(puts(3)), {1})
    assert proxy.targets() == [BATCH_TARGET]


IDS = "network 503 429 401 wrong-count not-json no-responses not-a-list no-status empty"


def answer(status: int, kind: str) -> tuple[int, bytes]:
    return status, json.dumps({"__type": f"com.amazonaws#{kind}"}).encode()


@pytest.mark.parametrize(
    ("whole", "code", "status", "retryable"),
    [
        (OSError("connection reset"), "NetworkError", 0, True),
        (answer(503, "ServiceUnavailable"), "ServiceUnavailable", 503, True),
        (answer(429, "ThrottlingException"), "ThrottlingException", 429, True),
        (answer(401, "NotAuthorized"), "NotAuthorized", 401, False),
        ((200, b'{"Responses":[{"Status":200,"Body":{}}]}'), "BadBatchReply", 502, True),
        ((200, b"<html>Bad gateway</html>"), "BadBatchReply", 502, True),
        ((200, b'{"Results":[]}'), "BadBatchReply", 502, True),
        ((200, b'{"Responses":{"Status":200}}'), "BadBatchReply", 502, True),
        ((200, b'{"Responses":[{"Body":{}},{"Body":{}},{"Body":{}}]}'), "BadBatchReply", 502, True),
        ((200, b""), "BadBatchReply", 502, True),
    ],
    ids=IDS.split(" "),
)
async def test_a_failed_batch_request_fails_each_call_without_resending(
    whole: Any, code: str, status: int, retryable: bool
) -> None:
    """The network, a 5xx, throttling, a refused token, or a 200 that is not the
    batch's answer (BadBatchReply 502): every call of the batch gets that error,
    retryable as it is, and nothing is sent again (the writes may have landed)."""
    proxy = Proxy()
    proxy.whole = whole
    results = await HttpRemote("u", "t", send=proxy).call_many(puts(3))
    assert proxy.targets() == [BATCH_TARGET]
    for result in results:
        assert isinstance(result, RemoteError)
        assert (result.code, result.status, result.retryable) == (code, status, retryable)


# -- through the sync engine on MemoryDynamo -----------------------------------------

APP = "app"
USER = "bt"
SCOPE = f"u#{USER}"
SCHEMA = AppSchema(1, {"docs": CollectionSpec()})


async def no_sleep(_: float) -> None:
    return None


class Watched:
    """A MemoryDynamo connection that logs each ``call_many`` and can lose the replies
    of the first ``lose`` batches holding writes (after they were applied)."""

    def __init__(self, inner: MemoryConnection) -> None:
        self.inner = inner
        self.many: list[list[str]] = []
        self.lose = self.lost = 0

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.inner.call(operation, payload)

    async def call_many(self, calls: Calls) -> Results:
        self.many.append([op for op, _ in calls])
        results = await self.inner.call_many(calls)
        if self.lost < self.lose and any(op != "GetItem" for op, _ in calls):
            self.lost += 1
            return [RemoteError("NetworkError", "reply lost", 0, {}) for _ in calls]
        return results


@pytest.fixture
async def replica() -> AsyncIterator[Replica]:
    replica = await pysync.connect(APP, USER, SCHEMA, platform=MemoryBrowser().tab())
    for i in range(120):
        await replica["docs"].put({"id": f"d{i}", "n": i})
    yield replica
    replica.close()


def landed(db: MemoryDynamo) -> Counter[str]:
    """How many writes each of the 120 documents' items received."""
    keys = {sort_key(APP, "docs", f"d{i}"): f"d{i}" for i in range(120)}
    return Counter(keys[w.sk] for w in db.applied if w.pk == SCOPE and w.sk in keys)  # type: ignore[index]


@pytest.mark.parametrize(
    ("options", "sizes"), [({}, [20, 50, 50]), ({"push_batch": 1}, [])], ids=["default", "1"]
)
async def test_a_push_sends_its_writes_in_batches_and_each_lands_once(
    replica: Replica, options: dict[str, Any], sizes: list[int]
) -> None:
    """120 new documents with the default options: 3 batched requests of writes
    (50, 50, 20); with ``push_batch=1`` none. Every document is written once."""
    db = MemoryDynamo()
    remote = Watched(db.connection())
    report = await Sync(replica, remote, sleep=no_sleep, **options).push()
    assert (report.pushed, report.conflicts, report.rejected) == (120, 0, 0)
    assert sorted(len(ops) for ops in remote.many if "PutItem" in ops) == sizes
    assert (remote.many == []) == (sizes == [])  # push_batch=1: call_many is never used
    assert landed(db) == Counter({f"d{i}": 1 for i in range(120)})
    assert await replica.outbox() == []


async def test_a_rounds_writes_cost_a_task_per_request_not_per_write(replica: Replica) -> None:
    """The page pays an event-loop turn for each task and each wake-up: a round's plain
    writes leave together, so pushing 120 changes makes the push a few tasks per
    request (3 requests here), not one per change. (The remote's own tasks, here the
    in-memory connection answering a batch call by call, are not the push's.)"""
    db = MemoryDynamo()
    loop = asyncio.get_running_loop()
    made: Counter[str] = Counter()
    default = loop.get_task_factory()

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        if "pysync/_sync/" in coro.cr_code.co_filename:
            made[coro.__qualname__] += 1
        if default is not None:
            return default(loop, coro, **kwargs)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(counting)
    try:
        report = await Sync(replica, Watched(db.connection()), sleep=no_sleep).push()
    finally:
        loop.set_task_factory(default)
    assert report.pushed == 120
    assert sum(made.values()) < 20, made
    assert landed(db) == Counter({f"d{i}": 1 for i in range(120)})


async def test_batches_applied_with_their_replies_lost_settle_without_writing_twice(
    replica: Replica,
) -> None:
    """Every batch of the first round applied, its replies lost: the push finds out
    each write landed; every change is acknowledged, none conflicts, and each item
    was written once, by its own change."""
    db = MemoryDynamo()
    remote = Watched(db.connection())
    remote.lose = 3
    mids = {e["id"]: e["mid"] for e in await replica.outbox()}
    sync = Sync(replica, remote, sleep=no_sleep)
    for _ in range(3):
        try:
            await sync.push()
        except RemoteError:
            continue
        if not await replica.outbox():
            break
    assert remote.lost == 3
    assert await replica.outbox() == []
    assert await replica.conflicts() == []
    assert {await replica["docs"].sync_state(f"d{i}") for i in range(120)} == {"synced"}
    assert landed(db) == Counter({f"d{i}": 1 for i in range(120)})
    for write in db.applied:
        if write.pk == SCOPE and write.new is not None and write.new["id"]["S"] in mids:
            assert write.new["_m"]["S"] == mids[write.new["id"]["S"]]
