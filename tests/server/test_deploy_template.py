"""deploy/template.yaml: cfn-lint clean, its tables are what create_tables makes, its IAM
policy allows exactly the DynamoDB operations the proxy forwards and the consumer calls.

The operations come from the code: the forwarding allow-list of ``Policy.for_table``
(``pysync.server._policy``) and the literal operation names of the server's own calls
(``api.call``/``api.streams``), found by parsing the server's modules; the table each
of those calls addresses is named per calling class below, and a call from any other
class fails the test until it is named here.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file
from cfnlint.decode import cfn_yaml

import pysync.server
from pysync.server import DynamoDBLocal, ProxyConfig, dynamodb_client, local_session
from pysync.server._policy import _TRANSACT_WRITE_PARAMS, Policy

from .hostile_corpus import TABLE

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "template.yaml"
SERVER = Path(pysync.server.__file__).resolve().parent

#: The template's table resources, by what they hold.
TABLES = {"data": "DataTable", "changes": "ChangesTable", "leases": "LeaseTable"}

#: Which table the server's own calls address, per calling class (``streams`` calls go to
#: the data table's stream).
CALLERS = {
    ("_streams.py", "StreamConsumer"): "data",  # DescribeTable; UpdateItem stamps bypass writes
    ("_streams.py", "LeaseTable"): "leases",
    ("_changelog.py", "Changelog"): "changes",
    ("_realtime.py", "ChangeFeed"): "changes",
}
#: Functions that pass their ``operation`` argument on (their callers are scanned instead).
WRAPPERS = {("_streams.py", "LeaseTable", "_conditional")}
CALL_METHODS = {"call": "table", "streams": "stream", "_conditional": "table"}

#: IAM authorizes the elements of a transaction by these actions; there is no
#: dynamodb:TransactWriteItems or dynamodb:TransactGetItems action.
TRANSACT_WRITE_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = cfn_yaml.load(str(TEMPLATE))
    return loaded


def test_cfn_lint_finds_no_errors_or_warnings() -> None:
    matches = [m for m in lint_file(TEMPLATE) if m.rule.id[0] in "EW"]
    assert not matches, "\n".join(str(m) for m in matches)


# --- tables --------------------------------------------------------------------


def _table_name(value: Any) -> str:
    """The template's TableName with the TableName parameter set to the tests' table."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        assert value["Ref"] == "TableName"
        return TABLE
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        return str(value["Fn::Sub"]).replace("${TableName}", TABLE)
    raise AssertionError(f"unexpected TableName {value!r}")


def _by_name(entries: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return {entry[key]: {k: v for k, v in entry.items() if k != key} for entry in entries}


def _normalized_template_table(props: dict[str, Any]) -> dict[str, Any]:
    stream = props.get("StreamSpecification")
    ttl = props.get("TimeToLiveSpecification") or {}
    return {
        "AttributeDefinitions": _by_name(props["AttributeDefinitions"], "AttributeName"),
        "KeySchema": [(k["AttributeName"], k["KeyType"]) for k in props["KeySchema"]],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
        "StreamViewType": stream["StreamViewType"] if stream else None,
        "GlobalSecondaryIndexes": sorted(
            i["IndexName"] for i in props.get("GlobalSecondaryIndexes", [])
        ),
        "LocalSecondaryIndexes": sorted(
            i["IndexName"] for i in props.get("LocalSecondaryIndexes", [])
        ),
        "TTL": ttl.get("AttributeName") if ttl.get("Enabled") else None,
    }


def _normalized_live_table(client: Any, name: str) -> dict[str, Any]:
    table = client.describe_table(TableName=name)["Table"]
    stream = table.get("StreamSpecification") or {}
    ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    return {
        "AttributeDefinitions": _by_name(table["AttributeDefinitions"], "AttributeName"),
        "KeySchema": [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]],
        "BillingMode": table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED"),
        "StreamViewType": stream.get("StreamViewType") if stream.get("StreamEnabled") else None,
        "GlobalSecondaryIndexes": sorted(
            i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])
        ),
        "LocalSecondaryIndexes": sorted(
            i["IndexName"] for i in table.get("LocalSecondaryIndexes", [])
        ),
        "TTL": ttl.get("AttributeName")
        if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
        else None,
    }


