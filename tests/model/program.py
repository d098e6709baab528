"""Programs: seeded step lists over every public operation and every outside event.

A program is plain JSON (dicts, lists, strings, numbers), so a failing one can be
printed, stored and replayed by any runner::

    {"seed": 7, "devices": ["lww", "callback"], "lagging": false,
     "steps": [{"do": "edit", "dev": 0, "op": {"op": "put", "coll": "docs", "id": "a",
                                              "doc": {"x": "v3.0"}}}, ...],
     "resolve": ["retry", "discard", ...],
     "options": [{"push_batch": 2, "pack_size": 1, "push_concurrency": 8}, ...]}

``options`` are each device's ``Sync`` push options (:func:`sync_options`: a
program recorded without them runs with the library's defaults). They, the
``batch_lost`` steps and then the ``old_layout`` steps are drawn after everything
else, so a seed draws the same other steps as before they existed.

An outside writer's document sometimes holds a field ``raw`` of a kind pysync's own
writes never make (:func:`_raw`): a number beyond 2**53, a negative fraction, a map
holding a list of a boolean, a null and a number. A base sync in a page converts
its items in JavaScript, and a page holding such a number in Python: both paths
meet the world's values. ``raw`` is not drawn (it follows the value counter), so
every seed keeps its steps.

Every value a write sets is unique in the program (``v<step>.<n>``), so the
oracle can tell exactly which write a value came from. Counters (collection
``counters``) only ever change their ``n`` by increments (devices and outside
writers); devices also patch their ``tag`` and, rarely, delete them; outside
writers re-create them with ``n = 0``.

:func:`generate` draws a program from a :class:`Chooser`: ``random.Random`` (the
soak runner, fixed seeds) or Hypothesis' ``data`` (the memory runner, which then
shrinks failures) behind the same three calls.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

DOCS, COUNTERS = "docs", "counters"
#: The app name of every device: its items' sort keys start with ``model/``.
APP = "model"
PLAIN = ("a", "b", "c")  # put, patched, deleted: few ids, so edits collide often
ADDED = ("n0", "n1")  # created with add() (DocumentExistsError when taken)
COUNTER_IDS = ("k0", "k1")
FIELDS = ("x", "y", "z")
STRATEGIES = ("lww", "server", "client", "callback")

Step = dict[str, Any]
Program = dict[str, Any]

#: How often each kind of step is drawn. Device steps name a device (``dev``).
DEVICE_STEPS = {
    "edit": 12,
    "transaction": 3,
    "sync": 6,
    "push": 2,
    "pull": 2,
    "in_flight": 2,  # a push with edits made while its first write is in flight
    "retry": 1,
    "discard": 1,
    "offline": 1,
    "online": 2,
    "reload": 1,
    "crash": 2,  # a push cancelled with a write in flight (landed, not, or later); reconnect
    "upgrade": 1,  # reconnect with a higher schema version and a migration
    "clock": 1,
    "lose": 2,  # the next write lands, its reply is lost (1, or 8 in a row: the push gives up)
    "burst": 1,  # 5xx or throttling before anything is applied
    "refuse": 2,  # a permanent refusal of the next write: rejected until retried or discarded
}
#: The share of steps with a ``batch_lost`` device step before them: the next batch (of
#: two or more calls, a write among them) lands, its whole reply is lost. Drawn after
#: everything else, so that a seed's other steps are the ones it drew before batches.
BATCH_LOST_SHARE = 0.04
#: The share of steps with an ``old_layout`` device step before them: the device's
#: database is rewritten as the pysync before outbox layout 2 stored it (an entry per
#: row, older indexes, IndexedDB version = app version) and opened again with today's,
#: which upgrades it; ``upgrade`` (a third): with the app's version + 1 at once;
#: ``land`` (two in five): a crash first, with a write in flight that lands, never
#: does or lands at the next step. Drawn after everything else (batches included).
OLD_LAYOUT_SHARE = 0.015
WORLD_STEPS = {
    "outside": 6,  # a writer that is not pysync, straight to DynamoDB
    "lag": 1,  # the changelog stops following (stack: the consumer stops)
    "catch_up": 1,  # it follows again (memory: deliver n held-back changes)
    "expire": 1,  # changelog entries expire (the newest `keep` stay)
    "forget_tokens": 1,  # ClientRequestTokens forgotten (10 minutes later; memory only)
    "restart_proxy": 1,  # stack only
    "restart_consumer": 1,  # stack only
}
#: replace: a hard delete and a re-create of the same id at once (versions start again).
OUTSIDE_KINDS = ("put", "update", "increment", "delete", "ttl", "recreate", "replace")
#: Each device's ``Sync`` push options are drawn from these (``pack_size`` 3 for one
#: device in five, the others evenly): calls per batch request (1: no batches),
#: independent changes per ``TransactWriteItems`` (1: plain writes), requests out at once.
PUSH_BATCH = (1, 2, 50)
PACK_SIZE = (1, 3)
PUSH_CONCURRENCY = (1, 8)


class Chooser(Protocol):
    """Where a program's choices come from."""

    def int(self, low: int, high: int) -> int: ...  # inclusive

    def pick(self, options: Sequence[T]) -> T: ...

    def chance(self, p: float) -> bool: ...


