"""Replica writes and queries: pysync's data API vs plain JavaScript IndexedDB.

Run: ``.venv/bin/python bench/bench_replica.py [--rounds 8] [--puts 60]``

Everything runs in ONE Chromium page (bench/pages/replica.html) with Pyodide and the
pysync wheel of build/pyodide/; times are taken inside the page with
``performance.now()``. pysync works on a replica opened with ``pysync.connect`` (schema:
a collection "items" with an index "by_n" on the field "n"); the JS baseline on a
database with a store "items" (keyPath "id") and an index "by_n" on "n". Documents:
``{"id": "r000123", "title": "Item 123 title text", "n": 123, "done": False,
"tags": ["a", "b"], "score": 1.5}``, built before timing.

- single put: ``await db["items"].put(doc)`` of a new document (one transaction over
  the collection, the outbox and the clock) vs one JS ``put()`` transaction awaited
  until ``complete``; per round a fresh database per variant and ``--puts`` documents,
  the variants taking turns put by put (rotating order); latencies of every put
  pooled over the rounds, p50 and p99; and, for reference, JS
  making the IndexedDB requests of a pysync put (read the clock, count the outbox
  twice, read the record and its outbox entries; put the entry, the record and the
  clock; commit);
- bulk: 10,000 puts as 100 ``async with db.transaction() as tx`` blocks of 100
  documents, one after the other (documents AND their outbox entries; a transaction
  may change at most 100 documents, what one DynamoDB TransactWriteItems takes) vs JS
  writing the 10,000 records in 100 transactions of 100; and, for reference, JS making
  the IndexedDB requests of pysync's 100 transactions (per transaction: the reads of
  a single put for each of its documents, then the outbox entries of pysync's shape,
  the records with their index field and the clock);
- range query: ``await coll.query(index="by_n", range=KeyRange.bound(a, b))`` returning
  1,000 of 10,000 records vs JS ``index("by_n").getAll(IDBKeyRange.bound(a, b))``
  resolved at ``complete`` (the records written first, untimed, by pysync's and by JS's
  bulk write).

pysync and JS use durability "strict" (pysync sets it on every transaction); JS with
the browser's default durability is shown for reference. Variants alternate within
every round, the order flipping each round; GC (Python and JS) before timed regions.
The single puts share one page. Every bulk run, the range queries and the phase
breakdown of pysync's bulk transactions each get a browser of their own, the bulk runs
after a warm-up of 1,000 documents: in this Chromium a durable commit gets slower as
the browser profile holds more data, also in a new database and after deleting the
old ones (100 transactions of 100 records: about 0.9 s in a fresh profile, 6.9 s once
it holds 50,000 more records), so runs sharing a browser would charge each variant
for the data of those before it. Results go to bench/results/replica.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _browser import ROOT, bench_page
from _stats import summarize

RESULTS = ROOT / "bench" / "results" / "replica.json"
# Issue 12's goals: a single put at most 2x a plain JS put (p50, same run), and
# transactions of 100 documents with everything sync needs at most 3x JS writing the
# records alone.
GOAL_PUT_RATIO = 2.0
GOAL_BULK_RATIO = 3.0
# Transactions per outbox design in the design comparison (each of BULK_PER_TX documents).
DESIGN_ROUNDS = 40
BULK_N = 10_000
# Documents per transaction in the bulk rows: the most a transaction() may change.
BULK_PER_TX = 100
QUERY_HITS = 1_000
# Single puts timed step by step (the breakdown), after as many warming up.
PUT_PHASE_N = 500

# Defined once in the page's Python; each coroutine returns a JSON string.
PAGE_CODE = r"""
import gc
import json

import js
import pysync
from pysync import AppSchema, CollectionSpec, Index, KeyRange, delete_indexeddb
from pysync import _replica

SCHEMA = AppSchema(version=1, collections={"items": CollectionSpec(indexes=(Index("by_n", "n"),))})
USER = "bench"


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


replicas = {}


async def open_replica(app):
    await delete_indexeddb(f"pysync:{app}:{USER}")
    db = await pysync.connect(app, user=USER, schema=SCHEMA)
    replicas[app] = db
    return db


async def drop(app):
    db = replicas.pop(app)
    db.close()
    await delete_indexeddb(db.name)


