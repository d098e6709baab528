"""SigV4 signing checked by a server that verifies signatures: moto with IAM auth on.

moto's DynamoDB does verify SigV4 when ``INITIAL_NO_AUTH_ACTION_COUNT`` is
finite: it recomputes the signature with the secret of the IAM access key named
in the request (``moto/iam/access_control.py``), over the received body, and
answers 403 ``SignatureDoesNotMatch`` or ``InvalidClientTokenId``. The server is
started with ``INITIAL_NO_AUTH_ACTION_COUNT=0``; the IAM user the proxy signs
as is created through moto's ``/moto-api/reset-auth`` window of three actions.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.session
import httpx
import pytest
from botocore.credentials import RefreshableCredentials

from pysync.server import ProxyConfig, create_app
from pysync.server._devstack import free_port
from pysync.server._signing import Signer, host_header

from .conftest import SECRET, ServerThread, claims, hs256, proxy_post

TABLE = "signed"


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "moto_server exited"
        try:
            httpx.get(url + "/moto-api/data.json", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise TimeoutError("moto_server did not start")


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    port = free_port()
    moto_server = os.path.join(os.path.dirname(sys.executable), "moto_server")
    process = subprocess.Popen(
        [moto_server, "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def iam_key(moto: str) -> dict[str, str]:
    """Access key of an IAM user allowed dynamodb:*, and the signed table it uses."""
    # Three unauthenticated actions to bootstrap the user; every call after them is checked.
    httpx.post(moto + "/moto-api/reset-auth", content=b"3").raise_for_status()
    iam = boto3.client(
        "iam", endpoint_url=moto, region_name="us-east-1",
        aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap",
    )  # fmt: skip
    iam.create_user(UserName="proxy")
    key = iam.create_access_key(UserName="proxy")["AccessKey"]
    iam.put_user_policy(
        UserName="proxy",
        PolicyName="dynamodb",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"}],
            }
        ),
    )
    dynamodb = boto3.client(
        "dynamodb", endpoint_url=moto, region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
    )  # fmt: skip
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}


def session_with(access_key: str, secret: str) -> botocore.session.Session:
    session = botocore.session.Session()
    session.set_credentials(access_key, secret)
    return session


@pytest.fixture(scope="module")
def signed_proxy(moto: str, iam_key: dict[str, str]) -> Iterator[Callable[[str], str]]:
    """Start a proxy in front of moto that signs with the given secret key."""
    servers: list[ServerThread] = []

    def start(secret: str) -> str:
        config = ProxyConfig(table=TABLE, dynamodb_endpoint=moto, jwt_secret=SECRET)
        app = create_app(config, session=session_with(iam_key["id"], secret))
        servers.append(ServerThread(app).__enter__())
        return servers[-1].url

    yield start
    for server in servers:
        server.__exit__()


def _put(pk: str, title: str) -> dict[str, Any]:
    return {"TableName": TABLE, "Item": {"pk": {"S": pk}, "sk": {"S": "a"}, "title": {"S": title}}}


def test_moto_rejects_unknown_keys(moto: str, iam_key: dict[str, str]) -> None:
    client = boto3.client(
        "dynamodb", endpoint_url=moto, region_name="us-east-1",
        aws_access_key_id="AKIAUNKNOWN000000000", aws_secret_access_key="x",
    )  # fmt: skip
    with pytest.raises(client.exceptions.ClientError, match="InvalidClientTokenId"):
        client.list_tables()


def test_signed_requests_through_the_proxy_pass(
    signed_proxy: Callable[[str], str], iam_key: dict[str, str], http: httpx.Client
) -> None:
    url = signed_proxy(iam_key["secret"])
    token = f"Bearer {hs256(claims('alice', aud=None, iss=None))}"
    title = "signed \u00e9\U0001f600"  # non-ASCII: the signed bytes are UTF-8, not \\u escapes
    assert proxy_post(http, url, "PutItem", _put("u#alice", title), token).status_code == 200
    get = {"TableName": TABLE, "Key": {"pk": {"S": "u#alice"}, "sk": {"S": "a"}}}
    response = proxy_post(http, url, "GetItem", get, token)
    assert response.status_code == 200, response.text
    assert response.json()["Item"]["title"] == {"S": title}


def test_wrong_credentials_are_rejected_by_moto(
    signed_proxy: Callable[[str], str], iam_key: dict[str, str], http: httpx.Client
) -> None:
    url = signed_proxy("not-the-secret")
    token = f"Bearer {hs256(claims('alice', aud=None, iss=None))}"
    response = proxy_post(http, url, "PutItem", _put("u#alice", "x"), token)
    assert response.status_code == 403
    assert b"SignatureDoesNotMatch" in response.content  # moto's reply, passed on unchanged


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body: body.replace(b"u#alice", b"u#bobby"),
        lambda body: body + b" ",
        lambda body: body.replace(b'"a"', b'"b"'),
    ],
    ids=["other-scope", "trailing-space", "other-sort-key"],
)
def test_body_tampered_after_signing_fails(
    moto: str, iam_key: dict[str, str], tamper: Callable[[bytes], bytes]
) -> None:
    signer = Signer("us-east-1", session=session_with(iam_key["id"], iam_key["secret"]))
    credentials = asyncio.run(signer.frozen_credentials())
    body = json.dumps(_put("u#alice", "original")).encode()
    target = "DynamoDB_20120810.PutItem"
    headers = signer.sign(moto + "/", body, target, credentials)

    untouched = httpx.post(moto + "/", content=body, headers=headers)
    assert untouched.status_code == 200, untouched.text
    tampered = httpx.post(moto + "/", content=tamper(body), headers=headers)
    assert tampered.status_code == 403
    assert b"SignatureDoesNotMatch" in tampered.content


def test_signer_needs_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(RuntimeError, match="no AWS credentials"):
        Signer("us-east-1", session=botocore.session.Session())


async def test_expiring_credentials_are_refreshed_off_the_event_loop() -> None:
    refreshed_in: list[str] = []

    def refresh() -> dict[str, str]:
        refreshed_in.append(threading.current_thread().name)
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        return {
            "access_key": "new",
            "secret_key": "s",
            "token": "t",
            "expiry_time": expiry.isoformat(),
        }

    stale = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    credentials = RefreshableCredentials.create_from_metadata(
        {"access_key": "old", "secret_key": "s", "token": "t", "expiry_time": stale.isoformat()},
        refresh_using=refresh,
        method="test",
    )

    class Session:
        def get_credentials(self) -> RefreshableCredentials:
            return credentials

    signer = Signer("us-east-1", session=Session())
    frozen = await signer.frozen_credentials()
    assert frozen.access_key == "new"
    assert refreshed_in
    assert refreshed_in[0] != threading.main_thread().name
    headers = signer.sign("https://dynamodb.us-east-1.amazonaws.com/", b"{}", "T.X", frozen)
    assert headers["Host"] == "dynamodb.us-east-1.amazonaws.com"
    assert headers["X-Amz-Security-Token"] == "t"
    assert "Credential=new/" in headers["Authorization"]


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://dynamodb.eu-west-1.amazonaws.com", "dynamodb.eu-west-1.amazonaws.com"),
        ("https://dynamodb.eu-west-1.amazonaws.com:443/", "dynamodb.eu-west-1.amazonaws.com"),
        ("http://127.0.0.1:8000/", "127.0.0.1:8000"),
        ("http://localhost:80", "localhost"),
        ("http://[::1]:8000/", "[::1]:8000"),
    ],
)
def test_host_header(url: str, host: str) -> None:
    assert host_header(url) == host
