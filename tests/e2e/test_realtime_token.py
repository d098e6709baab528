"""The realtime feed outlives its token, in Chromium against the demo stack."""

from __future__ import annotations

import json
import uuid

import httpx
from playwright.sync_api import Browser

from pysync.server import DEV_JWT_SECRET, issue_token
from tests.e2e.test_sync import device, todo_sk

WATCH = """
sync = Sync(db, remote)  # the default sleep: real reopen delays
handed = []

def token():
    # A token function, as an app that refreshes its tokens passes it (TOKENS: set later).
    handed.append(TOKENS[min(len(handed), 1)])
    return handed[-1]

async def wait_for(check, limit=15.0):
    deadline = asyncio.get_running_loop().time() + limit
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True

from pyodide.ffi import to_js
def show(found):
    js.window.seenIds = to_js([d["id"] for d in found])
sub = todos.watch(show)
"""


def put_through_the_proxy(url: str, token: str, user: str, key: str) -> None:
    """Another device's write: a PutItem through the proxy."""
    item = {"pk": {"S": f"u#{user}"}, "sk": todo_sk(key), "id": {"S": key}}
    response = httpx.post(
        url + "/dynamodb",
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.PutItem",
            "Authorization": f"Bearer {token}",
        },
        content=json.dumps({"TableName": "pysync", "Item": {**item, "_v": {"N": "1"}}}),
        timeout=10,
    )
    assert response.status_code == 200, response.text


def test_a_feed_whose_token_expired_resumes_with_a_fresh_one(
    browser: Browser, server_url: str
) -> None:
    user = f"e2e-tok-{uuid.uuid4().hex[:8]}"
    fresh = issue_token(DEV_JWT_SECRET, user)
    b = device(browser, server_url, user, fresh)
    try:
        b.run(WATCH)
        # The server ends the stream with `expired` at the token's exp (1 to 2 s away).
        short = issue_token(DEV_JWT_SECRET, user, ttl=2)
        b.run(
            f"""
            TOKENS = [{short!r}, {fresh!r}]
            await sync.sync()
            sync.listen(js.location.origin + "/changes", token)
            sync.start(interval=3600)  # no polling: only the feed and local writes wake it
            assert await wait_for(lambda: sync.realtime_connected), "the first stream"
            """
        )
        # The first token expires; the feed reopens with the fresh one and is up again.
        assert b.run("await wait_for(lambda: len(handed) == 2 and sync.realtime_connected)"), b.run(
            "[len(handed), sync.realtime_connected, db.status.last_error]"
        )

        put_through_the_proxy(server_url, fresh, user, "after-refresh")
        b.page.wait_for_function("window.seenIds && window.seenIds.includes('after-refresh')")
        assert b.run("handed") == [short, fresh]  # no reopen since: the fresh stream stayed up
        assert b.run("db.status.last_error") is None
    finally:
        b.context.close()
