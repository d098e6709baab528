"""Proxy overhead: GetItem / PutItem / Query through the proxy vs straight to DynamoDB Local.

Run: ``.venv/bin/python bench/bench_proxy.py [--requests 600] [--threads 4]``

One run starts DynamoDB Local (in memory) and the proxy (``pysync serve`` in its
own process, as deployed, access log on), then measures with boto3 clients:

- latency: sequential requests, alternating blocks of direct and proxied calls
  so both see the same machine noise; p50/p95 per operation;
- throughput: ``--threads`` clients in parallel for a fixed time per target.

"added p50" is p50(proxy) - p50(direct). Results go to bench/results/proxy.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore import UNSIGNED
from botocore.config import Config

from pysync.server import (
    DynamoDBLocal,
    ProxyConfig,
    create_tables,
    dynamodb_client,
    issue_token,
    local_session,
)
from pysync.server._devstack import free_port

ROOT = Path(__file__).resolve().parents[1]
TABLE = "bench"
SECRET = "bench-secret-0123456789-0123456789-0123456789"
SCOPE = "u#bench"
BLOCK = 50


def _client(endpoint: str, token: str | None) -> Any:
    config = Config(
        retries={"max_attempts": 1},
        max_pool_connections=32,
        signature_version=UNSIGNED if token else None,
    )
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=config,
    )
    if token:

        def add_token(request: Any, **_: Any) -> None:
            request.headers["Authorization"] = f"Bearer {token}"

        client.meta.events.register("before-send.dynamodb.*", add_token)
    return client


def _operations(client: Any) -> dict[str, Callable[[int], Any]]:
    key = {"pk": {"S": SCOPE}, "sk": {"S": "doc#00"}}
    return {
        "GetItem": lambda i: client.get_item(TableName=TABLE, Key=key, ConsistentRead=True),
        "PutItem": lambda i: client.put_item(
            TableName=TABLE,
            Item={
                "pk": {"S": SCOPE},
                "sk": {"S": f"put#{i % 100:03d}"},
                "title": {"S": "benchmark document"},
                "n": {"N": str(i)},
                "_v": {"N": "1"},
            },
        ),
        "Query": lambda i: client.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :p AND begins_with(sk, :d)",
            ExpressionAttributeValues={":p": {"S": SCOPE}, ":d": {"S": "doc#"}},
        ),
    }


def _start_proxy(endpoint: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYSYNC_TABLE": TABLE,
        "PYSYNC_DYNAMODB_ENDPOINT": endpoint,
        "PYSYNC_JWT_SECRET": SECRET,
        "PYSYNC_RATE_LIMIT": "1000000",
        "PYSYNC_RATE_BURST": "1000000",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "pysync.cli", "serve", "--port", str(port), "--log-level", "info"],
        env=env,
        stdout=subprocess.DEVNULL,  # the JSON access log is written, then discarded
        stderr=subprocess.DEVNULL,
    )


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the proxy exited during startup")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise TimeoutError("the proxy did not start")


def _latency(
    direct: Callable[[int], Any], proxied: Callable[[int], Any], requests: int
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"direct": [], "proxy": []}
    for start in range(0, requests, BLOCK):
        for name, call in (("direct", direct), ("proxy", proxied)):
            for i in range(start, start + BLOCK):
                t0 = time.perf_counter()
                call(i)
                samples[name].append(time.perf_counter() - t0)
    return samples


def _throughput(
    make_call: Callable[[], Callable[[int], Any]], threads: int, seconds: float
) -> float:
    calls = [make_call() for _ in range(threads)]
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def worker(index: int) -> None:
        call, i = calls[index], 0
        while time.perf_counter() < stop:
            call(i)
            i += 1
        counts[index] = i

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    start = time.perf_counter()
    for worker_thread in workers:
        worker_thread.start()
    for worker_thread in workers:
        worker_thread.join()
    return sum(counts) / (time.perf_counter() - start)


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)


def main() -> None:
    """Run the benchmark and write bench/results/proxy.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600, help="sequential requests per op")
    parser.add_argument("--threads", type=int, default=4, help="parallel clients")
    parser.add_argument("--seconds", type=float, default=3.0, help="throughput run per target")
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    with DynamoDBLocal() as database:
        config = ProxyConfig(table=TABLE, dynamodb_endpoint=database.endpoint)
        create_tables(dynamodb_client(config, local_session()), TABLE)
        port = free_port()
        proxy = _start_proxy(database.endpoint, port)
        try:
            _wait_ready(f"http://127.0.0.1:{port}/healthz", proxy)
            endpoint = f"http://127.0.0.1:{port}/dynamodb"
            token = issue_token(SECRET, "bench", ttl=3600)
            seed = _client(database.endpoint, None)
            for i in range(10):
                seed.put_item(
                    TableName=TABLE,
                    Item={
                        "pk": {"S": SCOPE},
                        "sk": {"S": f"doc#{i:02d}"},
                        "title": {"S": "x" * 100},
                    },
                )
            direct_ops = _operations(_client(database.endpoint, None))
            proxy_ops = _operations(_client(endpoint, token))
            for op in direct_ops:
                _latency(direct_ops[op], proxy_ops[op], 2 * BLOCK)  # warm-up (JIT, pools)
                samples = _latency(direct_ops[op], proxy_ops[op], args.requests)
                rps = {
                    "direct": _throughput(
                        lambda op=op: _operations(_client(database.endpoint, None))[op],
                        args.threads,
                        args.seconds,
                    ),
                    "proxy": _throughput(
                        lambda op=op: _operations(_client(endpoint, token))[op],
                        args.threads,
                        args.seconds,
                    ),
                }
                row = {
                    "operation": op,
                    "requests": args.requests,
                    "direct_p50_ms": _ms(samples["direct"], 0.5),
                    "direct_p95_ms": _ms(samples["direct"], 0.95),
                    "proxy_p50_ms": _ms(samples["proxy"], 0.5),
                    "proxy_p95_ms": _ms(samples["proxy"], 0.95),
                    "added_p50_ms": round(
                        (statistics.median(samples["proxy"]) - statistics.median(samples["direct"]))
                        * 1000,
                        3,
                    ),
                    "sequential_rps_direct": round(1 / statistics.mean(samples["direct"]), 1),
                    "sequential_rps_proxy": round(1 / statistics.mean(samples["proxy"]), 1),
                    "parallel_threads": args.threads,
                    "parallel_rps_direct": round(rps["direct"], 1),
                    "parallel_rps_proxy": round(rps["proxy"], 1),
                    "parallel_rps_ratio": round(rps["proxy"] / rps["direct"], 3),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            proxy.terminate()
            proxy.wait(10)

    result = {
        "benchmark": "proxy overhead vs direct DynamoDB Local (boto3 clients)",
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        },
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "setup": "DynamoDB Local 3.3.1 in memory; proxy = `pysync serve` (uvicorn, 1 process, "
        "JSON access log on) in its own process; client, proxy and Java share the machine",
        "goal": "added p50 < 1 ms",
        "rows": rows,
    }
    out = ROOT / "bench" / "results" / "proxy.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
