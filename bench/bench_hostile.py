"""Hostile clients: the real proxy beside slowloris and oversized requests; 1,000 idle streams.

Run: ``.venv/bin/python bench/bench_hostile.py [--seconds 8] [--rounds 3] [--streams 1000]``

One run starts DynamoDB Local (in memory) and, one after the other, two proxies as
deployed (``pysync serve --dev`` in a process of its own, JSON access log on and
discarded, a free port). Everything talks to them over real loopback sockets.

1. Legitimate traffic beside attackers (the first proxy, with the default
   connection and request limits of ``ProxyConfig``; only the per-subject rate
   limit is raised, as in bench_proxy.py, since one legitimate token sends hundreds of
   requests a second). Legitimate client: this process, ``httpx.AsyncClient`` with a
   pool of ``--concurrency`` keep-alive connections, as many workers alternating
   GetItem and PutItem (valid token), in blocks of ``--seconds``: unloaded, slowloris,
   oversized, the order reversed every round (``--rounds``), so that the machine's
   drift hits every condition alike. Each condition's blocks are pooled; ratios are
   against the unloaded blocks (and, paired, against the unloaded block of the same
   round). The attackers run in another process, started a second before the
   legitimate load and stopped after it (slowloris: once its first connections have
   been cut, which takes the header timeout, 10 s):

   - slowloris: ``--slow`` connections that each send a partial request head, half of
     them then adding a header line every second ("trickle"), half sending nothing
     more ("hold"); each reconnects as soon as the proxy cuts it;
   - oversized: ``--senders`` concurrent unauthenticated senders, each in a loop
     (paced to ``--flood-rate`` requests per second in total): a 3 MB
     ``Authorization`` header, a body announced as 16 MB by ``Content-Length``, and an
     8 MB chunked body, in turn, each on a new connection, written as fast as the
     socket takes it.

   Recorded: latency of every legitimate request (p50/p99 per operation), throughput,
   CPU of the proxy, of DynamoDB Local, of the legitimate client and of the attackers;
   for each attacker connection the status lines it got and its lifetime (connect to
   the proxy's end of the connection: EOF or reset).

2. ``--streams`` idle change streams (the second proxy, with its stream consumer;
   ``PYSYNC_STREAM_POLL_INTERVAL=0.02`` as ``pysync dev`` sets it). Tokens of
   ``--users`` users, each with the shared scope ``s#hostile``, each user opening
   ``streams / users`` ``GET /changes?scope=s%23hostile&token=...`` streams (within the
   default per-subject cap of 16). The default caps are 500 streams and 1,000 client
   connections per proxy, so this proxy gets ``PYSYNC_MAX_STREAMS=<streams>`` and
   ``PYSYNC_MAX_CLIENT_CONNECTIONS=<streams + 100>``; the per-address cap (100) stays:
   the clients bind to 20 loopback addresses (127.0.0.2 to .21), 50 streams each. Two
   client processes (raw asyncio sockets, no HTTP library) hold the streams. Recorded:
   the proxy's RSS before and after opening them (and the kernel's TCP memory, which is
   system-wide), its CPU over ``--idle`` seconds without streams and then with all of
   them (one heartbeat period by default), and the delivery of ``--writes`` PutItems
   (through the proxy, one a second) into the scope all streams follow: from the write's
   acknowledgement (HTTP response read by the writer) to each stream reading the event,
   on one clock (``time.monotonic``, CLOCK_MONOTONIC, shared by the processes).

Results go to bench/results/hostile.json; bench/report.py renders them.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import multiprocessing
import os
import platform
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

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
OUT = ROOT / "bench" / "results" / "hostile.json"
HOST = "127.0.0.1"
SECRET = "bench-hostile-secret-0123456789-0123456789"
LEGIT_TABLE = "hostile"
STREAM_TABLE = "hostile_rt"
LEGIT_SCOPE = "u#legit"
SHARED_SCOPE = "s#hostile"
JSON_TYPE = "application/x-amz-json-1.0"
TARGET = "DynamoDB_20120810."
CLIENT_ADDRESSES = [f"127.0.0.{i}" for i in range(2, 22)]
TRICKLE_INTERVAL = 1.0
CHUNK = 256 * 1024
MB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
# A change event, as the proxy writes it (compact JSON); group 1 is the document's key.
_CHANGE_EVENT = re.compile(rb'(?:^|\n)id: \d+\ndata: \{.*?"key":\{"S":"([^"]*)"\}')


# --- processes and measurements -------------------------------------------------------


def _pysync_command() -> list[str]:
    script = Path(sys.executable).with_name("pysync")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pysync.cli"]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (its own threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _tcp_mem_bytes() -> int:
    """Memory of all TCP sockets of the machine (/proc/net/sockstat, pages)."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            parts = line.split()
            return int(parts[parts.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE")
    return 0


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (q in 0..1) of non-empty values."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def _dist(values: list[float], digits: int = 2) -> dict[str, Any] | None:
    """p50 / p90 / p99 / min / max / mean / n of values (same unit)."""
    if not values:
        return None
    return {
        "p50": round(_quantile(values, 0.5), digits),
        "p90": round(_quantile(values, 0.9), digits),
        "p99": round(_quantile(values, 0.99), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "mean": round(sum(values) / len(values), digits),
        "n": len(values),
    }


class Proxy:
    """``pysync serve --dev`` in its own process on a free port."""

    def __init__(self, endpoint: str, table: str, env: dict[str, str], consumer: bool) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        command = [
            *_pysync_command(),
            "serve",
            "--dev",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--log-level",
            "info",
        ]
        if not consumer:
            command.append("--no-consumer")
        self.process = subprocess.Popen(
            command,
            env={
                **os.environ,
                "PYSYNC_TABLE": table,
                "PYSYNC_DYNAMODB_ENDPOINT": endpoint,
                "PYSYNC_JWT_SECRET": SECRET,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                **env,
            },
            cwd=ROOT,
            stdout=subprocess.DEVNULL,  # the JSON access log is written, then discarded
            stderr=subprocess.DEVNULL,
        )
        self.pid = self.process.pid
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the proxy exited during startup ({self.process.returncode})")
            try:
                httpx.get(f"{self.url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise TimeoutError("the proxy did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


# --- attackers (run in a child process) --------------------------------------------------


async def _read_until_closed(reader: asyncio.StreamReader) -> tuple[list[str], float, str]:
    """Read until the proxy ends the connection: (status codes, when, "eof" or "reset")."""
    head = b""
    how = "eof"
    try:
        while chunk := await reader.read(65536):
            if len(head) < 8192:
                head += chunk
    except OSError:
        how = "reset"
    ended = time.monotonic()
    codes = [code.decode() for code in re.findall(rb"HTTP/1\.1 (\d{3})", head)]
    return codes, ended, how


def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    if not writer.is_closing():
        writer.write(data)


async def _slowloris(index: int, port: int, stop: asyncio.Event, out: list[dict[str, Any]]) -> None:
    mode = "trickle" if index % 2 == 0 else "hold"
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        started = time.monotonic()
        reading = asyncio.create_task(_read_until_closed(reader))
        if mode == "trickle":
            _write(writer, f"POST /dynamodb HTTP/1.1\r\nHost: {HOST}\r\n".encode())
        else:
            _write(
                writer, f"GET /changes?scope=s%23x HTTP/1.1\r\nHost: {HOST}\r\nX-Wait: ".encode()
            )
        line = 0
        stopping = asyncio.create_task(stop.wait())
        while not reading.done() and not stop.is_set():
            await asyncio.wait(
                {reading, stopping}, timeout=TRICKLE_INTERVAL, return_when="FIRST_COMPLETED"
            )
            if mode == "trickle" and not reading.done() and not stop.is_set():
                line += 1
                _write(writer, f"X-Slow-{line}: {line}\r\n".encode())
        stopping.cancel()
        if reading.done():
            codes, ended, how = reading.result()
            out.append(
                {"mode": mode, "cut": True, "s": ended - started, "codes": codes, "end": how}
            )
        else:
            reading.cancel()
            out.append({"mode": mode, "cut": False, "s": time.monotonic() - started})
        writer.close()


def _oversized_payloads() -> dict[str, Callable[[], Iterator[bytes]]]:
    filler = b"A" * CHUNK
    zeros = bytes(CHUNK)
    dynamo = (
        f"POST /dynamodb HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {JSON_TYPE}\r\n"
        f"X-Amz-Target: {TARGET}GetItem\r\n"
    ).encode()

    def authorization() -> Iterator[bytes]:
        yield dynamo + b"Authorization: Bearer "
        for _ in range(3 * MB // CHUNK):
            yield filler
        yield b"\r\nContent-Length: 2\r\n\r\n{}"

    def content_length() -> Iterator[bytes]:
        yield dynamo + f"Content-Length: {16 * MB}\r\n\r\n".encode()
        for _ in range(16 * MB // CHUNK):
            yield zeros

    def chunked() -> Iterator[bytes]:
        yield dynamo + b"Transfer-Encoding: chunked\r\n\r\n"
        frame = f"{CHUNK:x}\r\n".encode() + zeros + b"\r\n"
        for _ in range(8 * MB // CHUNK):
            yield frame
        yield b"0\r\n\r\n"

    return {
        "authorization_3mb": authorization,
        "content_length_16mb": content_length,
        "chunked_8mb": chunked,
    }


async def _oversized(
    index: int, port: int, interval: float, stop: asyncio.Event, out: list[dict[str, Any]]
) -> None:
    payloads = list(_oversized_payloads().items())
    turn = index
    next_at = time.monotonic() + interval * index / 4
    while not stop.is_set():
        if interval:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at + interval, time.monotonic() - interval)
        variant, payload = payloads[turn % len(payloads)]
        turn += 1
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError as error:
            out.append({"variant": variant, "connect_error": type(error).__name__})
            await asyncio.sleep(0.05)
            continue
        started = time.monotonic()
        reading = asyncio.create_task(_read_until_closed(reader))
        sent = 0
        try:
            for chunk in payload():
                if reading.done():
                    break
                writer.write(chunk)
                sent += len(chunk)
                await writer.drain()
        except OSError:
            pass
        try:
            codes, ended, how = await asyncio.wait_for(reading, 30)
        except TimeoutError:
            codes, ended, how = [], time.monotonic(), "timeout"
        writer.close()
        out.append(
            {
                "variant": variant,
                "s": ended - started,
                "codes": codes,
                "end": how,
                "written": sent,
            }
        )


def _attacker_main(kind: str, port: int, count: int, rate: float, conn: Connection) -> None:
    """Child process: run ``count`` attackers of ``kind`` until told to stop."""

    async def main() -> None:
        stop = asyncio.Event()
        records: list[dict[str, Any]] = []
        if kind == "slowloris":
            tasks = [asyncio.create_task(_slowloris(i, port, stop, records)) for i in range(count)]
        else:
            interval = count / rate if rate else 0.0
            tasks = [
                asyncio.create_task(_oversized(i, port, interval, stop, records))
                for i in range(count)
            ]
        await asyncio.sleep(0.5)
        cpu = time.process_time()
        started = time.monotonic()
        conn.send("ready")
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        stop.set()
        stopped = time.monotonic()
        await asyncio.wait(tasks, timeout=10)
        conn.send(
            {
                "records": records,
                "cpu_s": time.process_time() - cpu,
                "wall_s": stopped - started,
            }
        )

    asyncio.run(main())


# --- part 1: legitimate load --------------------------------------------------------------


def _request_body(op: str, i: int) -> bytes:
    if op == "GetItem":
        body: dict[str, Any] = {
            "TableName": LEGIT_TABLE,
            "Key": {"pk": {"S": LEGIT_SCOPE}, "sk": {"S": "doc#00"}},
            "ConsistentRead": True,
        }
    else:
        body = {
            "TableName": LEGIT_TABLE,
            "Item": {
                "pk": {"S": LEGIT_SCOPE},
                "sk": {"S": f"put#{i % 100:03d}"},
                "title": {"S": "benchmark document"},
                "n": {"N": str(i)},
            },
        }
    return json.dumps(body).encode()


async def _legit_load(
    url: str, token: str, seconds: float, concurrency: int, pids: dict[str, int]
) -> dict[str, Any]:
    samples: dict[str, list[float]] = {"GetItem": [], "PutItem": []}
    errors: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": JSON_TYPE}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker(first: int, deadline: float) -> None:
            i = first
            while time.monotonic() < deadline:
                op = ("GetItem", "PutItem")[i % 2]
                started = time.perf_counter()
                try:
                    response = await client.post(
                        "/dynamodb",
                        content=_request_body(op, i),
                        headers={**headers, "X-Amz-Target": TARGET + op},
                    )
                    status: int | str = response.status_code
                except httpx.HTTPError as error:
                    status = type(error).__name__
                took = (time.perf_counter() - started) * 1000
                if status == 200:
                    samples[op].append(took)
                else:
                    errors[f"{op} {status}"] += 1
                i += 1

        cpu = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        own = time.process_time()
        started = time.monotonic()
        await asyncio.gather(*(worker(w, started + seconds) for w in range(concurrency)))
        wall = time.monotonic() - started
        own = time.process_time() - own
        cpu = {name: _cpu_seconds(pid) - cpu[name] for name, pid in pids.items()}
    return {
        "samples": samples,
        "errors": dict(errors),
        "wall_s": wall,
        "cpu_pct": {
            "client": round(own / wall * 100, 1),
            **{name: round(value / wall * 100, 1) for name, value in cpu.items()},
        },
    }


def _summarize_attackers(kind: str, report: dict[str, Any]) -> dict[str, Any]:
    records = report["records"]
    wall = report["wall_s"]
    summary: dict[str, Any] = {
        "kind": kind,
        "cpu_pct": round(report["cpu_s"] / wall * 100, 1),
        "wall_s": round(wall, 1),
    }
    if kind == "slowloris":
        groups: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            groups.setdefault(record["mode"], []).append(record)
    else:
        groups = {}
        for record in records:
            groups.setdefault(record["variant"], []).append(record)
    summary["groups"] = {}
    for name, group in groups.items():
        cut = [r for r in group if r.get("cut", True) and "s" in r]
        done = [r for r in cut if "connect_error" not in r]
        codes: Counter[str] = Counter(" then ".join(r["codes"]) or "none" for r in done)
        ends: Counter[str] = Counter(r["end"] for r in done)
        entry: dict[str, Any] = {
            "connections": len(group),
            "cut": len(done),
            "lifetime_ms": _dist([r["s"] * 1000 for r in done], 1),
            "responses": dict(codes),
            "ends": dict(ends),
        }
        still = [r["s"] for r in group if r.get("cut") is False]
        if still:
            entry["open_at_stop"] = len(still)
            entry["open_at_stop_longest_s"] = round(max(still), 1)
        errors = Counter(r["connect_error"] for r in group if "connect_error" in r)
        if errors:
            entry["connect_errors"] = dict(errors)
        if kind != "slowloris" and done:
            entry["mb_written_mean"] = round(sum(r["written"] for r in done) / len(done) / MB, 2)
            entry["per_s"] = round(len(done) / wall, 1)
        summary["groups"][name] = entry
    return summary


def _part_one(
    database: DynamoDBLocal, args: argparse.Namespace, java_pid: int | None
) -> dict[str, Any]:
    proxy = Proxy(
        database.endpoint,
        LEGIT_TABLE,
        {"PYSYNC_RATE_LIMIT": "1000000", "PYSYNC_RATE_BURST": "1000000"},
        consumer=False,
    )
    pids = {"proxy": proxy.pid}
    if java_pid:
        pids["dynamodb_local"] = java_pid
    token = issue_token(SECRET, "legit", ttl=3600)
    context = multiprocessing.get_context("spawn")
    blocks: list[dict[str, Any]] = []
    try:
        with httpx.Client(base_url=proxy.url, timeout=10) as client:
            seed = json.dumps(
                {
                    "TableName": LEGIT_TABLE,
                    "Item": {
                        "pk": {"S": LEGIT_SCOPE},
                        "sk": {"S": "doc#00"},
                        "t": {"S": "x" * 100},
                    },
                }
            )
            client.post(
                "/dynamodb",
                content=seed,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": JSON_TYPE,
                    "X-Amz-Target": TARGET + "PutItem",
                },
            ).raise_for_status()
        asyncio.run(_legit_load(proxy.url, token, 4.0, args.concurrency, pids))  # warm-up
        kinds = {"unloaded": None, "slowloris": "slowloris", "oversized": "oversized"}
        counts = {"slowloris": args.slow, "oversized": args.senders}
        attacks: dict[str, dict[str, Any]] = {}
        for round_ in range(args.rounds):
            order = list(kinds) if round_ % 2 == 0 else list(kinds)[::-1]
            for name in order:
                kind = kinds[name]
                print(f"[hostile] round {round_ + 1}: {name} ...", file=sys.stderr, flush=True)
                load_before = _load()
                attacker = None
                if kind:
                    parent, child = context.Pipe()
                    attacker = context.Process(
                        target=_attacker_main,
                        args=(kind, proxy.port, counts[kind], args.flood_rate, child),
                    )
                    attacker.start()
                    if not parent.poll(60):
                        raise TimeoutError(f"the {kind} attackers did not start")
                    parent.recv()
                    attack_started = time.monotonic()
                    time.sleep(1.0)
                result = asyncio.run(
                    _legit_load(proxy.url, token, args.seconds, args.concurrency, pids)
                )
                block = {"condition": name, "round": round_, "load_average": load_before, **result}
                if attacker is not None:
                    if kind == "slowloris":  # until its first connections are cut (not timed)
                        cut_by = attack_started + ProxyConfig().header_timeout + 1.0
                        time.sleep(max(0.0, cut_by - time.monotonic()))
                    parent.send("stop")
                    report = parent.recv()
                    attacker.join(10)
                    pooled = attacks.setdefault(name, {"records": [], "cpu_s": 0.0, "wall_s": 0.0})
                    pooled["records"] += report["records"]
                    pooled["cpu_s"] += report["cpu_s"]
                    pooled["wall_s"] += report["wall_s"]
                    block["cpu_pct"]["attackers"] = round(
                        report["cpu_s"] / report["wall_s"] * 100, 1
                    )
                blocks.append(block)
                shown = {k: v for k, v in block.items() if k != "samples"}
                print(f"[hostile] {json.dumps(shown)}", file=sys.stderr, flush=True)
    finally:
        proxy.stop()
    return {
        "rows": _legit_rows(blocks),
        "attackers": [_summarize_attackers(kind, report) for kind, report in attacks.items()],
        "errors": [{"condition": b["condition"], **b["errors"]} for b in blocks if b["errors"]],
    }


def _rps(block: dict[str, Any]) -> float:
    return float(sum(len(v) for v in block["samples"].values()) / block["wall_s"])


def _legit_rows(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per condition, its blocks pooled; ratios against the unloaded blocks."""
    pooled: dict[str, dict[str, Any]] = {}
    for block in blocks:
        entry = pooled.setdefault(
            block["condition"],
            {"samples": {"GetItem": [], "PutItem": []}, "blocks": [], "wall_s": 0.0, "errors": 0},
        )
        for op, values in block["samples"].items():
            entry["samples"][op] += values
        entry["wall_s"] += block["wall_s"]
        entry["errors"] += sum(block["errors"].values())
        entry["blocks"].append(block)
    base = pooled["unloaded"]
    unloaded = {b["round"]: b for b in base["blocks"]}
    base_rps = sum(len(v) for v in base["samples"].values()) / base["wall_s"]
    rows = []
    for name, entry in pooled.items():
        total = sum(len(v) for v in entry["samples"].values())
        rps = total / entry["wall_s"]
        row: dict[str, Any] = {
            "condition": name,
            "requests": total,
            "errors": entry["errors"],
            "rps": round(rps, 1),
            "rps_ratio": round(rps / base_rps, 2),
            "rps_blocks": [round(_rps(b), 1) for b in entry["blocks"]],
            # Each block against the unloaded block of the same round (paired).
            "rps_ratio_rounds": [
                round(_rps(b) / _rps(unloaded[b["round"]]), 2) for b in entry["blocks"]
            ],
        }
        for op, values in entry["samples"].items():
            p50, p99 = _quantile(values, 0.5), _quantile(values, 0.99)
            row[f"{op}_p50_ms"] = round(p50, 2)
            row[f"{op}_p99_ms"] = round(p99, 2)
            row[f"{op}_p50_ratio"] = round(p50 / _quantile(base["samples"][op], 0.5), 2)
            row[f"{op}_p99_ratio"] = round(p99 / _quantile(base["samples"][op], 0.99), 2)
            row[f"{op}_p50_blocks"] = [
                round(_quantile(b["samples"][op], 0.5), 2) for b in entry["blocks"]
            ]
            row[f"{op}_p50_ratio_rounds"] = [
                round(
                    _quantile(b["samples"][op], 0.5)
                    / _quantile(unloaded[b["round"]]["samples"][op], 0.5),
                    2,
                )
                for b in entry["blocks"]
            ]
        row["cpu_pct"] = {
            who: round(
                sum(b["cpu_pct"].get(who, 0) for b in entry["blocks"]) / len(entry["blocks"]), 1
            )
            for who in entry["blocks"][0]["cpu_pct"]
        }
        row["load_average"] = [b["load_average"][0] for b in entry["blocks"]]
        rows.append(row)
    return rows


# --- part 2: idle change streams (clients in child processes) -------------------------------


async def _hold_streams(
    port: int, plan: list[tuple[str, str]], conn: Connection, opening: int
) -> None:
    arrivals: list[dict[str, float]] = [{} for _ in plan]
    failures: Counter[str] = Counter()
    writers: list[asyncio.StreamWriter] = []
    readers: list[asyncio.Task[None]] = []
    gate = asyncio.Semaphore(opening)
    closed = 0

    async def follow(index: int, reader: asyncio.StreamReader, buffer: bytes) -> None:
        nonlocal closed
        try:
            while True:
                events = buffer.split(b"\n\n")
                buffer = events.pop()
                stamp = time.monotonic()
                # The body is in HTTP/1.1 chunks: an event may follow a chunk-size line.
                for event in events:
                    if match := _CHANGE_EVENT.search(event):
                        arrivals[index].setdefault(match[1].decode(), stamp)
                chunk = await reader.read(65536)
                if not chunk:
                    break
                buffer += chunk
        except OSError:
            pass
        closed += 1

    async def open_one(index: int, address: str, path: str) -> None:
        async with gate:
            try:
                reader, writer = await asyncio.open_connection(HOST, port, local_addr=(address, 0))
            except OSError as error:
                failures[f"connect {type(error).__name__}"] += 1
                return
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                "Accept: text/event-stream\r\n\r\n".encode()
            )
            buffer = b""
            try:
                async with asyncio.timeout(60):
                    while b"event: ready" not in buffer:
                        chunk = await reader.read(65536)
                        if not chunk:
                            break
                        buffer += chunk
            except (TimeoutError, OSError) as error:
                failures[type(error).__name__] += 1
                writer.close()
                return
            if b"event: ready" not in buffer:
                status = buffer.split(b"\r\n", 1)[0].decode(errors="replace")
                failures[status or "closed"] += 1
                writer.close()
                return
            # Drop the response head and the ready event; follow what comes next.
            rest = buffer.split(b"event: ready", 1)[1].split(b"\n\n", 1)[1]
            writers.append(writer)
            readers.append(asyncio.create_task(follow(index, reader, rest)))

    loop = asyncio.get_running_loop()
    started = time.monotonic()
    await asyncio.gather(*(open_one(i, a, p) for i, (a, p) in enumerate(plan)))
    conn.send({"open": len(writers), "failures": dict(failures), "s": time.monotonic() - started})
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command == "cpu":
            conn.send(time.process_time())
        elif command == "arrivals":
            conn.send({"arrivals": arrivals, "closed": closed})
        else:
            break
    for writer in writers:
        writer.close()
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    conn.send("closed")


def _streams_main(port: int, plan: list[tuple[str, str]], conn: Connection, opening: int) -> None:
    """Child process: open the streams of ``plan`` (source address, path) and hold them."""
    asyncio.run(_hold_streams(port, plan, conn, opening))


def _put(client: httpx.Client, token: str, key: str) -> float:
    """PutItem of a new document into the shared scope through the proxy; time of the ack.

    With ``_v`` and ``_m`` as pysync's clients write them: a write without them would be
    stamped by the stream consumer, a second change (docs/changelog.md).
    """
    body = {
        "TableName": STREAM_TABLE,
        "Item": {
            "pk": {"S": SHARED_SCOPE},
            "sk": {"S": key},
            "title": {"S": "fan-out probe"},
            "_v": {"N": "1"},
            "_m": {"S": f"bench-{key}"},
        },
    }
    response = client.post(
        "/dynamodb",
        content=json.dumps(body),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": JSON_TYPE,
            "X-Amz-Target": TARGET + "PutItem",
        },
    )
    acked = time.monotonic()
    response.raise_for_status()
    return acked


def _idle_cpu(pids: dict[str, int], seconds: float, clients: list[Connection]) -> dict[str, Any]:
    before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    client_before = []
    for conn in clients:
        conn.send("cpu")
        client_before.append(conn.recv())
    started = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - started
    result: dict[str, Any] = {
        name: round((_cpu_seconds(pid) - before[name]) / wall * 100, 2)
        for name, pid in pids.items()
    }
    if clients:
        used = 0.0
        for conn, cpu in zip(clients, client_before, strict=True):
            conn.send("cpu")
            used += conn.recv() - cpu
        result["clients"] = round(used / wall * 100, 2)
    result["seconds"] = round(wall, 1)
    return result


def _part_two(
    database: DynamoDBLocal, args: argparse.Namespace, java_pid: int | None
) -> dict[str, Any]:
    defaults = ProxyConfig()
    env = {
        "PYSYNC_STREAM_POLL_INTERVAL": "0.02",
        "PYSYNC_MAX_STREAMS": str(max(args.streams, defaults.max_streams)),
        "PYSYNC_MAX_CLIENT_CONNECTIONS": str(
            max(args.streams + 100, defaults.max_client_connections)
        ),
    }
    proxy = Proxy(database.endpoint, STREAM_TABLE, env, consumer=True)
    pids = {"proxy": proxy.pid}
    if java_pid:
        pids["dynamodb_local"] = java_pid
    per_user = math.ceil(args.streams / args.users)
    if per_user > defaults.max_streams_per_subject:
        raise SystemExit(f"{per_user} streams per user is over the per-subject cap")
    tokens = [
        issue_token(SECRET, f"user{u:03d}", scopes=[SHARED_SCOPE], ttl=3600)
        for u in range(args.users)
    ]
    scope = quote(SHARED_SCOPE, safe="")
    plan = [
        (
            CLIENT_ADDRESSES[i % len(CLIENT_ADDRESSES)],
            f"/changes?scope={scope}&token={tokens[i // per_user]}",
        )
        for i in range(args.streams)
    ]
    writer_token = issue_token(SECRET, "writer", scopes=[SHARED_SCOPE], ttl=3600)
    context = multiprocessing.get_context("spawn")
    result: dict[str, Any] = {
        "streams": args.streams,
        "users": args.users,
        "streams_per_user": per_user,
        "client_processes": args.client_processes,
        "client_addresses": len(CLIENT_ADDRESSES),
        "raised": {k: v for k, v in env.items() if k != "PYSYNC_STREAM_POLL_INTERVAL"},
        "heartbeat_s": defaults.sse_heartbeat,
    }
    processes = []
    try:
        with httpx.Client(base_url=proxy.url, timeout=30) as client:
            # Warm-up: one stream, one write, its event; so the feed's code paths are loaded.
            with client.stream(
                "GET", plan[0][1], headers={"Accept": "text/event-stream"}
            ) as stream:
                lines = stream.iter_lines()
                while "event: ready" not in next(lines):
                    pass
                _put(client, writer_token, "warm-up")
                while not next(lines).startswith("id: "):
                    pass
            time.sleep(1.0)
            print("[hostile] streams: idle without streams ...", file=sys.stderr, flush=True)
            result["idle_cpu_pct_without"] = _idle_cpu(pids, args.idle, [])
            rss_before = _rss_bytes(proxy.pid)
            tcp_before = _tcp_mem_bytes()
            print(f"[hostile] streams: opening {args.streams} ...", file=sys.stderr, flush=True)
            share = math.ceil(len(plan) / args.client_processes)
            pipes = []
            for n in range(args.client_processes):
                parent, child = context.Pipe()
                process = context.Process(
                    target=_streams_main,
                    args=(proxy.port, plan[n * share : (n + 1) * share], child, 50),
                )
                process.start()
                processes.append(process)
                pipes.append(parent)
            opened = []
            for parent in pipes:
                if not parent.poll(180):
                    raise TimeoutError("the stream clients did not open their streams")
                opened.append(parent.recv())
            result["opened"] = sum(o["open"] for o in opened)
            result["open_failures"] = dict(sum((Counter(o["failures"]) for o in opened), Counter()))
            result["open_s"] = round(max(o["s"] for o in opened), 2)
            time.sleep(1.0)
            rss_after = _rss_bytes(proxy.pid)
            tcp_after = _tcp_mem_bytes()
            result["rss_mb_before"] = round(rss_before / MB, 1)
            result["rss_mb_after"] = round(rss_after / MB, 1)
            result["rss_kb_per_stream"] = round(
                (rss_after - rss_before) / 1024 / max(1, result["opened"]), 1
            )
            result["tcp_mem_kb_delta"] = round((tcp_after - tcp_before) / 1024)
            print(
                f"[hostile] streams: {result['opened']} open in {result['open_s']} s; idle ...",
                file=sys.stderr,
                flush=True,
            )
            result["idle_cpu_pct_with"] = _idle_cpu(pids, args.idle, pipes)
            print("[hostile] streams: writes ...", file=sys.stderr, flush=True)
            before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
            client_before = []
            for parent in pipes:
                parent.send("cpu")
                client_before.append(parent.recv())
            started = time.monotonic()
            acks = []
            for k in range(args.writes):
                key = f"probe#{k:03d}"
                sent = time.monotonic()
                acked = _put(client, writer_token, key)
                acks.append((key, sent, acked))
                time.sleep(args.write_interval)
            wall = time.monotonic() - started
            client_cpu = 0.0
            arrivals: list[dict[str, float]] = []
            closed = 0
            for parent, cpu in zip(pipes, client_before, strict=True):
                parent.send("cpu")
                client_cpu += parent.recv() - cpu
                parent.send("arrivals")
                report = parent.recv()
                arrivals += report["arrivals"]
                closed += report["closed"]
            cpu_pct = {
                name: round((_cpu_seconds(pid) - before[name]) / wall * 100, 1)
                for name, pid in pids.items()
            }
            cpu_pct["clients"] = round(client_cpu / wall * 100, 1)
            delivery = _delivery(acks, arrivals, closed, cpu_pct, wall)
            # CPU per write above the idle rate with all streams open (ms).
            idle = result["idle_cpu_pct_with"]
            delivery["cpu_ms_per_write"] = {
                who: round((cpu_pct[who] - idle.get(who, 0.0)) / 100 * wall / len(acks) * 1000, 1)
                for who in cpu_pct
            }
            result["delivery"] = delivery
            for parent in pipes:
                parent.send("close")
                parent.poll(30)
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
        proxy.stop()
    return result


def _delivery(
    acks: list[tuple[str, float, float]],
    arrivals: list[dict[str, float]],
    closed: int,
    cpu_pct: dict[str, float],
    wall: float,
) -> dict[str, Any]:
    """Latency from each write's ack to each stream's reading of its event (ms)."""
    latencies: list[float] = []
    per_write: list[dict[str, Any]] = []
    missing = 0
    for key, sent, acked in acks:
        these = [(stream[key] - acked) * 1000 for stream in arrivals if key in stream]
        missing += len(arrivals) - len(these)
        latencies += these
        per_write.append(
            {
                "write_ms": round((acked - sent) * 1000, 1),
                "first_ms": round(min(these), 1) if these else None,
                "p50_ms": round(_quantile(these, 0.5), 1) if these else None,
                "last_ms": round(max(these), 1) if these else None,
                "received": len(these),
            }
        )
    keys = {key for key, _, _ in acks}
    extra = sum(len(set(stream) - keys) for stream in arrivals)
    spreads = [w["last_ms"] - w["first_ms"] for w in per_write if w["first_ms"] is not None]
    return {
        "writes": len(acks),
        "streams": len(arrivals),
        "received": len(latencies),
        "missing": missing,
        "unexpected_events": extra,
        "closed_during": closed,
        "latency_ms": _dist(latencies, 1),
        "first_ms": _dist([w["first_ms"] for w in per_write if w["first_ms"] is not None], 1),
        "spread_ms": _dist(spreads, 1),
        "per_write": per_write,
        "cpu_pct": cpu_pct,
        "window_s": round(wall, 1),
    }


# --- main -------------------------------------------------------------------------------------


def _check_loopback_aliases() -> None:
    """The stream clients bind to 127.0.0.2 ...: Linux routes all of 127/8 to loopback."""
    for address in CLIENT_ADDRESSES[:1] + CLIENT_ADDRESSES[-1:]:
        with socket.socket() as sock:
            sock.bind((address, 0))


def main() -> None:
    """Run both parts and write bench/results/hostile.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="legit load per block")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three conditions")
    parser.add_argument("--concurrency", type=int, default=4, help="legit client pool / workers")
    parser.add_argument("--slow", type=int, default=20, help="slowloris connections")
    parser.add_argument("--senders", type=int, default=4, help="oversized-request senders")
    parser.add_argument(
        "--flood-rate", type=float, default=100.0, help="oversized requests/s in total (0: unpaced)"
    )
    parser.add_argument("--streams", type=int, default=1000, help="idle change streams")
    parser.add_argument("--users", type=int, default=100, help="token subjects of the streams")
    parser.add_argument("--client-processes", type=int, default=2, help="processes holding them")
    parser.add_argument("--idle", type=float, default=15.0, help="idle CPU window (s)")
    parser.add_argument("--writes", type=int, default=10, help="fan-out writes")
    parser.add_argument("--write-interval", type=float, default=1.0, help="s between writes")
    parser.add_argument("--skip", choices=("legit", "streams"), help="run only the other part")
    args = parser.parse_args()
    _check_loopback_aliases()

    defaults = ProxyConfig()
    machine = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_average_at_start": _load(),
    }
    started = time.monotonic()
    result: dict[str, Any] = {
        "benchmark": "hostile clients: legitimate latency beside attackers; idle change streams",
        "title": "Hostile clients and idle streams (`bench/bench_hostile.py`)",
        "machine": machine,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "setup": "DynamoDB Local 3.3.1 in memory; proxies = `pysync serve --dev` (uvicorn, one "
        "process, JSON access log on) in their own processes; the legitimate client, the "
        "attackers, the stream clients, the proxy and Java share the machine",
        "limits": {
            name: getattr(defaults, name)
            for name in (
                "max_header_bytes",
                "max_headers",
                "max_authorization_bytes",
                "max_body_bytes",
                "header_timeout",
                "body_timeout",
                "keep_alive_timeout",
                "max_client_connections",
                "max_connections_per_address",
                "max_streams",
                "max_streams_per_subject",
            )
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("skip",) and v is not None},
    }
    with DynamoDBLocal() as database:
        session = local_session()
        for table in (LEGIT_TABLE, STREAM_TABLE):
            create_tables(
                dynamodb_client(
                    ProxyConfig(table=table, dynamodb_endpoint=database.endpoint), session
                ),
                table,
            )
        process = getattr(database, "_process", None)
        java_pid = process.pid if process is not None else None
        if args.skip != "legit":
            result.update(_part_one(database, args, java_pid))
        if args.skip != "streams":
            result["streams"] = _part_two(database, args, java_pid)
    machine["load_average_at_end"] = _load()
    result["took_s"] = round(time.monotonic() - started, 1)
    if OUT.exists() and args.skip:  # keep the part not run this time
        previous = json.loads(OUT.read_text())
        for key in ("rows", "attackers", "errors", "streams"):
            if key not in result and key in previous:
                result[key] = previous[key]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT.relative_to(ROOT)} in {result['took_s']} s")


if __name__ == "__main__":
    main()
