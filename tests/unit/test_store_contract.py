"""The storage contract on the in-memory backend (CPython)."""

import pytest

from pysync.testing import memory_factory, store_contract


@pytest.mark.parametrize("name", sorted(store_contract.CHECKS))
async def test_memory_backend_keeps_the_contract(name: str) -> None:
    await store_contract.run(name, memory_factory())
