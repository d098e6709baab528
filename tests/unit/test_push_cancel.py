"""A cancelled push ends at once, also when the replica closes with it (a tab going
away): what landed stays acknowledged, what was out stays in flight for the next push.

Found by the randomized model (seed 20273: a crash while a second round was out).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import pysync
from pysync import AppSchema, CollectionSpec, Sync
from pysync._outbox import INFLIGHT
from pysync.testing import MemoryBrowser, MemoryDynamo

SCHEMA = AppSchema(1, {"docs": CollectionSpec()})
TABLE = "pysync_t"


@pytest.mark.parametrize("close", [False, True])
@pytest.mark.parametrize("push_batch", [1, 50])
async def test_a_cancelled_push_ends_while_other_rounds_are_out(
    close: bool, push_batch: int
) -> None:
    db = MemoryDynamo(tables=(TABLE,))
    browser = MemoryBrowser()
    replica = await pysync.connect("app", "u", SCHEMA, platform=browser.tab())
    conn = db.connection()
    sync = Sync(replica, conn, table=TABLE, push_batch=push_batch)
    docs = replica["docs"]
    await docs.put({"id": "x", "v": 1})
    await docs.put({"id": "y", "v": 1})
    async with replica.transaction() as tx:  # a group: a round of its own, after x and y
        tx.put("docs", {"id": "g1", "v": 1})
        tx.put("docs", {"id": "g2", "v": 1})
    never = asyncio.Event()

    async def slow(operation: str, payload: dict[str, Any]) -> None:
        await never.wait()  # a request that is never answered

    conn.before_next(slow, when=lambda op, p: "docs#y" in json.dumps(p))
    conn.before_next(slow, operations=["TransactWriteItems"])
    push = asyncio.ensure_future(sync.push())
    for _ in range(100):  # x lands; y and the group stay out
        await asyncio.sleep(0)
    assert {e["id"] for e in await replica.outbox() if e["state"] == INFLIGHT} == {
        "x",
        "y",
        "g1",
        "g2",
    }
    push.cancel()
    if close:
        replica.close()
    done, _ = await asyncio.wait({push}, timeout=2)
    assert done, "the push still runs after it was cancelled"
    assert push.cancelled()
    if close:  # the next session's push settles what was out
        replica = await pysync.connect("app", "u", SCHEMA, platform=browser.tab())
        sync = Sync(replica, db.connection(), table=TABLE, push_batch=push_batch)
    elif push_batch == 1:  # x's reply came: its acknowledgement was stored as the push ended
        assert "x" not in {e["id"] for e in await replica.outbox()}
    # (In a batch, x's reply travels with y's, which never came: x stays in flight.)
    never.set()
    await asyncio.sleep(0)
    await sync.push()  # (a write that never landed may meet its settle's probe tombstone)
    assert await replica.outbox() == []
    for key in ("x", "y", "g1", "g2"):
        got = await db.call(
            "GetItem",
            {"TableName": TABLE, "Key": {"pk": {"S": "u#u"}, "sk": {"S": f"app/docs#{key}"}}},
        )
        assert got["Item"]["v"] == {"N": "1"}, key
        assert "_del" not in got["Item"], key
        assert await replica["docs"].get(key) == {"id": key, "v": 1}