def test_tables_match_create_tables(template: dict[str, Any], dynamodb: DynamoDBLocal) -> None:
    """The session's DynamoDB Local tables were made by create_tables (conftest.py)."""
    client = dynamodb_client(
        ProxyConfig(table=TABLE, dynamodb_endpoint=dynamodb.endpoint), local_session()
    )
    resources = template["Resources"]
    tables = {k for k, v in resources.items() if v["Type"] == "AWS::DynamoDB::Table"}
    assert tables == set(TABLES.values())
    config = ProxyConfig(table=TABLE)
    expected_names = {
        "DataTable": config.table,
        "ChangesTable": config.changelog_table,
        "LeaseTable": config.lease_table,
    }
    for logical_id in sorted(tables):
        props = resources[logical_id]["Properties"]
        name = _table_name(props["TableName"])
        assert name == expected_names[logical_id]
        assert _normalized_template_table(props) == _normalized_live_table(client, name), logical_id


# --- IAM -----------------------------------------------------------------------


def _server_calls() -> Iterator[tuple[str, str, str]]:
    """(table or stream, operation, where) of every literal-operation call in the server."""

    def walk(node: ast.AST, module: str, cls: str | None, func: str | None) -> Iterator[Any]:
        for child in ast.iter_child_nodes(node):
            child_cls = child.name if isinstance(child, ast.ClassDef) else cls
            child_func = (
                child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else func
            )
            if (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Attribute)
                and child.func.attr in CALL_METHODS
                and child.args
            ):
                where = f"{module}:{child.lineno} ({cls}.{func})"
                first = child.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    role = CALLERS.get((module, cls or ""))
                    assert role is not None, f"{where}: which table does {cls} call? (CALLERS)"
                    if CALL_METHODS[child.func.attr] == "stream":
                        role = "stream"
                    yield role, first.value, where
                else:
                    assert (module, cls, func) in WRAPPERS, f"{where}: operation not a literal"
            yield from walk(child, module, child_cls, child_func)

    for path in sorted(SERVER.glob("*.py")):
        yield from walk(ast.parse(path.read_text()), path.name, None, None)


def _transact_write_kinds(module: str) -> set[str]:
    """Element kinds (Put, Update...) that a module's TransactWriteItems bodies use."""
    tree = ast.parse((SERVER / module).read_text())
    return {
        key.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Dict)
        for key in node.keys
        if isinstance(key, ast.Constant) and key.value in TRANSACT_WRITE_ACTIONS
    }


def _iam_actions(operation: str, write_kinds: set[str]) -> set[str]:
    if operation == "TransactWriteItems":
        return {TRANSACT_WRITE_ACTIONS[kind] for kind in write_kinds}
    if operation == "TransactGetItems":
        return {"GetItem"}
    return {operation}


def expected_actions() -> dict[str, set[str]]:
    """IAM actions per table (and the data table's stream), from the code."""
    expected: dict[str, set[str]] = {
        "data": set(),
        "stream": set(),
        "changes": set(),
        "leases": set(),
    }
    config = ProxyConfig(table=TABLE)
    roles = {config.table: "data", config.changelog_table: "changes"}
    forwarded_kinds = set(_TRANSACT_WRITE_PARAMS)
    for rule in Policy.for_table(TABLE).tables:
        for operation in rule.operations:
            expected[roles[rule.name]] |= _iam_actions(operation, forwarded_kinds)
    calls = list(_server_calls())
    assert calls, "no server calls found: has DynamoDBAPI been renamed?"
    for role, operation, where in calls:
        module = where.partition(":")[0]
        expected[role] |= _iam_actions(operation, _transact_write_kinds(module))
    return expected


