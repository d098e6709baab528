"""What pysync needs from its environment, behind one interface.

The browser implementation (``_browser.py``) uses IndexedDB, BroadcastChannel,
the Web Locks API and ``navigator.onLine``; ``pysync.testing`` has an in-memory
one with a fake clock, so that several "tabs" can be simulated in CPython.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ._store import Database, Schema

Unsubscribe = Callable[[], None]


class Channel(Protocol):
    """A broadcast channel between the tabs of one origin (not echoed to the sender)."""

    def post(self, message: dict[str, Any]) -> None:
        """Send ``message`` to the other tabs."""
        ...

    def close(self) -> None:
        """Stop sending and receiving."""
        ...


class Platform(Protocol):
    """The environment a replica runs in."""

    def now_ms(self) -> int:
        """Wall-clock time in milliseconds (may jump backwards)."""
        ...

    async def open_store(self, schema: Schema) -> Database:
        """Open the local database ``schema`` declares."""
        ...

    def channel(self, name: str, on_message: Callable[[dict[str, Any]], None]) -> Channel:
        """Join the broadcast channel ``name``."""
        ...

    def request_leadership(self, name: str, on_granted: Callable[[], None]) -> Unsubscribe:
        """Queue for the exclusive lock ``name``; ``on_granted`` runs once it is held.

        The lock is held until the returned function is called or the tab closes.
        """
        ...

    def online(self) -> bool:
        """Whether the network is believed reachable."""
        ...

    def event_source(self, url: str, on_event: Callable[[str, str], None]) -> Unsubscribe:
        """Open an ``EventSource`` on ``url``; the returned function closes it.

        ``on_event(type, data)`` receives unnamed events as ``"message"``, the
        named events ``"ready"`` and ``"expired"``, and every error as
        ``("error", "reconnecting")`` when the browser will reconnect by itself
        (a dropped connection) or ``("error", "closed")`` when it gave up for
        good (``readyState`` CLOSED: an HTTP error such as 401).
        """
        ...

    def on_online_change(self, callback: Callable[[bool], None]) -> Unsubscribe:
        """Call ``callback(online)`` whenever connectivity changes."""
        ...
