"""The storage contract on IndexedDB in real Chromium (pytest-pyodide)."""

import pytest
from pytest_pyodide import run_in_pyodide

from pysync.testing import store_contract


@pytest.mark.parametrize("name", sorted(store_contract.CHECKS))
@run_in_pyodide(packages=["pysync"])
async def test_indexeddb_keeps_the_contract(selenium, name):
    from pysync.testing import indexeddb_factory, store_contract

    await store_contract.run(name, indexeddb_factory())
