"""Micro benchmark: the base sync's per-item Python work, in CPython, without a browser.

Run: ``.venv/bin/python bench/micro_pull.py [--pages 20] [--runs 9] [--profile]``
(any CPython 3.11+ runs it with the ``src`` tree alone; 3.13 is nearest to the
3.14 of Pyodide).

The real ``Puller.base_sync`` reads ``--pages`` Query pages of 500 items each (the
items ``bench_sync.py`` loads: its ``make_docs`` documents with the system fields
pysync's push writes), as the JSON bytes the proxy returns, through the real
``HttpRemote`` (its ``send`` answers from memory, so the page's ``json.loads`` is
timed). The replica is a stand-in with the real ``Transaction`` front end
(``put_many``: key checks and the codec's ``encode``) and an IndexedDB-like
back end: reads resolve after the step that made them, and each step's requests
are turned into what would cross to JavaScript with the IndexedDB backend's own
``_payload`` (one JSON text). No store is kept (so the read-back of the records
that looks for those the server no longer has finds none): what is timed is the
Python work per item (decode, document, index keys, encode, the text for
JavaScript).

Prints the items per second of CPU time (the measure: the work is all CPU, and
the machine may be shared) of each run and their median; ``--profile`` adds the
top functions of one run by own time and by cumulative time. Pyodide runs the
same code about 2-3x slower, in similar proportions.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pysync import AppSchema, CollectionSpec, HttpRemote, Index
from pysync._marshal import to_attr, to_item
from pysync._store._base import Database, Mode, Record, Request, Transaction
from pysync._store._indexeddb import _payload
from pysync._store._schema import KeyRange
from pysync._sync._items import sort_key
from pysync._sync._pull import BASE_PAGE, Puller, PullReport

# bench_sync.py's schema and documents.
SCHEMA = AppSchema(version=1, collections={"items": CollectionSpec(indexes=(Index("by_n", "n"),))})
APP = "bench"
SCOPE = "u#bench"
TABLE = "pysync"


def make_docs(n: int, start: int = 0) -> list[dict[str, Any]]:
    """bench_sync.py's ``make_docs``."""
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


def item(doc: dict[str, Any], i: int) -> dict[str, Any]:
    """The DynamoDB item pysync's push writes for ``doc`` (as bench_sync.py's ``item``)."""
    system = {
        "_hlc": f"{1_800_000_000_000 + i:015d}-000000-0123456789abcdef",
        "_c": "0123456789abcdef",
        "_m": f"{i:032x}",
        "_v": 1,
    }
    return to_item({**doc, "pk": SCOPE, "sk": sort_key(APP, "items", doc["id"]), **system})


def make_pages(pages: int) -> list[bytes]:
    """The Query answers of ``pages`` pages, as the JSON bytes the proxy returns."""
    out = []
    for p in range(pages):
        items = [
            item(doc, p * BASE_PAGE + k)
            for k, doc in enumerate(make_docs(BASE_PAGE, p * BASE_PAGE))
        ]
        answer: dict[str, Any] = {"Count": len(items), "Items": items, "ScannedCount": len(items)}
        if p + 1 < pages:
            last = items[-1]
            answer["LastEvaluatedKey"] = {"pk": last["pk"], "sk": last["sk"]}
        out.append(json.dumps(answer, separators=(",", ":")).encode())
    return out


