"""Waiting on the event loop in the in-memory tests (no real time passes)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable


async def until(check: Callable[[], object], rounds: int = 2000) -> None:
    """Let the event loop run until ``check()`` (or the awaitable it returns) is true."""
    for _ in range(rounds):
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition did not become true")


async def settle(rounds: int = 200) -> None:
    """Let ``rounds`` turns of the event loop pass (for what must NOT happen)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
