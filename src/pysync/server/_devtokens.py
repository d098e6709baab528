"""The dev-only sign-in endpoint: ``POST /dev/token`` mints a token for a local user.

Only ``pysync dev`` mounts it (``create_app(..., dev_tokens=...)``); ``pysync serve``
never does, so a deployment's tokens come from its identity provider alone. It
stands in for a real sign-in so that the demo can switch between users: anyone who
can reach the endpoint can be anyone, which is why it exists only on the dev stack,
which listens on loopback.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from ._auth import issue_token

DEV_TOKEN_PATH = "/dev/token"
#: The shared space ``pysync dev`` grants every user it signs in (the demo's team board).
DEMO_SHARED_SCOPE = "s#team"

#: Local user names: short, lowercase, safe in a scope (``u#<user>``) and a database name.
_USER = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_MAX_BODY = 1024

logger = logging.getLogger("pysync.proxy")


@dataclass(frozen=True)
class DevTokens:
    """What ``POST /dev/token`` mints: HS256 with ``secret``, ``scopes`` besides ``u#<user>``."""

    secret: str
    scopes: Sequence[str] = ()
    ttl: int = 3600
    audience: str | None = None
    issuer: str | None = None

    async def handle(self, request: Request) -> Response:
        """``{"user": "alice"}`` -> ``{"user", "token", "scopes", "expires_in"}``."""
        try:
            body = b""
            async for chunk in request.stream():  # stop reading at the limit
                body += chunk
                if len(body) > _MAX_BODY:
                    raise ValueError("body too large")
            user = json.loads(body)["user"]
            if not isinstance(user, str) or not _USER.fullmatch(user):
                raise ValueError("bad user")
        except ClientDisconnect:  # nobody is left to answer: no error of the server's
            logger.info("client disconnected before the end of its %s body", DEV_TOKEN_PATH)
            return Response(status_code=499)
        except (ValueError, KeyError, TypeError):
            return JSONResponse(
                {"error": 'expected {"user": "<name>"}: 1-32 of a-z, 0-9, "_", "-"'},
                status_code=400,
            )
        token = issue_token(
            self.secret,
            user,
            scopes=self.scopes,
            ttl=self.ttl,
            audience=self.audience,
            issuer=self.issuer,
        )
        scopes = list(dict.fromkeys([f"u#{user}", *self.scopes]))
        return JSONResponse(
            {"user": user, "token": token, "scopes": scopes, "expires_in": self.ttl},
            headers={"cache-control": "no-store"},
        )
