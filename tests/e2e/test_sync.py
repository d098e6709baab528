"""Two devices (two browser contexts) sync through the real proxy and DynamoDB Local."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from playwright.sync_api import Browser

from pysync._sync._items import sort_key
from pysync.server import DEV_JWT_SECRET, issue_token
from tests._browser_config import config
from tests.e2e.conftest import OUTPUT_DIR, Demo

APP = "sync-e2e"


def todo_sk(doc_id: str) -> dict[str, str]:
    """The sort key of a todo of the devices' app, as a DynamoDB attribute."""
    return {"S": sort_key(APP, "todos", doc_id)}


SETUP = """
import asyncio, pysync
from pysync import AppSchema, CollectionSpec, HttpRemote, Index, Sync
import js

schema = AppSchema(1, {"todos": CollectionSpec(indexes=(Index("by_done", "done"),))})
db = await pysync.connect(APP, USER, schema)
remote = HttpRemote(js.location.origin + "/dynamodb", TOKEN)

async def no_sleep(_):
    pass

sync = Sync(db, remote, strategy="lww", sleep=no_sleep)
todos = db["todos"]

async def sync_until(check, rounds=100):
    # The stream consumer appends to the changelog a few ms after a write.
    for _ in range(rounds):
        await sync.sync()
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False

async def docs():
    return await todos.query()
"""


