"""An in-memory browser: tabs sharing storage, broadcast channels, locks and a clock."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

from .._platform import Unsubscribe
from .._store import Database, MemoryStorage, Schema


class MemoryBrowser:
    """One simulated browser profile; each :meth:`tab` is a platform for a replica.

    Like a real browser: channel messages reach the other tabs asynchronously
    and never the sender; a lock is held by one tab at a time and passes to the
    next in line when released or when its tab closes. ``now_ms`` is a fake
    clock that only moves when the test says so (it may go backwards).
    """

    def __init__(self, now_ms: int = 1_800_000_000_000) -> None:
        self.storage = MemoryStorage()
        self.now_ms = now_ms
        self.is_online = True
        self._channels: dict[str, list[_Channel]] = {}
        self._holders: dict[str, MemoryTab] = {}
        self._queues: dict[str, list[tuple[MemoryTab, Callable[[], None]]]] = {}
        self._online_listeners: list[Callable[[bool], None]] = []
        self.event_sources: dict[str, list[Callable[[str, str], None]]] = {}

    def tab(self) -> MemoryTab:
        """A new tab."""
        return MemoryTab(self)

    def emit(self, url_prefix: str, kind: str, data: str) -> None:
        """Deliver a Server-Sent Event to every source whose URL starts with ``url_prefix``."""
        for url, listeners in list(self.event_sources.items()):
            if url.startswith(url_prefix):
                for listener in list(listeners):
                    listener(kind, data)

    def set_online(self, online: bool) -> None:
        """Simulate the network going away or coming back."""
        self.is_online = online
        for listener in list(self._online_listeners):
            listener(online)

    def _post(self, sender: _Channel, message: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        for channel in self._channels.get(sender.name, []):
            if channel is not sender:
                loop.call_soon(channel.deliver, copy.deepcopy(message))

    def _request(self, tab: MemoryTab, name: str, on_granted: Callable[[], None]) -> Unsubscribe:
        self._queues.setdefault(name, []).append((tab, on_granted))
        self._grant(name)

        def stop() -> None:
            queue = self._queues.get(name, [])
            self._queues[name] = [(t, cb) for t, cb in queue if cb is not on_granted]
            if self._holders.get(name) is tab:
                del self._holders[name]
                self._grant(name)

        tab._stops.append(stop)
        return stop

    def _grant(self, name: str) -> None:
        queue = self._queues.get(name, [])
        if name not in self._holders and queue:
            tab, on_granted = queue.pop(0)
            self._holders[name] = tab
            on_granted()


class _Channel:
    def __init__(
        self, browser: MemoryBrowser, name: str, on_message: Callable[[dict[str, Any]], None]
    ) -> None:
        self.browser, self.name, self.on_message = browser, name, on_message
        self.open = True
        browser._channels.setdefault(name, []).append(self)

    def deliver(self, message: dict[str, Any]) -> None:
        if self.open:
            self.on_message(message)

    def post(self, message: dict[str, Any]) -> None:
        if self.open:
            self.browser._post(self, message)

    def close(self) -> None:
        if self.open:
            self.open = False
            self.browser._channels[self.name].remove(self)


class MemoryTab:
    """One tab of a :class:`MemoryBrowser` (a :class:`~pysync._platform.Platform`)."""

    def __init__(self, browser: MemoryBrowser) -> None:
        self.browser = browser
        self._stops: list[Unsubscribe] = []
        self._channels: list[_Channel] = []

    def now_ms(self) -> int:
        return self.browser.now_ms

    async def open_store(self, schema: Schema) -> Database:
        return await self.browser.storage.open(schema)

    def channel(self, name: str, on_message: Callable[[dict[str, Any]], None]) -> _Channel:
        channel = _Channel(self.browser, name, on_message)
        self._channels.append(channel)
        return channel

    def request_leadership(self, name: str, on_granted: Callable[[], None]) -> Unsubscribe:
        return self.browser._request(self, name, on_granted)

    def online(self) -> bool:
        return self.browser.is_online

    def on_online_change(self, callback: Callable[[bool], None]) -> Unsubscribe:
        listeners = self.browser._online_listeners
        listeners.append(callback)
        return lambda: listeners.remove(callback) if callback in listeners else None

    def event_source(self, url: str, on_event: Callable[[str, str], None]) -> Unsubscribe:
        listeners = self.browser.event_sources.setdefault(url, [])
        listeners.append(on_event)
        return lambda: listeners.remove(on_event) if on_event in listeners else None

    def crash(self) -> None:
        """Close the tab abruptly: its locks are released and its channels go quiet."""
        for stop in list(self._stops):
            stop()
        for channel in self._channels:
            channel.close()
