"""Fixtures for the proxy tests: DynamoDB Local, a real uvicorn proxy, direct access, tokens."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import inspect
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from pysync.server import (
    Changelog,
    DynamoDBAPI,
    DynamoDBError,
    DynamoDBLocal,
    ProxyConfig,
    Signer,
    StreamConsumer,
    create_app,
    create_tables,
    dynamodb_client,
    local_session,
)
from pysync.server._limits import uvicorn_config

from .hostile_corpus import AUDIENCE, ISSUER, TABLE, N, S

CHANGES = f"{TABLE}_changes"
SECRET = "test-secret-0123456789-0123456789-abcdef"
JSON_TYPE = "application/x-amz-json-1.0"
ORIGIN = "http://app.test"
MAX_BODY = 64 * 1024


# --- servers -------------------------------------------------------------------


class ServerThread:
    """uvicorn serving an ASGI app on a pre-bound socket in a background thread.

    The socket listens before the thread starts, so clients can connect at once:
    their connections wait in the backlog until the app has started. uvicorn runs
    as `pysync serve` runs it: with the connection and request limits of ``limits``
    (default: the defaults of :class:`ProxyConfig`).
    """

    def __init__(self, app: Any, limits: ProxyConfig | None = None) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn_config(
            app, limits or ProxyConfig(), log_level="warning", access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> ServerThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="session")
def dynamodb() -> Iterator[DynamoDBLocal]:
    """DynamoDB Local (in memory) with the data and changelog tables."""
    with DynamoDBLocal() as database:
        config = ProxyConfig(table=TABLE, dynamodb_endpoint=database.endpoint)
        create_tables(dynamodb_client(config, local_session()), TABLE)
        yield database


@dataclass
class Keys:
    """Signing material of the test token issuer."""

    rsa: rsa.RSAPrivateKey
    public_pem: bytes
    jwks: dict[str, Any]


@pytest.fixture(scope="session")
def keys() -> Keys:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid="test-key", use="sig", alg="RS256")
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Keys(private, pem, {"keys": [jwk]})


@pytest.fixture(scope="session")
def static_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    web = tmp_path_factory.mktemp("web")
    (web / "index.html").write_text("<!doctype html><title>pysync</title>")
    (web / "app.mjs").write_text("export {};")
    pyodide = tmp_path_factory.mktemp("pyodide")
    for name in ("pyodide.asm.wasm", "pyodide.mjs", "pyodide.js", "pyodide-lock.json"):
        (pyodide / name).write_bytes(b"\0asm" if name.endswith(".wasm") else b"{}")
    (pyodide / "pysync-0.1.0-py3-none-any.whl").write_bytes(b"PK")
    (pyodide / "python_stdlib.zip").write_bytes(b"PK")
    return web, pyodide


def proxy_config(
    dynamodb: DynamoDBLocal, keys_file: Path, static: tuple[Path, Path], **changes: Any
) -> ProxyConfig:
    """Configuration of the test proxies (tests change single fields)."""
    config = ProxyConfig(
        table=TABLE,
        dynamodb_endpoint=dynamodb.endpoint,
        jwt_secret=SECRET,
        jwks_file=keys_file,
        audience=AUDIENCE,
        issuer=ISSUER,
        allowed_origins=(ORIGIN,),
        max_body_bytes=MAX_BODY,
        rate_limit=10_000,
        rate_burst=10_000,
        web_dir=static[0],
        pyodide_dir=static[1],
    )
    return config.replace(**changes)


@pytest.fixture(scope="session")
def jwks_file(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps(keys.jwks))
    return path


@pytest.fixture(scope="session")
def make_proxy(
    dynamodb: DynamoDBLocal, jwks_file: Path, static_dirs: tuple[Path, Path]
) -> Iterator[Callable[..., str]]:
    """Start extra proxies with changed settings; all stop at the end of the session."""
    servers: list[ServerThread] = []

    def start(**changes: Any) -> str:
        config = proxy_config(dynamodb, jwks_file, static_dirs, **changes)
        server = ServerThread(create_app(config, session=local_session()), config)
        servers.append(server.__enter__())
        return server.url

    yield start
    for server in servers:
        server.__exit__()


@pytest.fixture(scope="session")
def proxy(make_proxy: Callable[..., str]) -> str:
    """Base URL of the main test proxy (real uvicorn, real HTTP)."""
    return make_proxy()


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


# --- tokens ----------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_jwt(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A JWT assembled by hand, for headers PyJWT refuses to produce."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def claims(user: str = "alice", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": user,
        "scopes": [f"u#{user}", "s#team"] if user == "alice" else [f"u#{user}"],
        "aud": AUDIENCE,
        "iss": ISSUER,
        "iat": now,
        # A day: tokens made at import (module constants) must outlive a slow suite.
        "exp": now + 24 * 3600,
    }
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def hs256(payload: dict[str, Any], secret: str = SECRET) -> str:
    # Assembled by hand: PyJWT refuses to encode some of the malformed claims used here.
    return raw_jwt(
        {"alg": "HS256", "typ": "JWT"},
        payload,
        lambda data: hmac.new(secret.encode(), data, hashlib.sha256).digest(),
    )


def rs256(payload: dict[str, Any], key: rsa.RSAPrivateKey, kid: str | None = "test-key") -> str:
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid} if kid else None)


def hostile_tokens(keys: Keys) -> dict[str, str | None]:
    """Authorization header values by the names the hostile corpus uses."""
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    alice = claims()

    def hmac_with(key: bytes, digest: Any = hashlib.sha256) -> Callable[[bytes], bytes]:
        return lambda data: hmac.new(key, data, digest).digest()

    def rsa_with(key: rsa.RSAPrivateKey) -> Callable[[bytes], bytes]:
        return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    forged = hs256(alice, "another-secret-0123456789-0123456789-xyz")
    valid = hs256(alice)
    head, _, sig = valid.split(".")
    tampered_payload = b64(json.dumps(claims(scopes=["u#alice", "u#bob"])).encode())
    ec_key = ec.generate_private_key(ec.SECP256R1())
    public_jwk = keys.jwks["keys"][0]
    tokens: dict[str, str | None] = {
        "missing": None,
        "empty_bearer": "Bearer",
        "basic": "Basic YWxpY2U6cGFzc3dvcmQ=",
        "aws_sigv4": "AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/dynamodb/aws4_request,"
        " SignedHeaders=host, Signature=00",
        "token_without_scheme": valid,
        "two_parts": "Bearer abc.def",
        "garbage": "Bearer !!!.!!!.!!!",
        "not_json_header": f"Bearer {b64(b'not json')}.{b64(b'{}')}.sig",
        "forged_secret": f"Bearer {forged}",
        "tampered_payload": f"Bearer {head}.{tampered_payload}.{sig}",
        "expired": f"Bearer {hs256(claims(exp=int(time.time()) - 3600))}",
        "not_yet_valid": f"Bearer {hs256(claims(nbf=int(time.time()) + 3600))}",
        "wrong_audience": f"Bearer {hs256(claims(aud='another-app'))}",
        "missing_audience": f"Bearer {hs256(claims(aud=None))}",
        "wrong_issuer": f"Bearer {hs256(claims(iss='https://evil.test'))}",
        "missing_issuer": f"Bearer {hs256(claims(iss=None))}",
        "missing_exp": f"Bearer {hs256(claims(exp=None))}",
        "missing_sub": f"Bearer {hs256(claims(sub=None))}",
        "empty_sub": f"Bearer {hs256(claims(sub=''))}",
        "numeric_sub": f"Bearer {hs256(claims(sub=42))}",
        "scopes_not_list": f"Bearer {hs256(claims(scopes='u#bob'))}",
        "scopes_not_strings": f"Bearer {hs256(claims(scopes=[{'S': 'u#bob'}]))}",
        "alg_none": "Bearer " + raw_jwt({"alg": "none", "typ": "JWT"}, alice, lambda _: b""),
        "alg_None": "Bearer " + raw_jwt({"alg": "None"}, alice, lambda _: b""),
        "alg_none_with_sig": "Bearer "
        + raw_jwt({"alg": "none"}, alice, hmac_with(SECRET.encode())),
        "hs256_with_public_pem": "Bearer "
        + raw_jwt({"alg": "HS256", "kid": "test-key"}, alice, hmac_with(keys.public_pem)),
        "hs256_with_jwks_json": "Bearer "
        + raw_jwt({"alg": "HS256"}, alice, hmac_with(json.dumps(public_jwk).encode())),
        "hs512_real_secret": "Bearer "
        + raw_jwt({"alg": "HS512"}, alice, hmac_with(SECRET.encode(), hashlib.sha512)),
        "hs384_real_secret": "Bearer "
        + raw_jwt({"alg": "HS384"}, alice, hmac_with(SECRET.encode(), hashlib.sha384)),
        "rs256_other_key_same_kid": f"Bearer {rs256(alice, other_rsa)}",
        "rs256_unknown_kid": f"Bearer {rs256(alice, other_rsa, kid='attacker')}",
        "rs256_no_kid": f"Bearer {rs256(alice, keys.rsa, kid=None)}",
        "rs256_embedded_jwk": "Bearer "
        + raw_jwt(
            {
                "alg": "RS256",
                "kid": "attacker",
                "jwk": json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(other_rsa.public_key())),
            },
            alice,
            rsa_with(other_rsa),
        ),
        "rs256_jku": "Bearer "
        + raw_jwt(
            {"alg": "RS256", "kid": "attacker", "jku": "https://evil.test/jwks.json"},
            alice,
            rsa_with(other_rsa),
        ),
        "rs256_expired": f"Bearer {rs256(claims(exp=int(time.time()) - 3600), keys.rsa)}",
        "rs256_wrong_audience": f"Bearer {rs256(claims(aud='x'), keys.rsa)}",
        "es256": f"Bearer {jwt.encode(alice, ec_key, algorithm='ES256')}",
        # PyJWT accepts both (int() of them works); a NumericDate is a finite JSON number.
        "exp_as_string": f"Bearer {hs256(claims(exp=str(int(time.time()) + 600)))}",
        "exp_too_large": f"Bearer {hs256(claims(exp=10**400))}",
        "wildcard_scopes": f"Bearer {hs256(claims('eve', scopes=['*', 'x#root', 'u#', 's#']))}",
    }
    return tokens


@pytest.fixture(scope="session")
def tokens(keys: Keys) -> dict[str, str | None]:
    """Valid and hostile Authorization values by name (``alice``, ``bob``, ``expired``...)."""
    result = hostile_tokens(keys)
    result["alice"] = f"Bearer {hs256(claims())}"
    result["alice_rs256"] = f"Bearer {rs256(claims(), keys.rsa)}"
    result["bob"] = f"Bearer {hs256(claims('bob'))}"
    return result


# --- direct access to DynamoDB Local ---------------------------------------------


@dataclass
class Direct:
    """Requests straight to DynamoDB Local, signed by botocore."""

    endpoint: str
    http: httpx.Client

    def send(self, operation: str, body: bytes | dict[str, Any]) -> httpx.Response:
        data = body if isinstance(body, bytes) else dumps(body)
        request = AWSRequest(
            method="POST",
            url=self.endpoint + "/",
            data=data,
            headers={
                "Content-Type": JSON_TYPE,
                "X-Amz-Target": f"DynamoDB_20120810.{operation}",
            },
        )
        SigV4Auth(Credentials("local", "local"), "dynamodb", "us-east-1").add_auth(request)
        return self.http.post(self.endpoint + "/", content=data, headers=dict(request.headers))

    def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.send(operation, body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def snapshot(self) -> list[tuple[str, list[dict[str, Any]]]]:
        """Every item of both tables (consistent scans), in a stable order."""
        tables = []
        for table in (TABLE, CHANGES):
            items: list[dict[str, Any]] = []
            request: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
            while True:
                page = self.call("Scan", request)
                items.extend(page["Items"])
                if "LastEvaluatedKey" not in page:
                    break
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            items.sort(key=lambda item: json.dumps(item, sort_keys=True))
            tables.append((table, items))
        return tables

    def put(self, table: str, *items: dict[str, Any]) -> None:
        for item in items:
            self.call("PutItem", {"TableName": table, "Item": item})


def dumps(document: Any) -> bytes:
    """Compact JSON, as the proxy re-serializes it."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.fixture(scope="session")