# Single puts of new documents, the variants taking turns put by put: every variant
# has its own fresh database; the order of the variants rotates with every document,
# so that drifting machine load hits them alike. Returns the latencies (ms) per
# variant.
async def single_puts(start, count, variants):
    base = js.replicaBaseline
    colls = {}
    for variant in variants:
        if variant.startswith("pysync"):
            colls[variant] = (await open_replica(f"bench-{variant}"))["items"]
        elif variant == "js_pysync_requests":
            await base.openPysyncShape(f"bench-{variant}")
        else:
            await base.open(f"bench-{variant}")
    docs = make_docs(count, start)
    latencies = {variant: [] for variant in variants}
    collect()
    for i, doc in enumerate(docs):
        shift = i % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            name = f"bench-{variant}"
            if variant.startswith("pysync"):
                t0 = js.performance.now()
                await colls[variant].put(doc)
                ms = js.performance.now() - t0
            elif variant == "js_pysync_requests":
                ms = await base.putOnePysyncShape(name, start + i)
            else:
                ms = await base.putOne(name, start + i, variant.removeprefix("js_"))
            latencies[variant].append(ms)
    for variant in variants:
        if variant.startswith("pysync"):
            assert replicas[f"bench-{variant}"].status.pending == count, "outbox differs"
            await drop(f"bench-{variant}")
        else:
            await base.drop(f"bench-{variant}")
    return json.dumps(latencies)


async def bulk(app, n, per, keep):
    db = await open_replica(app)
    docs = make_docs(n)
    collect()
    t0 = js.performance.now()
    for start in range(0, n, per):
        async with db.transaction() as tx:
            for doc in docs[start : start + per]:
                tx.put("items", doc)
    ms = js.performance.now() - t0
    assert db.status.pending == n, "outbox differs"
    if not keep:
        await drop(app)
    return json.dumps(ms)


async def range_query(app, low, high):
    coll = replicas[app]["items"]
    collect()
    t0 = js.performance.now()
    docs = await coll.query(index="by_n", range=KeyRange.bound(low, high))
    ms = js.performance.now() - t0
    assert docs[0]["n"] == low and docs[0] == make_docs(1, low)[0], "query returned other rows"
    return json.dumps([ms, len(docs)])


# -- where the time goes ---------------------------------------------------------------
# Each transaction, between marks: the tx.put calls (validation); the replica and store
# setting up; the body queueing the reads; the call that sends them to IndexedDB; the
# wait for their results; computing the writes; the call that sends them (and asks to
# commit); the commit; what follows it (status, notifications). Summed over the
# transactions of a bulk run (per > 1), or over single puts (per == 1: a put's
# validation counts in "set up").
PHASES = (
    "validate (tx.put calls)",
    "set up",
    "queue the reads",
    "send the reads to IndexedDB",
    "wait for the reads",
    "compute the writes",
    "send the writes to IndexedDB",
    "commit",
    "after the commit",
)


async def bulk_phases(app, n, per):
    from pysync._store import _indexeddb

    db = await open_replica(app)
    docs = make_docs(n)
    Tx, Applier = _indexeddb.IndexedDBTransaction, _replica._Applier
    originals = Tx._flush, Tx.deliver, Tx._finish, Applier.body
    flush, deliver, finish, body = originals
    now = js.performance.now
    marks = []

    def timed_body(self, tx):
        marks.append(now())
        body(self, tx)

    def timed_flush(self):
        sends = bool(self._ops)
        if sends:
            marks.append(now())
        flush(self)
        if sends:
            marks.append(now())

    def timed_deliver(self, batch, value):
        if batch >= 0:
            marks.append(now())
        deliver(self, batch, value)

    async def timed_finish(self):
        await finish(self)
        marks.append(now())

    totals = dict.fromkeys(PHASES, 0.0)
    Tx._flush, Tx.deliver, Tx._finish, Applier.body = (
        timed_flush,
        timed_deliver,
        timed_finish,
        timed_body,
    )
    collect()
    try:
        t0 = now()
        for start in range(0, n, per):
            marks[:] = [now()]
            if per == 1:
                marks.append(now())
                await db["items"].put(docs[start])
            else:
                async with db.transaction() as tx:
                    for doc in docs[start : start + per]:
                        tx.put("items", doc)
                    marks.append(now())
            marks.append(now())
            assert len(marks) == len(PHASES) + 1, "unexpected steps"
            for name, a, b in zip(PHASES, marks, marks[1:]):
                totals[name] += b - a
        total = now() - t0
    finally:
        Tx._flush, Tx.deliver, Tx._finish, Applier.body = originals
    await drop(app)
    return json.dumps({**totals, "total": total})
