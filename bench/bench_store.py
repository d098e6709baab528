"""Store layer: pysync's IndexedDB bulk write and read vs plain JavaScript IndexedDB.

Run: ``.venv/bin/python bench/bench_store.py [--sizes 1000,10000] [--runs 7] [--warmup 1]``

Everything runs in ONE Chromium page (bench/pages/store.html) with Pyodide and the
pysync wheel of build/pyodide/. One run of a variant, for N records:

- a fresh database (deleted before and after), opened before timing;
- the N records built before timing (Python dicts for pysync, JS objects for the
  baseline: the same shape, ids, strings and numbers);
- write, timed with ``performance.now()`` inside the page (``js.performance.now()`` from
  Python): pysync ``await db.put_many("items", records)`` (one transaction), the
  baseline a loop of ``put()`` in one transaction, until ``complete``; both with
  durability "strict" (pysync's setting), plus the baseline with the browser's
  default durability for reference;
- read back everything, timed: pysync ``await db.query("items")`` (getAll, to Python
  dicts) vs ``getAll()`` resolved at the transaction's ``complete``.

Variants alternate within each round (and their order flips every round) so that
machine noise hits them alike. Garbage is collected (Python and JS) before each
timed region. Reported: median, p25/p75, min/max in ms, and the ratio of medians
pysync / JS (strict). A phase breakdown of pysync's write and read (validate+encode,
to_js (the JSON text), the JS call that begins the transaction and puts, commit;
getAll, to_py, decode) is measured in separate runs.
Results go to bench/results/store.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _browser import ROOT, bench_page
from _stats import summarize

RESULTS = ROOT / "bench" / "results" / "store.json"
GOAL_WRITE_RATIO = 1.5

# Defined once in the page's Python; each function returns a JSON string.
PAGE_CODE = r'''
import gc
import json

import js
from pysync import Schema, StoreSchema, delete_indexeddb, open_indexeddb
from pysync._store import _indexeddb


def make_records(n):
    return [
        {
            "id": f"r{i:06d}",
            "title": f"Item {i} title text",
            "n": i,
            "done": False,
            "tags": ["a", "b"],
            "score": 1.5,
        }
        for i in range(n)
    ]


def schema(name):
    return Schema(name, 1, (StoreSchema("items", "id"),))


def collect():
    gc.collect()
    js.gc()


async def pysync_run(name, n):
    await delete_indexeddb(name)
    db = await open_indexeddb(schema(name))
    records = make_records(n)
    collect()
    t0 = js.performance.now()
    await db.put_many("items", records)
    t1 = js.performance.now()
    collect()
    t2 = js.performance.now()
    back = await db.query("items")
    t3 = js.performance.now()
    assert len(back) == n and back[7] == records[7], "read back differs"
    db.close()
    del back
    await delete_indexeddb(name)
    return json.dumps({"write_ms": t1 - t0, "read_ms": t3 - t2})


async def pysync_phases(name, n):
    """put_many and query, step by step, as _base.py / _indexeddb.py do them."""
    await delete_indexeddb(name)
    db = await open_indexeddb(schema(name))
    records = make_records(n)
    marks = {}
    Tx = _indexeddb.IndexedDBTransaction
    payload, convert = _indexeddb._payload, _indexeddb._records
    flush, deliver = Tx._flush, Tx.deliver

    def timed_payload(ops, recs):
        marks["encoded"] = js.performance.now()
        out = payload(ops, recs)
        marks["converted"] = js.performance.now()
        return out

    def timed_flush(self):
        flush(self)
        marks.setdefault("queued", js.performance.now())

    def timed_deliver(self, batch, value):
        if batch >= 0:
            marks["delivered"] = js.performance.now()
        deliver(self, batch, value)

    def timed_records(value):
        marks["to_py"] = js.performance.now()
        out = convert(value)
        marks["decoded"] = js.performance.now()
        return out

    def write(tx):
        marks["begun"] = js.performance.now()
        tx.put_many("items", records)  # checks and encodes; sent when the body returns

    collect()
    _indexeddb._payload, Tx._flush, Tx.deliver = timed_payload, timed_flush, timed_deliver
    _indexeddb._records = timed_records
    try:
        t0 = js.performance.now()
        await db.run("items", "readwrite", write)
        t1 = js.performance.now()
        write_phases = {
            "begin": marks["begun"] - t0,
            "validate_encode": marks["encoded"] - marks["begun"],
            "to_js": marks["converted"] - marks["encoded"],
            "js_put_loop": marks["queued"] - marks["converted"],
            "commit_wait": t1 - marks["queued"],
            "total": t1 - t0,
        }
        collect()
        t2 = js.performance.now()
        back = await db.query("items")
        t3 = js.performance.now()
    finally:
        _indexeddb._payload, Tx._flush, Tx.deliver = payload, flush, deliver
        _indexeddb._records = convert
    assert len(back) == n
    read_phases = {
        "get_all": marks["delivered"] - t2,
        "to_py": marks["to_py"] - marks["delivered"],
        "decode": marks["decoded"] - marks["to_py"],
        "commit_wait": t3 - marks["decoded"],
        "total": t3 - t2,
    }
    db.close()
    del back
    await delete_indexeddb(name)
    return json.dumps({"write": write_phases, "read": read_phases})
'''

VARIANTS = ("pysync", "js_strict", "js_default")


def _run_variant(page: Any, variant: str, db_name: str, n: int) -> dict[str, float]:
    if variant == "pysync":
        return page.run_python_json(f"await pysync_run({db_name!r}, {n})")  # type: ignore[no-any-return]
    durability = "strict" if variant == "js_strict" else "default"
    return page.run_js(  # type: ignore[no-any-return]
        "([name, n, durability]) => storeBaseline.run(name, n, durability)",
        [db_name, n, durability],
    )


def _paired(samples: dict[str, list[dict[str, float]]], a: str, b: str, key: str) -> float:
    ratios = [x[key] / y[key] for x, y in zip(samples[a], samples[b], strict=True)]
    return round(statistics.median(ratios), 3)


def _median_phases(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(s[key] for s in samples), 2) for key in samples[0]}


class _Names:
    """Fresh database names, unique within the page."""

    def __init__(self) -> None:
        self.count = 0

    def next(self) -> str:
        self.count += 1
        return f"bench-store-{self.count}"


def _rounds(
    page: Any, n: int, variants: tuple[str, ...], args: argparse.Namespace, names: _Names
) -> dict[str, list[dict[str, float]]]:
    """Warm-up and measured rounds of every variant, interleaved; the measured samples."""
    samples: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for round_ in range(args.warmup + args.runs):
        order = variants if round_ % 2 == 0 else tuple(reversed(variants))
        results = {v: _run_variant(page, v, names.next(), n) for v in order}
        if round_ < args.warmup:
            continue
        for variant, result in results.items():
            samples[variant].append(result)
        print(
            f"n={n} round {round_ + 1 - args.warmup}/{args.runs}: "
            + ", ".join(
                f"{v} {r['write_ms']:.0f}/{r['read_ms']:.0f} ms" for v, r in results.items()
            ),
            file=sys.stderr,
        )
    return samples


def _rows(
    n: int, samples: dict[str, list[dict[str, float]]], goal_size: int
) -> list[dict[str, Any]]:
    rows = []
    for operation, key in (("bulk write", "write_ms"), ("read all", "read_ms")):
        stats = {v: summarize([s[key] for s in runs]) for v, runs in samples.items()}
        row: dict[str, Any] = {"operation": operation, "n": n, "js_ms": stats["js_strict"]}
        row["pysync_ms"] = stats["pysync"]
        row["ratio"] = round(stats["pysync"]["median"] / stats["js_strict"]["median"], 3)
        # Median of the per-round ratios: both variants of a round share its noise.
        row["ratio_paired"] = _paired(samples, "pysync", "js_strict", key)
        # Noise only adds time: the fastest runs are the least disturbed.
        row["ratio_min"] = round(stats["pysync"]["min"] / stats["js_strict"]["min"], 3)
        if operation == "bulk write":
            row["js_put_loop_ms"] = summarize([s["put_loop_ms"] for s in samples["js_strict"]])
            row["js_default_durability_ms"] = stats["js_default"]
            if n == goal_size:
                row["goal"] = f"ratio <= {GOAL_WRITE_RATIO}"
                row["goal_met"] = row["ratio"] <= GOAL_WRITE_RATIO
        rows.append(row)
        print(
            f"n={n} {operation}: pysync {stats['pysync']['median']} ms, "
            f"JS {stats['js_strict']['median']} ms, ratio {row['ratio']}",
            file=sys.stderr,
        )
    return rows


def _phases(page: Any, n: int, runs: int, names: _Names) -> dict[str, Any]:
    breakdown = [
        page.run_python_json(f"await pysync_phases({names.next()!r}, {n})") for _ in range(runs)
    ]
    phases = {
        "n": n,
        "write_ms": _median_phases([b["write"] for b in breakdown]),
        "read_ms": _median_phases([b["read"] for b in breakdown]),
    }
    print(f"n={n} phases: {phases}", file=sys.stderr)
    return phases


def main() -> None:
    """Run the benchmark and write bench/results/store.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="record counts, comma-separated")
    parser.add_argument("--runs", type=int, default=7, help="measured rounds per size")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds per size first")
    parser.add_argument("--phase-runs", type=int, default=5, help="rounds of the phase breakdown")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    phases: list[dict[str, Any]] = []
    names = _Names()
    with bench_page("store.html") as page:
        machine = page.machine()
        machine["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
        page.run_python(PAGE_CODE)
        for n in sizes:
            rows += _rows(n, _rounds(page, n, VARIANTS, args, names), max(sizes))
            phases.append(_phases(page, n, args.phase_runs, names))
        machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]

    result = {
        "benchmark": "store",
        "title": "IndexedDB store: pysync vs plain JavaScript",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "setup": (
            f"{args.warmup} warm-up + {args.runs} measured rounds per size, variants "
            f"interleaved; phase breakdown: medians of {args.phase_runs} instrumented runs"
        ),
        "record": {
            "id": "r000123",
            "title": "Item 123 title text",
            "n": 123,
            "done": False,
            "tags": ["a", "b"],
            "score": 1.5,
        },
        "goal": f"bulk write of {max(sizes)} records <= {GOAL_WRITE_RATIO}x plain JS",
        "rows": rows,
        "phases": phases,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