@pytest.fixture
def direct_dynamodb(server_url: str) -> Any:
    """A boto3 client straight to the demo stack's DynamoDB Local (bypassing the proxy)."""
    log = (OUTPUT_DIR / "e2e-server.log").read_text()
    endpoint = re.search(r"DynamoDB Local: (http://\S+)", log)
    assert endpoint, log
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint.group(1),
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def device(browser: Browser, url: str, user: str, token: str) -> Demo:
    context = browser.new_context(viewport=config.VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(config.TIMEOUT_MS)
    tab = Demo(context.new_page(), context, url)
    tab.open()
    setup = SETUP.replace("APP", repr(APP)).replace("USER", repr(user))
    tab.run(setup.replace("TOKEN", repr(token)))
    return tab


@dataclass
class Devices:
    """Two devices (browser contexts) of one user."""

    user: str
    token: str
    a: Demo
    b: Demo


@pytest.fixture
def two(browser: Browser, server_url: str) -> Iterator[Devices]:
    user = f"e2e-{uuid.uuid4().hex[:8]}"
    token = issue_token(DEV_JWT_SECRET, user)
    a = device(browser, server_url, user, token)
    b = device(browser, server_url, user, token)
    try:
        yield Devices(user, token, a, b)
    finally:
        a.context.close()
        b.context.close()


def test_two_devices_edit_offline_and_converge(two: Devices, direct_dynamodb: Any) -> None:
    user, a, b = two.user, two.a, two.b
    a.run('await todos.put({"id": "t1", "title": "milk", "done": False, "n": 0})')
    a.run("await sync.sync(); None")
    assert b.run('await sync_until(lambda: todos.get("t1"))') is True

    # Both go offline and edit: different fields, a counter, and one field on both sides.
    for tab in (a, b):
        tab.context.set_offline(True)
    a.run('await todos.patch("t1", {"title": "oat milk", "note": "from A"})')
    a.run('await todos.increment("t1", "n", 2)')
    a.run('await todos.put({"id": "a-only", "done": False})')
    b.run('await todos.patch("t1", {"done": True, "note": "from B"})')
    b.run('await todos.increment("t1", "n", 5)')
    b.run('await todos.put({"id": "b-only", "done": True})')
    failed = a.run(
        """
        try:
            await sync.sync()
            error = None
        except pysync.RemoteError as e:
            error = e.code
        [error, db.status.pending]
        """
    )
    assert failed == ["NetworkError", 2]  # the patch and the increment of t1 folded

    for tab in (a, b):
        tab.context.set_offline(False)
    a.run("await sync.sync(); None")
    b.run("await sync.sync(); None")
    # Both sync until they hold the same documents. A single snapshot of one side
    # can catch it between applying an older changelog entry and its own newer one.
    for _ in range(50):
        a.run("await sync.sync(); None")
        b.run("await sync.sync(); None")
        if a.run("await docs()") == b.run("await docs()"):
            break
    assert a.run("await docs()") == b.run("await docs()")
    final = b.run("await docs()")
    t1 = next(d for d in final if d["id"] == "t1")
    assert t1["title"] == "oat milk"  # only A changed it
    assert t1["done"] is True  # only B changed it
    assert t1["n"] == 7  # increments from both devices add up
    assert t1["note"] in ("from A", "from B")  # both changed it: last writer wins
    assert {d["id"] for d in final} == {"t1", "a-only", "b-only"}
    assert a.run("db.status.pending") == 0
    assert b.run("db.status.pending") == 0
    conflicts = b.run('[c["strategy"] for c in await db.store.query("_conflicts")]')
    assert conflicts == ["lww"]

    # Writes that bypass the proxy (boto3, a Lambda, the console) reach the devices too.
    direct_dynamodb.put_item(
        TableName="pysync",
        Item={
            "pk": {"S": f"u#{user}"},
            "sk": todo_sk("from-boto3"),
            "id": {"S": "from-boto3"},
            "done": {"BOOL": False},
            "_v": {"N": "1"},
        },
    )
    direct_dynamodb.delete_item(
        TableName="pysync", Key={"pk": {"S": f"u#{user}"}, "sk": todo_sk("a-only")}
    )
    a.run(
        """
        async def bypassed():
            ids = {d["id"] for d in await docs()}
            return "from-boto3" in ids and "a-only" not in ids
        assert await sync_until(bypassed)
        """
    )


def test_realtime_feed_brings_changes_without_polling(two: Devices) -> None:
    token, a, b = two.token, two.a, two.b
    b.run(
        f"""
        await sync.sync()
        sync.listen(js.location.origin + "/changes", {token!r})
        sync.start(interval=3600)  # no polling: only realtime events and local writes wake it
        def show(found):
            js.window.seenIds = pysync_to_js([d["id"] for d in found])
        from pyodide.ffi import to_js as pysync_to_js
        sub = todos.watch(show)
        """
    )
    a.run('await todos.put({"id": "live", "done": False}); await sync.sync(); None')
    b.page.wait_for_function("window.seenIds && window.seenIds.includes('live')")
    a.run('await todos.patch("live", {"done": True}); await sync.sync(); None')
    b.run(
        """
        async def done_true():
            return (await todos.get("live"))["done"] is True
        for _ in range(200):
            if await done_true():
                break
            await asyncio.sleep(0.02)
        assert await done_true()
        """
    )


def test_a_landed_write_whose_reply_was_lost_is_not_redone_after_others_wrote_over_it(
    two: Devices, direct_dynamodb: Any
) -> None:
    user, a, b = two.user, two.a, two.b
    a.run('await todos.put({"id": "t", "n": 0, "tag": "-"}); await sync.sync(); None')
    assert b.run('await sync_until(lambda: todos.get("t"))') is True
    a.run('await todos.patch("t", {"tag": "A"}); await todos.increment("t", "n", 1)')

    # The proxy applies A's write, its reply never arrives, and A stays cut off.
    landed: list[str] = []

    def cut_off(route: Any) -> None:
        if landed:  # cut off after the write
            route.abort("connectionreset")
        elif route.request.headers.get("x-amz-target", "").endswith("UpdateItem"):
            landed.append(route.fetch().text())
            route.abort("connectionreset")
        else:  # what the push reads before it writes
            route.continue_()

    a.context.route("**/dynamodb", cut_off)
    failed = a.run(
        """
        try:
            await sync.push()
            error = None
        except pysync.RemoteError as e:
            error = e.code
        error
        """
    )
    assert failed == "NetworkError"
    assert len(landed) == 1

    # B sees A's write and adds to it: the item moves past A's version.
    b.run(
        """
        async def a_landed():
            return (await todos.get("t"))["n"] == 1
        assert await sync_until(a_landed)
        await todos.increment("t", "n", 2)
        report = await sync.sync()
        """
    )
    a.context.unroute("**/dynamodb")
    a.run(
        """
        report = await sync.sync()
        assert report.push.conflicts == 0, report
        assert await db.outbox() == []
        """
    )
    item = direct_dynamodb.get_item(
        TableName="pysync",
        Key={"pk": {"S": f"u#{user}"}, "sk": todo_sk("t")},
        ConsistentRead=True,
    )["Item"]
    assert item["n"] == {"N": "3"}  # A's +1 once, B's +2
    assert item["tag"] == {"S": "A"}
    assert item["_v"] == {"N": "3"}  # created, A's write, B's write: nothing redone
    converged = """
        async def converged():
            return await todos.get("t") == {"id": "t", "n": 3, "tag": "A"}
        await sync_until(converged)
        """
    assert a.run(converged) is True
    assert b.run(converged) is True


def test_a_device_behind_the_retained_changelog_rebuilds_from_a_base_sync(
    browser: Browser, server_url: str, direct_dynamodb: Any
) -> None:
    user = f"e2e-base-{uuid.uuid4().hex[:8]}"
    scope = {"S": f"u#{user}"}
    a = device(browser, server_url, user, issue_token(DEV_JWT_SECRET, user))
    try:
        a.run(
            """
            async with db.transaction() as tx:
                for i in range(5):
                    tx.put("todos", {"id": f"t{i}", "title": f"task {i}", "done": False})
            report = await sync.sync()
            """
        )
        cursor = a.run("await sync.puller.cursor()")

        # While the device is away, writes bypass the proxy: a new item, an update, a
        # hard delete (keeping the contract, a new _m each, so the consumer stamps none).
        key = {"pk": scope, "sk": todo_sk("t1")}
        direct_dynamodb.put_item(
            TableName="pysync",
            Item={
                "pk": scope,
                "sk": todo_sk("t9"),
                "id": {"S": "t9"},
                "_v": {"N": "1"},
                "_m": {"S": "boto3-t9"},
            },
        )
        direct_dynamodb.update_item(
            TableName="pysync",
            Key=key,
            UpdateExpression="SET title = :t, #m = :m ADD #v :one",
            ExpressionAttributeNames={"#v": "_v", "#m": "_m"},
            ExpressionAttributeValues={
                ":t": {"S": "changed"},
                ":m": {"S": "boto3-t1"},
                ":one": {"N": "1"},
            },
        )
        direct_dynamodb.delete_item(TableName="pysync", Key={"pk": scope, "sk": todo_sk("t2")})

        def changelog_after(seq: int) -> list[dict[str, Any]]:
            return direct_dynamodb.query(
                TableName="pysync_changes",
                KeyConditionExpression="pk = :p AND sk > :c",
                ExpressionAttributeValues={":p": scope, ":c": {"N": str(seq)}},
                ConsistentRead=True,
            )["Items"]

        for _ in range(200):  # the stream consumer appends within milliseconds
            if len(changelog_after(cursor)) >= 3:
                break
            time.sleep(0.05)
        # Then the changelog's TTL removes every entry the device has not read yet.
        entries = changelog_after(cursor)
        assert len(entries) == 3
        for entry in entries:
            direct_dynamodb.delete_item(
                TableName="pysync_changes", Key={"pk": entry["pk"], "sk": entry["sk"]}
            )

        report = a.run(
            """
            report = await sync.sync()
            [report.pull.base_sync, sorted((d["id"], d.get("title")) for d in await docs())]
            """
        )
        items = direct_dynamodb.query(
            TableName="pysync",
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": scope},
            ConsistentRead=True,
        )["Items"]
        server = sorted(
            [item["id"]["S"], item["title"]["S"] if "title" in item else None]
            for item in items
            if "_del" not in item
        )
        assert report == [True, server]
        assert [doc[0] for doc in server] == ["t0", "t1", "t3", "t4", "t9"]
        assert ["t1", "changed"] in server
    finally:
        a.context.close()


def test_call_js_answers_and_fails_as_call_does(two: Devices) -> None:
    """A base sync's pages come through ``HttpRemote.call_js`` (the response kept in
    JavaScript): through the real proxy it gives what ``call`` gives, and the same
    errors, for a page, a refused scope, a refused token and an unreachable proxy."""
    result = two.a.run(
        """
        import json
        from pysync import RemoteError

        await todos.put({"id": "t1", "title": "one", "n": 1.5, "done": False})
        await sync.push()
        scope = "u#" + USER_NAME
        def query(scope):
            return {
                "TableName": "pysync",
                "KeyConditionExpression": "pk = :p",
                "ExpressionAttributeValues": {":p": {"S": scope}},
                "ConsistentRead": True,
            }

        async def outcome(call, payload):
            try:
                answer = await call("Query", payload)
            except RemoteError as error:
                return [error.code, error.status]
            return answer if isinstance(answer, dict) else json.loads(js.JSON.stringify(answer))

        cases = [
            (remote, query(scope)),
            (remote, query("u#somebody-else")),
            (HttpRemote(js.location.origin + "/dynamodb", "not-a-token"), query(scope)),
            (HttpRemote("http://127.0.0.1:9/dynamodb", TOKEN_TEXT), query(scope)),
        ]
        [[await outcome(r.call, p), await outcome(r.call_js, p), r.in_page] for r, p in cases]
        """.replace("USER_NAME", repr(two.user)).replace("TOKEN_TEXT", repr(two.token))
    )
    page, other, token, offline = result
    assert page[0] == page[1]
    assert [item["id"]["S"] for item in page[0]["Items"]] == ["t1"]
    assert other[0] == other[1] == ["AccessDeniedException", 403]
    assert token[0] == token[1]
    assert token[0][1] == 401
    assert offline[0] == offline[1] == ["NetworkError", 0]
    assert [case[2] for case in result] == [True] * 4