"""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _quantile(values: list[float], q: int) -> float:
    return statistics.quantiles(sorted(values), n=100, method="inclusive")[q - 1]


def _latency(values: list[float]) -> dict[str, Any]:
    return {
        "p50": round(statistics.median(values), 2),
        "p99": round(_quantile(values, 99), 2),
        "p25": round(_quantile(values, 25), 2),
        "p75": round(_quantile(values, 75), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
        "samples": len(values),
    }


def _order(variants: list[str], round_: int) -> list[str]:
    return variants if round_ % 2 == 0 else list(reversed(variants))


def single_put_phase(page: Any, args: argparse.Namespace) -> dict[str, list[float]]:
    """Latencies of single puts, pooled over the measured rounds."""
    variants = ["pysync", "js_strict", "js_default", "js_pysync_requests"]
    samples: dict[str, list[float]] = {v: [] for v in variants}
    for round_ in range(1 + args.rounds):  # round 0 warms up
        latencies = page.run_python_json(
            f"await single_puts({round_ * args.puts}, {args.puts}, {variants!r})"
        )
        if round_ == 0:
            continue
        for variant in variants:
            samples[variant] += latencies[variant]
        _log(
            f"single put round {round_}/{args.rounds}: "
            + ", ".join(f"{v} p50 {statistics.median(samples[v]):.2f} ms" for v in variants)
        )
    return samples


@contextlib.contextmanager
def _fresh_page() -> Iterator[Any]:
    """A page of its own browser, with PAGE_CODE defined (see BULK_IN_FRESH_BROWSERS)."""
    with bench_page("replica.html") as page:
        page.run_python(PAGE_CODE)
        yield page


def _bulk_run(page: Any, variant: str, n: int, keep: bool = False) -> float:
    """One bulk run of ``variant`` (n documents in transactions of BULK_PER_TX); ms."""
    if variant == "pysync":
        ms: float = page.run_python_json(
            f"await bulk('bench-bulk-pysync', {n}, {BULK_PER_TX}, {keep})"
        )
    elif variant == "js_pysync_writes":
        ms = page.run_js(
            "([n, per]) => replicaBaseline.pysyncWrites('bench-bulk-js-pw', n, per)",
            [n, BULK_PER_TX],
        )
    else:
        durability = variant.removeprefix("js_")
        name = f"bench-bulk-js-{durability}"
        ms = page.run_js(
            "([name, n, d, per]) => replicaBaseline.bulk(name, n, d, per)",
            [name, n, durability, BULK_PER_TX],
        )
        if not keep:
            page.run_js("(name) => replicaBaseline.drop(name)", name)
    return ms


def bulk_phase(args: argparse.Namespace) -> dict[str, list[float]]:
    """Times of the bulk runs, each in a browser of its own after a warm-up of 1,000."""
    variants = ["pysync", "js_strict", "js_default", "js_pysync_writes"]
    samples: dict[str, list[float]] = {v: [] for v in variants}
    for round_ in range(1, 1 + args.bulk_rounds):
        for variant in _order(variants, round_):
            with _fresh_page() as page:
                _bulk_run(page, variant, 1_000)
                samples[variant].append(_bulk_run(page, variant, BULK_N))
        _log(
            f"bulk round {round_}/{args.bulk_rounds}: "
            + ", ".join(f"{v} {samples[v][-1]:.0f} ms" for v in variants)
        )
    return samples


def query_phase(args: argparse.Namespace) -> dict[str, list[float]]:
    """Range queries of QUERY_HITS records of BULK_N, written first (untimed) by pysync
    and by JS (strict) in a browser of their own."""
    samples: dict[str, list[float]] = {"pysync": [], "js": []}
    step = (BULK_N - QUERY_HITS) // max(1, args.queries)
    with _fresh_page() as page:
        _bulk_run(page, "pysync", BULK_N, keep=True)
        _bulk_run(page, "js_strict", BULK_N, keep=True)
        for round_ in range(1 + args.queries):  # round 0 warms up
            low = (round_ * step) % (BULK_N - QUERY_HITS)
            high = low + QUERY_HITS - 1
            for variant in _order(["pysync", "js"], round_):
                if variant == "pysync":
                    ms, hits = page.run_python_json(
                        f"await range_query('bench-bulk-pysync', {low}, {high})"
                    )
                else:
                    ms, hits = page.run_js(
                        "([a, b]) => replicaBaseline.rangeQuery('bench-bulk-js-strict', a, b)",
                        [low, high],
                    )
                if hits != QUERY_HITS:
                    raise RuntimeError(f"{variant} range query returned {hits} records")
                if round_ > 0:
                    samples[variant].append(ms)
        page.run_python("await drop('bench-bulk-pysync')")
        page.run_js("() => replicaBaseline.drop('bench-bulk-js-strict')")
    _log(
        f"range query: pysync {statistics.median(samples['pysync']):.1f} ms, "
        f"JS {statistics.median(samples['js']):.1f} ms"
    )
    return samples


def designs_phase() -> dict[str, list[float]]:
    """What one transaction of BULK_PER_TX new documents costs IndexedDB under other
    outbox designs (plain JS, replica_baseline.js outboxDesigns), in a browser of its own."""
    with _fresh_page() as page:
        times: dict[str, list[float]] = page.run_js(
            "([rounds, per]) => replicaBaseline.outboxDesigns(rounds, per)",
            [DESIGN_ROUNDS, BULK_PER_TX],
        )
    _log("designs: " + ", ".join(f"{d} {statistics.median(t):.1f} ms" for d, t in times.items()))
    return times


def phases_phase(args: argparse.Namespace) -> tuple[list[dict[str, float]], dict[str, float]]:
    """The bulk breakdown, each run in a browser of its own after a warm-up of 1,000;
    and the single put's, ms per put (PUT_PHASE_N puts after as many warm up)."""
    phases = []
    for _ in range(args.phase_runs):
        with _fresh_page() as page:
            _bulk_run(page, "pysync", 1_000)
            phases.append(
                page.run_python_json(f"await bulk_phases('bench-phases', {BULK_N}, {BULK_PER_TX})")
            )
    _log(f"bulk phases: {phases}")
    with _fresh_page() as page:
        page.run_python_json(f"await bulk_phases('bench-warm', {PUT_PHASE_N}, 1)")
        totals = page.run_python_json(f"await bulk_phases('bench-put', {PUT_PHASE_N}, 1)")
    put = {k: v / PUT_PHASE_N for k, v in totals.items() if k != "validate (tx.put calls)"}
    _log(f"single put phases (ms per put): {put}")
    return phases, put