def direct(dynamodb: DynamoDBLocal, http: httpx.Client) -> Direct:
    return Direct(dynamodb.endpoint, http)


@pytest.fixture(scope="session")
def seeded(direct: Direct) -> Direct:
    """Victim data (bob, s#other) and alice's own items, in both tables."""
    for scope in ("u#alice", "s#team", "u#bob", "s#other"):
        for i in (1, 2):
            direct.put(
                TABLE,
                {
                    "pk": S(scope),
                    "sk": S(f"todo#{i}"),
                    "title": S(f"{scope} item {i}"),
                    "_v": N(1),
                    "_owner": S(scope),
                },
            )
        direct.put(CHANGES, {"pk": S(scope), "sk": N(0), "head": N(2)})
        for seq in (1, 2):
            direct.put(
                CHANGES,
                {"pk": S(scope), "sk": N(seq), "key": S(f"todo#{seq}"), "_v": N(1)},
            )
    return direct


def proxy_post(
    http: httpx.Client,
    url: str,
    operation: str | None,
    body: bytes | dict[str, Any],
    authorization: str | None,
    **headers: str,
) -> httpx.Response:
    """POST a DynamoDB request to a proxy."""
    sent = {"Content-Type": JSON_TYPE}
    if operation is not None:
        sent["X-Amz-Target"] = f"DynamoDB_20120810.{operation}"
    if authorization is not None:
        sent["Authorization"] = authorization
    sent.update(headers)
    content = body if isinstance(body, bytes) else dumps(body)
    return http.post(url + "/dynamodb", content=content, headers=sent)


