"""Running a program in a world (in memory, or the real stack), then the oracle.

A *world* is the server side and everything outside the devices: it makes the
devices (with their network), applies writes that bypass pysync, and plays the
stream consumer's faults. :class:`World` is what the runner needs of it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pysync._sync._items import sort_key
from pysync._sync._pull import QUIET_MS

from .device import Device
from .oracle import (
    DeviceEnd,
    EditRecord,
    Evidence,
    History,
    Item,
    OutsideRecord,
    canon,
    check,
    doc_of,
    plain,
    record_key,
    system_of,
)
from .program import APP, COUNTERS, Program, Step, describe, sync_options

#: Rounds of syncing every device before the end is declared not quiet.
ROUNDS = 12
#: Device faults (the rest are world faults or operations), for the counts.
FAULTS = frozenset({"lose", "burst", "refuse", "batch_lost", "crash", "offline", "clock"})
WORLD_FAULTS = frozenset(
    {"lag", "expire", "forget_tokens", "restart_proxy", "restart_consumer", "outside"}
)


class World(Protocol):
    """The server side of a run."""

    name: str
    scope: str
    table: str
    stamping: bool

    async def open(self) -> None:
        """Start what the world runs (the consumer...)."""
        ...

    async def device(self, index: int, strategy: str, options: dict[str, Any]) -> Device:
        """Device ``index``, with its conflict strategy and ``Sync`` push options."""
        ...

    async def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A DynamoDB request straight to the database (no proxy, no faults)."""
        ...

    async def changelog(self) -> list[Item]:
        """Every entry of the scope in the changelog now (consistent)."""
        ...

    async def items(self) -> list[Item]:
        """Every item of the scope in the data table (consistent)."""
        ...

    async def lag(self) -> None:
        """The changelog stops following the table."""
        ...

    async def catch_up(self, n: int | None) -> None:
        """It follows again (``n``: only that many changes, where the world can)."""
        ...

    async def expire(self, keep: int) -> None:
        """Changelog entries expire: all but the newest ``keep``."""
        ...

    async def forget_tokens(self) -> bool: ...

    async def restart_proxy(self) -> bool: ...

    async def restart_consumer(self, abort: bool) -> bool: ...

    async def settle(self) -> None:
        """After a step: wait until a following changelog has caught up (deterministic)."""
        ...

    async def quiet(self) -> None:
        """Faults end: the changelog follows and catches up."""
        ...

    async def close(self) -> None: ...


@dataclass
class Outcome:
    """What a run did and found."""

    program: Program
    failures: list[str]
    log: list[str]
    ops: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def report(self, tail: int = 80) -> str:
        lines = [f"seed {self.program.get('seed')}: {len(self.failures)} broken promise(s)"]
        lines += [f"  {f}" for f in self.failures[:30]]
        if tail:
            lines.append("last steps:")
            lines += [f"  {line}" for line in self.log[-tail:]]
        return "\n".join(lines)


