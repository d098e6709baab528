"""Changelog: stream-to-changelog latency, PutItem-to-SSE latency, allocator throughput.

Run: ``.venv/bin/python bench/bench_changelog.py [--writes 200]``

One run starts DynamoDB Local (in memory) and measures:

- stream -> changelog: boto3 PutItem straight to DynamoDB Local, until the
  consumer's append of that change has returned (the entry is then visible to
  a consistent Query), for several idle poll intervals; consumer in a thread of
  this process, so both ends read the same clock;
- PutItem -> SSE: the same write until a subscriber of ``GET /changes`` has the
  event, with the consumer inside the proxy (``pysync serve`` in its own
  process, as deployed, poll interval 10 ms);
- allocator: entries/s into one scope with k entries per transaction, and with
  8 concurrent appenders (attempts per append under contention).

Results go to bench/results/changelog.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from pysync.server import (
    Change,
    Changelog,
    DynamoDBAPI,
    DynamoDBLocal,
    ProxyConfig,
    Signer,
    StreamConsumer,
    create_tables,
    dynamodb_client,
    issue_token,
    local_session,
)
from pysync.server._devstack import free_port

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-0123456789-0123456789-0123456789"


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 2),
        "max_ms": round(ordered[-1], 2),
    }


class LoopThread:
    """An asyncio loop in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


def stream_to_changelog(endpoint: str, client: Any, writes: int, poll: float) -> dict[str, Any]:
    table = f"lat{int(poll * 1000)}"
    create_tables(client, table)
    appended: dict[str, float] = {}
    done = threading.Condition()

    def listener(scope: str, entries: list[dict[str, Any]]) -> None:
        now = time.perf_counter()
        with done:
            for entry in entries:
                appended[entry["key"]["S"]] = now
            done.notify_all()

    runner = LoopThread()

    async def start() -> tuple[DynamoDBAPI, StreamConsumer]:
        api = DynamoDBAPI(Signer("us-east-1", session=local_session()), endpoint)
        log = Changelog(api, f"{table}_changes", listener=listener)
        consumer = StreamConsumer(api, table, log, poll_interval=poll)
        await consumer.start()
        return api, consumer

    api, consumer = runner.run(start())
    samples = []
    for i in range(writes + 10):
        key = f"k#{i}"
        # Writes that follow the bypass contract (a new _m, _v): no stamp interleaves.
        item = {"pk": {"S": "u#b"}, "sk": {"S": key}, "_m": {"S": key}, "_v": {"N": "1"}}
        client.put_item(TableName=table, Item=item)
        written = time.perf_counter()
        with done:
            done.wait_for(lambda key=key: key in appended, timeout=10)
        if i >= 10:  # warm-up
            samples.append((appended[key] - written) * 1000)
        time.sleep(0.003)  # not in phase with the poll loop
    runner.run(consumer.stop())
    runner.run(api.aclose())
    runner.close()
    return {"measure": "stream -> changelog", "poll_interval_ms": poll * 1000, "writes": writes} | (
        _percentiles(samples)
    )


def putitem_to_sse(endpoint: str, client: Any, writes: int) -> dict[str, Any]:
    table = "sse"
    create_tables(client, table)
    port = free_port()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "PYSYNC_JWT_SECRET": SECRET,
        "PYSYNC_TABLE": table,
        "PYSYNC_DYNAMODB_ENDPOINT": endpoint,
        "PYSYNC_STREAM_POLL_INTERVAL": "0.01",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pysync.cli",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("pysync serve did not start")
            time.sleep(0.05)
        token = issue_token(SECRET, "bench", ttl=3600)
        received: dict[int, float] = {}
        arrived = threading.Condition()

        def listen(response: httpx.Response) -> None:
            for line in response.iter_lines():
                if line.startswith("id: "):
                    with arrived:
                        received[int(line[4:])] = time.perf_counter()
                        arrived.notify_all()

        samples = []
        with (
            httpx.Client(timeout=None) as http,
            http.stream(
                "GET", base + "/changes", params={"scope": "u#bench", "token": token}
            ) as response,
        ):
            thread = threading.Thread(target=listen, args=(response,), daemon=True)
            thread.start()
            for i in range(writes + 10):
                item = {"pk": {"S": "u#bench"}, "sk": {"S": f"k#{i}"}, "_m": {"S": f"m{i}"}}
                client.put_item(TableName=table, Item={**item, "_v": {"N": "1"}})
                written = time.perf_counter()
                with arrived:
                    arrived.wait_for(lambda seq=i + 1: seq in received, timeout=10)
                if i >= 10:
                    samples.append((received[i + 1] - written) * 1000)
                time.sleep(0.003)
    finally:
        server.terminate()
        server.wait(15)
    return {"measure": "PutItem -> SSE event", "poll_interval_ms": 10, "writes": writes} | (
        _percentiles(samples)
    )


