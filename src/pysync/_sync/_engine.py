"""The sync engine: push the outbox, pull the changelog, once or in the background."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from .._merge import Strategy
from .._remote import Remote, RemoteError
from .._replica import Replica
from ._pull import Puller, PullReport
from ._push import Pusher, PushReport


@dataclass
class SyncReport:
    """What one :meth:`Sync.sync` did."""

    push: PushReport
    pull: PullReport


class Sync:
    """Keeps a replica in sync with one scope of a DynamoDB table.

    ``strategy`` resolves conflicting fields: ``"lww"`` (last writer by hybrid
    logical clock, the default), ``"server"``, ``"client"`` or a callback
    ``(base, local, remote) -> merged``; ``strategies`` overrides it per collection.
    """

    def __init__(
        self,
        replica: Replica,
        remote: Remote,
        *,
        table: str = "pysync",
        scope: str | None = None,
        strategy: Strategy = "lww",
        strategies: Mapping[str, Strategy] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.replica = replica
        self.scope = scope or f"u#{replica.user}"
        per_collection = dict(strategies or {})
        self.pusher = Pusher(
            replica, remote, table, self.scope, lambda c: per_collection.get(c, strategy), sleep
        )
        self.puller = Puller(replica, remote, table, self.scope)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sleep = sleep
        self._stop_listen: Callable[[], None] | None = None

    async def push(self) -> PushReport:
        """Push every pending change (conflicts are merged and pushed again)."""
        async with self._lock:
            return await self._push()

    async def _push(self) -> PushReport:
        def progress(done: int, total: int) -> None:
            self.replica._set_status(progress=f"pushing {done} of {total}")

        report = await self.pusher.push(progress)
        await self.replica._refresh_counts()
        return report

    async def pull(self) -> PullReport:
        """Apply the server's changes since the last pull."""
        async with self._lock:
            return await self._pull()

    async def _pull(self) -> PullReport:
        def progress(page: int) -> None:
            self.replica._set_status(progress=f"pulling page {page}")

        return await self.puller.pull(progress)

    async def sync(self) -> SyncReport:
        """Push, then pull, then push what conflicts produced; return what happened."""
        async with self._lock:
            self.replica._set_status(syncing=True)
            try:
                pushed = await self._push()
                pulled = await self._pull()
                again = await self._push()
            except RemoteError as error:
                self.replica._set_status(last_error=str(error))
                raise
            finally:
                self.replica._set_status(syncing=False, progress=None)
            pushed.pushed += again.pushed
            pushed.conflicts += again.conflicts
            pushed.rejected += again.rejected
            self.replica._set_status(last_error=None)
            return SyncReport(pushed, pulled)

    def start(self, interval: float = 5.0) -> None:
        """Sync in the background while this tab is the leader and online.

        Local writes and :meth:`notify` wake it at once; otherwise it runs every
        ``interval`` seconds. Errors go to ``replica.status.last_error``.
        """
        if self._task is None:
            self._stop_watch = self.replica.on_status(lambda _status: self._wake.set())
            self._task = asyncio.ensure_future(self._loop(interval))

    def listen(self, url: str, token: str) -> None:
        """Follow the proxy's realtime feed (``GET /changes``) while syncing in the background.

        An event whose seq is the cursor + 1 is applied at once; anything else
        (a gap, a reconnect's ``ready``) triggers a catch-up pull. The changelog
        stays the truth: realtime only makes changes arrive sooner.
        """
        from urllib.parse import urlencode

        query = urlencode({"scope": self.scope, "token": token})
        self._stop_listen = self.replica.platform.event_source(f"{url}?{query}", self._on_event)

    def _on_event(self, kind: str, data: str) -> None:
        task = asyncio.ensure_future(self._realtime(kind, data))
        task.add_done_callback(self.replica._report)

    async def _realtime(self, kind: str, data: str) -> None:
        message = json.loads(data)
        entry = message.get("entry")
        if kind == "message" and entry is not None and not self._lock.locked():
            async with self._lock:
                cursor = await self.puller.cursor()
                if cursor is not None and int(message["seq"]) == cursor + 1:
                    await self.puller.apply_entries([entry])
                    return
        self.notify()

    def notify(self) -> None:
        """Something changed (a realtime event, coming back online): sync soon."""
        self._wake.set()

    async def _loop(self, interval: float) -> None:
        failures = 0
        while True:
            status = self.replica.status
            if status.leader and status.online and not self.replica.closed:
                try:
                    await self.sync()
                    failures = 0
                except RemoteError:
                    failures += 1
            self._wake.clear()
            delay = interval if failures == 0 else min(60.0, interval * 2**failures)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def stop(self) -> None:
        """Stop background syncing and the realtime feed."""
        if self._stop_listen is not None:
            self._stop_listen()
            self._stop_listen = None
        if self._task is not None:
            self._task.cancel()
            self._stop_watch()
            self._task = None
