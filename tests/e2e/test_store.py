"""pysync's store on the browser's real IndexedDB, driven from Python in the demo page."""

from __future__ import annotations

from playwright.sync_api import expect

from .conftest import Demo

OPEN_PEOPLE = """
import pysync
from pysync import Index, Schema, StoreSchema, open_indexeddb

schema = Schema(
    "e2e-atomic", 1, (StoreSchema("people", indexes=(Index("by_email", "email", unique=True),)),)
)
db = await open_indexeddb(schema)
"""

READ_PEOPLE = """
{"ids": [p["id"] for p in await db.query("people")], "seed": await db.get("people", "seed")}
"""

SEED = {"id": "seed", "email": "seed@example.com", "n": -1}


def test_a_transaction_of_many_requests_commits_atomically(demo: Demo) -> None:
    demo.open()
    demo.run(OPEN_PEOPLE)
    demo.run('await db.put("people", {"id": "seed", "email": "seed@example.com", "n": -1})')
    outcome = demo.run(
        """
        def body(tx):
            # 501 requests in one transaction; the last repeats p0's unique email.
            for i in range(500):
                tx.put("people", {"id": f"p{i:03}", "email": f"p{i}@example.com", "n": i})
            tx.put("people", {"id": "dup", "email": "p0@example.com", "n": 500})
            return "body ran"

        try:
            await db.run("people", "readwrite", body)
            raised = None
        except pysync.ConstraintError as error:
            raised = {"type": type(error).__name__, "name": error.name,
                      "store_error": isinstance(error, pysync.StoreError)}
        raised
        """
    )
    assert outcome == {"type": "ConstraintError", "name": "ConstraintError", "store_error": True}
    assert demo.run(READ_PEOPLE) == {"ids": ["seed"], "seed": SEED}

    demo.reload()
    demo.run(OPEN_PEOPLE)
    assert demo.run(READ_PEOPLE) == {"ids": ["seed"], "seed": SEED}
    assert demo.run('await db.count("people", index="by_email")') == 1
    assert demo.console_errors == []


QUOTA_BYTES = 512 * 1024

BIG_PUT = """
import os, pysync
import app

# 2 MiB of incompressible data (IndexedDB compresses values) against a 512 KiB quota.
big = [{"id": f"big-{i:02}", "title": "big", "done": False, "created": 2e12 + i,
        "blob": os.urandom(64 * 1024)} for i in range(32)]
try:
    await app.app.db.put_many("todos", big)
    raised = None
except pysync.StoreError as error:
    raised = {"type": type(error).__name__, "name": error.name,
              "quota": isinstance(error, pysync.QuotaExceededError)}
raised
"""


def test_a_full_quota_fails_the_write_and_keeps_the_stored_data(demo: Demo) -> None:
    # Chromium's IndexedDB caches the space left for an origin for up to 30 s
    # (BucketContext::kBucketSpaceCacheTimeLimit), so the override must be in
    # place before the page first touches IndexedDB, not after.
    cdp = demo.context.new_cdp_session(demo.page)
    cdp.send("Storage.overrideQuotaForOrigin", {"origin": demo.url, "quotaSize": QUOTA_BYTES})
    demo.open()
    page = demo.page
    for title in ("first", "second", "third"):
        page.fill("#new-todo", title)
        page.click("#add-todo")
    titles = page.locator("#todo-list li .title")
    expect(titles).to_have_text(["first", "second", "third"])

    assert demo.run(BIG_PUT) == {
        "type": "QuotaExceededError",
        "name": "QuotaExceededError",
        "quota": True,
    }
    usage = cdp.send("Storage.getUsageAndQuota", {"origin": demo.url})
    assert usage["overrideActive"]
    assert usage["quota"] == QUOTA_BYTES
    assert usage["usage"] < QUOTA_BYTES

    # The same failure through the app shows in the page; the list is untouched.
    demo.run(
        """
        import app
        app.app.run(app.app.db.put_many("todos", big))
        await app.app.idle()
        """
    )
    expect(page.locator("#app-error")).to_be_visible()
    expect(page.locator("#app-error")).to_contain_text("Could not save: QuotaExceededError")
    expect(titles).to_have_text(["first", "second", "third"])
    # Small writes still fit.
    page.fill("#new-todo", "fourth")
    page.click("#add-todo")
    expect(titles).to_have_text(["first", "second", "third", "fourth"])

    demo.reload()
    expect(titles).to_have_text(["first", "second", "third", "fourth"])
    expect(page.locator("#storage-info")).to_have_text(
        "stored in IndexedDB database pysync-demo, 4 records"
    )
    assert demo.run('import app\nawait app.app.db.get("todos", "big-00")') is None
