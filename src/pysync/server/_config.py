"""Proxy configuration: one frozen dataclass, filled from ``PYSYNC_*`` variables or the CLI."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: HS256 secret used when nothing else is configured. ``pysync serve`` refuses it unless ``--dev``.
DEV_JWT_SECRET = "pysync-dev-secret-for-local-use-only-never-in-production"


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _float(value: str, name: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def _bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1/0, true/false, yes/no or on/off, got {value!r}")


_FLOAT_SETTINGS = {
    "PYSYNC_CHANGELOG_RETENTION": "changelog_retention",
    "PYSYNC_STREAM_POLL_INTERVAL": "stream_poll_interval",
    "PYSYNC_LEASE_DURATION": "lease_duration",
    "PYSYNC_REALTIME_POLL_INTERVAL": "realtime_poll_interval",
    "PYSYNC_SSE_HEARTBEAT": "sse_heartbeat",
    "PYSYNC_HEADER_TIMEOUT": "header_timeout",
    "PYSYNC_BODY_TIMEOUT": "body_timeout",
    "PYSYNC_KEEP_ALIVE_TIMEOUT": "keep_alive_timeout",
}

#: Integer limits on what clients send (docs/security.md#limits).
_INT_LIMITS = {
    "PYSYNC_MAX_HEADER_BYTES": "max_header_bytes",
    "PYSYNC_MAX_HEADERS": "max_headers",
    "PYSYNC_MAX_AUTHORIZATION_BYTES": "max_authorization_bytes",
    "PYSYNC_MAX_CLIENT_CONNECTIONS": "max_client_connections",
    "PYSYNC_MAX_CONNECTIONS_PER_ADDRESS": "max_connections_per_address",
    "PYSYNC_MAX_STREAMS": "max_streams",
}


@dataclass(frozen=True)
class ProxyConfig:
    """Everything the proxy needs; see docs/proxy.md for each setting's environment variable.

    ``dynamodb_endpoint``/``streams_endpoint`` default to the public AWS
    endpoints of ``region`` (a custom ``dynamodb_endpoint`` alone, as for
    DynamoDB Local, serves Streams too). ``consumer`` runs the stream consumer
    in the app's process (``pysync serve``/``dev`` turn it on); see
    docs/changelog.md for it and the realtime settings. AWS credentials are not configured here: the
    proxy uses botocore's standard chain (environment, ``aws_profile``,
    container or instance role).

    ``max_connections`` is the pool of connections to DynamoDB. The limits on what
    clients send and hold (``max_header_bytes`` ... ``max_connections_per_address``,
    ``max_body_bytes``) are applied by the HTTP protocol of
    ``pysync.server._limits.uvicorn_config`` before the app sees a request;
    ``max_streams`` and ``max_streams_per_subject`` cap open ``GET /changes`` streams.
    See docs/security.md#limits.
    """

    table: str = "pysync"
    region: str = "us-east-1"
    dynamodb_endpoint: str | None = None
    streams_endpoint: str | None = None
    aws_profile: str | None = None
    jwt_secret: str | None = None
    jwks_url: str | None = None
    jwks_file: Path | None = None
    audience: str | None = None
    issuer: str | None = None
    allowed_origins: tuple[str, ...] = ()
    max_body_bytes: int = 4 * 1024 * 1024
    rate_limit: float = 50.0
    rate_burst: int = 100
    upstream_timeout: float = 10.0
    max_connections: int = 64
    web_dir: Path | None = None
    pyodide_dir: Path | None = None
    pyscript_dir: Path | None = None
    consumer: bool = False
    changelog_retention: float = 7 * 24 * 3600.0
    stream_poll_interval: float = 0.25
    lease_duration: float = 10.0
    realtime_poll_interval: float = 1.0
    sse_heartbeat: float = 15.0
    max_streams_per_subject: int = 16
    max_streams: int = 500
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    max_authorization_bytes: int = 8 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    max_client_connections: int = 1000
    max_connections_per_address: int = 100

    @property
    def changelog_table(self) -> str:
        """Name of the changelog table (``<table>_changes``)."""
        return f"{self.table}_changes"

    @property
    def lease_table(self) -> str:
        """Name of the stream consumer's lease and checkpoint table (``<table>_streams``)."""
        return f"{self.table}_streams"

    @property
    def dynamodb_url(self) -> str:
        """DynamoDB endpoint to forward to."""
        return self.dynamodb_endpoint or f"https://dynamodb.{self.region}.amazonaws.com"

    @property
    def streams_url(self) -> str:
        """DynamoDB Streams endpoint (for the stream consumer)."""
        if self.streams_endpoint:
            return self.streams_endpoint
        if self.dynamodb_endpoint:  # DynamoDB Local and other emulators serve both APIs
            return self.dynamodb_endpoint
        return f"https://streams.dynamodb.{self.region}.amazonaws.com"

    @property
    def uses_dev_secret(self) -> bool:
        """True when tokens are checked with the public development secret."""
        return self.jwt_secret == DEV_JWT_SECRET

    def replace(self, **changes: Any) -> ProxyConfig:
        """A copy with some fields changed (``None`` values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProxyConfig:
        """Read ``PYSYNC_*`` variables (region: also ``AWS_REGION``/``AWS_DEFAULT_REGION``)."""
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            return env.get(name) or None

        config = cls()
        values: dict[str, Any] = {
            "table": get("PYSYNC_TABLE"),
            "region": get("PYSYNC_REGION") or get("AWS_REGION") or get("AWS_DEFAULT_REGION"),
            "dynamodb_endpoint": get("PYSYNC_DYNAMODB_ENDPOINT"),
            "streams_endpoint": get("PYSYNC_STREAMS_ENDPOINT"),
            "aws_profile": get("PYSYNC_AWS_PROFILE"),
            "jwt_secret": get("PYSYNC_JWT_SECRET"),
            "jwks_url": get("PYSYNC_JWKS_URL"),
            "audience": get("PYSYNC_JWT_AUDIENCE"),
            "issuer": get("PYSYNC_JWT_ISSUER"),
        }
        if jwks_file := get("PYSYNC_JWKS_FILE"):
            values["jwks_file"] = Path(jwks_file)
        if origins := get("PYSYNC_ALLOWED_ORIGINS"):
            values["allowed_origins"] = tuple(o.strip() for o in origins.split(",") if o.strip())
        if size := get("PYSYNC_MAX_BODY_BYTES"):
            values["max_body_bytes"] = _int(size, "PYSYNC_MAX_BODY_BYTES")
        if rate := get("PYSYNC_RATE_LIMIT"):
            values["rate_limit"] = _float(rate, "PYSYNC_RATE_LIMIT")
        if burst := get("PYSYNC_RATE_BURST"):
            values["rate_burst"] = _int(burst, "PYSYNC_RATE_BURST")
        if timeout := get("PYSYNC_UPSTREAM_TIMEOUT"):
            values["upstream_timeout"] = _float(timeout, "PYSYNC_UPSTREAM_TIMEOUT")
        if consumer := get("PYSYNC_CONSUMER"):
            values["consumer"] = _bool(consumer, "PYSYNC_CONSUMER")
        for name, field_name in _FLOAT_SETTINGS.items():
            if value := get(name):
                values[field_name] = _float(value, name)
        if streams := get("PYSYNC_MAX_STREAMS_PER_SUBJECT"):
            values["max_streams_per_subject"] = _int(streams, "PYSYNC_MAX_STREAMS_PER_SUBJECT")
        for name, field_name in _INT_LIMITS.items():
            if value := get(name):
                values[field_name] = _int(value, name)
        if web := get("PYSYNC_WEB_DIR"):
            values["web_dir"] = Path(web)
        if pyodide := get("PYSYNC_PYODIDE_DIR"):
            values["pyodide_dir"] = Path(pyodide)
        if pyscript := get("PYSYNC_PYSCRIPT_DIR"):
            values["pyscript_dir"] = Path(pyscript)
        return config.replace(**values)
