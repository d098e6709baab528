"""boto3 in the page (Pyodide, Chromium) through the demo's proxy with a user's token.

The page loads the optional wheels of build/pyodide (``loadPackage(["boto3"])``), and
botocore sends its requests through urllib3's own Pyodide support (fetch, the
WebAssembly stack suspended by JSPI while it waits) to ``/dynamodb`` with
``pysync.sdk``'s bearer hook. A write made this way reaches a pysync device in another
browser context.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from playwright.sync_api import Browser

from pysync.server import DEV_JWT_SECRET, issue_token
from tests.e2e.conftest import Demo, new_demo

APP = "sdk-e2e"

# The setup of docs/sdks.md ("boto3 in the page"), with the token filled in: urllib3's own
# Pyodide support sends botocore's requests.
SETUP = """
import pyodide_js
await pyodide_js.loadPackage(["boto3"])

import js
from pysync.sdk import proxy_client

ddb = proxy_client(js.location.origin + "/dynamodb", TOKEN)
"""
# With pyodide-http patched in as well: it patches requests and urllib.request, not the
# urllib3 that botocore uses, so nothing changes.
SETUP_PYODIDE_HTTP = (
    """
import pyodide_js
await pyodide_js.loadPackage(["boto3", "pyodide-http"])
import pyodide_http
pyodide_http.patch_all()
"""
    + SETUP
)
# urllib3's fallback without JSPI (or when Python was entered synchronously): a synchronous
# XMLHttpRequest, which blocks the page's main thread while it waits.
SETUP_SYNC_XHR = (
    SETUP
    + """
import urllib3.contrib.emscripten.fetch as urllib3_fetch
urllib3_fetch.has_jspi = lambda: False

def no_fetch(*args, **kwargs):
    raise AssertionError("urllib3 used fetch")

urllib3_fetch.send_jspi_request = no_fetch
"""
)

DEVICE = """
import asyncio, pysync
from pysync import AppSchema, CollectionSpec, HttpRemote, Sync
import js

db = await pysync.connect(APP, USER, AppSchema(1, {"todos": CollectionSpec()}))
remote = HttpRemote(js.location.origin + "/dynamodb", TOKEN)
sync = Sync(db, remote, sleep=lambda _: asyncio.sleep(0))
todos = db["todos"]
seen = []  # every result of the live query, newest last
live = todos.watch(lambda docs: seen.append(docs))
"""


def open_page(browser: Browser, url: str) -> Demo:
    demo = new_demo(browser, url)
    demo.open()
    return demo


@pytest.mark.parametrize(
    "setup",
    [SETUP, SETUP_PYODIDE_HTTP, SETUP_SYNC_XHR],
    ids=["urllib3-jspi", "pyodide-http", "urllib3-sync-xhr"],
)
def test_boto3_in_the_page_as_alice(browser: Browser, server_url: str, setup: str) -> None:
    user = f"alice-{uuid.uuid4().hex[:8]}"
    token = issue_token(DEV_JWT_SECRET, user)
    page = open_page(browser, server_url)
    try:
        page.run(setup.replace("TOKEN", repr(token)))
        scope = f"u#{user}"
        got = page.run(
            f"""
            from botocore.exceptions import ClientError
            S = lambda v: {{"S": v}}
            key = {{"pk": S({scope!r}), "sk": S("notes#1")}}
            ddb.put_item(TableName="pysync", Item={{**key, "title": S("milk")}})
            item = ddb.get_item(TableName="pysync", Key=key, ConsistentRead=True)["Item"]
            ddb.transact_write_items(TransactItems=[
                {{"Put": {{"TableName": "pysync",
                          "Item": {{"pk": S({scope!r}), "sk": S("notes#2"), "n": {{"N": "2"}}}}}}}},
            ])
            page = ddb.query(
                TableName="pysync",
                KeyConditionExpression="pk = :p AND begins_with(sk, :ns)",
                ExpressionAttributeValues={{":p": S({scope!r}), ":ns": S("notes#")}},
            )
            refused = []
            bob = {{"pk": S("u#bob"), "sk": S("x")}}
            for call in (
                lambda: ddb.put_item(TableName="pysync", Item=bob),
                lambda: ddb.get_item(TableName="pysync", Key=bob),
                lambda: ddb.query(TableName="pysync", KeyConditionExpression="pk = :p",
                                  ExpressionAttributeValues={{":p": S("u#bob")}}),
            ):
                try:
                    call()
                    refused.append(None)
                except ClientError as error:
                    refused.append([error.response["Error"]["Code"],
                                    error.response["ResponseMetadata"]["HTTPStatusCode"]])
            {{"title": item["title"]["S"], "sks": [i["sk"]["S"] for i in page["Items"]],
              "refused": refused}}
            """
        )
        assert got == {
            "title": "milk",
            "sks": ["notes#1", "notes#2"],
            "refused": [["AccessDeniedException", 403]] * 3,
        }
    finally:
        page.context.close()


def test_a_boto3_write_in_one_page_reaches_a_pysync_device(
    browser: Browser, server_url: str
) -> None:
    user = f"alice-{uuid.uuid4().hex[:8]}"
    token = issue_token(DEV_JWT_SECRET, user)
    writer, device = open_page(browser, server_url), open_page(browser, server_url)
    try:
        setup = DEVICE.replace("APP", repr(APP)).replace("USER", repr(user))
        device.run(setup.replace("TOKEN", repr(token)))
        device.run("await sync.sync()\nNone")
        writer.run(SETUP.replace("TOKEN", repr(token)))
        writer.run(
            f"""
            from pysync._sync._items import sort_key
            ddb.put_item(TableName="pysync", Item={{
                "pk": {{"S": "u#{user}"}}, "sk": {{"S": sort_key({APP!r}, "todos", "t1")}},
                "id": {{"S": "t1"}}, "title": {{"S": "from boto3 in the page"}}}})
            """
        )
        deadline = time.monotonic() + 20
        docs: Any = []
        while time.monotonic() < deadline and not docs:
            docs = device.run("await sync.sync()\nawait asyncio.sleep(0.05)\nseen[-1]")
        # The live query saw it: the boto3 write, stamped by the consumer (no _m of its own).
        assert docs == [{"id": "t1", "title": "from boto3 in the page"}]
    finally:
        writer.context.close()
        device.context.close()
