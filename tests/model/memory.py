"""The in-memory world: one :class:`~pysync.testing.MemoryDynamo` playing DynamoDB and the
stream consumer (appending at once, or held back while it lags)."""

from __future__ import annotations

import inspect
from typing import Any

from pysync.testing import MemoryDynamo

from .device import TABLE, PyDevice
from .oracle import Item
from .program import Program


class MemoryWorld:
    name = "memory"
    table = TABLE

    def __init__(self, program: Program, user: str = "model") -> None:
        options: dict[str, Any] = {}
        # The consumer stamps writes that bypass pysync without a new _m (issue 9's design),
        # where this MemoryDynamo can.
        if "stamping" in inspect.signature(MemoryDynamo).parameters:
            options["stamping"] = True
        self.stamping = bool(options)
        self.lagging = bool(program.get("lagging"))
        self.db = MemoryDynamo(tables=(TABLE,), lagging=self.lagging, **options)
        self.user = user
        self.scope = f"u#{user}"

    async def open(self) -> None:
        return None

    async def device(self, index: int, strategy: str, options: dict[str, Any]) -> PyDevice:
        device = PyDevice(index, self.db.connection(), strategy, self.user, options=options)
        await device.open()
        return device

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self.db.handle(operation, payload)

    async def changelog(self) -> list[Item]:
        return self.db.changes(self.scope, table=TABLE)

    async def items(self) -> list[Item]:
        return self.db.items(TABLE, self.scope)

    async def lag(self) -> None:
        self.db.lagging = True

    async def catch_up(self, n: int | None) -> None:
        self.db.deliver(n)
        if n is None:
            self.db.lagging = self.lagging = False

    async def expire(self, keep: int) -> None:
        head = self.db.item(f"{TABLE}_changes", self.scope, 0) or {"head": {"N": "0"}}
        self.db.drop_changes(self.scope, below=int(head["head"]["N"]) + 1 - keep, table=TABLE)

    async def forget_tokens(self) -> bool:
        self.db.forget_tokens()
        return True

    async def restart_proxy(self) -> bool:
        return False  # no proxy in memory

    async def restart_consumer(self, abort: bool) -> bool:
        return False  # the simulated consumer has no state to lose

    async def settle(self) -> None:
        return None  # appends are synchronous (or held back while lagging)

    async def quiet(self) -> None:
        self.db.lagging = False
        self.db.deliver()

    async def close(self) -> None:
        return None
