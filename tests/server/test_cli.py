"""The ``pysync`` command and the development stack."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from pysync.cli import main
from pysync.server import (
    DEV_JWT_SECRET,
    DynamoDBLocal,
    ProxyConfig,
    create_tables,
    dynamodb_client,
    local_session,
)
from pysync.server._devstack import free_port

from .conftest import Direct
from .hostile_corpus import TABLE, S

REPO = Path(__file__).resolve().parents[2]


def test_token_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--user", "bob", "--scope", "s#team", "--ttl", "60"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, DEV_JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "bob"
    assert claims["scopes"] == ["u#bob", "s#team"]
    assert claims["exp"] - claims["iat"] == 60


def test_token_command_rejects_bad_scopes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["token", "--user", "bob", "--scope", "admin"])
    assert exit_info.value.code == 2
    assert "u#<user> or s#<space>" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["serve"], ["dev"], ["token"]])
def test_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: pysync" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("secret", "message"),
    [(DEV_JWT_SECRET, "development JWT secret without --dev"), (None, "set PYSYNC_JWT_SECRET")],
)
def test_serve_refuses_unsafe_token_settings(
    monkeypatch: pytest.MonkeyPatch, secret: str | None, message: str
) -> None:
    for name in ("PYSYNC_JWT_SECRET", "PYSYNC_JWKS_URL", "PYSYNC_JWKS_FILE"):
        monkeypatch.delenv(name, raising=False)
    if secret:
        monkeypatch.setenv("PYSYNC_JWT_SECRET", secret)
    with pytest.raises(SystemExit, match=message):
        main(["serve"])


def test_config_from_env() -> None:
    config = ProxyConfig.from_env(
        {
            "PYSYNC_TABLE": "app",
            "AWS_REGION": "eu-west-1",
            "PYSYNC_ALLOWED_ORIGINS": "https://a.test, https://b.test",
            "PYSYNC_RATE_LIMIT": "2.5",
            "PYSYNC_MAX_BODY_BYTES": "1000",
        }
    )
    assert config.changelog_table == "app_changes"
    assert config.dynamodb_url == "https://dynamodb.eu-west-1.amazonaws.com"
    assert config.streams_url == "https://streams.dynamodb.eu-west-1.amazonaws.com"
    assert config.allowed_origins == ("https://a.test", "https://b.test")
    assert (config.rate_limit, config.max_body_bytes) == (2.5, 1000)
    with pytest.raises(ValueError, match="PYSYNC_RATE_BURST"):
        ProxyConfig.from_env({"PYSYNC_RATE_BURST": "many"})


def test_create_tables_is_idempotent_and_repairs_streams(
    seeded: Direct, dynamodb: DynamoDBLocal
) -> None:
    client = dynamodb_client(ProxyConfig(dynamodb_endpoint=dynamodb.endpoint), local_session())
    client.create_table(
        TableName="bare",
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
    for table in (TABLE, "bare", "bare"):
        create_tables(client, table)
        for name in (table, f"{table}_changes"):
            ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            assert ttl["AttributeName"] == "_ttl"
        stream = client.describe_table(TableName=table)["Table"]["StreamSpecification"]
        assert stream == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    for name in ("bare", "bare_changes"):
        client.delete_table(TableName=name)
    client.close()


def _wait_for(url: str, process: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "pysync dev exited"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise TimeoutError(url)


def test_dev_stack_end_to_end(tmp_path: Path) -> None:
    """`pysync dev`: serves, prints a working token, persists, and stops Java on SIGTERM."""
    port = free_port()
    data = tmp_path / "data"
    process = subprocess.Popen(
        [sys.executable, "-m", "pysync.cli", "dev", "--port", str(port), "--data-dir", str(data)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(6)]
        local = next(line for line in lines if "DynamoDB Local:" in line).split()[2]
        token = lines[lines.index(next(x for x in lines if "token for" in x)) + 1].strip()
        base = f"http://127.0.0.1:{port}"
        _wait_for(base + "/healthz", process)
        key = {"pk": S("u#alice"), "sk": S("dev#1")}
        response = httpx.post(
            base + "/dynamodb",
            json={"TableName": "pysync", "Item": {**key, "title": S("kept")}},
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": "DynamoDB_20120810.PutItem",
            },
        )
        assert response.status_code == 200, response.text
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    with pytest.raises(httpx.TransportError):
        httpx.get(local, timeout=1)  # DynamoDB Local was stopped with the CLI

    with DynamoDBLocal(data_dir=data) as again, httpx.Client() as http:
        item = Direct(again.endpoint, http).call("GetItem", {"TableName": "pysync", "Key": key})
    assert item["Item"]["title"] == S("kept")
