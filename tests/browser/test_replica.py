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
        "id": "a",
        "title": "one",
        "done": True,
        "big": 2**64,
        "raw": b"\x00",
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
async def test_transaction_size_limit_in_indexeddb(selenium):
    import pysync
    from pysync import AppSchema, CollectionSpec

    schema = AppSchema(1, {"a": CollectionSpec(), "b": CollectionSpec()})
    db = await pysync.connect("browser-tx-limit", "u1", schema)
    # Exactly 100 documents commit.
    async with db.transaction() as tx:
        for i in range(50):
            tx.put("a", {"id": i})
            tx.put("b", {"id": i})
    assert await db["a"].count() == 50
    assert len(await db.outbox()) == 100
    # 101 raise, and the IndexedDB transaction is aborted: nothing is written.
    before = await db.outbox()
    refused = None
    try:
        async with db.transaction() as tx:
            tx.patch("a", 0, {"x": 1})
            for i in range(100):
                tx.put("b", {"id": f"new{i}"})
    except pysync.TransactionTooLargeError as error:
        refused = error
    assert refused is not None, "a transaction of 101 documents committed"
    assert (refused.documents, refused.limit) == (101, 100)
    assert await db["a"].get(0) == {"id": 0}
    assert await db["b"].count() == 50
    assert await db.outbox() == before
    # 150 writes to 100 documents commit.
    async with db.transaction() as tx:
        for i in range(100):
            tx.put("a", {"id": f"c{i}", "n": 0})
        for i in range(50):
            tx.increment("a", f"c{i}", "n")
    assert await db["a"].get("c0") == {"id": "c0", "n": 1}
    assert len(await db.outbox()) == 200
    db.close()
    await pysync.delete_indexeddb("pysync:browser-tx-limit:u1")


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
    assert seen[0] == 0
    assert seen[1] == 1
    assert seen[-1] == 6
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


@run_in_pyodide(packages=["pysync"])
async def test_javascript_pages_use_the_same_operations(selenium):
    import asyncio

    from pyodide.code import run_js

    import pysync
    from pysync import AppSchema, CollectionSpec, Index

    schema = AppSchema(1, {"todos": CollectionSpec(indexes=(Index("by_done", "done"),))})
    db = await pysync.connect("browser-js", "u1", schema)
    remove = pysync.expose(db, "todoDb")
    result = await run_js(
        """(async () => {
          const seen = [];
          const stop = todoDb.watch("todos", {index: "by_done", equals: false},
                                    (docs) => seen.push(docs.map((d) => d.id)));
          await todoDb.put("todos", {id: "a", title: "from JS", done: false});
          const added = await todoDb.add("todos", {title: "second", done: true});
          await todoDb.patch("todos", "a", {title: "edited"});
          await todoDb.increment("todos", "a", "likes", 5);
          const a = await todoDb.get("todos", "a");
          const done = await todoDb.query("todos", {index: "by_done", equals: true});
          const count = await todoDb.count("todos", {});
          let error = null;
          try { await todoDb.put("todos", {id: "b", _secret: 1}); } catch (e) { error = String(e); }
          globalThis.stopWatch = stop;
          globalThis.seen = seen;
          return {a, doneIds: done.map((d) => d.id), added: added.id === done[0].id, count,
                  error, status: todoDb.status()};
        })()"""
    )
    out = result.to_py()
    assert out["a"] == {"id": "a", "title": "edited", "done": False, "likes": 5}
    assert out["added"] is True
    assert out["count"] == 2
    assert "reserved" in out["error"]
    assert out["status"]["pending"] == 2
    # The live query re-runs after the last write; wait for it (bounded), then check.
    for _ in range(500):
        if run_js("seen.length") and run_js("seen[seen.length - 1]").to_py() == ["a"]:
            break
        await asyncio.sleep(0.01)
    assert run_js("seen[0]").to_py() == []
    assert run_js("seen[seen.length - 1]").to_py() == ["a"]
    run_js("stopWatch()")
    remove()
    assert run_js("typeof globalThis.todoDb") == "undefined"
    db.close()
    await pysync.delete_indexeddb("pysync:browser-js:u1")


@run_in_pyodide(packages=["pysync"])
async def test_an_outbox_of_the_older_layout_opens_whole_in_indexeddb(selenium):
    """A database of pysync's layout 1 (an outbox row per change, IndexedDB version = app
    version) is upgraded in place: the indexes change, every entry is kept."""
    import pysync
    from pysync import AppSchema, CollectionSpec
    from pysync._browser import BrowserPlatform
    from pysync._store import Index, Schema, StoreSchema

    name = "pysync:browser-layout:u1"
    old = await BrowserPlatform().open_store(
        Schema(
            name,
            1,
            (
                StoreSchema("todos", "id"),
                StoreSchema(
                    "_outbox",
                    "n",
                    (Index("by_record", ("collection", "id")), Index("by_state", "state")),
                ),
                StoreSchema("_meta", "key"),
                StoreSchema("_conflicts", "cid", (Index("by_record", ("collection", "id")),)),
            ),
        )
    )
    entry = {
        "collection": "todos",
        "op": "put",
        "set": {},
        "inc": {},
        "base": None,
        "base_v": None,
        "base_m": None,
        "follows": None,
        "new": True,
        "hlc": "000000000001000-000001-c0ffee0123456789",
        "state": "pending",
        "error": None,
    }
    await old.put_many("todos", [{"id": "a"}, {"id": "b"}])
    await old.put_many(
        "_outbox",
        [
            {**entry, "n": 1, "mid": "m1", "id": "a", "value": {"id": "a"}, "group": "g"},
            {**entry, "n": 2, "mid": "m2", "id": "b", "value": {"id": "b"}, "group": "g"},
        ],
    )
    clock = {"key": "clock", "hlc": "000000000001000-000002-c0ffee0123456789", "n": 2}
    await old.put_many("_meta", [{"key": "schema", "version": 1}, clock])
    old.close()

    db = await pysync.connect("browser-layout", "u1", AppSchema(1, {"todos": CollectionSpec()}))
    assert [(e["mid"], e["group"]) for e in await db.outbox()] == [("m1", "g"), ("m2", "g")]
    assert db.status.pending == 2
    assert await db.sync_state("todos", "b") == "pending"
    await db["todos"].patch("b", {"done": True})  # folds into its pending entry
    entries = await db.outbox()
    assert [e["value"] for e in entries] == [{"id": "a"}, {"id": "b", "done": True}]
    async with db.transaction() as tx:  # a new transaction: one row of the new layout
        tx.put("todos", {"id": "c"})
        tx.put("todos", {"id": "d"})
    rows = await db.store.query("_outbox")
    assert [len(r.get("entries", [r])) for r in rows] == [1, 1, 2]
    assert db.status.pending == 4
    db.close()
    await pysync.delete_indexeddb(name)