def _paired(a: list[float], b: list[float]) -> float:
    return round(statistics.median(x / y for x, y in zip(a, b, strict=True)), 3)


def rows(
    puts: dict[str, list[float]], bulk: dict[str, list[float]], query: dict[str, list[float]]
) -> list[dict[str, Any]]:
    """One flat row per operation (the generic report table shows its scalar fields)
    plus the full statistics of every variant in ``variants``."""
    put = {v: _latency(s) for v, s in puts.items()}
    stats = {v: summarize(s) for v, s in bulk.items()}
    q = {v: summarize(s) for v, s in query.items()}

    def ratio(a: float, b: float) -> float:
        return round(a / b, 2)

    put_ms = put["pysync"]["p50"]
    bulk_ms = stats["pysync"]["median"]
    return [
        {
            "operation": "single put, latency p50 (p99)",
            "n": put["pysync"]["samples"],
            "pysync_ms": put_ms,
            "pysync_p99_ms": put["pysync"]["p99"],
            "js_ms": put["js_strict"]["p50"],
            "js_p99_ms": put["js_strict"]["p99"],
            "ratio": ratio(put_ms, put["js_strict"]["p50"]),
            "goal": f"ratio <= {GOAL_PUT_RATIO:g}",
            "goal_met": put_ms / put["js_strict"]["p50"] <= GOAL_PUT_RATIO,
            # Plain JS making the IndexedDB requests of a pysync put: its floor.
            "js_floor_ms": put["js_pysync_requests"]["p50"],
            "js_floor_ratio": ratio(put["js_pysync_requests"]["p50"], put["js_strict"]["p50"]),
            "variants": put,
        },
        {
            "operation": (
                f"{BULK_N:,} puts in {BULK_N // BULK_PER_TX} transactions of {BULK_PER_TX} "
                "(pysync with outbox)"
            ),
            "n": BULK_N,
            "pysync_ms": bulk_ms,
            "pysync_p99_ms": "-",
            "js_ms": stats["js_strict"]["median"],
            "js_p99_ms": "-",
            "ratio": ratio(bulk_ms, stats["js_strict"]["median"]),
            "goal": f"ratio <= {GOAL_BULK_RATIO:g}",
            "goal_met": bulk_ms / stats["js_strict"]["median"] <= GOAL_BULK_RATIO,
            # Plain JS doing what pysync's transaction asks of IndexedDB: its floor.
            "js_floor_ms": stats["js_pysync_writes"]["median"],
            "js_floor_ratio": ratio(
                stats["js_pysync_writes"]["median"], stats["js_strict"]["median"]
            ),
            "ratio_paired": _paired(bulk["pysync"], bulk["js_strict"]),
            "variants": stats,
        },
        {
            "operation": f"index range query, {QUERY_HITS:,} of {BULK_N:,} records",
            "n": len(query["pysync"]),
            "pysync_ms": q["pysync"]["median"],
            "pysync_p99_ms": "-",
            "js_ms": q["js"]["median"],
            "js_p99_ms": "-",
            "ratio": ratio(q["pysync"]["median"], q["js"]["median"]),
            "goal": "-",
            "goal_met": "-",
            "js_floor_ms": "-",
            "js_floor_ratio": "-",
            "ratio_paired": _paired(query["pysync"], query["js"]),
            "variants": q,
        },
    ]


