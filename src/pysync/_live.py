"""Live queries: re-run a query when its collection changes and report new results.

A change notice only marks a subscription dirty; one task per subscription
re-runs the query, so a burst of writes costs one query, not one per write.
Callbacks see a result only when it differs from the last one they saw.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Runner = Callable[[], Awaitable[Any]]


class Subscription:
    """A live query; call :meth:`cancel` to stop it."""

    def __init__(
        self, owner: Watchers, collection: str, run: Runner, callback: Callable[[Any], object]
    ) -> None:
        self.collection = collection
        self._owner = owner
        self._run = run
        self._callback = callback
        self._dirty = asyncio.Event()
        self._dirty.set()
        self._idle = asyncio.Event()
        self._last: Any = None
        self._seen = False
        self.error: BaseException | None = None
        self.active = True
        self._task = asyncio.ensure_future(self._loop())

    def notify(self) -> None:
        """The collection changed: re-run soon."""
        self._idle.clear()
        self._dirty.set()

    async def _loop(self) -> None:
        while self.active:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                result = await self._run()
            except Exception as error:
                # A failing query ends the subscription; the error stays readable.
                self.error = error
                self._idle.set()
                self.cancel()
                return
            if self.active and (not self._seen or result != self._last):
                self._seen, self._last = True, result
                outcome = self._callback(result)
                if inspect.isawaitable(outcome):
                    await outcome
            if not self._dirty.is_set():
                self._idle.set()

    async def settled(self) -> None:
        """Wait until every change notified so far has been queried and reported."""
        if self.active:
            await self._idle.wait()

    def cancel(self) -> None:
        """Stop re-running the query."""
        if self.active:
            self.active = False
            self._owner.remove(self)
            if self._task is not asyncio.current_task():
                self._task.cancel()


class Watchers:
    """The live queries of one replica, by collection."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []

    def add(self, collection: str, run: Runner, callback: Callable[[Any], object]) -> Subscription:
        subscription = Subscription(self, collection, run, callback)
        self._subscriptions.append(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def changed(self, collections: Iterable[str]) -> None:
        touched = set(collections)
        for subscription in self._subscriptions:
            if subscription.collection in touched:
                subscription.notify()

    def cancel_all(self) -> None:
        for subscription in list(self._subscriptions):
            subscription.cancel()

    def __len__(self) -> int:
        return len(self._subscriptions)
