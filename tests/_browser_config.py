"""Loads ``playwright.config.py`` (its name is not importable as a module), and scripts."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def load(path: str, name: str) -> ModuleType:
    """The Python file ``path`` (relative to the repository) as module ``name``: for
    files that are not importable, such as ``playwright.config.py`` and ``scripts/``."""
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


config = load("playwright.config.py", "playwright_config")
