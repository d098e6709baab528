"""Soak: run many seeds of the model (tests/model) and count what they did and found.

    .venv/bin/python scripts/soak.py --seeds 200 --runner memory
    .venv/bin/python scripts/soak.py --seeds 20 --runner stack       # starts DynamoDB Local
    .venv/bin/python scripts/soak.py --seeds 50 --runner chromium    # and the proxy, Chromium
    .venv/bin/python scripts/soak.py --replay program.json --runner memory

Each failing seed is printed with its broken promises, a minimal step list (the
model's delta debugging over steps, same promise) and the log of that minimal
run. Counts (seeds, operations by kind, faults injected by kind, failures by
promise, failing seeds and their minimal programs) go to
``bench/results/soak-<runner>.json``. Exits 1 when a seed failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.model.device import deterministic_ids  # noqa: E402
from tests.model.memory import MemoryWorld  # noqa: E402
from tests.model.program import Program, from_seed  # noqa: E402
from tests.model.runner import Outcome, minimize, run_program  # noqa: E402


@contextlib.contextmanager
def database(runner: str) -> Iterator[str | None]:
    if runner in ("memory", "chromium"):  # the Chromium lab starts its own
        yield None
        return
    from pysync.server import DynamoDBLocal

    with DynamoDBLocal() as local:
        yield local.endpoint


async def run(program: Program, runner: str, endpoint: Any) -> Outcome:
    if runner == "chromium":
        return await endpoint.run(program)  # endpoint: the ChromiumLab
    with deterministic_ids(program.get("seed")):
        if runner == "memory":
            return await run_program(program, MemoryWorld(program))
        from tests.model.stack import StackWorld

        assert endpoint is not None
        return await run_program(program, StackWorld(program, endpoint))


async def soak(args: argparse.Namespace, endpoint: str | None) -> dict[str, Any]:
    if args.runner == "chromium":
        from tests.model.chromium import chromium_lab

        async with chromium_lab() as lab:
            return await _soak(args, lab)
    return await _soak(args, endpoint)


async def _soak(args: argparse.Namespace, endpoint: Any) -> dict[str, Any]:
    ops: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    promises: Counter[str] = Counter()
    failures: list[dict[str, Any]] = []
    avoid = frozenset(a for a in args.avoid.split(",") if a)
    if args.replay:
        programs = [args.replay]
    else:
        seeds = range(args.start, args.start + args.seeds)
        drawn: dict[str, Any] = {"max_steps": args.max_steps, "avoid": avoid}
        if args.old_layout_share is not None:
            drawn["old_layout_share"] = args.old_layout_share
        programs = [from_seed(s, **drawn) for s in seeds]
    started = time.monotonic()
    for program in programs:
        outcome = await run(program, args.runner, endpoint)
        ops.update(outcome.ops)
        faults.update(outcome.faults)
        seed = program.get("seed")
        if outcome.ok:
            print(f"seed {seed}: ok ({outcome.seconds:.1f} s)", flush=True)
            continue
        kinds = sorted({f.split(":")[0] for f in outcome.failures})
        promises.update(kinds)
        print(outcome.report(tail=0), flush=True)
        small: Program = program
        found: Outcome | None = None
        if args.minimize:
            first = kinds[0]
            small, found = await minimize(
                program,
                lambda p: run(p, args.runner, endpoint),
                lambda o, first=first: any(f.startswith(first) for f in o.failures),
                budget=args.minimize,
            )
            print(f"minimal steps ({len(small['steps'])} of {len(program['steps'])}):")
            print(json.dumps({**small, "steps": small["steps"]}))
            if found is not None:
                print(found.report(tail=200), flush=True)
        failures.append(
            {
                "seed": seed,
                "promises": kinds,
                "failures": outcome.failures[:20],
                "minimal": small,
            }
        )
    return {
        "runner": args.runner,
        "seeds": len(programs),
        "first_seed": args.start,
        "avoid": sorted(avoid),
        "max_steps": args.max_steps,
        "old_layout_share": args.old_layout_share,
        "seconds": round(time.monotonic() - started, 1),
        "failed": len(failures),
        "failures_by_promise": dict(sorted(promises.items())),
        "operations": dict(sorted(ops.items())),
        "operations_total": sum(ops.values()),
        "faults": dict(sorted(faults.items())),
        "faults_total": sum(faults.values()),
        "failing": failures,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--runner", choices=("memory", "stack", "chromium"), default="memory")
    parser.add_argument("--max-steps", type=int, default=80)
    parser.add_argument("--avoid", default="", help="step kinds not to draw, e.g. nocontract,lag")
    parser.add_argument(
        "--old-layout-share",
        type=float,
        help="share of steps with an old_layout step before them (default: the model's, "
        "0.015; e.g. 0.1 to sweep the outbox upgrade)",
    )
    parser.add_argument(
        "--minimize", type=int, default=150, help="runs to spend minimizing a failure (0: none)"
    )
    parser.add_argument("--replay", help="a program (JSON) to run instead of seeds")
    parser.add_argument("--out", help="where to write the counts (JSON)")
    args = parser.parse_args()
    if args.replay:
        args.replay = json.loads(Path(args.replay).read_text())
    if args.runner == "stack" and args.minimize == 150:
        args.minimize = 30  # a stack run takes seconds
    if args.runner == "chromium" and args.minimize == 150:
        args.minimize = 12  # a Chromium run takes 3 to 40 s
    with database(args.runner) as endpoint:
        result = asyncio.run(soak(args, endpoint))
    out = Path(args.out or ROOT / "bench" / "results" / f"soak-{args.runner}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"{result['failed']} of {result['seeds']} seeds failed "
        f"({result['operations_total']} operations, {result['faults_total']} faults, "
        f"{result['seconds']} s); counts in {out}"
    )
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
