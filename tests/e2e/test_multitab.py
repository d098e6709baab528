"""Several tabs of one browser on one replica: live updates, leader hand-over, a crash."""

from __future__ import annotations

import time

from tests.e2e.conftest import Demo

CONNECT = """
import js, pysync
from pyodide.ffi import to_js
from pysync import AppSchema, CollectionSpec, Index

schema = AppSchema(1, {"notes": CollectionSpec(indexes=(Index("by_done", "done"),))})
db = await pysync.connect("multitab", "alice", schema)
db.on_status(lambda s: setattr(js.window, "isLeader", s.leader))
js.window.isLeader = db.is_leader
db.is_leader
"""


def second_tab(first: Demo) -> Demo:
    tab = Demo(first.context.new_page(), first.context, first.url)
    tab.open()
    return tab


def test_tabs_share_writes_and_hand_over_leadership(demo: Demo) -> None:
    demo.open()
    other = second_tab(demo)
    demo.run(CONNECT)
    # The Web Lock is granted asynchronously, soon after connect() returns.
    demo.page.wait_for_function("window.isLeader === true")
    assert other.run(CONNECT) is False  # the first tab holds the lock

    other.run(
        """
        def show(docs):
            js.window.seen = to_js([d["id"] for d in docs])
        sub = db["notes"].watch(show, index="by_done", equals=False)
        await sub.settled()
        """
    )
    demo.run('await db["notes"].put({"id": "from-first-tab", "done": False})')
    # The other tab's live query follows through BroadcastChannel.
    other.page.wait_for_function("window.seen && window.seen.includes('from-first-tab')")
    other.run('await db["notes"].put({"id": "from-second-tab", "done": True})')
    assert demo.run('[d["id"] for d in await db["notes"].query()]') == [
        "from-first-tab",
        "from-second-tab",
    ]
    assert other.run("db.status.pending") == 2

    started = time.monotonic()
    demo.page.close()
    other.page.wait_for_function("window.isLeader === true", timeout=1_000)
    handed_over_ms = (time.monotonic() - started) * 1000
    print(f"leader hand-over after the leader tab closed: {handed_over_ms:.0f} ms")


def test_a_tab_closed_mid_burst_keeps_every_resolved_write_whole(demo: Demo) -> None:
    demo.open()
    demo.run(CONNECT)
    demo.run(
        """
        import asyncio

        async def burst():
            for i in range(100_000):
                doc = {"id": f"n{i:06}", "text": "x" * 200, "n": i, "done": False}
                async with db.transaction() as tx:
                    tx.put("notes", doc)
                    tx.increment("notes", doc["id"], "n", 1)
                # Only now is the write acknowledged to the app.
                js.localStorage.setItem("acked", doc["id"])

        burst_task = asyncio.ensure_future(burst())
        """
    )
    demo.page.wait_for_function("(localStorage.getItem('acked') || '') >= 'n000150'")
    demo.page.close()  # mid-burst: a transaction is almost surely in flight

    again = second_tab(demo)
    again.run(CONNECT)
    report = again.run(
        """
        acked = js.localStorage.getItem("acked")
        docs = await db["notes"].query()
        entries = {e["id"]: e for e in await db.outbox()}
        {
            "acked": acked,
            "ids": [d["id"] for d in docs],
            "torn": [
                d["id"] for d in docs
                if d["id"] not in entries
                or entries[d["id"]]["value"] != d
                or d["n"] != int(d["id"][1:]) + 1
            ],
            "orphans": sorted(set(entries) - {d["id"] for d in docs}),
        }
        """
    )
    acked = int(report["acked"][1:])
    ids = report["ids"]
    # Every acknowledged write is there, in order, with nothing missing in between.
    assert ids[: acked + 1] == [f"n{i:06}" for i in range(acked + 1)]
    assert len(ids) - (acked + 1) <= 1  # at most the one committed just before the close
    assert report["torn"] == []
    assert report["orphans"] == []
