"""The page's pysync wheel: its size, and the time to install and import it in Chromium.

Each run opens a fresh browser context, loads Pyodide from the offline dist, then times
``pyodide.loadPackage(<wheel URL>)`` (fetch, unpack, install) and ``import pysync``
(``performance.now()`` around ``runPython``), and lists the ``pysync.*`` modules loaded.
Medians of ``--runs`` runs.

    python bench/bench_wheel.py [WHEEL ...] [--runs 7] [--json out.json]

Without a WHEEL, the current wheel of build/pyodide/ (per its pyodide-lock.json). Give
two wheels (say, one built before a change and one after) to compare them in the same
browser on the same machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _browser import DIST, PAGES, browser_config, serve

_MEASURE = """async (wheel) => {
  const pyodide = await loadPyodide({ indexURL: "/pyodide/" });
  const errors = [];
  const t0 = performance.now();
  await pyodide.loadPackage("/wheels/" + wheel, {
    messageCallback: () => {},
    errorCallback: (message) => errors.push(message),
  });
  const t1 = performance.now();
  if (errors.length) throw new Error("loading pysync failed: " + errors.join("; "));
  pyodide.runPython("import pysync");
  const t2 = performance.now();
  const modules = pyodide.runPython(
    "import sys, json; json.dumps(sorted(m for m in sys.modules if m.startswith('pysync')))"
  );
  return { install_ms: t1 - t0, import_ms: t2 - t1, modules: JSON.parse(modules) };
}"""


def measure(wheels: list[Path], runs: int) -> list[dict[str, Any]]:
    """Size, median install and import time, and imported modules of each wheel."""
    from playwright.sync_api import sync_playwright

    config = browser_config()
    with tempfile.TemporaryDirectory(prefix="pysync-bench-wheel-") as tmp:
        folder = Path(tmp)
        for wheel in wheels:
            shutil.copyfile(wheel, folder / wheel.name)
        samples: dict[str, list[dict[str, Any]]] = {wheel.name: [] for wheel in wheels}
        with (
            serve({"/": PAGES, "/pyodide/": DIST, "/wheels/": folder}) as base_url,
            sync_playwright() as playwright,
        ):
            browser = playwright.chromium.launch(
                executable_path=config.CHROMIUM_EXECUTABLE, args=config.CHROMIUM_ARGS
            )
            try:
                for run in range(runs):
                    # Interleaved, in alternating order, so drift and warm-up hit all alike.
                    for wheel in wheels if run % 2 == 0 else wheels[::-1]:
                        context = browser.new_context()
                        context.set_default_timeout(config.TIMEOUT_MS)
                        page = context.new_page()
                        page.goto(f"{base_url}/bench.html")
                        samples[wheel.name].append(page.evaluate(_MEASURE, wheel.name))
                        context.close()
            finally:
                browser.close()
    results = []
    for wheel in wheels:
        got = samples[wheel.name]
        results.append(
            {
                "wheel": wheel.name,
                "bytes": wheel.stat().st_size,
                "runs": runs,
                "install_ms_median": round(statistics.median(s["install_ms"] for s in got), 1),
                "import_ms_median": round(statistics.median(s["import_ms"] for s in got), 1),
                "modules": len(got[0]["modules"]),
                "server_imported": any(m.startswith("pysync.server") for m in got[0]["modules"]),
            }
        )
    return results


def current_wheel() -> Path:
    lock = json.loads((DIST / "pyodide-lock.json").read_text())
    return DIST / lock["packages"]["pysync"]["file_name"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheels", nargs="*", type=Path)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = measure(args.wheels or [current_wheel()], args.runs)
    text = json.dumps(results, indent=1)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