class PageSend:
    """``HttpRemote``'s ``send``: the changelog head, and the pages in order."""

    def __init__(self, pages: list[bytes]) -> None:
        self.pages = pages
        self.head = json.dumps({"Item": {"pk": to_attr(SCOPE), "head": to_attr(0)}}).encode()

    async def __call__(self, url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        operation = headers["X-Amz-Target"].rsplit(".", 1)[-1]
        if operation == "GetItem":
            return 200, self.head
        start = json.loads(body).get("ExclusiveStartKey")
        index = 0 if start is None else int(start["sk"]["S"].rsplit("r", 1)[-1]) // BASE_PAGE + 1
        return 200, self.pages[index]


class StepTransaction(Transaction):
    """IndexedDB's way without IndexedDB: each step's requests become ``_payload``."""

    def __init__(self, db: StepDatabase, stores: Sequence[str], mode: Mode) -> None:
        super().__init__(db.schema, stores, mode)
        self.db = db
        self.ops: list[list[Any]] = []
        self.records: list[Record] = []
        self.reads: list[tuple[Request[Any], Any]] = []

    def _read(self, op: list[Any], result: Any) -> Request[Any]:
        request: Request[Any] = Request()
        self.ops.append(op)
        self.reads.append((request, result))
        return request

    def _get_many(self, store: str, keys: list[Any]) -> Request[list[Record | None]]:
        return self._read(["get", store, keys], [None] * len(keys))

    def _query(
        self,
        store: str,
        index: str | None,
        range: KeyRange | None,
        limit: int | None,
        offset: int,
        reverse: bool,
    ) -> Request[list[Record]]:
        return self._read(["query", store, index, None, reverse, offset, limit], [])

    def _lookup(self, store: str, index: str, keys: list[Any]) -> Request[list[list[Record]]]:
        return self._read(["lookup", store, index, keys], [[] for _ in keys])

    def _count(self, store: str, index: str | None, range: KeyRange | None) -> Request[int]:
        return self._read(["count", store, index, None], 0)

    def _put_many(self, store: str, records: list[Record]) -> None:
        self.ops.append(["put", store, records])
        self.records += records

    def _delete_many(self, store: str, keys: list[Any]) -> None:
        self.ops.append(["delete", store, keys])

    def _clear(self, store: str) -> None:
        self.ops.append(["clear", store])

    def _abort(self) -> None:
        self.active = False

    async def _finish(self) -> None:
        while self.ops:
            ops, self.ops = self.ops, []
            records, self.records = self.records, []
            reads, self.reads = self.reads, []
            payload, _ = _payload(ops, records)
            self.db.sent += len(payload)
            for request, result in reads:
                request.resolve(result)
        self.active = False


class StepDatabase(Database):
    def __init__(self) -> None:
        super().__init__(SCHEMA.store_schema(f"{APP}:{SCOPE}"))
        self.sent = 0

    def _begin(self, stores: Sequence[str], mode: Mode) -> Transaction:
        return StepTransaction(self, stores, mode)

    def close(self) -> None:
        pass


class StandInReplica:
    """What ``Puller`` uses of a replica."""

    def __init__(self) -> None:
        self.schema = SCHEMA
        self.store = StepDatabase()

    def _changed(self, collections: list[str]) -> None:
        pass

    async def observe(self, remote: str) -> None:
        pass


async def base_sync(pages: list[bytes]) -> tuple[int, float, float]:
    """Items applied, and the wall and CPU seconds taken by one base sync of ``pages``."""
    remote = HttpRemote("http://proxy.invalid", "token", send=PageSend(pages))
    replica = StandInReplica()
    puller = Puller(replica, remote, TABLE, SCOPE, APP)  # type: ignore[arg-type]
    start, cpu = time.perf_counter(), time.process_time()
    report = PullReport()
    await puller.base_sync(report)
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert report.applied == len(pages) * BASE_PAGE, report
    return report.applied, took, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=18)
    args = parser.parse_args()
    pages = make_pages(args.pages)
    print(f"page: {BASE_PAGE} items, {len(pages[0]):,} bytes of JSON")
    asyncio.run(base_sync(pages))  # warm-up
    # CPU time is the measure: the machine may be shared, and the work is all CPU.
    rates, walls = [], []
    for run in range(args.runs):
        applied, took, cpu = asyncio.run(base_sync(pages))
        rates.append(applied / cpu)
        walls.append(applied / took)
        print(
            f"run {run + 1}: {applied} items in {cpu * 1000:.1f} ms CPU ({took * 1000:.1f} ms"
            f" wall): {applied / cpu:,.0f} items/s"
        )
    median = statistics.median(rates)
    print(
        f"median: {median:,.0f} items/s of CPU ({median / BASE_PAGE:.1f} pages/s;"
        f" wall {statistics.median(walls):,.0f} items/s), Python {sys.version.split()[0]}"
    )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(base_sync(pages))
        profiler.disable()
        for order in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(args.top)
            print(f"\n-- by {order} --")
            print(out.getvalue().split("\n", 4)[-1].rstrip())


if __name__ == "__main__":
    main()