class RandomChooser:
    """Choices from a seeded ``random.Random``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def int(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def pick(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p


class HypothesisChooser:
    """Choices drawn from Hypothesis' ``data`` (so failures shrink)."""

    def __init__(self, data: Any) -> None:
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def int(self, low: int, high: int) -> int:
        return int(self.data.draw(self.st.integers(low, high)))

    def pick(self, options: Sequence[T]) -> T:
        return options[self.int(0, len(options) - 1)]

    def chance(self, p: float) -> bool:
        # 0 (the shrink target) means "no": shrinking removes the rarer branch.
        return self.int(0, 999) >= round(1000 * (1 - p))


def _weighted(table: dict[str, int]) -> list[str]:
    return [kind for kind, weight in table.items() for _ in range(weight)]


class _Values:
    def __init__(self) -> None:
        self.step = 0
        self.n = 0

    def new(self) -> str:
        self.n += 1
        return f"v{self.step}.{self.n}"


def _edit_op(c: Chooser, values: _Values) -> dict[str, Any]:
    """One local edit (an argument of ``Device.edit``)."""
    kind = c.pick(_weighted({"put": 5, "add": 1, "patch": 3, "delete": 2, "inc": 4, "tag": 2}))
    if kind == "put":
        fields = [f for f in FIELDS if c.chance(0.5)] or [c.pick(FIELDS)]
        doc = {f: values.new() for f in fields}
        return {"op": "put", "coll": DOCS, "id": c.pick(PLAIN), "doc": doc}
    if kind == "add":
        doc = {c.pick(FIELDS): values.new()}
        key = None if c.chance(0.15) else c.pick(ADDED)
        return {"op": "add", "coll": DOCS, "id": key, "doc": doc}
    if kind == "patch":
        fields = sorted({c.pick(FIELDS) for _ in range(c.int(1, 2))})
        key = c.pick(PLAIN + ADDED) if c.chance(0.9) else c.pick(ADDED)
        return {"op": "patch", "coll": DOCS, "id": key, "set": {f: values.new() for f in fields}}
    if kind == "delete":
        if c.chance(0.1):
            return {"op": "delete", "coll": COUNTERS, "id": c.pick(COUNTER_IDS)}
        return {"op": "delete", "coll": DOCS, "id": c.pick(PLAIN + ADDED)}
    if kind == "inc":
        return {
            "op": "increment",
            "coll": COUNTERS,
            "id": c.pick(COUNTER_IDS),
            "field": "n",
            "by": c.int(1, 5),
        }
    return {
        "op": "patch",
        "coll": COUNTERS,
        "id": c.pick(COUNTER_IDS),
        "set": {"tag": values.new()},
    }


