"""The wheels: the page's holds no server code; the full one works installed outside the repo.

The full wheel (``python -m build``) is what ``pip install pysync[server]`` installs; the
page's is the same wheel through ``scripts/build_dist.py``'s :func:`strip_server`. The
install test makes a fresh virtualenv in a temporary directory, installs the wheel alone
(the server commands then name the missing extra), then its ``server`` extra (from pip's
cache or PyPI), and runs ``pysync dev`` there, outside the repository, without Java.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests._browser_config import ROOT, load

build_dist = load("scripts/build_dist.py", "build_dist")


@pytest.fixture(scope="module")
def full_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("pysync-*.whl")
    return wheel


def _check_record(wheel: zipfile.ZipFile) -> None:
    (record,) = [name for name in wheel.namelist() if name.endswith(".dist-info/RECORD")]
    rows = {}
    for line in wheel.read(record).decode().splitlines():
        name, digest, size = line.rsplit(",", 2)
        rows[name] = (digest, size)
    assert set(rows) == set(wheel.namelist())
    for name, (digest, size) in rows.items():
        if name == record:
            continue
        data = wheel.read(name)
        expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        assert digest == f"sha256={expected.decode()}", name
        assert int(size) == len(data), name


def test_page_wheel_holds_no_server_code(full_wheel: Path, tmp_path: Path) -> None:
    page = tmp_path / full_wheel.name
    page.write_bytes(full_wheel.read_bytes())
    build_dist.strip_server(page)

    with zipfile.ZipFile(full_wheel) as whole:
        assert any(name.startswith("pysync/server/") for name in whole.namelist())
        whole_names = set(whole.namelist())
    with zipfile.ZipFile(page) as wheel:
        names = wheel.namelist()
        assert not [n for n in names if n.startswith("pysync/server/") or n == "pysync/cli.py"]
        assert "pysync/testing/_dynamo.py" not in names  # CPython only, imported on first use
        assert not [n for n in names if n.endswith("entry_points.txt")]
        # The client and the client-safe test support stay, byte for byte.
        assert "pysync/__init__.py" in names
        assert "pysync/testing/store_contract.py" in names
        assert {n for n in whole_names if not build_dist._server_only(n)} == set(names)
        _check_record(wheel)
    assert page.stat().st_size < full_wheel.stat().st_size * 0.75

    # It installs and imports (in CPython here) without the server.
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", target, page],
        check=True,
    )
    probe = (
        f"import sys; sys.path.insert(0, {str(target)!r}); import pysync; "
        f"assert pysync.__file__.startswith({str(target)!r}), pysync.__file__; "
        "assert not [m for m in sys.modules if m.startswith(('pysync.server', 'pysync.cli'))]; "
        "import importlib.util as u; assert u.find_spec('pysync.server') is None; "
        "import pysync.testing; assert u.find_spec('pysync.testing._dynamo') is None"
    )
    # -S: no site-packages, so not the checkout's editable install either.
    subprocess.run([sys.executable, "-I", "-S", "-c", probe], check=True)


def test_build_dist_ships_the_client_only_wheel(tmp_path: Path) -> None:
    """build_dist.build (build/pyodide/, what the page and browser tests load) strips it."""
    dist = build_dist.build(with_test_packages=False, dist=tmp_path / "pyodide")
    info = json.loads((dist / "build.json").read_text())
    wheel = dist / info["pysync"]["file_name"]
    with zipfile.ZipFile(wheel) as page:
        assert "pysync/__init__.py" in page.namelist()
        assert not [n for n in page.namelist() if build_dist._server_only(n)]
    assert any(entry["url"] == wheel.name for entry in info["precache"])


def _run(venv: Path, *args: str, path: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSYNC_", "VIRTUAL_ENV"))}
    env["PATH"] = path
    return subprocess.run(
        [str(venv / "bin" / "pysync"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_install_outside_the_repository(full_wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    pip.append("--disable-pip-version-check")
    # No java, no javac, no node_modules: only the venv's own scripts on PATH.
    bare_path = str(venv / "bin")

    # The wheel alone: the client. The server commands name the missing extra.
    subprocess.run([*pip, "--no-deps", str(full_wheel)], check=True, cwd=outside)
    assert _run(venv, "dev", "--help", path=bare_path, cwd=outside).returncode == 0
    missing = _run(venv, "dev", path=bare_path, cwd=outside)
    assert missing.returncode != 0
    assert "Traceback" not in missing.stdout + missing.stderr
    (line,) = missing.stderr.strip().splitlines()
    assert "pip install 'pysync[server]'" in line

    # With the server extra (from pip's cache, else PyPI).
    subprocess.run([*pip, f"pysync[server] @ {full_wheel.as_uri()}"], check=True, cwd=outside)
    helped = _run(venv, "dev", "--help", path=bare_path, cwd=outside)
    assert helped.returncode == 0
    assert "--pyodide-dir" in helped.stdout

    no_java = _run(venv, "dev", path=bare_path, cwd=outside)
    output = no_java.stdout + no_java.stderr
    assert no_java.returncode != 0
    assert "Traceback" not in output
    lines = no_java.stderr.strip().splitlines()
    assert lines[0].startswith("pysync dev: Java is not on PATH")
    assert "JDK" in lines[0]
    # Outside the repository there is no node_modules: DynamoDB Local is named too.
    assert any("DynamoDB Local not found" in line for line in lines)
    assert all(line.startswith("pysync dev: ") for line in lines)

    # A java without its javac (a JRE), and no launcher compiled yet: the JDK is named.
    jre = tmp_path / "jre"
    jre.mkdir()
    (jre / "java").write_text("#!/bin/sh\nexit 1\n")
    (jre / "java").chmod(0o755)
    no_javac = subprocess.run(
        [str(venv / "bin" / "pysync"), "dev"],
        cwd=outside,
        env={"PATH": f"{bare_path}{os.pathsep}{jre}", "XDG_CACHE_HOME": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert no_javac.returncode != 0
    assert "Traceback" not in no_javac.stdout + no_javac.stderr
    lines = no_javac.stderr.strip().splitlines()
    assert "no javac was found: install a JDK 17 or later" in lines[0]
    assert all(line.startswith("pysync dev: ") for line in lines)

    # A PYSYNC_DYNAMODB_LOCAL_DIR without the jar says so, in one line of its own.
    env_path = f"{bare_path}{os.pathsep}{os.environ['PATH']}"
    wrong = subprocess.run(
        [str(venv / "bin" / "pysync"), "dev"],
        cwd=outside,
        env={"PATH": env_path, "HOME": str(tmp_path), "PYSYNC_DYNAMODB_LOCAL_DIR": str(outside)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert wrong.returncode != 0
    assert "Traceback" not in wrong.stdout + wrong.stderr
    assert f"PYSYNC_DYNAMODB_LOCAL_DIR={outside} holds no DynamoDBLocal.jar" in wrong.stderr
