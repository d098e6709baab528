"""The model (tests/model) in memory: random programs over every operation and fault.

Each example is a program of 2 or 3 devices against one MemoryDynamo (see
tests/model/__init__.py for what is generated and the promises checked at the
end). Hypothesis draws the program's seed; a failing program is shrunk by the
model's own step minimizer (it knows what a step is: Hypothesis' shrinking of
the raw choices took more than five minutes on one program), and the message
gives the broken promises, the minimal step list and its log.

``PYSYNC_MODEL_EXAMPLES`` sets the number of examples (default 100, 15 to 40 s);
``PYSYNC_MODEL_SEEDS`` the fixed seeds run as well (the soak runner's programs:
``scripts/soak.py --runner memory`` runs many more).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pysync import RemoteError
from pysync.testing import MemoryDynamo
from tests.model.device import TABLE, FaultyRemote, deterministic_ids
from tests.model.memory import MemoryWorld
from tests.model.program import Program, from_seed
from tests.model.runner import Outcome, minimize, run_program

EXAMPLES = int(os.environ.get("PYSYNC_MODEL_EXAMPLES", "100"))
SEEDS = int(os.environ.get("PYSYNC_MODEL_SEEDS", "10"))


def run(program: Program) -> Outcome:
    async def main() -> Outcome:
        with deterministic_ids(program.get("seed")):
            return await run_program(program, MemoryWorld(program))

    return asyncio.run(main())


def explain(outcome: Outcome) -> str:
    """The failure, with the smallest program that still breaks the first promise."""
    promise = outcome.failures[0].split(":")[0]

    async def again(program: Program) -> Outcome:
        with deterministic_ids(program.get("seed")):
            return await run_program(program, MemoryWorld(program))

    small, found = asyncio.run(
        minimize(
            outcome.program,
            again,
            lambda o: any(f.startswith(promise) for f in o.failures),
            budget=150,
        )
    )
    text = json.dumps(small)
    return (
        f"{outcome.report(tail=0)}\nminimal program (scripts/soak.py --replay FILE): {text}\n"
        f"{(found or outcome).report()}"
    )


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
@given(seed=st.integers(10_000, 2**31))
def test_random_programs_keep_every_promise(seed: int) -> None:
    outcome = run(from_seed(seed))
    assert outcome.ok, explain(outcome)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_fixed_seeds_keep_every_promise(seed: int) -> None:
    outcome = run(from_seed(seed))
    assert outcome.ok, explain(outcome)


@pytest.mark.parametrize("serial", [False, True])
def test_a_batch_meets_each_call_s_faults(serial: bool) -> None:
    """``FaultyRemote.call_many``: each call's own faults, in order; a hang splits the batch;
    a whole batch's reply lost; a crash cuts a hanging batch (and frees the line)."""

    def put(sk: str) -> tuple[str, dict[str, Any]]:
        return ("PutItem", {"TableName": TABLE, "Item": {"pk": {"S": "u#t"}, "sk": {"S": sk}}})

    get = ("GetItem", {"TableName": TABLE, "Key": {"pk": {"S": "u#t"}, "sk": {"S": "a"}}})

    async def main() -> None:
        db = MemoryDynamo(tables=(TABLE,))
        remote = FaultyRemote(db.connection(), serial=serial)

        def on_server() -> list[str]:
            return [item["sk"]["S"] for item in db.items(TABLE, "u#t")]

        remote.rules += [
            {"kind": "fail", "n": 1, "code": "ValidationException", "status": 400},
            {"kind": "lose", "n": 1, "status": 500},
        ]
        a, b, c = await remote.call_many([put("a"), put("b"), put("c")])
        assert isinstance(a, RemoteError)
        assert a.code == "ValidationException"  # not sent
        assert isinstance(b, RemoteError)
        assert b.status == 500  # applied, its reply lost
        assert c == {}
        assert on_server() == ["b", "c"]

        remote.rules.append({"kind": "batch_lost", "n": 1})
        assert await remote.call_many([get]) != []  # reads alone: not a batch with a write
        answers = await remote.call_many([get, put("d"), put("e")])
        assert all(isinstance(x, RemoteError) and x.status == 0 for x in answers)
        assert on_server() == ["b", "c", "d", "e"]
        assert remote.batches_lost == 1

        remote.rules.append({"kind": "hang", "n": 1, "land": "yes"})
        batch = asyncio.ensure_future(remote.call_many([put("f"), put("g")]))
        await remote.hung.wait()
        assert on_server() == ["b", "c", "d", "e", "f"]  # g, after the hanging f: never sent
        remote.cut()
        with pytest.raises(asyncio.CancelledError):
            await batch
        remote.rules.append({"kind": "hang", "n": 1, "land": "no"})
        remote.hung.clear()
        batch = asyncio.ensure_future(remote.call_many([get, put("h"), put("i")]))
        await remote.hung.wait()
        assert on_server() == ["b", "c", "d", "e", "f"]
        remote.cut()
        with pytest.raises(asyncio.CancelledError):
            await batch
        assert await remote.call("PutItem", put("j")[1]) == {}  # the line is free again

    asyncio.run(main())


