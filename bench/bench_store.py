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
to_js, JS put loop, commit; getAll, to_py, decode) is measured in separate runs.
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
from pysync._store import _codec, _indexeddb
from pysync._store._keys import check_key
from pysync._store._schema import primary_key


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


def overhead(n, patched):
    """pysync's own work in put_many (no IndexedDB): key checks, codec walk, conversion."""
    records = make_records(n)
    spec = schema("overhead").store("items")
    if patched:
        check, encode, convert = proposed.check_key, proposed.encode, proposed._records_to_js
    else:
        check, encode, convert = check_key, _codec.encode, _indexeddb._to_js
    collect()
    t0 = js.performance.now()
    for record in records:
        check(primary_key(spec, record))
    t1 = js.performance.now()
    encoded = [encode(record) for record in records]
    t2 = js.performance.now()
    values = convert(encoded)
    t3 = js.performance.now()
    assert values.length == n
    return json.dumps(
        {"check_key": t1 - t0, "encode": t2 - t1, "to_js": t3 - t2, "total": t3 - t0}
    )


async def pysync_phases(name, n):
    """put_many and query, step by step, as _base.py / _indexeddb.py do them."""
    await delete_indexeddb(name)
    db = await open_indexeddb(schema(name))
    records = make_records(n)
    spec = db.schema.store("items")
    marks = {}
    collect()

    def write(tx):
        marks["begun"] = js.performance.now()
        encoded = []
        for record in records:
            check_key(primary_key(spec, record))
            encoded.append(_codec.encode(record))
        marks["encoded"] = js.performance.now()
        # _records_to_js: the proposed conversion, once it is in src.
        values = getattr(_indexeddb, "_records_to_js", _indexeddb._to_js)(encoded)
        marks["converted"] = js.performance.now()
        _indexeddb._js().putAll(tx._tx.objectStore("items"), values)
        marks["queued"] = js.performance.now()

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

    original = _indexeddb._records

    def records_timed(value):
        marks["delivered"] = js.performance.now()
        rows = value.to_py()
        marks["to_py"] = js.performance.now()
        out = [_codec.decode(row) for row in rows]
        marks["decoded"] = js.performance.now()
        return out

    collect()
    _indexeddb._records = records_timed
    try:
        t2 = js.performance.now()
        back = await db.query("items")
        t3 = js.performance.now()
    finally:
        _indexeddb._records = original
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

# The patch proposed for src/pysync/_store (see docs/benchmarks.md), applied by monkeypatching
# inside the page for the "pysync_proposed" variant of ``--proposed``.
PROPOSED_PATCH = r"""
import json

from pyodide.code import run_js

from pysync._errors import ValidationError
from pysync._store import _base, _codec, _indexeddb, _keys
from pysync._store._keys import MAX_SAFE_INT

SIDECAR = _codec.SIDECAR


# _codec.py: the same output and messages, but a path is built only for containers
# and marked values (not for every field), and plain scalars are checked inline.
def encode(record):
    if not isinstance(record, dict):
        raise ValidationError(f"a record must be a dict, not {type(record).__name__}")
    if SIDECAR in record:
        raise ValidationError(f"{SIDECAR!r} is a reserved field name")
    marks = {}
    copy = _encode_dict(record, (), marks)
    if marks:
        copy[SIDECAR] = marks
    return copy


def _encode_dict(value, path, marks):
    out = {}
    for key, item in value.items():
        if type(key) is not str:
            where = _codec._show(list(path))
            raise ValidationError(f"field names must be str, not {key!r} at {where}")
        kind = type(item)
        if (
            kind is str
            or kind is bool
            or item is None
            or (kind is int and -MAX_SAFE_INT <= item <= MAX_SAFE_INT)
            or (kind is float and not item.is_integer())
        ):
            out[key] = item
        else:
            out[key] = _encode_value(item, (*path, key), marks)
    return out


def _encode_list(value, path, marks):
    out = []
    for i, item in enumerate(value):
        kind = type(item)
        if (
            kind is str
            or kind is bool
            or item is None
            or (kind is int and -MAX_SAFE_INT <= item <= MAX_SAFE_INT)
            or (kind is float and not item.is_integer())
        ):
            out.append(item)
        else:
            out.append(_encode_value(item, (*path, i), marks))
    return out


def _encode_value(value, path, marks):
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            marks.setdefault("n", []).append(list(path))
        return value
    if kind is float:
        if value.is_integer():
            marks.setdefault("f", []).append(list(path))
        return value
    if kind is dict:
        return _encode_dict(value, path, marks)
    if kind is list or kind is tuple:
        return _encode_list(value, path, marks)
    if kind is bytes or kind is bytearray:
        marks.setdefault("b", []).append(list(path))
        return bytes(value)
    raise ValidationError(
        f"unsupported value of type {kind.__name__} at {_codec._show(list(path))}: use str, "
        "int, float, bool, None, bytes, dict or list"
    )


# _keys.py: strings and safe ints (nearly every primary key) skip sort_key, which
# encodes every string key to UTF-16 only to validate it.
_check_key = _keys.check_key


def check_key(key):
    kind = type(key)
    if kind is str or (kind is int and -MAX_SAFE_INT <= key <= MAX_SAFE_INT):
        return key
    return _check_key(key)


# _indexeddb.py: one JSON text parsed by JSON.parse instead of to_js with
# Object.fromEntries per dict, whenever JSON is exact: no big int or bytes (the
# sidecar says), no NaN/Infinity (allow_nan=False raises ValueError). None must
# stay undefined, as to_js makes it (null reads back as JsNull, not None).
_parse = run_js(
    '''(text) => {
      const undefine = (value) => {
        if (Array.isArray(value)) {
          for (let i = 0; i < value.length; i++) {
            const item = value[i];
            if (item === null) value[i] = undefined;
            else if (typeof item === "object") undefine(item);
          }
        } else {
          for (const key of Object.keys(value)) {
            const item = value[key];
            if (item === null) value[key] = undefined;
            else if (typeof item === "object") undefine(item);
          }
        }
      };
      const values = JSON.parse(text);
      if (text.includes("null")) undefine(values);
      return values;
    }'''
)


def _records_to_js(records):
    if not any(SIDECAR in r and ("n" in r[SIDECAR] or "b" in r[SIDECAR]) for r in records):
        try:
            text = json.dumps(
                records, allow_nan=False, check_circular=False, separators=(",", ":")
            )
        except (TypeError, ValueError):
            pass
        else:
            return _parse(text)
    return _indexeddb._to_js(records)


def _put_many(self, store, records):
    with _indexeddb._translated():
        _indexeddb._js().putAll(self._tx.objectStore(store), _records_to_js(records))


_ORIGINAL = (
    _codec.encode,
    _keys.check_key,
    _base.check_key,
    _indexeddb.IndexedDBTransaction._put_many,
)


def apply(on):
    tx_class = _indexeddb.IndexedDBTransaction
    if on:
        _codec.encode, _keys.check_key, _base.check_key = encode, check_key, check_key
        tx_class._put_many = _put_many
    else:
        _codec.encode, _keys.check_key, _base.check_key, tx_class._put_many = _ORIGINAL
"""

