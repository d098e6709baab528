"""Build the offline Pyodide distribution that the page and the browser tests load.

Pyodide from npm ships no package wheels, and loading a package by name would
fetch it from a CDN, which is neither allowed nor reachable here. This script
assembles ``build/pyodide/``:

* the runtime files of the pinned npm ``pyodide`` package;
* the pure-Python wheels that pytest-pyodide loads by name inside the page
  (pytest for assertion rewriting, tblib for tracebacks, micropip), downloaded
  from PyPI at exactly the versions of Pyodide's lock file;
* the pysync wheel, built from ``src/``, registered in the lock as ``pysync``: the client
  only, without ``pysync/server/``, the ``pysync`` command and the in-memory DynamoDB of
  ``pysync.testing`` (:func:`strip_server`);
* optional, for pages that use boto3 (docs/sdks.md): boto3, botocore, jmespath, s3transfer
  (pinned in :data:`SDK_WHEELS`) and pyodide-http, urllib3, python-dateutil, six (from the
  lock), all from PyPI; never precached, loaded only by ``loadPackage(["boto3", ...])``;
* ``build.json``: the build's id and the files the page's service worker
  (``web/sw.js``) precaches for offline use, with their sizes and sha256.

Every build of the wheel has its own version, ``<release>+g<hash>`` (PEP 440 local
version; the hash is over the files of ``src/pysync``), in its file name and its
metadata: the same source gives the same version, any change a new file name, so no
browser cache (the service worker's, PyScript's) keeps serving an older wheel under
the current name. hatchling gets it from :func:`wheel_version` (pyproject.toml's
``[tool.hatch.version]``), which reads ``$PYSYNC_WHEEL_VERSION``; other builds
(``pip install -e .``) get the plain release.

``pyodide-lock.json`` is rewritten to list only the packages present, with the
sha256 of the files actually shipped, so a missing package fails loudly.

Idempotent: downloads are cached in ``build/wheel-cache/``; the runtime files
are copied only when they changed. Files are replaced, never rewritten in place,
and the two previous pysync wheels stay, so a page that read the previous lock
still finds its wheel while ``build/pyodide/`` is being rebuilt.

This module only imports the standard library at the top: hatchling executes it to
read :func:`wheel_version`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NPM_PYODIDE = ROOT / "node_modules" / "pyodide"
DIST = ROOT / "build" / "pyodide"
CACHE = ROOT / "build" / "wheel-cache"

# Packages pytest-pyodide loads by name inside the page, with their dependencies.
TEST_PACKAGES = ("pytest", "tblib", "micropip", "packaging")
# The AWS SDK for Python in the page (docs/sdks.md): listed in the lock and shipped, but loaded
# only by pages that call ``pyodide.loadPackage(["boto3", "pyodide-http"])``; never precached.
SDK_PACKAGES = ("boto3", "pyodide-http")
# Pure-Python wheels missing from Pyodide's lock, pinned here: name -> (version, file name,
# imports, depends). The others (pyodide-http, urllib3, python-dateutil, six) come from the lock.
SDK_WHEELS: dict[str, tuple[str, str, list[str], list[str]]] = {
    "boto3": (
        "1.43.117",
        "boto3-1.43.117-py3-none-any.whl",
        ["boto3"],
        ["botocore", "jmespath", "s3transfer"],
    ),
    "botocore": (
        "1.43.117",
        "botocore-1.43.117-py3-none-any.whl",
        ["botocore"],
        ["jmespath", "python-dateutil", "urllib3"],
    ),
    "jmespath": ("1.1.0", "jmespath-1.1.0-py3-none-any.whl", ["jmespath"], []),
    "s3transfer": ("0.19.3", "s3transfer-0.19.3-py3-none-any.whl", ["s3transfer"], ["botocore"]),
}
# The environment variable that gives hatchling the version to build with.
VERSION_VARIABLE = "PYSYNC_WHEEL_VERSION"
# Files the page needs to boot, precached by the service worker (with the pysync wheel).
BOOT_FILES = (
    "pyodide.mjs",
    "pyodide.asm.mjs",
    "pyodide.asm.wasm",
    "python_stdlib.zip",
    "pyodide-lock.json",
)
# pysync wheels kept besides the current one (for pages that read an older lock).
KEEP_OLD_WHEELS = 2
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


def release(source: Path = ROOT) -> str:
    """pysync's release, ``__version__`` of ``src/pysync/__init__.py``."""
    init = (source / "src" / "pysync" / "__init__.py").read_text()
    found = re.search(r"""^__version__ = ["']([^"']+)["']""", init, re.MULTILINE)
    if found is None:
        raise ValueError(f"no __version__ in {source / 'src' / 'pysync' / '__init__.py'}")
    return found.group(1)


