"""Build the offline Pyodide distribution that the page and the browser tests load.

Pyodide from npm ships no package wheels, and loading a package by name would
fetch it from a CDN, which is neither allowed nor reachable here. This script
assembles ``build/pyodide/``:

* the runtime files of the pinned npm ``pyodide`` package;
* the pure-Python wheels that pytest-pyodide loads by name inside the page
  (pytest for assertion rewriting, tblib for tracebacks, micropip), downloaded
  from PyPI at exactly the versions of Pyodide's lock file;
* the pysync wheel, built from ``src/``, registered in the lock as ``pysync``.

``pyodide-lock.json`` is rewritten to list only the packages present, with the
sha256 of the files actually shipped, so a missing package fails loudly.

Idempotent: downloads are cached in ``build/wheel-cache/``; the runtime files
are copied only when they changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NPM_PYODIDE = ROOT / "node_modules" / "pyodide"
DIST = ROOT / "build" / "pyodide"
CACHE = ROOT / "build" / "wheel-cache"

# Packages pytest-pyodide loads by name inside the page, with their dependencies.
TEST_PACKAGES = ("pytest", "tblib", "micropip", "packaging")
RUNTIME_FILES = (
    "pyodide.js",
    "pyodide.mjs",
    "pyodide.asm.mjs",
    "pyodide.asm.wasm",
    "python_stdlib.zip",
    "pyodide.d.ts",
    "ffi.d.ts",
    "package.json",
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _closure(packages: dict[str, dict[str, object]], roots: tuple[str, ...]) -> list[str]:
    """Names of ``roots`` and everything they depend on, per the lock file."""
    seen: list[str] = []
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.append(name)
        depends = packages[name]["depends"]
        assert isinstance(depends, list)
        todo.extend(str(d) for d in depends)
    return sorted(seen)


def _fetch_wheel(name: str, version: str, file_name: str) -> Path:
    """Return a cached copy of ``file_name``, downloading it from PyPI if needed."""
    target = CACHE / file_name
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
        got = subprocess.run(
            [
                *pip,
                "download",
                f"{name}=={version}",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.14",
                "-d",
                tmp,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if got.returncode != 0:
            # Some pure-Python packages (atomicwrites) publish only an sdist.
            subprocess.run(
                [*pip, "wheel", f"{name}=={version}", "--no-deps", "-w", tmp],
                check=True,
            )
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise SystemExit(f"expected one wheel for {name}=={version}, got {wheels}")
        shutil.move(wheels[0], target)
    return target


def build_pysync_wheel() -> Path:
    """Build the pysync wheel from the working tree into ``build/wheel/``."""
    out = ROOT / "build" / "wheel"
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), "-q"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (wheel,) = out.glob("pysync-*.whl")
    return wheel


def _copy_if_changed(src: Path, dst: Path) -> None:
    if dst.exists() and dst.stat().st_size == src.stat().st_size and _sha256(dst) == _sha256(src):
        return
    shutil.copyfile(src, dst)


def build(with_test_packages: bool = True) -> Path:
    """Assemble ``build/pyodide/`` and return its path."""
    if not NPM_PYODIDE.exists():
        raise SystemExit("node_modules/pyodide is missing: run `npm ci` first")
    DIST.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_FILES:
        _copy_if_changed(NPM_PYODIDE / name, DIST / name)

    lock = json.loads((NPM_PYODIDE / "pyodide-lock.json").read_text())
    packages: dict[str, dict[str, object]] = lock["packages"]
    kept: dict[str, dict[str, object]] = {}
    if with_test_packages:
        for name in _closure(packages, TEST_PACKAGES):
            entry = dict(packages[name])
            wheel = _fetch_wheel(name, str(entry["version"]), str(entry["file_name"]))
            _copy_if_changed(wheel, DIST / wheel.name)
            entry["file_name"] = wheel.name
            entry["sha256"] = _sha256(wheel)
            kept[name] = entry

    wheel = build_pysync_wheel()
    for old in DIST.glob("pysync-*.whl"):
        old.unlink()
    shutil.copyfile(wheel, DIST / wheel.name)
    version = wheel.name.split("-")[1]
    kept["pysync"] = {
        "name": "pysync",
        "version": version,
        "file_name": wheel.name,
        "install_dir": "site",
        "sha256": _sha256(wheel),
        "package_type": "package",
        "imports": ["pysync"],
        "depends": [],
        "unvendored_tests": False,
    }
    lock["packages"] = kept
    (DIST / "pyodide-lock.json").write_text(json.dumps(lock, indent=1, sort_keys=True))
    # The page reads this to find the wheel without guessing its version.
    (DIST / "pysync-wheel.json").write_text(json.dumps({"file_name": wheel.name}))
    return DIST


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--no-test-packages",
        action="store_true",
        help="skip the pytest/tblib/micropip wheels (the demo page does not need them)",
    )
    args = parser.parse_args()
    print(build(with_test_packages=not args.no_test_packages))


if __name__ == "__main__":
    main()
