"""The AWS SDK for JavaScript v3 in the page, through the demo's proxy with a user's token.

``scripts/build_aws_sdk.py`` bundles ``@aws-sdk/client-dynamodb`` (pinned in
package-lock.json) with esbuild into ``build/pyodide/aws-sdk-dynamodb.mjs``; the page
imports it, replaces SigV4 by a no-op signer and adds the bearer header in a
``build`` step middleware (the setup of docs/sdks.md).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from playwright.sync_api import Browser

from pysync.server import DEV_JWT_SECRET, issue_token
from tests._browser_config import load
from tests.e2e.conftest import Demo, new_demo
from tests.e2e.test_sdk_boto3 import APP, DEVICE

# docs/sdks.md, "AWS SDK for JavaScript v3": the client, made by a function of the token.
SETUP = """
const sdk = await import("/pyodide/aws-sdk-dynamodb.mjs");

function proxyClient(token) {
  const client = new sdk.DynamoDBClient({
    endpoint: location.origin + "/dynamodb",
    region: "us-east-1",
    credentials: { accessKeyId: "unused", secretAccessKey: "unused" },
    signer: { sign: async (request) => request },  // the proxy signs, not the page
  });
  client.middlewareStack.add(
    (next) => async (args) => {
      args.request.headers["authorization"] = `Bearer ${token}`;
      return next(args);
    },
    { step: "build", name: "pysyncBearer" },
  );
  return client;
}
"""


@pytest.fixture(scope="module", autouse=True)
def bundle() -> None:
    module = load("scripts/build_aws_sdk.py", "build_aws_sdk")
    module.build()


def run_js(page: Demo, body: str, token: str) -> Any:
    """Run ``body`` after SETUP in an async function of ``token``; return its result."""
    return page.page.evaluate(f"async (token) => {{ {SETUP}\n{body} }}", token)


def test_the_js_sdk_in_the_page_as_alice(browser: Browser, server_url: str) -> None:
    user = f"alice-{uuid.uuid4().hex[:8]}"
    token = issue_token(DEV_JWT_SECRET, user)
    page = new_demo(browser, server_url)
    page.open()
    try:
        got = run_js(
            page,
            f"""
            const ddb = proxyClient(token);
            const scope = {{ S: "u#{user}" }};
            await ddb.send(new sdk.PutItemCommand({{
              TableName: "pysync",
              Item: {{ pk: scope, sk: {{ S: "notes#1" }}, title: {{ S: "milk" }} }},
            }}));
            const item = (await ddb.send(new sdk.GetItemCommand({{
              TableName: "pysync",
              Key: {{ pk: scope, sk: {{ S: "notes#1" }} }},
              ConsistentRead: true,
            }}))).Item;
            await ddb.send(new sdk.TransactWriteItemsCommand({{ TransactItems: [
              {{ Put: {{
                TableName: "pysync",
                Item: {{ pk: scope, sk: {{ S: "notes#2" }}, n: {{ N: "2" }} }},
              }} }},
            ] }}));
            const page = await ddb.send(new sdk.QueryCommand({{
              TableName: "pysync",
              KeyConditionExpression: "pk = :p AND begins_with(sk, :ns)",
              ExpressionAttributeValues: {{ ":p": scope, ":ns": {{ S: "notes#" }} }},
            }}));
            const bob = {{ pk: {{ S: "u#bob" }}, sk: {{ S: "x" }} }};
            const refused = [];
            for (const command of [
              new sdk.PutItemCommand({{ TableName: "pysync", Item: bob }}),
              new sdk.GetItemCommand({{ TableName: "pysync", Key: bob }}),
              new sdk.QueryCommand({{ TableName: "pysync", KeyConditionExpression: "pk = :p",
                                      ExpressionAttributeValues: {{ ":p": bob.pk }} }}),
            ]) {{
              try {{ await ddb.send(command); refused.push(null); }}
              catch (error) {{ refused.push([error.name, error.$metadata.httpStatusCode]); }}
            }}
            return {{ title: item.title.S, sks: page.Items.map((i) => i.sk.S), refused }};
            """,
            token,
        )
        assert got == {
            "title": "milk",
            "sks": ["notes#1", "notes#2"],
            "refused": [["AccessDeniedException", 403]] * 3,
        }
    finally:
        page.context.close()


def test_a_js_sdk_write_reaches_a_pysync_device(browser: Browser, server_url: str) -> None:
    user = f"alice-{uuid.uuid4().hex[:8]}"
    token = issue_token(DEV_JWT_SECRET, user)
    writer, device = new_demo(browser, server_url), new_demo(browser, server_url)
    writer.open()
    device.open()
    try:
        setup = DEVICE.replace("APP", repr(APP)).replace("USER", repr(user))
        device.run(setup.replace("TOKEN", repr(token)))
        sk = device.run(
            f'from pysync._sync._items import sort_key\nsort_key({APP!r}, "todos", "j1")'
        )
        run_js(
            writer,
            f"""
            await proxyClient(token).send(new sdk.PutItemCommand({{ TableName: "pysync", Item: {{
              pk: {{ S: "u#{user}" }}, sk: {{ S: {sk!r} }},
              id: {{ S: "j1" }}, title: {{ S: "from JS" }},
            }} }}));
            return null;
            """,
            token,
        )
        deadline = time.monotonic() + 20
        docs: Any = []
        while time.monotonic() < deadline and not docs:
            docs = device.run("await sync.sync()\nawait asyncio.sleep(0.05)\nseen[-1]")
        assert docs == [{"id": "j1", "title": "from JS"}]
    finally:
        writer.context.close()
        device.context.close()