PROPOSED_SETUP = (
    "import types\nproposed = types.ModuleType('proposed')\n"
    f"exec({PROPOSED_PATCH!r}, proposed.__dict__)"
)

VARIANTS = ("pysync", "js_strict", "js_default")


def _run_variant(page: Any, variant: str, db_name: str, n: int) -> dict[str, float]:
    if variant == "pysync":
        return page.run_python_json(f"await pysync_run({db_name!r}, {n})")  # type: ignore[no-any-return]
    if variant == "pysync_proposed":
        return page.run_python_json(  # type: ignore[no-any-return]
            f"proposed.apply(True)\ntry:\n    result = await pysync_run({db_name!r}, {n})\n"
            "finally:\n    proposed.apply(False)\nresult"
        )
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
        for variant, prefix in (("pysync", ""), ("pysync_proposed", "proposed_")):
            if variant not in stats:
                continue
            row[f"{variant}_ms"] = stats[variant]
            row[f"{prefix}ratio"] = round(
                stats[variant]["median"] / stats["js_strict"]["median"], 3
            )
            # Median of the per-round ratios: both variants of a round share its noise.
            row[f"{prefix}ratio_paired"] = _paired(samples, variant, "js_strict", key)
            # Noise only adds time: the fastest runs are the least disturbed.
            row[f"{prefix}ratio_min"] = round(stats[variant]["min"] / stats["js_strict"]["min"], 3)
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


def _overhead(page: Any, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """pysync's own work in put_many, current vs proposed code, interleaved."""
    timings: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for round_ in range(args.warmup + args.runs):
        for patched in (False, True) if round_ % 2 == 0 else (True, False):
            result = page.run_python_json(f"overhead({n}, {patched})")
            if round_ >= args.warmup:
                timings[patched].append(result)
    overhead = {
        "n": n,
        "current_ms": _median_phases(timings[False]),
        "proposed_ms": _median_phases(timings[True]),
    }
    print(f"n={n} overhead: {overhead}", file=sys.stderr)
    return overhead


def main() -> None:
    """Run the benchmark and write bench/results/store.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="record counts, comma-separated")
    parser.add_argument("--runs", type=int, default=7, help="measured rounds per size")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds per size first")
    parser.add_argument("--phase-runs", type=int, default=5, help="rounds of the phase breakdown")
    parser.add_argument(
        "--proposed",
        action="store_true",
        help="also measure pysync with the proposed src patch (monkeypatched in the page)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    variants = (*VARIANTS, "pysync_proposed") if args.proposed else VARIANTS

    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    phases: list[dict[str, Any]] = []
    overhead: list[dict[str, Any]] = []
    names = _Names()
    with bench_page("store.html") as page:
        machine = page.machine()
        machine["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
        page.run_python(PAGE_CODE)
        if args.proposed:
            page.run_python(PROPOSED_SETUP)
        for n in sizes:
            rows += _rows(n, _rounds(page, n, variants, args, names), max(sizes))
            phases.append(_phases(page, n, args.phase_runs, names))
            if args.proposed:
                overhead.append(_overhead(page, n, args))
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
        "proposed_patch_measured": args.proposed,
        # pysync's own CPU work in put_many, current vs proposed, interleaved in one page.
        "overhead": overhead,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
