"""The realtime feed: one Server-Sent Events subscription that outlives its tokens.

The browser's ``EventSource`` reconnects by itself after a dropped connection,
but with the same URL, so with the same token. :class:`RealtimeFeed` takes over
where that cannot work:

* ``expired`` (the token ran out; the server then ends the stream): the source
  is closed at once, before the browser reconnects with the old token, and a
  new one is opened with a fresh token;
* an error after which the source gave up for good (``readyState`` CLOSED: a
  401 once the token expired while the connection was down, a 403, 429 or 503):
  reopened the same way.

Each reopen waits a jittered delay that grows with consecutive failures (0.5 to
1 s the first time, doubling up to 60 s) and resumes after the replica's cursor
(``?after=``). A stream that stayed up for :data:`STABLE_MS` after its
``ready`` was a success: the next delay starts small again. A ``ready``
followed at once by ``expired`` (a token that was already stale) or by an
error is a failure, so a token source that keeps handing out stale tokens is
retried ever more slowly instead of in a tight loop.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlencode

from .._platform import Platform, Unsubscribe

#: First reopen delay (before jitter: the delay is drawn from half of it to all of it).
BASE_DELAY = 1.0
#: Longest reopen delay.
MAX_DELAY = 60.0
#: How long a stream must stay up after its ``ready`` to count as a success (ms).
STABLE_MS = 10_000


class RealtimeFeed:
    """Follows ``url`` (``GET /changes``) for one scope, reopening it with fresh tokens.

    ``on_event(type, data)`` gets the stream's ``message`` and ``ready`` events;
    ``after()`` gives the seq to resume after (``None``: the server's head);
    ``on_error`` hears about a token or cursor that could not be read (the
    reopen is retried later); ``on_connected`` about each change of
    :attr:`connected`. ``sleep`` waits out the delays.
    """

    def __init__(
        self,
        platform: Platform,
        url: str,
        params: Mapping[str, str],
        token: Callable[[], str],
        after: Callable[[], Awaitable[int | None]],
        on_event: Callable[[str, str], None],
        on_error: Callable[[BaseException], None],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_connected: Callable[[bool], None] = lambda _: None,
    ) -> None:
        self._platform = platform
        self._url = url
        self._params = dict(params)
        self._token = token
        self._after = after
        self._on_event = on_event
        self._on_error = on_error
        self._sleep = sleep
        self._close: Unsubscribe | None = None
        self._opening: asyncio.Task[None] | None = None
        self._generation = 0  # of the current source: events of older ones are ignored
        self._failures = 0
        self._ready_at: int | None = None
        self._stopped = False
        self._on_connected = on_connected
        self._connected = False

    @property
    def connected(self) -> bool:
        """Whether the current stream said ``ready`` and has not failed since."""
        return self._connected

    @connected.setter
    def connected(self, value: bool) -> None:
        if value != self._connected:
            self._connected = value
            self._on_connected(value)

    def start(self) -> None:
        """Open the first source (soon, from a task: the cursor is read first)."""
        self._schedule(0.0)

    def stop(self) -> None:
        """Close the source and cancel a pending reopen; the feed cannot be restarted."""
        self._stopped = True
        self._close_source()
        if self._opening is not None:
            self._opening.cancel()
            self._opening = None

    def set_online(self, online: bool) -> None:
        """Close the stream while the device is offline; reopen it at once when back."""
        if online:
            self._failures = 0
            if self._opening is not None:  # a reopen waiting out its backoff: now instead
                self._opening.cancel()
                self._opening = None
            self._schedule(0.0)
        else:
            self._close_source()

    def _schedule(self, delay: float) -> None:
        if not self._stopped and (self._opening is None or self._opening.done()):
            self._opening = asyncio.ensure_future(self._open(delay))

    async def _open(self, delay: float) -> None:
        if delay > 0:
            await self._sleep(delay)
        try:
            after = await self._after()
            token = self._token()
        except Exception as error:  # the app's token function, a closed replica …
            self._on_error(error)
            self._opening = None
            self._schedule(self._next_delay())
            return
        self._opening = None
        if self._stopped or not self._platform.online():  # set_online(True) reopens it
            return
        query = {**self._params, "token": token}
        if after is not None:
            query["after"] = str(after)
        separator = "&" if "?" in self._url else "?"
        self._close_source()
        self._generation += 1
        generation = self._generation
        self._close = self._platform.event_source(
            f"{self._url}{separator}{urlencode(query)}",
            lambda kind, data: self._event(generation, kind, data),
        )

    def _event(self, generation: int, kind: str, data: str) -> None:
        if generation != self._generation or self._stopped:
            return  # a source already replaced or closed
        if kind == "expired" or (kind == "error" and data == "closed"):
            self._close_source()
            self._schedule(self._next_delay())
        elif kind == "error":  # the browser reconnects by itself
            self.connected = False
        else:
            if kind == "ready":
                self.connected = True
                self._ready_at = self._platform.now_ms()
            self._on_event(kind, data)

    def _close_source(self) -> None:
        self.connected = False
        self._generation += 1
        if self._close is not None:
            close, self._close = self._close, None
            close()

    def _next_delay(self) -> float:
        """The delay before the next reopen: a failure unless the last stream lasted."""
        if self._ready_at is not None and self._platform.now_ms() - self._ready_at >= STABLE_MS:
            self._failures = 0
        self._ready_at = None
        self._failures += 1
        delay = min(MAX_DELAY, BASE_DELAY * 2.0 ** min(self._failures - 1, 16))
        return delay * (0.5 + random.random() / 2)