# --- stream consumer, changelog and realtime -------------------------------------


@pytest.fixture(scope="session")
def ddb(dynamodb: DynamoDBLocal) -> Iterator[Any]:
    """A botocore client straight to DynamoDB Local (writes that bypass the proxy)."""
    client = dynamodb_client(ProxyConfig(dynamodb_endpoint=dynamodb.endpoint), local_session())
    yield client
    client.close()


@pytest.fixture
def make_tables(ddb: Any) -> Callable[[str], str]:
    """Create a fresh data table with its ``_changes`` and ``_streams`` tables; returns its name.

    Each test gets its own stream, so consumers never see other tests' writes.
    """

    def make(prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        create_tables(ddb, name)
        return name

    return make


class FaultyAPI(DynamoDBAPI):
    """A :class:`DynamoDBAPI` that fails or stalls chosen calls, and counts every call."""

    @dataclass
    class Fault:
        operation: str
        action: DynamoDBError | Callable[[dict[str, Any]], Awaitable[None]]
        when: Callable[[dict[str, Any]], bool]
        times: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.faults: list[FaultyAPI.Fault] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def inject(
        self,
        operation: str,
        action: DynamoDBError | Callable[[dict[str, Any]], Awaitable[None]],
        *,
        when: Callable[[dict[str, Any]], bool] = lambda body: True,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` matching calls raise ``action`` (or await it first)."""
        self.faults.append(FaultyAPI.Fault(operation, action, when, times))

    async def request(self, url: str, target: str, body: dict[str, Any]) -> dict[str, Any]:
        operation = target.rpartition(".")[2]
        self.calls.append((operation, body))
        for fault in self.faults:
            if fault.operation == operation and fault.times > 0 and fault.when(body):
                fault.times -= 1
                if isinstance(fault.action, DynamoDBError):
                    raise fault.action
                await fault.action(body)
        return await super().request(url, target, body)

    def count(self, operation: str) -> int:
        """How many calls of ``operation`` were made."""
        return sum(1 for name, _ in self.calls if name == operation)


def aws_error(error_type: str, status: int = 400, **body: Any) -> DynamoDBError:
    """A :class:`DynamoDBError` as DynamoDB would send it."""
    return DynamoDBError(status, error_type, f"injected {error_type}", body)


@pytest.fixture
async def api(dynamodb: DynamoDBLocal) -> AsyncIterator[FaultyAPI]:
    """The server's own async client to DynamoDB Local (with fault injection)."""
    client = FaultyAPI(Signer("us-east-1", session=local_session()), dynamodb.endpoint)
    yield client
    await client.aclose()


async def wait_until(
    condition: Callable[[], Any], limit: float = 10.0, interval: float = 0.01
) -> Any:
    """Poll ``condition`` (sync or async) until it is truthy; fail after ``limit`` s."""
    deadline = time.monotonic() + limit
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {limit} s")
        await asyncio.sleep(interval)


def changelog(ddb: Any, table: str, scope: str) -> list[dict[str, Any]]:
    """Every entry of ``scope`` in ``<table>_changes`` (consistent, in seq order, no head)."""
    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {
        "TableName": f"{table}_changes",
        "KeyConditionExpression": "pk = :p AND sk > :z",
        "ExpressionAttributeValues": {":p": S(scope), ":z": N(0)},
        "ConsistentRead": True,
    }
    while True:
        page = ddb.query(**request)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def seqs(entries: list[dict[str, Any]]) -> list[int]:
    """The seqs of changelog entries."""
    return [int(entry["sk"]["N"]) for entry in entries]


#: Starts a stream consumer: ``await start(table, client=None, **options)``.
StartConsumer = Callable[..., Awaitable[StreamConsumer]]


@contextlib.asynccontextmanager
async def consumers(default: FaultyAPI, **defaults: Any) -> AsyncIterator[StartConsumer]:
    """Start consumers with test timings (``defaults``, then each call's options win);
    all are aborted at the end."""
    started: list[StreamConsumer] = []

    async def start(table: str, client: FaultyAPI | None = None, **options: Any) -> StreamConsumer:
        client = client or default
        settings: dict[str, Any] = {"poll_interval": 0.01, **defaults, **options}
        consumer = StreamConsumer(client, table, Changelog(client, f"{table}_changes"), **settings)
        await consumer.start()
        started.append(consumer)
        return consumer

    try:
        yield start
    finally:
        for consumer in started:
            await consumer.abort()