class Run:
    """One program in one world."""

    def __init__(self, program: Program, world: World) -> None:
        self.program = program
        self.world = world
        self.devices: list[Device] = []
        self.history = History()
        self.edits: list[EditRecord] = []
        self.outside: list[OutsideRecord] = []
        self.problems: list[str] = []
        self.log: list[str] = []
        self.ops: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.n = 0  # order of writes
        self.step_no = -1
        self.entries: list[set[int]] = []  # each device's outbox entries after the last step
        self.status: dict[tuple[int, int], str] = {}  # (device, entry): acked, discarded, ...
        self.states: list[dict[str, list[Any]]] = []
        self.versions: list[int] = []
        # While the changelog lags: how far each device's clock moved since it began.
        self.lag_clock: dict[int, int] | None = {} if program.get("lagging") else None
        self.lags = 0  # the changelog's stops so far

    # -- running --------------------------------------------------------------------------

    async def run(self) -> Outcome:
        started = time.monotonic()
        try:
            await self._setup()
            for i, step in enumerate(self.program["steps"]):
                self.step_no = i
                self.log.append(f"{i}: {describe(step)}")
                await self._late()
                await self.step(step)
                await self.world.settle()
                await self._observe(step)
            failures = await self._end()
        except Exception as error:  # an exception is a broken promise too (E: no crash)
            import traceback

            name = "P0 liveness" if type(error).__name__ == "Livelock" else "E exception"
            failures = [f"{name}: at step {self.step_no}: {error!r}"]
            self.log.append(traceback.format_exc())
        finally:
            for device in self.devices:
                try:
                    await device.close()
                except Exception as error:
                    self.log.append(f"close: {error!r}")
        # Not failures: the documented limits of a changelog that expired too soon or a
        # consumer stopped past QUIET_MS.
        explained = "explained: applied again, its first landing unseen (expired, past QUIET_MS)"
        self.ops[explained] += len(self.history.explained)
        return Outcome(
            self.program, failures, self.log, self.ops, self.faults, time.monotonic() - started
        )

    async def _setup(self) -> None:
        await self.world.open()
        # Counters exist before the devices start (written by an outside writer).
        for key in ("k0", "k1"):
            await self.outside_write(
                {
                    "kind": "put",
                    "coll": COUNTERS,
                    "id": key,
                    "contract": True,
                    "doc": {"n": 0, "tag": f"init-{key}"},
                },
                count=False,
            )
        await self.world.settle()
        for i, strategy in enumerate(self.program["devices"]):
            options = sync_options(self.program, i)
            device = await self.world.device(i, strategy, options)
            self.devices.append(device)
            self.entries.append(set())
            self.states.append({})
            self.versions.append(1)
            result = await device.sync("pull")
            drawn = "".join(f", {k}={v}" for k, v in options.items())
            self.log.append(f"dev{i} ({strategy}{drawn}) first pull: {result}")
        await self._observe({"do": "setup"})

    async def _late(self) -> None:
        for device in self.devices:
            if await device.late():
                self.faults["crash:arrived later"] += 1

    async def step(self, step: Step) -> None:
        do = step["do"]
        self.ops[do] += 1
        if "dev" in step:
            device = self.devices[step["dev"] % len(self.devices)]
            await self.device_step(device, step)
            return
        world = self.world
        if do == "outside":
            await self.outside_write(step["w"])
        elif do == "lag":
            self.faults["lag"] += 1
            await world.lag()
            if self.lag_clock is None:
                self.lag_clock = {}
                self.lags += 1
        elif do == "catch_up":
            await self._deliver(lambda: world.catch_up(step.get("n")), ends=step.get("n") is None)
        elif do == "expire":
            self.faults["expire"] += 1
            self.history.observe(await world.changelog())
            self.history.expired(step["keep"])
            await world.expire(step["keep"])
        elif do == "forget_tokens":
            if await world.forget_tokens():
                self.faults["forget_tokens"] += 1
        elif do == "restart_proxy":
            if await world.restart_proxy():
                self.faults["restart_proxy"] += 1
        elif do == "restart_consumer" and await world.restart_consumer(step.get("abort", False)):
            self.faults["restart_consumer"] += 1

    async def device_step(self, device: Device, step: Step) -> None:
        do, i = step["do"], device.index
        if do == "edit":
            self.ops[f"edit:{step['op']['op']}"] += 1
            self._edited(i, [step["op"]], [await device.edit(step["op"])])
        elif do == "transaction":
            result = await device.transaction(step["ops"])
            if result["ok"]:
                self._edited(i, step["ops"], result["edits"])
                if not result.get("as_applied", True):
                    self.problems.append(
                        f"L local: dev{i}'s transaction at step {self.step_no} did not "
                        "leave its documents as its writes in order make them"
                    )
            elif not result.get("atomic", True):
                self.problems.append(
                    f"L local: dev{i}'s failed transaction at step {self.step_no} wrote something"
                )
            self.log.append(f"  -> {_short(result)}")
        elif do in ("sync", "push", "pull"):
            result = await device.sync(do)
            self.log.append(f"  -> {_short(result)}")
        elif do == "in_flight":
            result = await device.push_with_edits(step["ops"])
            self.ops["in_flight:edits during a write"] += bool(result["in_flight"])
            self._edited(i, step["ops"], result["edits"])
            self.log.append(f"  -> {_short(result)}")
        elif do in ("retry", "discard"):
            rejected = [e for e in await device.outbox() if e["state"] == "rejected"]
            if rejected:
                mid = rejected[step["pick"] % len(rejected)]["mid"]
                self.log.append(f"  {do} {mid}")
                await getattr(device, do)(mid)
                self.ops[f"{do}:done"] += 1
        elif do == "offline":
            self.faults["offline"] += 1
            await device.set_online(False)
        elif do == "online":
            await device.set_online(True)
        elif do == "reload":
            await device.reload()
        elif do == "upgrade":
            self.versions[i] += 1
            await device.reload(self.versions[i])
        elif do == "old_layout":
            version = None
            if step.get("upgrade"):
                self.versions[i] += 1
                version = self.versions[i]
            result = await device.old_layout(version, step.get("land"))
            self._old_layout(i, step, result)
        elif do == "crash":
            if "op" in step:
                self._edited(i, [step["op"]], [await device.edit(step["op"])])
            result = await device.crash(step["land"])
            if result.get("in_flight"):
                self.faults[f"crash:write in flight, lands {step['land']}"] += 1
            else:
                self.faults["crash:no write in flight"] += 1
            self.log.append(f"  -> {_short(result)}")
        elif do == "clock":
            self.faults["clock"] += 1
            await device.advance_clock(step["ms"])
            if self.lag_clock is not None:
                self.lag_clock[i] = self.lag_clock.get(i, 0) + step["ms"]
        elif do == "lose":
            self.faults[f"lost reply x{step['n']}{' (500)' if step['status'] else ''}"] += 1
            await device.inject({"kind": "lose", "n": step["n"], "status": step["status"]})
        elif do == "burst":
            self.faults[f"{step['code']} x{step['n']}"] += 1
            status = 503 if step["code"] == "ServiceUnavailable" else 400
            fault = {"kind": "fail", "n": step["n"], "code": step["code"], "status": status}
            await device.inject({**fault, "writes": False})
        elif do == "batch_lost":
            self.faults[f"batch reply lost x{step['n']}"] += 1
            await device.inject({"kind": "batch_lost", "n": step["n"]})
        elif do == "refuse":
            self.faults["refusal"] += 1
            await device.inject(
                {
                    "kind": "fail",
                    "n": 1,
                    "code": "ValidationException",
                    "status": 400,
                    "writes": True,
                }
            )

    def _old_layout(self, dev: int, step: Step, result: dict[str, Any]) -> None:
        """Count what an ``old_layout`` step rewrote; its problems are broken promises (U)."""
        if step.get("land") is not None:
            if result.get("in_flight"):
                self.faults[f"old_layout:crash, write in flight, lands {step['land']}"] += 1
            else:
                self.faults["old_layout:crash, no write in flight"] += 1
        self.ops["old_layout:with an app upgrade"] += bool(step.get("upgrade"))
        self.ops["old_layout:entries"] += result["entries"]
        self.ops["old_layout:entries of transactions"] += result["grouped"]
        self.ops["old_layout:transactions stored as one row"] += result["transactions"]
        for state, count in result["states"].items():
            self.ops[f"old_layout:{state} entries"] += count
        for problem in result["problems"]:
            self.problems.append(
                f"U upgrade: dev{dev}'s database of outbox layout 1 at step {self.step_no}: "
                f"{problem}"
            )
        self.log.append(f"  -> {_short({k: v for k, v in result.items() if k != 'problems'})}")

    def _edited(self, dev: int, ops: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
        for op, result in zip(ops, results, strict=False):
            for n in result.get("cancelled", []):
                self.status.setdefault((dev, n), "cancelled")  # a create never pushed, deleted
            if not result.get("ok"):
                self.log.append(f"  dev{dev} {op['op']} {op.get('id')}: {result.get('error')}")
                continue
            self.n += 1
            values = op.get("doc") or op.get("set") or {}
            edit = EditRecord(
                self.n,
                self.step_no,
                dev,
                op["coll"],
                str(result["id"]),
                op["op"],
                dict(values),
                int(op.get("by", 0)),
                result["pre"],
                result["post"],
                result.get("mid"),
                entry=result.get("entry"),
            )
            self.edits.append(edit)
            if edit.entry is not None:  # it may come and go within this step
                self.entries[dev].add(edit.entry)
            self._seen(dev, edit.key, edit.pre)
            self._seen(dev, edit.key, edit.post)
            expected = _expected(op, result["pre"], result["id"])
            if result["post"] != expected:
                self.problems.append(
                    f"L local: dev{dev}'s {op['op']} at step {self.step_no} gave {result['post']}, "
                    f"expected {expected}"
                )
            self.log.append(f"  dev{dev} {op['op']} {edit.key} mid={edit.mid} on {edit.pre}")

    def _seen(self, dev: int, key: str, doc: Any) -> None:
        states = self.states[dev].setdefault(key, [])
        if all(canon(s) != canon(doc) for s in states):
            states.append(doc)

    async def _deliver(self, deliver: Callable[[], Awaitable[None]], *, ends: bool) -> None:
        """Let the lagging changelog append what it held (``ends``: and follow again),
        noting the entries held past ``QUIET_MS`` of a device's clock (see History): the
        changelog is read around the delivery only then."""
        if self.lag_clock and max(self.lag_clock.values()) > QUIET_MS:
            self.history.observe(await self.world.changelog())
            before = max(self.history.entries, default=0)
            await deliver()
            self.history.observe(await self.world.changelog())
            after = max(self.history.entries, default=0)
            if after > before:
                self.history.held.append((self.lags, before + 1, after))
        else:
            await deliver()
        if ends:
            self.lag_clock = None

    async def _observe(self, step: Step) -> None:
        """After a step: each device's states, and what became of its outbox entries."""
        for i, device in enumerate(self.devices):
            for coll, docs in (await device.documents()).items():
                for key, doc in docs.items():
                    self._seen(i, f"{coll}#{key}", doc)
                for key in self.states[i]:
                    if key.startswith(f"{coll}#") and key.partition("#")[2] not in docs:
                        self._seen(i, key, None)
            for conflict in await device.conflicts():
                self._seen(i, f"{conflict['collection']}#{conflict['id']}", conflict["result"])
            entries = {int(e["n"]) for e in await device.outbox()}
            for n in self.entries[i] - entries:
                if step["do"] == "discard":
                    self.status.setdefault((i, n), "discarded")
                elif step["do"] in ("edit", "transaction"):
                    self.status.setdefault((i, n), "cancelled")
                else:
                    self.status.setdefault((i, n), "acked")
            self.entries[i] = entries

    # -- writes that bypass pysync ---------------------------------------------------------

    def _key(self, coll: str, key: str) -> dict[str, Any]:
        return {"pk": {"S": self.world.scope}, "sk": {"S": sort_key(APP, coll, key)}}

    async def _get(self, key: dict[str, Any]) -> Item | None:
        got = await self.world.call(
            "GetItem", {"TableName": self.world.table, "Key": key, "ConsistentRead": True}
        )
        item: Item | None = got.get("Item")
        return item

    async def outside_write(self, w: dict[str, Any], count: bool = True) -> None:
        if w["kind"] == "replace":  # deleted for good and created again: versions restart
            await self.outside_write({**w, "kind": "delete"}, count)
            await self.outside_write({**w, "kind": "recreate"}, count)
            return
        kind, coll, contract = w["kind"], w["coll"], w["contract"]
        key = self._key(coll, w["id"])
        old = await self._get(key)
        live = old is not None and "_del" not in old
        table = self.world.table
        mark = f"ext:{self.world.scope}:{self.step_no}:{self.n + 1}"
        if kind == "ttl" and not (old is not None and "_del" in old):
            old = None  # TTL sweeps tombstones: take any tombstone of the scope instead
            for item in await self.world.items():
                if "_del" in item:
                    old, key = item, {"pk": item["pk"], "sk": item["sk"]}
                    break
        if kind == "ttl" or kind == "delete":
            if old is None:
                return self._skip(w, "nothing to delete")
            await self.world.call("DeleteItem", {"TableName": table, "Key": key})
            new: Item | None = None
            values: dict[str, Any] = {}
        elif kind in ("put", "recreate"):
            if kind == "recreate" and live:
                return self._skip(w, "exists")
            item_id = w["id"]
            new = {**key, "id": {"S": item_id}, **{k: _attr(v) for k, v in w["doc"].items()}}
            raw = {"raw": w["raw"]} if "raw" in w else {}  # an attribute as it is (program.py)
            new.update(raw)
            if contract:
                version = int(system_of(old).get("_v", 0)) + 1 if old is not None else 1
                new.update(_v={"N": str(version)}, _m={"S": mark})
            elif old is not None:  # leaves _v and _m (and the rest of pysync's fields) alone
                new.update({k: v for k, v in old.items() if k in ("_v", "_m", "_hlc", "_c")})
            await self.world.call("PutItem", {"TableName": table, "Item": new})
            values = {**w["doc"], **{k: plain(v) for k, v in raw.items()}}
        else:  # update, increment: only of a live document
            if not live:
                return self._skip(w, "no live document")
            sets = w.get("set", {}) if kind == "update" else {}
            names = {f"#f{i}": k for i, k in enumerate(sets)}
            attrs = {f":f{i}": _attr(v) for i, v in enumerate(sets.values())}
            set_parts = [f"#f{i} = :f{i}" for i in range(len(sets))]
            add_parts = []
            if kind == "increment":
                names["#n"] = "n"
                attrs[":by"] = _attr(w["by"])
                add_parts.append("#n :by")
            if contract:
                names.update({"#m": "_m", "#v": "_v"})
                attrs.update({":m": {"S": mark}, ":one": {"N": "1"}})
                set_parts.append("#m = :m")
                add_parts.append("#v :one")
            expression = " ".join(
                part
                for part in (
                    f"SET {', '.join(set_parts)}" if set_parts else "",
                    f"ADD {', '.join(add_parts)}" if add_parts else "",
                )
                if part
            )
            got = await self.world.call(
                "UpdateItem",
                {
                    "TableName": table,
                    "Key": key,
                    "UpdateExpression": expression,
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": attrs,
                    "ReturnValues": "ALL_NEW",
                },
            )
            new = got["Attributes"]
            values = dict(sets)
        self.n += 1
        record = OutsideRecord(
            self.n,
            self.step_no,
            kind,
            record_key(key["sk"]["S"]),
            contract,
            old,
            new,
            values,
            int(w.get("by", 0)),
        )
        self.outside.append(record)
        if count:
            self.faults[f"outside:{kind}{'' if contract else ' (no contract)'}"] += 1
        self.log.append(f"  outside {kind} {record.key}: {doc_of(old)} -> {doc_of(new)}")

    def _skip(self, w: dict[str, Any], why: str) -> None:
        self.log.append(f"  outside {w['kind']} {w['coll']}#{w['id']}: skipped ({why})")

    # -- the end ---------------------------------------------------------------------------

    async def _quiesce(self) -> bool:
        for round_no in range(ROUNDS):
            quiet = True
            for device in self.devices:
                result = await device.sync("sync")
                report = result.get("report") or {}
                push, pull = report.get("push", {}), report.get("pull", {})
                busy = (
                    not result["ok"]
                    or push.get("pushed")
                    or push.get("conflicts")
                    or pull.get("applied")
                    or pull.get("base_sync")
                )
                if busy:
                    quiet = False
                self.log.append(f"  round {round_no} dev{device.index}: {_short(result)}")
                await self.world.settle()
            await self._observe({"do": "sync"})
            if quiet:
                return True
        return False

    async def _end(self) -> list[str]:
        self.step_no = len(self.program["steps"])
        self.log.append("end: faults stop; every device syncs until a round changes nothing")
        for device in self.devices:
            await device.clear_faults()
            await device.set_online(True)
            await device.advance_clock(15 * 60 * 1000)  # a write still unseen did not land
        await self._deliver(self.world.quiet, ends=True)
        quiet = await self._quiesce()
        at_rest = [await device.outbox() for device in self.devices]
        # The app resolves what was rejected (the program says retry or discard).
        policy = self.program.get("resolve") or ["retry"]
        turn = 0
        for device in self.devices:
            for _ in range(50):
                rejected = [e for e in await device.outbox() if e["state"] == "rejected"]
                if not rejected:
                    break
                action = policy[turn % len(policy)]
                turn += 1
                self.log.append(f"  dev{device.index} {action} {rejected[0]['mid']}")
                self.ops[f"end:{action}"] += 1
                await getattr(device, action)(rejected[0]["mid"])
                await self._observe({"do": action})
        quiet = await self._quiesce() and quiet
        self.history.observe(await self.world.changelog())
        ends = []
        for i, device in enumerate(self.devices):
            ends.append(
                DeviceEnd(
                    await device.documents(),
                    at_rest[i],
                    await device.outbox(),
                    await device.conflicts(),
                    self.states[i],
                )
            )
        lineages = [await device.lineage() for device in self.devices]
        for edit in self.edits:
            if edit.entry is not None:
                edit.status = self.status.get((edit.dev, edit.entry), "pending")
                edit.mids = lineages[edit.dev].get(str(edit.entry)) or [str(edit.mid)]
        evidence = Evidence(
            await self.world.items(),
            ends,
            self.edits,
            self.outside,
            self.history,
            self.world.stamping,
            quiet,
            self.problems,
        )
        return check(evidence)


def _attr(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": str(value)}
    return {"S": str(value)}


def _expected(op: dict[str, Any], pre: Any, key: Any) -> Any:
    kind = op["op"]
    if kind in ("put", "add"):
        return {"id": key, **op["doc"]}
    if kind == "delete":
        return None
    if kind == "patch":
        return {**pre, **op["set"]}
    return {**pre, op["field"]: pre.get(op["field"], 0) + op["by"]}


def _short(result: dict[str, Any]) -> str:
    text = str({k: v for k, v in result.items() if k != "edits"})
    return text if len(text) < 300 else text[:300] + "…"


async def run_program(program: Program, world: World) -> Outcome:
    """Run ``program`` in ``world`` and check the promises (the world is closed after)."""
    try:
        return await Run(program, world).run()
    finally:
        await world.close()


async def minimize(
    program: Program,
    run: Any,
    same: Any,
    budget: int = 300,
) -> tuple[Program, Outcome | None]:
    """A smaller program that still fails the same way (delta debugging over its steps).

    ``run(program) -> Outcome`` (awaitable); ``same(outcome)`` tells whether a run
    still shows the failure. At most ``budget`` runs.
    """
    steps = list(program["steps"])
    best: Outcome | None = None
    runs = 0
    chunk = max(1, len(steps) // 2)
    while chunk >= 1 and runs < budget:
        i, shrunk = 0, False
        while i < len(steps) and runs < budget:
            trial = steps[:i] + steps[i + chunk :]
            runs += 1
            outcome = await run({**program, "steps": trial})
            if same(outcome):
                steps, best, shrunk = trial, outcome, True
            else:
                i += chunk
        if not shrunk:
            chunk //= 2
    return {**program, "steps": steps}, best
