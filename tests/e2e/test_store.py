"""pysync's store on the browser's real IndexedDB, driven from Python in the demo page."""

from __future__ import annotations

import uuid

from playwright.sync_api import Browser, expect

from .conftest import Demo, new_demo

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

BIG_WRITE = """
import os, pysync
import app

tasks = app.app.space.replica["tasks"]
# 2 MiB of incompressible data (IndexedDB compresses values) against a 512 KiB quota.
async def write_big():
    async with app.app.space.replica.transaction() as tx:
        for i in range(32):
            tx.put("tasks", {"id": f"big-{i:02}", "list": "x", "title": "big",
                             "blob": os.urandom(64 * 1024).hex()})
try:
    await write_big()
    raised = None
except pysync.StoreError as error:
    raised = {"type": type(error).__name__, "name": error.name,
              "quota": isinstance(error, pysync.QuotaExceededError)}
raised
"""


def test_a_full_quota_fails_the_write_and_keeps_the_stored_data(
    browser: Browser, server_url: str
) -> None:
    # The service worker's caches share the origin's quota: 512 KiB holds no Pyodide.
    demo = new_demo(browser, server_url, service_workers="block")
    try:
        full_quota_keeps_data(demo)
    finally:
        demo.context.close()


def full_quota_keeps_data(demo: Demo) -> None:
    # Chromium's IndexedDB caches the space left for an origin for up to 30 s
    # (BucketContext::kBucketSpaceCacheTimeLimit), so the override must be in
    # place before the page first touches IndexedDB, not after.
    cdp = demo.context.new_cdp_session(demo.page)
    cdp.send("Storage.overrideQuotaForOrigin", {"origin": demo.url, "quotaSize": QUOTA_BYTES})
    demo.open()
    page = demo.page
    page.fill("#signin-name", f"quota{uuid.uuid4().hex[:6]}")
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_label("Work offline").check()  # only the local store matters here
    page.fill("#new-list-name", "Small")
    page.click("#add-list")
    for title in ("first", "second", "third"):
        page.get_by_label("New task in Small").fill(title)
        page.get_by_role("button", name="Add", exact=True).click()
        expect(page.locator("li.task .title", has_text=title)).to_have_count(1)
    titles = page.locator("li.task .title")
    expect(titles).to_have_text(["first", "second", "third"])

    assert demo.run(BIG_WRITE) == {
        "type": "QuotaExceededError",
        "name": "QuotaExceededError",
        "quota": True,
    }
    usage = cdp.send("Storage.getUsageAndQuota", {"origin": demo.url})
    assert usage["overrideActive"]
    assert usage["quota"] == QUOTA_BYTES
    assert usage["usage"] < QUOTA_BYTES

    # The same failure through the app shows in the page; the board is untouched.
    demo.run(
        """
        app.app.run(write_big())
        await app.app.idle()
        """
    )
    expect(page.locator("#app-error")).to_be_visible()
    expect(page.locator("#app-error")).to_contain_text("Could not save: QuotaExceededError")
    expect(titles).to_have_text(["first", "second", "third"])
    # Small writes still fit, with their outbox entries.
    page.get_by_label("New task in Small").fill("fourth")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(titles).to_have_text(["first", "second", "third", "fourth"])
    expect(page.locator("#status-pending")).to_have_text("5 pending")

    demo.reload()
    expect(titles).to_have_text(["first", "second", "third", "fourth"])
    expect(page.locator("#status-pending")).to_have_text("5 pending")
    assert demo.run('import app\nawait app.app.space.replica["tasks"].get("big-00")') is None