def _policy_actions(template: dict[str, Any]) -> dict[str, set[str]]:
    role = template["Resources"]["TaskRole"]["Properties"]
    assert "ManagedPolicyArns" not in role
    resources = {("DataTable", "StreamArn"): "stream"}
    resources.update({(logical_id, "Arn"): name for name, logical_id in TABLES.items()})
    actions: dict[str, set[str]] = {}
    for policy in role["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            assert set(statement) <= {"Sid", "Effect", "Action", "Resource"}
            targets = statement["Resource"]
            for target in targets if isinstance(targets, list) else [targets]:
                assert set(target) == {"Fn::GetAtt"}, target
                attribute = target["Fn::GetAtt"]
                if isinstance(attribute, str):
                    attribute = attribute.split(".", 1)
                name = resources[tuple(attribute)]
                for action in statement["Action"]:
                    service, _, operation = action.partition(":")
                    assert service == "dynamodb", action
                    actions.setdefault(name, set()).add(operation)
    return actions


def test_task_role_allows_exactly_the_operations_the_proxy_makes(
    template: dict[str, Any],
) -> None:
    expected = expected_actions()
    # The forwarding allow-list and the consumer's calls, as read from the code.
    assert {"GetItem", "BatchWriteItem", "ConditionCheckItem"} <= expected["data"]
    assert {"DescribeTable", "UpdateItem"} <= expected["data"]
    assert expected["stream"] == {"DescribeStream", "GetShardIterator", "GetRecords"}
    assert _policy_actions(template) == expected


def test_task_role_actions_exist(template: dict[str, Any]) -> None:
    """Every action is a real DynamoDB IAM action (cfn-lint's copy of the IAM reference)."""
    spec = Path(cfn_yaml.__file__).parents[1] / "data" / "AdditionalSpecs" / "Policies.json"
    known = set(json.loads(spec.read_text())["dynamodb"]["Actions"])
    for actions in _policy_actions(template).values():
        assert {a.lower() for a in actions} <= known


def test_service_runs_behind_the_balancer_as_docs_security_md_says(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    attributes = {
        a["Key"]: a["Value"]
        for a in resources["LoadBalancer"]["Properties"]["LoadBalancerAttributes"]
    }
    idle = int(attributes["idle_timeout.timeout_seconds"])
    assert idle > ProxyConfig().sse_heartbeat
    container = resources["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    env = {
        e["Name"]: e["Value"]
        for e in container["Environment"]
        if isinstance(e, dict) and "Name" in e
    }
    assert env["PYSYNC_MAX_CONNECTIONS_PER_ADDRESS"] == "0"
    assert float(env["PYSYNC_KEEP_ALIVE_TIMEOUT"]) > idle
    config = ProxyConfig.from_env({k: v for k, v in env.items() if isinstance(v, str)})
    assert config.max_connections_per_address == 0
    assert "PYSYNC_JWT_SECRET" not in env
    assert resources["TargetGroup"]["Properties"]["HealthCheckPath"] == "/healthz"
    assert resources["HttpsListener"]["Properties"]["Protocol"] == "HTTPS"


def test_dockerfile_installs_the_server_extra_and_runs_serve_unprivileged() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    installed = re.findall(r'pip install [^\n]*"\.\[(\w+)\]"', dockerfile)
    assert installed
    assert set(installed) <= set(extras)
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    (cmd,) = re.findall(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert json.loads(cmd)[:4] == ["pysync", "serve", "--host", "0.0.0.0"]
    assert "--dev" not in shlex.split(dockerfile)
    assert "PYSYNC_JWT_SECRET" not in dockerfile
    # Every file the image copies passes .dockerignore's allow-list.
    ignore = (ROOT / ".dockerignore").read_text().split()
    for copied in re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE):
        for path in copied.split():
            assert f"!{path}" in ignore, path
