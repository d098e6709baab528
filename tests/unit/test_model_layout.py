"""The model's ``old_layout`` step (tests/model/layout.py): a device's database rewritten
as the pysync before outbox layout 2 stored it, then opened with today's.

The rewrite must give exactly layout 1 (IndexedDB version = app version, an entry per
``_outbox`` row, the ``by_record``/``by_state`` indexes, no layout row), and the step's
check must notice an upgrade that does not keep the outbox.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import pysync
from pysync.testing import MemoryDynamo
from tests.model.device import TABLE, PyDevice, deterministic_ids, schema
from tests.model.layout import OUTBOX_V1, layout_1_schema, rewrite_as_layout_1
from tests.model.program import APP, COUNTERS, DOCS, from_seed

NAME = f"pysync:{APP}:alice"


async def _device() -> PyDevice:
    """A device with an outbox of every kind: a transaction (one row), a plain write
    in flight behind a crash, a rejected one, a pending one."""
    dynamo = MemoryDynamo(tables=(TABLE,))
    device = PyDevice(0, dynamo.connection(), "lww", "alice", options={"push_batch": 1})
    await device.open()
    await device.transaction(
        [
            {"op": "put", "coll": DOCS, "id": "a", "doc": {"x": "1"}},
            {"op": "put", "coll": DOCS, "id": "b", "doc": {"y": "2"}},
        ]
    )
    await device.edit({"op": "put", "coll": DOCS, "id": "c", "doc": {"z": "3"}})
    await device.inject({"kind": "fail", "n": 1, "code": "ValidationException", "status": 400})
    await device.sync("push")  # the transaction is refused (rejected), c lands
    await device.edit({"op": "put", "coll": COUNTERS, "id": "k0", "doc": {"n": 1}})
    await device.edit({"op": "patch", "coll": DOCS, "id": "c", "set": {"x": "4"}})
    return device


async def test_the_rewrite_stores_layout_1_exactly() -> None:
    with deterministic_ids(1):
        device = await _device()
        before = await device.outbox()
        assert {e["state"] for e in before} == {"rejected", "pending"}
        assert any("row" in e for e in before)  # the transaction is one row
        device.db.close()
        current = schema(1).store_schema(NAME)
        found = await rewrite_as_layout_1(
            device.browser.tab(), device.browser.storage.delete_database, current, 1
        )
        assert found["transactions"] == 1
        stored = device.browser.storage._databases[NAME]
        assert stored.version == 1  # the app's version, not version * 1000 + layout
        assert stored.stores["_outbox"] == OUTBOX_V1
        assert stored.stores[DOCS] == current.store(DOCS)
        old = await device.browser.tab().open_store(layout_1_schema(current, 1))
        rows = await old.query("_outbox")
        assert [r["n"] for r in rows] == [e["n"] for e in before]
        assert rows == [{k: v for k, v in e.items() if k != "row"} for e in before]
        assert all(not {"row", "records", "rejected", "entries"} & r.keys() for r in rows)
        assert await old.get("_meta", "layout") is None
        assert (await old.get("_meta", "schema"))["version"] == 1
        assert [r["id"] for r in await old.query("_outbox", index="by_state")] == [
            "k0",
            "c",
            "a",
            "b",
        ]
        old.close()

        await device.open()  # today's pysync upgrades it
        assert await device.db.store.get("_meta", "layout") == {"key": "layout", "outbox": 2}
        assert device.db.store.schema.version == 1002
        assert [{k: v for k, v in e.items() if k != "row"} for e in await device.outbox()] == [
            {k: v for k, v in e.items() if k != "row"} for e in before
        ]
        await device.close()


async def test_the_step_keeps_everything_with_or_without_a_crash_or_an_upgrade() -> None:
    for version, land in ((None, None), (2, None), (None, "yes"), (2, "later")):
        with deterministic_ids(2):
            device = await _device()
            result = await device.old_layout(version, land)
            assert result["problems"] == [], (version, land, result)
            assert result["entries"] == 4
            assert result["grouped"] == 2
            if land is None:
                assert result["states"] == {"pending": 2, "rejected": 2}
            else:  # the crash's push took the pending ones in flight
                assert result["states"].get("inflight", 0) >= 1, result
            assert device.version == (version or 1)
            assert device.db.store.schema.version == (version or 1) * 1000 + 2
            await device.close()


async def test_the_check_notices_an_upgrade_that_does_not_keep_the_outbox() -> None:
    """Today's pysync with its outbox upgrade taken out: the rows of layout 1 stay as they
    are, without what the new indexes read. The step says so."""

    async def forgetful(store: Any, app_schema: Any) -> None:
        def body(tx: Any) -> None:
            tx.put("_meta", {"key": "schema", "version": app_schema.version})
            tx.put("_meta", {"key": "layout", "outbox": 2})

        await store.run(["_meta"], "readwrite", body)

    with deterministic_ids(3):
        device = await _device()
        with mock.patch.object(pysync._replica, "migrate", forgetful):
            result = await device.old_layout(None, None)
        assert any("status counts" in p for p in result["problems"]), result
        assert any("sync_state" in p for p in result["problems"]), result
        await device.close()


def test_old_layout_steps_are_drawn_last() -> None:
    """A seed's other steps are the ones it drew before the step existed."""
    seen = 0
    for seed in range(40):
        program = from_seed(seed)
        without = from_seed(seed, avoid=frozenset({"old_layout"}))
        assert [s for s in program["steps"] if s["do"] != "old_layout"] == without["steps"]
        assert {k: v for k, v in program.items() if k not in ("steps", "avoid")} == {
            k: v for k, v in without.items() if k not in ("steps", "avoid")
        }
        seen += sum(s["do"] == "old_layout" for s in program["steps"])
    assert seen > 0