def source_hash(source: Path = ROOT) -> str:
    """sha256 over the paths and contents of the files of ``src/pysync`` (caches excluded)."""
    package = source / "src" / "pysync"
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        name = path.relative_to(package).as_posix().encode()
        data = path.read_bytes()
        digest.update(b"%d:%s%d:" % (len(name), name, len(data)))
        digest.update(data)
    return digest.hexdigest()


def build_version(source: Path = ROOT) -> str:
    """The version of a wheel built from ``source``: ``<release>+g<first 10 hex of the hash>``."""
    return f"{release(source)}+g{source_hash(source)[:10]}"


def wheel_version() -> str:
    """What hatchling builds with: ``$PYSYNC_WHEEL_VERSION``, else the plain release."""
    return os.environ.get(VERSION_VARIABLE) or release(Path(__file__).resolve().parent.parent)


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


# What the page never runs: the proxy and dev stack (CPython only, ``pysync[server]``), the
# ``pysync`` command and pysync.testing's in-memory DynamoDB (imported on first use). The
# rest of pysync.testing stays: the browser tests run its store contract in the page.
SERVER_ONLY = ("pysync/server/", "pysync/cli.py", "pysync/testing/_dynamo.py")


def _server_only(name: str) -> bool:
    return name.startswith(SERVER_ONLY) or name.endswith(".dist-info/entry_points.txt")


def strip_server(wheel: Path) -> None:
    """Rewrite ``wheel`` in place without :data:`SERVER_ONLY` files (nor the console script).

    ``RECORD`` loses their rows; every other member is copied byte for byte with its
    timestamp, so the same input gives the same output.
    """
    partial = wheel.with_name(f".{wheel.name}.partial")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(partial, "w") as dst:
        for info in src.infolist():
            if _server_only(info.filename):
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                rows = data.decode().splitlines(keepends=True)
                data = "".join(r for r in rows if not _server_only(r.split(",", 1)[0])).encode()
            dst.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    os.replace(partial, wheel)


def build_pysync_wheel(source: Path = ROOT, client_only: bool = True) -> Path:
    """Build the pysync wheel of the tree ``source`` into ``<source>/build/wheel/``.

    Its version is :func:`build_version` of that tree. ``client_only`` (the page's
    wheel) leaves out the server side (:func:`strip_server`); ``pip install`` of the
    project itself always gets the whole package.
    """
    out = source / "build" / "wheel"
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), "-q"],
        cwd=source,
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, VERSION_VARIABLE: build_version(source)},
    )
    (wheel,) = out.glob("pysync-*.whl")
    if client_only:
        strip_server(wheel)
    return wheel


def _copy_if_changed(src: Path, dst: Path) -> None:
    if dst.exists() and dst.stat().st_size == src.stat().st_size and _sha256(dst) == _sha256(src):
        return
    # Into a new file, then renamed: a reader never sees a half-written one.
    partial = dst.with_name(f".{dst.name}.{os.getpid()}.partial")
    shutil.copyfile(src, partial)
    os.replace(partial, dst)


