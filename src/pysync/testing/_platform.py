"""An in-memory browser: tabs sharing storage, broadcast channels, locks and a clock."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

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
        #: Every event source a tab opened, oldest first (closed ones included).
        self.event_sources: list[MemoryEventSource] = []

    def tab(self) -> MemoryTab:
        """A new tab."""
        return MemoryTab(self)

    def open_event_sources(self, url_prefix: str = "") -> list[MemoryEventSource]:
        """The sources still open whose URL starts with ``url_prefix``."""
        return [s for s in self.event_sources if s.open and s.url.startswith(url_prefix)]

    def emit(self, url_prefix: str, kind: str, data: str) -> None:
        """Deliver a Server-Sent Event to every open source whose URL starts with ``url_prefix``."""
        for source in self.open_event_sources(url_prefix):
            source.deliver(kind, data)

    def fail_event_sources(self, url_prefix: str = "") -> None:
        """Make the matching open sources give up, as after an HTTP error (401, 503 …)."""
        for source in self.open_event_sources(url_prefix):
            source.open = False
            source.on_event("error", "closed")

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


class MemoryEventSource:
    """One ``EventSource`` a tab opened: it gets events while open (until closed or failed)."""

    def __init__(self, url: str, on_event: Callable[[str, str], None]) -> None:
        self.url, self.on_event = url, on_event
        self.open = True

    @property
    def params(self) -> dict[str, str]:
        """The query parameters of its URL (``scope``, ``token``, ``after`` …)."""
        return dict(parse_qsl(urlsplit(self.url).query))

    def deliver(self, kind: str, data: str) -> None:
        if self.open:
            self.on_event(kind, data)

    def close(self) -> None:
        self.open = False


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
        source = MemoryEventSource(url, on_event)
        self.browser.event_sources.append(source)
        self._stops.append(source.close)
        return source.close

    def crash(self) -> None:
        """Close the tab abruptly: its locks are released and its channels go quiet."""
        for stop in list(self._stops):
            stop()
        for channel in self._channels:
            channel.close()
