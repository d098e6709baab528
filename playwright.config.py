"""Browser settings shared by the browser tests, the end-to-end tests and the benchmarks.

The one place that says which Chromium runs and how. It is plain Python so that
pytest-pyodide's fixtures, our Playwright tests and ``bench/`` read the same values
(load it with ``tests/_config.py`` / ``bench/_browser.py``, not by copying numbers).
"""

import os

# Debian's chromium package; Playwright must never download a browser here.
CHROMIUM_EXECUTABLE = os.environ.get("PYSYNC_CHROMIUM", "/usr/bin/chromium")

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Lets tests force a garbage collection to check for leaked JS proxies.
    "--js-flags=--expose-gc",
]

VIEWPORT = {"width": 1280, "height": 800}

# Default timeout for one Playwright action or wait (ms). Loading Pyodide cold
# takes about 2.6 s here, so this leaves room on a loaded CI machine.
TIMEOUT_MS = 30_000

# Where the demo server listens unless a test starts its own on a free port.
BASE_URL = os.environ.get("PYSYNC_BASE_URL", "http://127.0.0.1:8765")

# Where screenshots, traces and console logs of failed or visual tests go.
OUTPUT_DIR = "test-results"
