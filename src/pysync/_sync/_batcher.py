"""Calls made in the same turn of the event loop, sent together.

The push starts a round's writes at once; each waits for its own outcome. A
:class:`Batcher` collects the calls started before the loop turns and hands them
to the remote's ``call_many`` (one HTTP request per ``size`` calls with the
pysync proxy), at most ``concurrency`` of those out at a time. Each caller gets
its own response or its own :class:`RemoteError`, exactly as from ``call``: the
outcome of every write is still decided one by one. :meth:`Batcher.call_all` sends
a list of calls the caller already holds, without a future per call.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from .._remote import BATCHABLE, Remote, RemoteError, call_each

_Call = tuple[str, dict[str, Any], "asyncio.Future[dict[str, Any]]"]


class _Many(Protocol):
    async def __call__(
        self, calls: list[tuple[str, dict[str, Any]]]
    ) -> list[dict[str, Any] | RemoteError]: ...


class Batcher:
    """``call`` like a :class:`Remote`; calls started together leave together."""

    def __init__(self, remote: Remote, size: int, concurrency: int) -> None:
        #: The remote's ``call_many`` (``None``: it has none, or ``size`` is 1).
        self._many: _Many | None = getattr(remote, "call_many", None) if size > 1 else None
        self._remote = remote
        self._size = size
        self._slots = asyncio.Semaphore(concurrency)
        self._queue: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()  # a reference keeps each task alive

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send ``operation`` with ``payload``; return the response or raise RemoteError."""
        if self._many is None or operation not in BATCHABLE:
            async with self._slots:
                return await self._remote.call(operation, payload)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._queue.append((operation, payload, future))
        if len(self._queue) == 1:
            loop.call_soon(self._flush)  # after the tasks ready now have made their calls
        return await future

    async def call_all(
        self, calls: list[tuple[str, dict[str, Any]]]
    ) -> list[dict[str, Any] | RemoteError]:
        """Send ``calls`` together; each one's response or RemoteError, in order.

        Like a ``call`` of each, but a round of hundreds of writes costs the page a
        task per HTTP request instead of a task, a future and their wake-ups per call.
        """
        if self._many is None or any(op not in BATCHABLE for op, _ in calls):
            return await call_each(self.call, calls)

        parts = [calls[i : i + self._size] for i in range(0, len(calls), self._size)]
        answers = await asyncio.gather(*map(self._many_in_slot, parts))
        return [result for answer in answers for result in answer]

    async def _many_in_slot(
        self, calls: list[tuple[str, dict[str, Any]]]
    ) -> list[dict[str, Any] | RemoteError]:
        """``call_many(calls)`` when a slot is free; raises if it answers another number."""
        assert self._many is not None
        async with self._slots:
            results = await self._many(calls)
        if len(results) != len(calls):
            raise RuntimeError(f"call_many answered {len(results)} of {len(calls)} calls")
        return results

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        for start in range(0, len(queue), self._size):
            task = asyncio.ensure_future(self._send(queue[start : start + self._size]))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, calls: list[_Call]) -> None:
        try:
            results = await self._many_in_slot([(op, payload) for op, payload, _ in calls])
        except Exception as error:  # a bug: its callers see it, none waits forever
            for _, _, future in calls:
                if not future.done():
                    future.set_exception(error)
            return
        except BaseException:  # cancelled (the loop ends): so are its callers
            for _, _, future in calls:
                future.cancel()
            raise
        for (_, _, future), result in zip(calls, results, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(result, RemoteError):
                future.set_exception(result)
            else:
                future.set_result(result)
