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

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.model.device import deterministic_ids
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


def test_a_run_replays_exactly() -> None:
    """Same program, same everything: the step log of two runs is identical."""
    program = from_seed(3)
    first, second = run(program), run(program)
    assert first.log == second.log
    assert first.failures == second.failures
