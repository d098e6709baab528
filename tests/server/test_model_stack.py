"""The model (tests/model) against the real stack, from CPython.

DynamoDB Local, the proxy over HTTP (restarted on its port by the programs), the
stream consumer (stopped, crashed and started again by the programs) and boto3
for the writers that bypass pysync; the devices are CPython replicas on the
in-memory browser, their network faults injected around their HTTP remote. The
same programs and oracle as tests/unit/test_model_memory.py (see
tests/model/__init__.py). ``PYSYNC_STACK_SEEDS`` sets how many seeds (default 10,
about 40 s); ``scripts/soak.py --runner stack`` runs many.
"""

from __future__ import annotations

import os

import pytest

from pysync.server import DynamoDBLocal
from tests.model.device import deterministic_ids
from tests.model.program import from_seed
from tests.model.runner import run_program
from tests.model.stack import StackWorld

SEEDS = int(os.environ.get("PYSYNC_STACK_SEEDS", "10"))


@pytest.mark.parametrize("seed", range(SEEDS))
async def test_programs_against_the_real_stack(dynamodb: DynamoDBLocal, seed: int) -> None:
    program = from_seed(seed, max_steps=40)
    with deterministic_ids(seed):
        outcome = await run_program(program, StackWorld(program, dynamodb.endpoint))
    assert outcome.ok, outcome.report()