def _raw(n: int) -> dict[str, Any]:
    """The DynamoDB attribute of an outside document's ``raw`` field, unique by ``n``
    (as every value of a program), one kind in turn."""
    kinds: list[dict[str, Any]] = [
        {"N": str(10**19 + n)},  # beyond 2**53: the page's base sync converts it in Python
        {"N": f"-{n}.25"},
        {"M": {"v": {"S": f"raw{n}"}, "l": {"L": [{"BOOL": True}, {"NULL": True}, {"N": "2"}]}}},
    ]
    return kinds[n % len(kinds)]


def _outside(c: Chooser, values: _Values, avoid: frozenset[str]) -> dict[str, Any]:
    """One write straight to DynamoDB by a writer that is not pysync."""
    kind = c.pick(
        _weighted(
            {
                "put": 2,
                "update": 3,
                "increment": 2,
                "delete": 2,
                "ttl": 1,
                "recreate": 2,
                "replace": 2,
            }
        )
    )
    counter = kind == "increment" or (kind != "update" and c.chance(0.35))
    coll = COUNTERS if counter else DOCS
    key = c.pick(COUNTER_IDS) if counter else c.pick(PLAIN + ADDED)
    contract = c.chance(0.6) or "nocontract" in avoid
    out: dict[str, Any] = {"kind": kind, "coll": coll, "id": key, "contract": contract}
    if kind in ("put", "recreate", "replace"):
        if counter:
            out["doc"] = {"n": 0, "tag": values.new()}
        else:
            fields = [f for f in FIELDS if c.chance(0.5)] or [c.pick(FIELDS)]
            out["doc"] = {f: values.new() for f in fields}
            if values.n % 2 == 0:
                out["raw"] = _raw(values.step * 1000 + values.n)
    elif kind == "update":
        if c.chance(0.3):
            out.update(coll=COUNTERS, id=c.pick(COUNTER_IDS), set={"tag": values.new()})
        else:
            out["set"] = {c.pick(FIELDS): values.new()}
    elif kind == "increment":
        out["by"] = c.int(1, 9)
    return out


def _step(c: Chooser, values: _Values, devices: int, world: bool, avoid: frozenset[str]) -> Step:
    if world:
        kind = c.pick(_weighted(WORLD_STEPS))
        if kind in avoid:
            return {"do": "catch_up", "n": None}
        if kind == "outside":
            return {"do": "outside", "w": _outside(c, values, avoid)}
        if kind == "catch_up":
            return {"do": "catch_up", "n": c.pick([1, 2, 4, None])}
        if kind == "expire":
            return {"do": "expire", "keep": c.int(0, 3)}
        if kind == "restart_consumer":
            return {"do": "restart_consumer", "abort": c.chance(0.5)}
        return {"do": kind}
    kind = c.pick(_weighted(DEVICE_STEPS))
    step: Step = {"do": kind, "dev": c.int(0, devices - 1)}
    if kind in avoid:
        step["do"] = kind = "sync"
    if kind == "edit":
        step["op"] = _edit_op(c, values)
    elif kind in ("transaction", "in_flight"):
        count = c.int(2, 4) if kind == "transaction" else c.int(1, 2)
        step["ops"] = [_edit_op(c, values) for _ in range(count)]
        for op in step["ops"]:
            if op["id"] is None:  # a transaction's writes name their documents
                op["id"] = c.pick(ADDED)
    elif kind in ("retry", "discard"):
        step["pick"] = c.int(0, 3)
    elif kind == "crash":  # an edit, then its push dies with the write in flight
        step["land"] = c.pick(["yes", "no", "later"])
        step["op"] = _edit_op(c, values)
    elif kind == "clock":
        step["ms"] = c.pick([-5000, -1000, 1000, 60_000, 11 * 60_000])
    elif kind == "lose":
        step["n"] = c.pick([1, 1, 8])
        step["status"] = c.pick([0, 0, 500])
    elif kind == "burst":
        step["n"] = c.pick([1, 3, 8])
        step["code"] = c.pick(["ServiceUnavailable", "ThrottlingException"])
    return step