METHOD = (
    "One Chromium page (bench/pages/replica.html), Pyodide and the pysync wheel of "
    "build/pyodide/, times from performance.now() inside the page. Single put: "
    "`await db['items'].put(doc)` of a new document vs one plain JS put() transaction "
    "(durability strict, as pysync), the variants taking turns put by put. Bulk: 10,000 "
    "new documents as 100 `async with db.transaction()` blocks of 100 vs JS writing the "
    "records in 100 transactions of 100, each run in a browser of its own after a warm-up. "
    '"JS floor": plain JS making the IndexedDB requests pysync makes '
    "(bench/pages/replica_baseline.js). Outbox designs: plain JS transactions of 100 new "
    "documents under other outbox layouts, taking turns transaction by transaction."
)


def design_rows(designs: dict[str, list[float]]) -> list[dict[str, Any]]:
    """One row per outbox design: ms per transaction of BULK_PER_TX, and x records alone."""
    alone = statistics.median(designs["records alone"])
    return [
        {
            "operation": f"IndexedDB cost of 1 transaction of {BULK_PER_TX}: {design}",
            "n": len(times),
            "js_ms": round(statistics.median(times), 2),
            "ratio": round(statistics.median(times) / alone, 2),
        }
        for design, times in designs.items()
    ]


