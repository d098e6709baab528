"""The real stack: DynamoDB Local, the proxy over HTTP (uvicorn in a thread), the stream
consumer (in this event loop), boto3 for writers that bypass pysync.

Each run gets its own table (so its own stream) and user. The proxy can be
restarted on the same port (clients meet dead keep-alive connections, then a new
server); the consumer can be stopped (the changelog lags), crashed (its leases
stay until they expire) and started again. After every step the runner waits
until the consumer has caught up with the table (and stamped what it stamps),
unless the program made it lag: runs are deterministic per seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from typing import Any

import botocore.exceptions
import uvicorn

import pysync.server._changelog as changelog_module
from pysync import HttpRemote, RemoteError
from pysync.server import (
    Changelog,
    DynamoDBAPI,
    ProxyConfig,
    Signer,
    StreamConsumer,
    create_app,
    create_tables,
    dynamodb_client,
    issue_token,
    local_session,
)

from .device import PyDevice
from .oracle import Item, system_of
from .program import Program

SECRET = "model-secret-0123456789-0123456789-abcdef"
#: How long the runner waits for the consumer to catch up before calling it stuck.
CATCH_UP_SECONDS = 30.0
#: Requests one device operation may send before the runner calls it a livelock.
STACK_BUDGET = 400


class Proxy:
    """uvicorn serving the proxy on a fixed port in a thread; restartable on that port."""

    def __init__(self, config: ProxyConfig, port: int | None = None) -> None:
        self.config = config
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.sock: socket.socket | None = None

    def start(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        app = create_app(self.config, session=local_session())
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self.sock = sock
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None and self.thread is not None and self.sock is not None:
            self.server.should_exit = True
            self.thread.join(10)
            self.sock.close()
        self.server = self.thread = self.sock = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SerialRemote:
    """The device's HTTP remote, one request at a time (so a run replays the same way):
    a call, or a batch of calls (the proxy's ``Pysync_20261205.Batch``)."""

    def __init__(self, inner: HttpRemote) -> None:
        self.inner = inner
        self.lock = asyncio.Lock()

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        async with self.lock:
            return await self.inner.call(operation, payload)

    async def call_many(
        self, calls: list[tuple[str, dict[str, Any]]]
    ) -> list[dict[str, Any] | RemoteError]:
        async with self.lock:
            return await self.inner.call_many(calls)


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


class StackWorld:
    name = "stack"

    def __init__(self, program: Program, endpoint: str) -> None:
        self.endpoint = endpoint
        self.table = f"model_{uuid.uuid4().hex[:10]}"
        self.user = f"model-{program.get('seed')}-{uuid.uuid4().hex[:6]}"
        self.scope = f"u#{self.user}"
        self.stamping = hasattr(changelog_module, "STAMP_PREFIX")
        self.client = dynamodb_client(ProxyConfig(dynamodb_endpoint=endpoint), local_session())
        create_tables(self.client, self.table)
        config = ProxyConfig(
            table=self.table,
            dynamodb_endpoint=endpoint,
            jwt_secret=SECRET,
            rate_limit=100_000,
            rate_burst=100_000,
        )
        self.proxy = Proxy(config)
        self.proxy.start()
        self.api = DynamoDBAPI(Signer("us-east-1", session=local_session()), endpoint)
        self.consumer: StreamConsumer | None = None
        self.remotes: list[HttpRemote] = []
        self.lagging = False
        self.lag_next = bool(program.get("lagging"))
        self.seen: dict[int, Item] = {}  # changelog entries read so far (some expire)

    async def open(self) -> None:
        if not self.lag_next:
            await self._start_consumer()
        self.lagging = self.lag_next

    async def _start_consumer(self) -> None:
        consumer = StreamConsumer(
            self.api,
            self.table,
            Changelog(self.api, f"{self.table}_changes"),
            poll_interval=0.01,
            lease_duration=0.6,
        )
        await consumer.start()
        self.consumer = consumer

    async def device(self, index: int, strategy: str, options: dict[str, Any]) -> PyDevice:
        token = issue_token(SECRET, self.user, ttl=3600)
        remote = HttpRemote(self.proxy.url + "/dynamodb", token)
        self.remotes.append(remote)
        device = PyDevice(
            index, SerialRemote(remote), strategy, self.user, self.table, options=options
        )
        device.remote.limit = STACK_BUDGET  # over HTTP a livelock is slow to reach 3,000
        await device.open()
        return device

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        method = getattr(self.client, _snake(operation))
        try:
            result: dict[str, Any] = await asyncio.to_thread(method, **payload)
        except botocore.exceptions.ClientError as error:
            info = error.response.get("Error", {})
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400)
            raise RemoteError(info.get("Code", ""), info.get("Message", ""), status, {}) from None
        result.pop("ResponseMetadata", None)
        return result

    async def _query(self, table: str, after: dict[str, Any] | None = None) -> list[Item]:
        items: list[Item] = []
        request: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": "pk = :p" + (" AND sk > :z" if after else ""),
            "ExpressionAttributeValues": {":p": {"S": self.scope}, **(after or {})},
            "ConsistentRead": True,
        }
        while True:
            page = await self.call("Query", request)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def changelog(self) -> list[Item]:
        return await self._query(f"{self.table}_changes", {":z": {"N": "0"}})

    async def items(self) -> list[Item]:
        return await self._query(self.table)

    async def lag(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None
        self.lagging = True

    async def catch_up(self, n: int | None) -> None:
        if self.consumer is None:
            await self._start_consumer()
        self.lagging = False

    async def expire(self, keep: int) -> None:
        got = await self.call(
            "GetItem",
            {
                "TableName": f"{self.table}_changes",
                "Key": {"pk": {"S": self.scope}, "sk": {"N": "0"}},
                "ConsistentRead": True,
            },
        )
        head = int(got.get("Item", {}).get("head", {}).get("N", "0"))
        await self._read_on()
        for entry in await self.changelog():
            if int(entry["sk"]["N"]) <= head - keep:
                key = {"pk": entry["pk"], "sk": entry["sk"]}
                await self.call("DeleteItem", {"TableName": f"{self.table}_changes", "Key": key})

    async def forget_tokens(self) -> bool:
        return False  # DynamoDB Local keeps them its ten minutes

    async def restart_proxy(self) -> bool:
        await asyncio.to_thread(self.proxy.stop)
        await asyncio.to_thread(self.proxy.start)
        return True

    async def restart_consumer(self, abort: bool) -> bool:
        if self.consumer is None:
            return False
        if abort:
            await self.consumer.abort()  # a crash: its leases stay until they expire
        else:
            await self.consumer.stop()
        await self._start_consumer()
        return True

    async def settle(self) -> None:
        """Wait until the changelog shows every item as it is (and stamps have landed)."""
        if self.consumer is None:
            return
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while not await self._caught_up():
            if time.monotonic() > deadline:
                raise AssertionError("the stream consumer did not catch up")
            await asyncio.sleep(0.01)

    async def _read_on(self) -> list[Item]:
        """Every changelog entry seen so far (new ones read), in seq order."""
        after = max(self.seen, default=0)
        for entry in await self._query(f"{self.table}_changes", {":z": {"N": str(after)}}):
            self.seen[int(entry["sk"]["N"])] = entry
        return [self.seen[seq] for seq in sorted(self.seen)]

    async def _caught_up(self) -> bool:
        last: dict[str, Item] = {}
        previous: dict[str, Item] = {}
        for entry in await self._read_on():
            key = entry["key"]["S"]
            if key in last:
                previous[key] = last[key]
            last[key] = entry
        items = {item["sk"]["S"]: item for item in await self.items()}
        for key in set(items) | set(last):
            entry, item = last.get(key), items.get(key)
            if item is None:
                if entry is not None and entry.get("op", {}).get("S") != "delete":
                    return False
                continue
            if entry is None or entry.get("item", {}).get("M") != item:
                return False
            if self.stamping:
                m = system_of(item).get("_m")
                before = previous.get(key, {}).get("item", {}).get("M")
                if m is None or (before is not None and system_of(before).get("_m") == m):
                    return False  # a write that kept _m: the consumer stamps it
        return True

    async def quiet(self) -> None:
        if self.consumer is None:
            await self._start_consumer()
        self.lagging = False
        await self.settle()

    async def close(self) -> None:
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await self.consumer.stop()
        for remote in self.remotes:
            await remote.close()
        await self.api.aclose()
        await asyncio.to_thread(self.proxy.stop)
        self.client.close()