def test_a_run_replays_exactly() -> None:
    """Same program, same everything: the step log of two runs is identical."""
    program = from_seed(3)
    first, second = run(program), run(program)
    assert first.log == second.log
    assert first.failures == second.failures


#: The minimal programs of the bugs the model found (docs/reliability.md, "Bugs found"):
#: devices, whether the changelog lags, and the steps. Each failed on the code it was found on.
FINDINGS: dict[str, tuple[list[str], bool, list[dict[str, Any]]]] = {
    "F1_create_meets_a_bare_insert": (
        ["client", "lww"],
        False,
        [
            {
                "do": "edit",
                "dev": 0,
                "op": {"op": "put", "coll": "docs", "id": "c", "doc": {"x": "v4.1", "y": "v4.2"}},
            },
            {
                "do": "outside",
                "w": {
                    "kind": "put",
                    "coll": "docs",
                    "id": "c",
                    "contract": False,
                    "doc": {"x": "v10.1", "y": "v10.2"},
                },
            },
        ],
    ),
    "F2_version_reused_after_a_recreate": (
        ["client", "client", "client"],
        True,
        [
            {
                "do": "outside",
                "w": {
                    "kind": "replace",
                    "coll": "counters",
                    "id": "k1",
                    "contract": True,
                    "doc": {"n": 0, "tag": "v24.1"},
                },
            },
            {
                "do": "in_flight",
                "dev": 1,
                "ops": [{"op": "patch", "coll": "counters", "id": "k1", "set": {"tag": "v36.1"}}],
            },
        ],
    ),
    "F3_settle_by_version_after_a_recreate": (
        ["lww", "callback", "client"],
        False,
        [
            {
                "do": "edit",
                "dev": 2,
                "op": {"op": "increment", "coll": "counters", "id": "k0", "field": "n", "by": 5},
            },
            {"do": "lag"},
            {"do": "crash", "dev": 2, "land": "yes"},
            {
                "do": "outside",
                "w": {
                    "kind": "replace",
                    "coll": "counters",
                    "id": "k0",
                    "contract": True,
                    "doc": {"n": 0, "tag": "v17.1"},
                },
            },
            {"do": "sync", "dev": 2},
        ],
    ),
    "F5_settle_over_an_item_without_a_version": (
        ["lww", "callback", "client"],
        False,
        [
            {
                "do": "crash",
                "dev": 2,
                "land": "yes",
                "op": {"op": "increment", "coll": "counters", "id": "k0", "field": "n", "by": 5},
            },
            {
                "do": "outside",
                "w": {
                    "kind": "replace",
                    "coll": "counters",
                    "id": "k0",
                    "contract": False,
                    "doc": {"n": 0, "tag": "v17.1"},
                },
            },
        ],
    ),
    "F6_follower_rebased_onto_nothing": (
        ["callback", "lww", "lww"],
        False,
        [
            {
                "do": "crash",
                "dev": 2,
                "land": "later",
                "op": {"op": "patch", "coll": "counters", "id": "k0", "set": {"tag": "v6.1"}},
            },
            {
                "do": "edit",
                "dev": 2,
                "op": {"op": "increment", "coll": "counters", "id": "k0", "field": "n", "by": 2},
            },
            {"do": "expire", "keep": 0},
            {"do": "sync", "dev": 1},
            {
                "do": "transaction",
                "dev": 1,
                "ops": [
                    {"op": "put", "coll": "docs", "id": "a", "doc": {"y": "v27.1", "z": "v27.2"}},
                    {"op": "put", "coll": "docs", "id": "c", "doc": {"z": "v27.3"}},
                    {"op": "delete", "coll": "counters", "id": "k0"},
                    {
                        "op": "put",
                        "coll": "docs",
                        "id": "c",
                        "doc": {"x": "v27.4", "y": "v27.5", "z": "v27.6"},
                    },
                ],
            },
        ],
    ),
    "F7_settle_past_expired_entries": (
        ["server", "server", "server"],
        True,
        [
            {
                "do": "crash",
                "dev": 0,
                "land": "later",
                "op": {"op": "increment", "coll": "counters", "id": "k1", "field": "n", "by": 4},
            },
            {"do": "catch_up", "n": 4},
            {
                "do": "outside",
                "w": {
                    "kind": "update",
                    "coll": "counters",
                    "id": "k1",
                    "contract": False,
                    "set": {"tag": "v45.1"},
                },
            },
            {"do": "expire", "keep": 2},
        ],
    ),
    "F10_increment_on_a_recreated_document_then_a_delete": (
        ["lww", "callback", "callback"],
        False,
        [
            {
                "do": "edit",
                "dev": 0,
                "op": {"op": "increment", "coll": "counters", "id": "k1", "field": "n", "by": 2},
            },
            {
                "do": "outside",
                "w": {
                    "kind": "replace",
                    "coll": "counters",
                    "id": "k1",
                    "contract": True,
                    "doc": {"n": 0, "tag": "v22.1"},
                },
            },
            {
                "do": "transaction",
                "dev": 0,
                "ops": [
                    {"op": "delete", "coll": "counters", "id": "k1"},
                    {"op": "put", "coll": "docs", "id": "b", "doc": {"z": "v33.1"}},
                ],
            },
        ],
    ),
    "F11_a_gap_is_not_a_lost_answer_while_the_changelog_lags": (
        ["callback", "client", "lww"],
        False,
        [
            {"do": "lag"},
            {
                "do": "crash",
                "dev": 2,
                "land": "yes",
                "op": {"op": "patch", "coll": "counters", "id": "k1", "set": {"tag": "v28.1"}},
            },
            {
                "do": "outside",
                "w": {"kind": "delete", "coll": "counters", "id": "k1", "contract": True},
            },
            {"do": "catch_up", "n": 2},
            {"do": "expire", "keep": 0},
            {
                "do": "outside",
                "w": {
                    "kind": "recreate",
                    "coll": "counters",
                    "id": "k1",
                    "contract": True,
                    "doc": {"n": 0, "tag": "v39.1"},
                },
            },
            {"do": "sync", "dev": 2},
        ],
    ),
}


@pytest.mark.parametrize("push_batch", [1, 50])
@pytest.mark.parametrize("name", sorted(FINDINGS))
def test_findings_of_the_model_stay_fixed(name: str, push_batch: int) -> None:
    """Each as found (one call per request) and with the library's default batches."""
    devices, lagging, steps = FINDINGS[name]
    options = [{"push_batch": push_batch} for _ in devices]
    program = {
        **from_seed(0),
        "devices": devices,
        "lagging": lagging,
        "steps": steps,
        "options": options,
    }
    outcome = run(program)
    assert outcome.ok, outcome.report()