def _with_batch_faults(
    c: Chooser, steps: list[Step], devices: int, avoid: frozenset[str]
) -> list[Step]:
    """``steps`` with ``batch_lost`` steps drawn in (:data:`BATCH_LOST_SHARE`)."""
    out: list[Step] = []
    for step in steps:
        if c.chance(BATCH_LOST_SHARE):
            fault = {"do": "batch_lost", "dev": c.int(0, devices - 1), "n": c.pick([1, 1, 4])}
            if "batch_lost" not in avoid:
                out.append(fault)
        out.append(step)
    return out


def _with_old_layouts(
    c: Chooser, steps: list[Step], devices: int, avoid: frozenset[str], share: float
) -> list[Step]:
    """``steps`` with ``old_layout`` steps drawn in (``share``: see :data:`OLD_LAYOUT_SHARE`)."""
    out: list[Step] = []
    for step in steps:
        if c.chance(share):
            old = {
                "do": "old_layout",
                "dev": c.int(0, devices - 1),
                "upgrade": c.chance(1 / 3),
                "land": c.pick([None, None, None, "yes", "no", "later"]),
            }
            if "old_layout" not in avoid:
                out.append(old)
        out.append(step)
    return out


def _options(c: Chooser) -> dict[str, int]:
    """One device's ``Sync`` push options."""
    return {
        "push_batch": c.pick(PUSH_BATCH),
        "pack_size": PACK_SIZE[1] if c.chance(0.2) else PACK_SIZE[0],
        "push_concurrency": c.pick(PUSH_CONCURRENCY),
    }


def sync_options(program: Program, index: int) -> dict[str, int]:
    """Device ``index``'s ``Sync`` options (none recorded: the library's defaults)."""
    drawn = program.get("options") or []
    return dict(drawn[index]) if index < len(drawn) else {}


def generate(
    c: Chooser,
    *,
    seed: int | None = None,
    min_steps: int = 20,
    max_steps: int = 80,
    max_devices: int = 3,
    avoid: frozenset[str] = frozenset(),
    old_layout_share: float = OLD_LAYOUT_SHARE,
) -> Program:
    """A program: 2 or 3 devices, their strategies and push options, and a step list.

    ``avoid``: kinds of steps not to draw (each becomes a plain sync, or a
    catch-up of the changelog), and ``nocontract`` for outside writers that all
    follow the bypass contract; to look past a known bug. ``old_layout_share``: how
    many ``old_layout`` steps (:data:`OLD_LAYOUT_SHARE`; more to sweep the upgrade).
    """
    devices = c.int(2, max_devices)
    strategies = [c.pick(STRATEGIES) for _ in range(devices)]
    lagging = c.chance(0.3)
    values = _Values()
    steps: list[Step] = []
    for i in range(c.int(min_steps, max_steps)):
        values.step = i
        values.n = 0
        steps.append(_step(c, values, devices, world=c.chance(0.25), avoid=frozenset(avoid)))
    resolve = [c.pick(["retry", "retry", "discard"]) for _ in range(8)]
    # Last: a seed's steps and resolutions stay the ones drawn before these existed.
    options = [_options(c) for _ in range(devices)]
    steps = _with_batch_faults(c, steps, devices, frozenset(avoid))
    steps = _with_old_layouts(c, steps, devices, frozenset(avoid), old_layout_share)
    return {
        "seed": seed,
        "avoid": sorted(avoid),
        "devices": strategies,
        "lagging": lagging,
        "steps": steps,
        "resolve": resolve,
        "options": options,
    }


def from_seed(seed: int, **options: Any) -> Program:
    """The program of ``seed`` (the soak runner's and the fixed-seed tests')."""
    return generate(RandomChooser(seed), seed=seed, **options)


def describe(step: Step) -> str:
    """One line for a step log."""
    rest = {k: v for k, v in step.items() if k not in ("do", "dev")}
    who = f" dev{step['dev']}" if "dev" in step else ""
    return f"{step['do']}{who} {rest}" if rest else f"{step['do']}{who}"