def _write_text(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def _prune_old_wheels(dist: Path, current: str) -> None:
    old = sorted(
        (path for path in dist.glob("pysync-*.whl") if path.name != current),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    for path in old[KEEP_OLD_WHEELS:]:
        path.unlink(missing_ok=True)


def build_info(dist: Path, lock: dict[str, object]) -> dict[str, object]:
    """``build.json``: the build's id and the files to precache for offline use.

    ``precache`` lists the boot files and the pysync wheel (with its dependencies per the
    lock), relative to the dist, each with its size and sha256; ``build`` is a hash of
    that list, so it changes whenever one of those files does.
    """
    packages = lock["packages"]
    assert isinstance(packages, dict)
    wheels = [str(packages[name]["file_name"]) for name in _closure(packages, ("pysync",))]
    precache = [
        {"url": name, "size": (dist / name).stat().st_size, "sha256": _sha256(dist / name)}
        for name in (*BOOT_FILES, *wheels)
    ]
    build_id = hashlib.sha256(json.dumps(precache, sort_keys=True).encode()).hexdigest()[:16]
    pysync = packages["pysync"]
    return {
        "build": build_id,
        "pysync": {"version": pysync["version"], "file_name": pysync["file_name"]},
        "precache": precache,
    }


def build(
    with_test_packages: bool = True,
    dist: Path = DIST,
    source: Path = ROOT,
    with_sdk_packages: bool = True,
) -> Path:
    """Assemble ``dist`` (default ``build/pyodide/``) with the wheel of ``source``; return it."""
    if not NPM_PYODIDE.exists():
        raise SystemExit("node_modules/pyodide is missing: run `npm ci` first")
    dist.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_FILES:
        _copy_if_changed(NPM_PYODIDE / name, dist / name)

    lock = json.loads((NPM_PYODIDE / "pyodide-lock.json").read_text())
    packages: dict[str, dict[str, object]] = lock["packages"]
    kept: dict[str, dict[str, object]] = {}
    if with_test_packages:
        for name in _closure(packages, TEST_PACKAGES):
            entry = dict(packages[name])
            wheel = _fetch_wheel(name, str(entry["version"]), str(entry["file_name"]))
            _copy_if_changed(wheel, dist / wheel.name)
            entry["file_name"] = wheel.name
            entry["sha256"] = _sha256(wheel)
            kept[name] = entry
    if with_sdk_packages:
        for name, (version, file_name, imports, depends) in SDK_WHEELS.items():
            packages[name] = {
                "name": name,
                "version": version,
                "file_name": file_name,
                "install_dir": "site",
                "package_type": "package",
                "imports": imports,
                "depends": depends,
                "unvendored_tests": False,
            }
        for name in _closure(packages, SDK_PACKAGES):
            entry = dict(packages[name])
            wheel = _fetch_wheel(name, str(entry["version"]), str(entry["file_name"]))
            _copy_if_changed(wheel, dist / wheel.name)
            entry["file_name"] = wheel.name
            entry["sha256"] = _sha256(wheel)
            kept[name] = entry

    wheel = build_pysync_wheel(source)
    _copy_if_changed(wheel, dist / wheel.name)
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
    # The wheel first, then what points at it.
    _write_text(dist / "pyodide-lock.json", json.dumps(lock, indent=1, sort_keys=True))
    # The page reads this to find the wheel without guessing its version.
    _write_text(dist / "pysync-wheel.json", json.dumps({"file_name": wheel.name}))
    _write_text(dist / "build.json", json.dumps(build_info(dist, lock), indent=1))
    _prune_old_wheels(dist, wheel.name)
    return dist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--no-test-packages",
        action="store_true",
        help="skip the pytest/tblib/micropip wheels (the demo page does not need them)",
    )
    parser.add_argument(
        "--no-sdk-packages",
        action="store_true",
        help="skip boto3/botocore/pyodide-http (only pages using boto3 load them)",
    )
    args = parser.parse_args()
    print(
        build(
            with_test_packages=not args.no_test_packages,
            with_sdk_packages=not args.no_sdk_packages,
        )
    )


if __name__ == "__main__":
    main()
