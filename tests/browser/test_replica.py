"""The local-first data API on real IndexedDB, BroadcastChannel and Web Locks in Chromium."""

from pytest_pyodide import run_in_pyodide


@run_in_pyodide(packages=["pysync"])
async def test_replica_writes_records_and_outbox_together(selenium):
    import pysync
    from pysync import AppSchema, CollectionSpec, Index

    schema = AppSchema(1, {"todos": CollectionSpec(indexes=(Index("by_done", "done"),))})
    db = await pysync.connect("browser-test", "u1", schema)
    todos = db["todos"]
    await todos.put({"id": "a", "title": "one", "done": False, "big": 2**64, "raw": b"\x00"})
    await todos.patch("a", {"done": True})
    await todos.add({"id": "b", "title": "two", "done": False})
    await todos.increment("b", "likes", 2)
    assert await todos.get("a") == {
        "id": "a", "title": "one", "done": True, "big": 2**64, "raw": b"\x00",
    }
    assert [d["id"] for d in await todos.query(index="by_done", equals=True)] == ["a"]
    entries = await db.outbox()
    assert [(e["id"], e["op"]) for e in entries] == [("a", "put"), ("b", "put")]
    assert entries[1]["value"]["likes"] == 2
    assert db.status.pending == 2
    assert db.is_leader  # the only tab holds the Web Lock
    try:
        await todos.add({"id": "a"})
    except pysync.DocumentExistsError:
        pass
    else:
        raise AssertionError("add() replaced an existing document")
    db.close()
    await pysync.delete_indexeddb("pysync:browser-test:u1")


@run_in_pyodide(packages=["pysync"])
async def test_transaction_is_atomic_in_indexeddb(selenium):
    import pysync
    from pysync import AppSchema, CollectionSpec

    schema = AppSchema(1, {"a": CollectionSpec(), "b": CollectionSpec()})
    db = await pysync.connect("browser-tx", "u1", schema)
    try:
        async with db.transaction() as tx:
            for i in range(200):
                tx.put("a", {"id": i})
            tx.patch("b", "missing", {"x": 1})
    except pysync.DocumentNotFoundError:
        pass
    assert await db["a"].count() == 0
    assert await db.outbox() == []
    async with db.transaction() as tx:
        tx.put("a", {"id": 1})
        tx.put("b", {"id": 2})
    assert len({e["group"] for e in await db.outbox()}) == 1
    db.close()
    await pysync.delete_indexeddb("pysync:browser-tx:u1")


@run_in_pyodide(packages=["pysync"])
async def test_live_query_and_migration_in_indexeddb(selenium):
    import asyncio

    import pysync
    from pysync import AppSchema, CollectionSpec

    v1 = AppSchema(1, {"notes": CollectionSpec()})
    db = await pysync.connect("browser-live", "u1", v1)
    seen = []
    sub = db["notes"].watch(lambda docs: seen.append(len(docs)))
    await sub.settled()
    await db["notes"].put({"id": "n1", "text": "hi"})
    await sub.settled()
    await asyncio.gather(*(db["notes"].put({"id": f"m{i}"}) for i in range(5)))
    await sub.settled()
    assert seen[0] == 0 and seen[1] == 1 and seen[-1] == 6
    sub.cancel()
    db.close()

    def upper(collection, doc):
        if "text" in doc:
            doc["text"] = doc["text"].upper()
        return doc

    v2 = AppSchema(2, {"notes": CollectionSpec(), "tags": CollectionSpec()}, {2: upper})
    db = await pysync.connect("browser-live", "u1", v2)
    assert await db["notes"].get("n1") == {"id": "n1", "text": "HI"}
    (entry,) = [e for e in await db.outbox() if e["id"] == "n1"]
    assert entry["value"] == {"id": "n1", "text": "HI"}
    await db["tags"].put({"id": "t"})
    db.close()
    await pysync.delete_indexeddb("pysync:browser-live:u1")
