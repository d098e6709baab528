"""Run the benchmarks, then render docs/benchmarks.md from bench/results/*.json.

Run: ``./run.sh bench`` or ``.venv/bin/python bench/run_all.py [--only store] [--report-only]``

Every ``bench/bench_<name>.py`` runs in its own subprocess (one at a time: the
machine is small and each benchmark wants it to itself) and writes
``bench/results/<name>.json``; ``bench/report.py`` then renders the summary from
all results, including those of benchmarks not run this time. A benchmark that
fails does not stop the others; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def available() -> dict[str, Path]:
    """Benchmark name -> script, for every bench/bench_<name>.py."""
    return {path.stem.removeprefix("bench_"): path for path in sorted(BENCH.glob("bench_*.py"))}


def main() -> int:
    """Run the selected benchmarks and the report; 1 if any failed."""
    scripts = available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only this benchmark (repeatable or comma-separated): {', '.join(scripts)}",
    )
    parser.add_argument("--report-only", action="store_true", help="only render docs/benchmarks.md")
    args = parser.parse_args()
    only = [name for value in args.only for name in value.split(",") if name]
    unknown = sorted(set(only) - set(scripts))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(scripts)}")
    selected = (
        {} if args.report_only else {n: p for n, p in scripts.items() if not only or n in only}
    )

    failed = []
    for name, script in selected.items():
        print(f"[bench] {name}: {script.relative_to(ROOT)}", file=sys.stderr, flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(script)], cwd=ROOT)
        took = time.monotonic() - started
        status = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"[bench] {name}: {status} in {took:.0f} s", file=sys.stderr, flush=True)
        if code != 0:
            failed.append(name)

    code = subprocess.call([sys.executable, str(BENCH / "report.py")], cwd=ROOT)
    if code != 0:
        failed.append("report")
    if failed:
        print(f"[bench] failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
