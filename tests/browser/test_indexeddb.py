"""What only the IndexedDB backend does: requests travel per step of a transaction."""

from pytest_pyodide import run_in_pyodide


@run_in_pyodide(packages=["pysync"])
async def test_a_request_outside_the_transactions_steps_is_refused(selenium):
    import asyncio

    from pysync import (
        Schema,
        StoreSchema,
        TransactionInactiveError,
        delete_indexeddb,
        open_indexeddb,
    )

    db = await open_indexeddb(Schema("idb-steps", 1, (StoreSchema("items", "id"),)))
    outcome = []

    def late(tx):
        # Another task while the transaction may still run: IndexedDB would throw.
        try:
            tx.put("items", {"id": "late"})
        except TransactionInactiveError:
            outcome.append("refused")

    def body(tx):
        tx.put("items", {"id": "a"})
        tx.get("items", "a").then(lambda _: asyncio.get_running_loop().call_soon(late, tx))

    await db.run("items", "readwrite", body)
    await asyncio.sleep(0.05)
    assert outcome == ["refused"]
    assert [r["id"] for r in await db.query("items")] == ["a"]
    db.close()
    await delete_indexeddb("idb-steps")