def allocator(endpoint: str, client: Any) -> list[dict[str, Any]]:
    table = "alloc"
    create_tables(client, table)
    rows = []

    def changes(prefix: str, count: int, shard: str) -> list[Change]:
        return [
            Change(
                "s#hot",
                f"{prefix}#{i}",
                "put",
                {"pk": {"S": "s#hot"}},
                None,
                None,
                0,
                str(i + 1),
                shard,
            )
            for i in range(count)
        ]

    async def run() -> None:
        api = DynamoDBAPI(Signer("us-east-1", session=local_session()), endpoint)
        for k in (1, 10, 50):
            log = Changelog(api, f"{table}_changes", max_batch=k)
            batch = changes(f"k{k}", 500 if k == 1 else 3000, f"shard-k{k}")
            started = time.perf_counter()
            await log.append("s#hot", batch)
            seconds = time.perf_counter() - started
            rows.append(
                {
                    "measure": "allocator, 1 appender",
                    "entries_per_transaction": k,
                    "entries": len(batch),
                    "entries_per_s": round(len(batch) / seconds),
                }
            )
        logs = [Changelog(api, f"{table}_changes") for _ in range(8)]
        started = time.perf_counter()

        async def one(n: int, log: Changelog) -> None:
            for change in changes(f"w{n}", 50, f"shard-w{n}"):
                await log.append("s#hot", [change])

        await asyncio.gather(*(one(n, log) for n, log in enumerate(logs)))
        seconds = time.perf_counter() - started
        appends = sum(log.stats.transactions for log in logs)
        rows.append(
            {
                "measure": "allocator, 8 appenders, k=1",
                "entries": appends,
                "entries_per_s": round(appends / seconds),
                "conflicts_per_append": round(
                    sum(log.stats.conflicts for log in logs) / appends, 2
                ),
                "max_attempts": max(log.stats.max_attempts for log in logs),
            }
        )
        await api.aclose()

    asyncio.run(run())
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=200, help="timed writes per latency row")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with DynamoDBLocal() as database:
        client = dynamodb_client(ProxyConfig(dynamodb_endpoint=database.endpoint), local_session())
        for poll in (0.005, 0.01, 0.02):
            rows.append(stream_to_changelog(database.endpoint, client, args.writes, poll))
            print(rows[-1], flush=True)
        rows.append(putitem_to_sse(database.endpoint, client, args.writes))
        print(rows[-1], flush=True)
        for row in allocator(database.endpoint, client):
            rows.append(row)
            print(row, flush=True)
    result = {
        "benchmark": "changelog: stream consumer latency, realtime latency, allocator throughput",
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "processor": platform.machine(),
            "load_average": os.getloadavg(),
        },
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "setup": "DynamoDB Local 3.3.1 in memory; writes with boto3 straight to DynamoDB Local; "
        "consumer in a thread of the benchmark (stream rows) or inside `pysync serve` in its "
        "own process (SSE row); client, proxy and Java share the machine",
        "rows": rows,
    }
    out = ROOT / "bench" / "results" / "changelog.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