def notes(
    puts: dict[str, list[float]],
    bulk: dict[str, list[float]],
    phases: list[dict[str, float]],
    put_phases: dict[str, float],
    designs: dict[str, list[float]],
) -> list[str]:
    """Where the time goes, the floor and what would lower it, from this run's numbers."""
    put = {v: statistics.median(s) for v, s in puts.items()}
    out = [
        f"Single put: pysync p50 {put['pysync']:.1f} ms, a plain JS put {put['js_strict']:.1f} "
        f"ms ({put['pysync'] / put['js_strict']:.1f}x). Plain JS making pysync's requests "
        f"(read the clock, the record and its outbox entries; put the entry, the record and "
        f"the clock) takes {put['js_pysync_requests']:.1f} ms "
        f"({put['js_pysync_requests'] / put['js_strict']:.1f}x): that is the floor of the "
        f"design; the other {put['pysync'] - put['js_pysync_requests']:.1f} ms are Python "
        "(building the requests, the JSON that carries them, the outbox logic) and the two "
        "crossings between Python and JavaScript (the reads, then the writes). Step by step "
        f"(mean of {PUT_PHASE_N} puts, instrumented, {put_phases['total']:.2f} ms each): "
        + ", ".join(f"{k} {v:.2f}" for k, v in put_phases.items() if k != "total")
        + " ms. The two calls into JavaScript are mostly IndexedDB's own synchronous work "
        "(beginning the transaction, making each request), which plain JS pays too; waiting "
        "is the browser's; what is left is Python: validating and computing the record and the "
        "entry, resuming after the reads and after the commit (a turn of the event loop), "
        "and telling live queries and the other tabs (a BroadcastChannel message)."
    ]
    if phases:
        phase = {k: statistics.median(p[k] for p in phases) for k in phases[0]}
        browser = phase["wait for the reads"] + phase["commit"]
        python = sum(
            phase[k]
            for k in ("validate (tx.put calls)", "set up", "queue the reads", "compute the writes")
        )
        sending = phase["send the reads to IndexedDB"] + phase["send the writes to IndexedDB"]
        out.append(
            f"Bulk ({BULK_N:,} documents in transactions of {BULK_PER_TX}, one instrumented "
            f"run of {phase['total']:.0f} ms): the browser's own work (waiting for the reads, "
            f"the commit) {browser:.0f} ms; sending the requests (JSON encoding in Python, "
            f"JSON.parse and one IndexedDB request per read or write in JavaScript) "
            f"{sending:.0f} ms; Python's own steps (validating, queueing the reads, computing "
            f"the records and outbox entries) {python:.0f} ms. A transaction of 100 new "
            "documents reads in two requests (one getAllKeys over the records' key range, "
            "one over their outbox entries': they answer new documents and documents "
            "without pending changes at once) and writes 102 (one outbox row holding the "
            "transaction's entries, a record per document, the clock). The benchmark's "
            "ids grow in order (r000123); random "
            "ids (new_id()) in a store holding many documents span most of its keys and "
            "are read one request each, as before the probe: this run does not measure that."
        )
    med = {d: statistics.median(t) for d, t in designs.items()}
    alone = med["records alone"]
    old = med["entry per document"]
    out.append(
        f"The floor, by outbox design (plain JS, one transaction of {BULK_PER_TX} new "
        f"documents, the designs taking turns): the records alone {alone:.1f} ms; pysync's "
        f"requests today, one outbox row per transaction listing its records for the "
        f"multi-entry index by_record, {med['today']:.1f} ms ({med['today'] / alone:.2f}x); "
        f"the layout before it, an outbox row per document, {old:.1f} ms "
        f"({old / alone:.2f}x). A row of its own per document cost IndexedDB about as much "
        "as the document itself (a second value and its two index entries); the row per "
        "transaction costs one value and one index entry per document. What is left "
        "above the floor is pysync's own work: Python computing the records and "
        "entries, and the JSON that carries them to JavaScript. A single put writes "
        "one row either way: its floor is the transaction's requests (read the clock, "
        "the record and its entries; write all three)."
    )
    return out


def main() -> None:
    """Run the benchmark and write bench/results/replica.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="measured rounds of single puts")
    parser.add_argument("--puts", type=int, default=60, help="single puts per variant and round")
    parser.add_argument("--bulk-rounds", type=int, default=3, help="measured bulk rounds")
    parser.add_argument("--queries", type=int, default=15, help="measured range queries")
    parser.add_argument("--phase-runs", type=int, default=1, help="runs of the bulk breakdown")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    started = time.monotonic()
    with bench_page("replica.html") as page:
        machine = page.machine()
        machine["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
        page.run_python(PAGE_CODE)
        puts = single_put_phase(page, args)
    bulk = bulk_phase(args)
    query = query_phase(args)
    phases, put_phases = phases_phase(args)
    designs = designs_phase()
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]

    result = {
        "benchmark": "replica",
        "title": "Replica: pysync data API vs plain JavaScript IndexedDB",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "setup": (
            f"single put: 1 warm-up + {args.rounds} rounds x {args.puts} puts per variant on "
            f"a fresh database; bulk: {args.bulk_rounds} rounds of {BULK_N:,} in "
            f"transactions of {BULK_PER_TX}, every run in a browser of its own after a "
            f"warm-up of 1,000; range query: 1 warm-up + {args.queries} queries over "
            f"{BULK_N:,} records written untimed, in a browser of its own; variants "
            "interleaved, order flipped every round"
        ),
        "document": {
            "id": "r000123",
            "title": "Item 123 title text",
            "n": 123,
            "done": False,
            "tags": ["a", "b"],
            "score": 1.5,
        },
        "method": METHOD,
        "rows": [*rows(puts, bulk, query), *design_rows(designs)],
        "notes": notes(puts, bulk, phases, put_phases, designs),
        "designs_ms": designs,
        "bulk_phases_ms": [{k: round(v, 1) for k, v in p.items()} for p in phases],
        "put_phases_ms": {k: round(v, 3) for k, v in put_phases.items()},
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    _log(f"wrote {args.output} in {result['elapsed_s']} s")


if __name__ == "__main__":
    main()
