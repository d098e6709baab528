"""Bundle the AWS SDK for JavaScript v3's DynamoDB client for the page, offline.

``@aws-sdk/client-dynamodb`` and ``esbuild`` come from npm at the versions pinned in
``package.json``/``package-lock.json`` (``npm ci``); esbuild bundles the client into one
ES module, ``build/pyodide/aws-sdk-dynamodb.mjs``, which ``pysync dev`` serves at
``/pyodide/aws-sdk-dynamodb.mjs``. It is not in ``build.json``'s precache list: only a
page that imports it downloads it. See docs/sdks.md.

Idempotent; only the standard library and ``node_modules/.bin/esbuild``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ESBUILD = ROOT / "node_modules" / ".bin" / "esbuild"
OUTPUT = ROOT / "build" / "pyodide" / "aws-sdk-dynamodb.mjs"
# Everything the page uses: the client and its commands.
ENTRY = 'export * from "@aws-sdk/client-dynamodb";\n'


def build(output: Path = OUTPUT) -> Path:
    """Write the bundle to ``output`` and return it."""
    if not ESBUILD.exists():
        raise SystemExit("node_modules/.bin/esbuild is missing: run `npm ci` first")
    output.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            str(ESBUILD),
            "--bundle",
            "--format=esm",
            "--platform=browser",
            "--target=es2022",
            "--minify",
            "--log-level=warning",
            f"--outfile={output}",
        ],
        input=ENTRY,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return output


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT))
