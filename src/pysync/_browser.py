"""The browser platform: BroadcastChannel, Web Locks and ``navigator.onLine``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ._platform import Unsubscribe
from ._store import Database, Schema, open_indexeddb


class _BroadcastChannel:
    def __init__(self, name: str, on_message: Callable[[dict[str, Any]], None]) -> None:
        import js
        from pyodide.ffi import create_proxy

        self._channel = js.BroadcastChannel.new(name)
        # Messages travel as JSON text: no JS object proxies to convert or leak.
        self._handler = create_proxy(lambda event: on_message(json.loads(event.data)))
        self._channel.onmessage = self._handler
        # Looked up once: every local write posts.
        self._post = self._channel.postMessage

    def post(self, message: dict[str, Any]) -> None:
        self._post(json.dumps(message))

    def close(self) -> None:
        self._channel.onmessage = None
        self._channel.close()
        self._handler.destroy()


_LOCK_JS = """
(name, onGranted) => {
  let release;
  const held = new Promise((resolve) => { release = resolve; });
  const queued = new AbortController();
  navigator.locks
    .request(name, { signal: queued.signal }, () => { onGranted(); return held; })
    .catch(() => {});  // AbortError when we stop queueing before the lock is granted
  return () => { queued.abort(); release(); };
}
"""


class BrowserPlatform:
    """The real browser (Pyodide in a page)."""

    def now_ms(self) -> int:
        import js

        return int(js.Date.now())

    async def open_store(self, schema: Schema) -> Database:
        return await open_indexeddb(schema)

    def channel(self, name: str, on_message: Callable[[dict[str, Any]], None]) -> _BroadcastChannel:
        return _BroadcastChannel(name, on_message)

    def request_leadership(self, name: str, on_granted: Callable[[], None]) -> Unsubscribe:
        from pyodide.code import run_js
        from pyodide.ffi import create_proxy

        granted = create_proxy(on_granted)
        release = run_js(_LOCK_JS)(name, granted)

        def stop() -> None:
            release()
            granted.destroy()

        return stop

    def event_source(self, url: str, on_event: Callable[[str, str], None]) -> Unsubscribe:
        import asyncio

        import js
        from pyodide.ffi import create_proxy

        source = js.EventSource.new(url)
        # After a dropped connection the browser reconnects by itself (same URL,
        # resuming after the last event id); after an HTTP error it gives up.
        handlers = {
            kind: create_proxy(lambda event, kind=kind: on_event(kind, str(event.data)))
            for kind in ("message", "ready", "expired")
        }
        handlers["error"] = create_proxy(
            lambda _event: on_event(
                "error", "closed" if source.readyState == js.EventSource.CLOSED else "reconnecting"
            )
        )
        for kind, handler in handlers.items():
            source.addEventListener(kind, handler)

        def release() -> None:
            for handler in handlers.values():
                handler.destroy()

        def stop() -> None:
            source.close()
            for kind, handler in handlers.items():
                source.removeEventListener(kind, handler)
            # stop() may run inside one of these handlers: destroy them afterwards.
            asyncio.get_event_loop().call_soon(release)

        return stop

    def online(self) -> bool:
        import js

        return bool(js.navigator.onLine)

    def on_online_change(self, callback: Callable[[bool], None]) -> Unsubscribe:
        import js
        from pyodide.ffi import create_proxy

        online = create_proxy(lambda _event: callback(True))
        offline = create_proxy(lambda _event: callback(False))
        js.addEventListener("online", online)
        js.addEventListener("offline", offline)

        def stop() -> None:
            js.removeEventListener("online", online)
            js.removeEventListener("offline", offline)
            online.destroy()
            offline.destroy()

        return stop
