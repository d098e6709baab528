"""The sync engine: push the outbox, pull the changelog, once or in the background."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._merge import Strategy
from .._remote import BATCH_CALLS, Remote, RemoteError, token_function
from .._replica import Replica, Status
from .._schema import check_name
from ._feed import RealtimeFeed
from ._pull import Puller, PullReport
from ._push import Pusher, PushReport

#: Realtime entries kept while a sync holds the lock; beyond, a catch-up pull reads them.
INBOX_LIMIT = 500


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
    By default each change goes out as one plain conditional write
    (``PutItem``/``UpdateItem``, billed one write unit per KB); with the pysync
    proxy (``HttpRemote``) up to ``push_batch`` of them travel in one HTTP request,
    the proxy sending each to DynamoDB as its own write (a browser's cost is per
    request: 1 sends each change alone), up to ``push_concurrency`` requests at a
    time (browsers open at most 6 HTTP/1.1 connections per origin; the rest
    queue in the browser). ``pack_size`` > 1
    sends independent changes in packs of that many per ``TransactWriteItems``:
    fewer, larger requests, but DynamoDB bills transactional writes twice. A
    local :meth:`~pysync.Replica.transaction` always goes as one
    ``TransactWriteItems``.

    ``namespace`` (by default the replica's app name) is the part of the table
    and scope this app owns: its items' sort keys are
    ``<namespace>/<collection>#<id>``, so several apps can share one table and
    scope without seeing each other's documents. Two app names that should
    share their documents pass the same ``namespace``.
    """

    def __init__(
        self,
        replica: Replica,
        remote: Remote,
        *,
        table: str = "pysync",
        scope: str | None = None,
        namespace: str | None = None,
        strategy: Strategy = "lww",
        strategies: Mapping[str, Strategy] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        pack_size: int = 1,
        push_concurrency: int = 8,
        push_batch: int = 50,
    ) -> None:
        if not 1 <= pack_size <= 100:  # DynamoDB's TransactWriteItems takes 100 items
            raise ValueError(f"pack_size must be from 1 to 100, not {pack_size}")
        if not 1 <= push_batch <= BATCH_CALLS:
            raise ValueError(f"push_batch must be from 1 to {BATCH_CALLS}, not {push_batch}")
        if push_concurrency < 1:
            raise ValueError(f"push_concurrency must be at least 1, not {push_concurrency}")
        self.replica = replica
        self.scope = scope or f"u#{replica.user}"
        what = "namespace" if namespace is not None else "namespace (the app name)"
        self.namespace = check_name(replica.app if namespace is None else namespace, what)
        per_collection = dict(strategies or {})
        self.puller = Puller(replica, remote, table, self.scope, self.namespace)
        self.pusher = Pusher(
            replica,
            remote,
            table,
            self.scope,
            self.namespace,
            lambda c: per_collection.get(c, strategy),
            self.puller,
            sleep,
            pack=pack_size,
            concurrency=push_concurrency,
            batch=push_batch,
        )
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sleep = sleep
        self._feed: RealtimeFeed | None = None
        #: Realtime entries (seq, changelog item) waiting to be applied, in arrival order.
        self._inbox: list[tuple[int, dict[str, Any]]] = []
        self._applying: asyncio.Future[None] | None = None
        self._status = replica.status
        self._stop_watch: Callable[[], None] | None = None

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
        return await self.puller.pull(lambda what: self.replica._set_status(progress=what))

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
            pushed.add(again)
            self.replica._set_status(last_error=None, last_synced=self.replica.platform.now_ms())
            return SyncReport(pushed, pulled)

    def start(self, interval: float = 5.0) -> None:
        """Sync in the background while this tab is the leader and online.

        Local writes (and the other tabs'), a change of leadership or
        connectivity, and :meth:`notify` wake it at once, also when they happen
        during a sync; otherwise it runs every ``interval`` seconds. Errors go to
        ``replica.status.last_error``.
        """
        if self._task is None:
            self._watch_status()
            self._task = asyncio.ensure_future(self._loop(interval))

    def _watch_status(self) -> None:
        """Follow the replica's status (for :meth:`start` and :meth:`listen`), once."""
        if self._stop_watch is None:
            self._status = self.replica.status
            self._stop_watch = self.replica.on_status(self._status_changed)

    def _status_changed(self, status: Status) -> None:
        # Not every change: a sync's own (syncing, progress, pending going down)
        # would wake the next round for nothing.
        before, self._status = self._status, status
        if status.online != before.online and self._feed is not None:
            self._feed.set_online(status.online)
        if status.leader and not before.leader:  # it reports its own feed from now on
            self.replica._set_status(realtime=self.realtime_connected)
        if (
            status.leader != before.leader
            or status.online != before.online
            or status.pending > before.pending
            # A rejected change retried or discarded: the changes behind it may go now.
            or status.rejected < before.rejected
        ):
            self.notify()

    def listen(self, url: str, token: Callable[[], str] | str) -> None:
        """Follow the proxy's realtime feed (``GET /changes``) while syncing in the background.

        ``token`` is the bearer token or a function returning a current one: it is
        called for each (re)open. When the token expires (the server says
        ``expired``) or the feed is refused for good (401, 403, 429, 503), the
        feed is reopened with a fresh token after a short jittered delay that
        grows with repeated failures, resuming after the cursor.

        Events whose seqs continue the cursor are applied at once, in seq order
        (waiting for a sync in progress to finish); older ones are ignored; a
        gap, or any stream's ``ready``, triggers a catch-up pull. The changelog
        stays the truth: realtime only makes changes arrive sooner.
        """
        self._stop_feed()
        self._watch_status()
        self._feed = RealtimeFeed(
            self.replica.platform,
            url,
            {"scope": self.scope},
            token_function(token),
            self._resume_after,
            self._on_event,
            lambda error: self.replica._set_status(last_error=f"realtime: {error!r}"),
            self._sleep,
            lambda connected: self.replica._set_status(realtime=connected),
        )
        self._feed.start()

    @property
    def realtime_connected(self) -> bool:
        """Whether the realtime feed is up (its stream said ``ready`` and has not failed)."""
        return self._feed is not None and self._feed.connected

    async def _resume_after(self) -> int | None:
        return None if self.replica.closed else await self.puller.cursor()

    def _on_event(self, kind: str, data: str) -> None:
        if kind == "ready":  # a new or resumed stream: catch up with what came before it
            self.notify()
            return
        if kind != "message" or not self.replica.status.leader:
            # Only the leader tab applies the feed (the others see its writes through
            # their live queries): two tabs would race on the shared cursor.
            return
        try:
            message = json.loads(data)
            seq, entry = int(message["seq"]), message["entry"]
        except (ValueError, KeyError, TypeError):
            self.notify()
            return
        if len(self._inbox) >= INBOX_LIMIT:  # a long sync holds the lock: a pull catches up
            self._inbox.clear()
            self.notify()
            return
        self._inbox.append((seq, entry))
        if self._applying is None or self._applying.done():
            self._applying = asyncio.ensure_future(self._apply_realtime())
            self._applying.add_done_callback(self.replica._report)

    async def _apply_realtime(self) -> None:
        """Apply the waiting realtime entries that continue the cursor, in seq order."""
        async with self._lock:  # after a sync in progress: it may have pulled them already
            while self._inbox and not self.replica.closed:
                events = sorted(self._inbox, key=lambda event: event[0])
                self._inbox.clear()
                cursor = await self.puller.cursor()
                if cursor is None:  # never synced: the first pull does a base sync
                    self._inbox.clear()
                    self.notify()
                    return
                run: list[dict[str, Any]] = []
                for seq, entry in events:
                    if seq <= cursor + len(run):
                        continue  # a duplicate, or pulled already
                    if seq > cursor + len(run) + 1:
                        self._inbox.clear()  # the catch-up pull reads these too
                        self.notify()
                        break
                    run.append(entry)
                if run:
                    try:
                        await self.puller.apply_entries(run)
                    except Exception:
                        self.notify()
                        raise

    def notify(self) -> None:
        """Something changed (a realtime event, coming back online): sync soon."""
        self._wake.set()

    async def _loop(self, interval: float) -> None:
        failures = 0
        while True:
            # Cleared before the sync: a notify() during it starts another round.
            self._wake.clear()
            status = self.replica.status
            if status.leader and status.online and not self.replica.closed:
                try:
                    await self.sync()
                    failures = 0
                except Exception as error:  # keep syncing: the next round may pass
                    if not isinstance(error, RemoteError):  # sync() reports its own
                        self.replica._set_status(last_error=repr(error))
                    failures += 1
            delay = interval if failures == 0 else min(60.0, interval * 2**failures)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _stop_feed(self) -> None:
        if self._feed is not None:
            self._feed.stop()
            self._feed = None
        self._inbox.clear()

    def stop(self) -> None:
        """Stop background syncing and the realtime feed (and a pending reopen of it)."""
        self._stop_feed()
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._stop_watch is not None:
            self._stop_watch()
            self._stop_watch = None
